"""A client in Java 17, written from docs/wire-format.md alone with nothing but the JDK, against
the shipped routed deployment: a Redis loaded with the committed deploy/redis/users.acl (the
passwords of deploy/dev.env), the bus's library loaded by the admin, and a router running
in-process.

The client (tests/bus/java/RoutedClient.java: a RESP client over a plain Socket, compiled with
the documentation's own Java snippets as the class WireFormat) signs events with the producer's
development key and publishes them into the producer's intake with the producer's password: a
death, a birth and a move the router admits, and two it refuses into the producer's own dead
letters (a type the producer may not publish, an event altered after signing), which the
producer reads with its own password (section 3.1), its dedupe marker gone, and publishes the
corrected event again under the same id. Then it reads four inboxes, each with its own
service's password and group: dinsos', dinkes' and bapenda's projections (signed by the router,
`data` reduced and written again compact) and the audit's originals (signed by the producer); it
verifies each as section 10.4 says, ties each projection to its original (section 11.3), refuses
altered copies, dead-letters one entry with the library's function, and acks the rest."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.bus.routed import ROOT, RoutedServer, routed_document, running, signer
from tests.bus.test_node_routed import password, shipped  # noqa: F401 (the module's fixture)
from tests.bus.test_projection import facts
from tests.bus.test_signing import doc_example
from tests.bus.test_wire_format import doc_block

PRODUCER = "adapter-dukcapil"
SERVICES = {
    "service": "svc-dinsos",
    "projected": "svc-dinkes",
    "listed": "svc-bapenda",
    "audit": "svc-audit",
}
DEPARTMENT_STREAM = "simpul:{dukcapil.citizen}"
INTAKE = f"simpul:intake:{{{PRODUCER}}}"
WITHIN_S = 25  # the client waits at most this long for the router; the test, a little longer


def _config(port: int) -> dict[str, Any]:
    """What an outside developer is given: the port, each principal's user and password
    (deploy/dev.env), the producer's key file, and the public keys of the topology."""
    document = routed_document()
    producer = next(p for p in document["producers"] if p["principal"] == PRODUCER)
    producer_key = producer["keys"][0]
    router_key = document["router"]["keys"][0]
    config: dict[str, Any] = {
        "port": port,
        "waitMs": WITHIN_S * 1000,
        "producer.user": PRODUCER,
        "producer.password": password(PRODUCER),
        "producer.keyId": producer_key["id"],
        "producer.seed": (ROOT / "deploy/keys" / f"{producer_key['id']}.key").read_text().strip(),
        "producer.publicKey": producer_key["public_key"],
        "producer.notBefore": producer_key["not_before"],
        "producer.types": ",".join(producer["publishes"]),
        "router.keyId": router_key["id"],
        "router.publicKey": router_key["public_key"],
        "router.notBefore": router_key["not_before"],
    }
    groups = {s["principal"]: s["group"] for s in document["services"]}
    for role, principal in SERVICES.items():
        config.update(
            {
                f"{role}.user": principal,
                f"{role}.password": password(principal),
                f"{role}.group": groups[principal],
            }
        )
    return config


def refused_id(refused: dict[str, dict[str, str]], reason: str) -> str:
    [found] = [id for id, fields in refused.items() if fields["dlq.reason"] == reason]
    return found


def _wire_format_class() -> str:
    """The Java snippets of docs/wire-format.md, verbatim, as the static methods of one class."""
    methods = ("java-event-id", "java-sign", "java-verify", "java-origin-digest")
    return (
        doc_block("java-imports")
        + "\nfinal class WireFormat {\n"
        + "".join(doc_block(name) for name in methods)
        + "}\n"
    )


def _vectors() -> dict[str, str]:
    """The worked examples of sections 10.5 and 11.4: the keys, the signed original, the router's
    inbox entry, the figures they state."""
    key, original, result = doc_example()
    router = facts(doc_block("inbox-example-key"))
    values = {
        "vector.seed": key["seed"],
        "vector.publicKey": key["public key"],
        "vector.result": result["signed bytes"],
        "vector.routerPublicKey": router["public key"],
    }
    original = original | {"signature": result["signature"]}
    values.update({f"vector.original.{n}": v for n, v in original.items()})
    inbox = json.loads(doc_block("inbox-example-fields"))
    values.update({f"vector.inbox.{n}": v for n, v in inbox.items()})
    return values


def _properties(values: dict[str, Any]) -> str:
    """A java.util.Properties file: one `name=value` a line, `\\` and what is not printable
    ASCII escaped as Properties.load reads them."""

    def escaped(text: str) -> str:
        return "".join(
            "\\\\" if c == "\\" else c if " " <= c <= "~" else f"\\u{ord(c):04x}" for c in text
        )

    return "".join(f"{name}={escaped(str(value))}\n" for name, value in values.items())


