"""A client in another language, written from docs/wire-format.md alone, against the shipped
routed deployment: a Redis loaded with the committed deploy/redis/users.acl (the passwords of
deploy/dev.env), the bus's library loaded by the admin, and a router running in-process.

The Node client (tests/bus/node_routed_client.js, built-in modules only, behind the
documentation's own snippets) signs an event with the producer's development key and publishes
it into the producer's intake with the producer's password; then, with a service's password, it
reads that service's inbox group, verifies the router's signature as section 11 says, ties the
entry to its original, and acks it; with the audit's, it reads the original, producer-signed,
from the audit's inbox (a subscription approved for every field)."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.bus.routed import ROOT, RoutedServer, acl_server, running, signer
from tests.bus.test_wire_format import doc_block

PRODUCER, SERVICE, GROUP = "adapter-dukcapil", "svc-dinsos", "dinsos"
DEPARTMENT_STREAM, AGGREGATE = "simpul:{dukcapil.citizen}", "dukcapil.citizen"
PASSWORDS = {
    line.split("=", 1)[0]: line.split("=", 1)[1]
    for line in (ROOT / "deploy/dev.env").read_text().splitlines()
    if line.startswith("SIMPUL_REDIS_PASSWORD_")
}


def password(principal: str) -> str:
    """As an outside developer finds it: deploy/dev.env, SIMPUL_REDIS_PASSWORD_<PRINCIPAL>."""
    return PASSWORDS["SIMPUL_REDIS_PASSWORD_" + principal.upper().replace("-", "_")]


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RoutedServer]:
    """A private redis-server started with the committed ACL file, as docker-compose.yml does,
    the bus's library loaded by the admin (as `simpul functions load` does)."""
    aclfile = tmp_path_factory.mktemp("shipped-acl") / "users.acl"
    shutil.copy(ROOT / "deploy/redis/users.acl", aclfile)
    with acl_server(aclfile) as server:
        yield server


@dataclass
class _Key:
    key_id: str
    public_key_base64: str


def _router_key() -> _Key:
    """The router's key as an outside developer reads it: `router: keys:` of the topology."""
    document = yaml.safe_load((ROOT / "deploy/topology.yaml").read_text())
    key = document["router"]["keys"][0]
    return _Key(key["id"], key["public_key"])


def _event() -> dict[str, str]:
    """The documented event of section 10.5, its producer-specific fields left to the client."""
    fields = json.loads(doc_block("signing-example-fields"))
    for name in ("signer", "signedat", "signature"):
        fields.pop(name, None)
    return dict(fields)


async def test_a_node_client_publishes_to_its_intake_and_reads_its_inbox_as_documented(
    shipped: RoutedServer, tmp_path: Path
) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the routed JavaScript client is not run")
    producer_key = signer(PRODUCER)
    router_key = _router_key()
    seed_file = ROOT / "deploy/keys" / f"{producer_key.key_id}.key"
    script = tmp_path / "client.js"
    script.write_text(
        doc_block("node-verify")
        + doc_block("node-sign")
        + doc_block("node-origin")
        + (Path(__file__).parent / "node_routed_client.js").read_text()
    )
    given = {
        "port": shipped.port,
        "waitMs": 60_000,
        "departmentStream": DEPARTMENT_STREAM,
        "aggregate": AGGREGATE,
        "event": _event(),
        "producer": {
            "user": PRODUCER,
            "password": password(PRODUCER),
            "keyId": producer_key.key_id,
            "seed": seed_file.read_text(),
            "publicKey": base64.b64encode(producer_key.public_key).decode(),
        },
        "service": {"user": SERVICE, "password": password(SERVICE), "group": GROUP},
        "audit": {"user": "svc-audit", "password": password("svc-audit"), "group": "audit"},
        "router": {"keyId": router_key.key_id, "publicKey": router_key.public_key_base64},
    }
    async with running(shipped.router()):
        process = await asyncio.create_subprocess_exec(
            node,
            str(script),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(json.dumps(given).encode()), 120)
    assert process.returncode == 0, err.decode()
    seen = json.loads(out)

    # The producer's credentials reach only its intake; the function deduplicates there.
    assert seen["departmentXadd"]["error"].startswith("NOPERM"), seen["departmentXadd"]
    assert seen["published"][0] == 1
    assert seen["again"] == [0, seen["published"][1]]
    # The service's credentials reach only its inbox.
    assert seen["departmentRead"]["error"].startswith("NOPERM"), seen["departmentRead"]
    assert seen["group"] == "OK"

    # The router admitted the signed event verbatim onto the department stream ...
    with shipped.admin() as admin:
        [(origin, raw)] = admin.xrange(DEPARTMENT_STREAM)
        stored = {k.decode(): v.decode() for k, v in raw.items()}
        assert stored == seen["signed"]
        # ... and the service's inbox entry, acked, is pending no more.
        inbox = f"simpul:inbox:{{{GROUP}/{AGGREGATE}}}"
        assert admin.xpending(inbox, GROUP)["pending"] == 0
    assert seen["ack"] == 1
    assert seen["pending"][0] == 0

    entry = seen["entry"]
    assert entry["originentry"] == origin.decode()
    assert entry["originsigner"] == producer_key.key_id
    assert seen["routerSigned"] and seen["valid"]
    assert not seen["validWithProducerKey"]
    assert not seen["alteredValid"]
    assert seen["matchesOriginal"]
    # The audit may see every field: its inbox holds the original as admitted, which verifies
    # with the producer's key (section 11.2), not the router's.
    assert seen["auditEntry"] == seen["signed"]
    assert seen["auditValid"] and not seen["auditValidWithRouterKey"]
    # dinsos is approved `personal: [nik]` for deaths: the contract's other fields are not personal.
    assert json.loads(entry["data"]) == json.loads(seen["signed"]["data"])