async def test_a_java_client_publishes_to_its_intake_and_reads_its_inboxes_as_documented(
    shipped: RoutedServer,  # noqa: F811 (the imported fixture)
    tmp_path: Path,
) -> None:
    javac, java = shutil.which("javac"), shutil.which("java")
    if javac is None or java is None:
        pytest.skip("javac is not installed: the routed Java client is not run")
    client = Path(__file__).parent / "java" / "RoutedClient.java"
    snippets = tmp_path / "WireFormat.java"
    snippets.write_text(_wire_format_class())
    compiled = await asyncio.create_subprocess_exec(
        javac,
        "-d",
        str(tmp_path),
        str(snippets),
        str(client),
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(compiled.communicate(), 60)
    assert compiled.returncode == 0, err.decode()
    config = tmp_path / "client.properties"
    config.write_text(_properties(_config(shipped.port) | _vectors()))
    async with running(shipped.router()):
        process = await asyncio.create_subprocess_exec(
            java,
            "-cp",
            str(tmp_path),
            "RoutedClient",
            str(config),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), 4 * WITHIN_S)
    assert process.returncode == 0, err.decode()
    seen = json.loads(out)
    producer_key = signer(PRODUCER).key_id

    # The figures of sections 2.1, 10.5 and 11.4, computed by the documented Java code.
    assert seen["diedId"] == "2ee8b89c-643d-57a2-a420-2db15553b5b6"
    vectors = seen["vectors"]
    assert vectors["signedBytes"] == _vectors()["vector.result"]
    assert vectors["originalValid"] and vectors["inboxValid"] and vectors["signedWithSeedValid"]
    assert vectors["originDigest"] == vectors["inboxOriginDigest"]
    assert not vectors["alteredValid"] and not vectors["inboxWithProducerKeyValid"]
    # The producer's credentials reach only its intake; the function deduplicates there.
    assert seen["version"] == 1
    assert seen["departmentXadd"]["error"].startswith("NOPERM"), seen["departmentXadd"]
    assert seen["published"][0] == 1
    assert seen["again"] == [0, seen["published"][1]]
    assert seen["publishedBorn"][0] == seen["publishedWrongType"][0] == 1
    assert seen["publishedTampered"][0] == 1

    # The router admitted the two signed events verbatim onto the department stream ...
    stored, origin, refused = shipped.admitted_and_refused(DEPARTMENT_STREAM, INTAKE, by=b"id")
    assert stored[:3] == [seen["signed"], seen["signedBorn"], seen["signedMoved"]]
    # ... and refused the others into the producer's own dead letters, which the producer reads
    # with its own credentials (section 3.1): the same entries an operator sees.
    assert seen["refusals"] == refused, seen["refusals"]
    reasons = {fields["type"]: fields["dlq.reason"] for fields in refused.values()}
    assert sorted(reasons.values()) == ["bad_signature", "type_not_allowed"]
    assert reasons["dukcapil.family.card-issued.v1"] == "type_not_allowed"
    for fields in refused.values():
        assert fields["dlq.group"] == "router" and fields["dlq.stream"] == INTAKE
    # The producer reads a refusal only as its dedupe marker gone (kept for an admitted event);
    # the altered event, corrected and signed anew, went in again under its id and was admitted.
    assert seen["admittedMarker"] == seen["published"][1]
    assert seen["refusedMarkerGone"]
    assert seen["republished"][0] == 1
    [again] = [f for f in stored[3:] if f["id"] == refused_id(refused, "bad_signature")]
    assert again["signature"] != refused[again["id"]]["signature"]
    assert len(stored) == 4

    # dinsos gave one entry up: acked and dead-lettered at once, beside its inbox; once only.
    dinsos_inbox = "simpul:inbox:{dinsos/dukcapil.citizen}"
    with shipped.admin() as admin:
        [(_, letter)] = admin.xrange(dinsos_inbox + ":dlq:dinsos")
    assert isinstance(seen["deadLetter"], str), seen["deadLetter"]
    assert seen["deadLetterAgain"] is None
    assert letter[b"id"].decode() == seen["signedBorn"]["id"]
    assert letter[b"dlq.reason"] == b"given_up"

    # dinsos' inbox: a projection signed by the router, tied to its original, refused altered.
    assert seen["departmentRead"]["error"].startswith("NOPERM"), seen["departmentRead"]
    assert seen["dinsos.group"] == "OK"
    entry = seen["entry"]
    assert seen["projected"] and seen["routerSigned"]
    assert entry["originentry"] == origin.decode()
    assert entry["originsigner"] == producer_key
    assert seen["verdict"] == "valid"
    assert not seen["validWithProducerKey"]
    assert seen["matchesOriginal"]
    assert seen["alteredVerdict"] == seen["otherOriginVerdict"] == "bad_signature"
    assert seen["ack"] == seen["read"] == 3  # the death, the move and the corrected death
    assert seen["pending"][0] == 0
    # dinsos is approved `personal: [nik]` for deaths: every field, still re-signed.
    assert entry["data"] == seen["signed"]["data"]

    # dinkes' inbox: the birth without the NIK and the family card, compact, in the original order.
    born = seen["bornEntry"]
    assert seen["bornVerdict"] == "valid" and seen["bornMatchesOriginal"]
    assert born["data"] == seen["bornDataExpected"]
    assert seen["bornAck"] == seen["bornRead"] == 1

    # bapenda's approval names every field of a move (`personal: [nik, address]`), yet its entry
    # is a projection: `data` written again, compact, the escaped character as UTF-8 (11.2).
    moved = seen["movedEntry"]
    assert seen["movedVerdict"] == "valid" and seen["movedMatchesOriginal"]
    assert "origindigest" in moved
    assert not seen["movedDataVerbatim"] and seen["movedDataCompact"], moved["data"]
    assert json.loads(moved["data"]) == json.loads(seen["signedMoved"]["data"])
    assert seen["movedAck"] == seen["movedRead"]
    # dinsos' approval of moves (`personal: [nik]`) withholds the address (11.2's example).
    assert seen["dinsosMovedData"] == (
        '{"nik":"3573014107900003","kecamatan":"35.73.02","moved_on":"2026-11-25"}'
    )

    # The audit's inbox holds the original as admitted, verified with the producer's key.
    assert not seen["auditProjected"]
    assert seen["auditEntry"] == seen["signed"]
    assert seen["auditVerdict"] == "valid" and not seen["auditValidWithRouterKey"]
    assert seen["auditAlteredVerdict"] == "bad_signature"
    assert seen["auditAck"] == seen["auditRead"] == len(stored)
