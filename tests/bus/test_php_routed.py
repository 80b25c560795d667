"""A client in PHP 8, written from docs/wire-format.md alone with nothing but Debian's php-cli
(ext-sodium, ext-json) and, for the document's section 4 example, phpredis (Debian's php-redis),
against the shipped routed deployment: a Redis loaded with the committed deploy/redis/users.acl
(the passwords of deploy/dev.env), the bus's library loaded by the admin, and a router running
in-process.

First the document's own section 4 example runs verbatim under phpredis (only the port changed):
it publishes the death of section 2.1, unsigned, into adapter-dukcapil's intake. Then the client
(tests/bus/php/RoutedClient.php: a RESP client over a plain socket, behind the document's PHP
functions, which the test writes into one file) checks the worked examples of sections 2.1, 10.5
and 11.4; finds that refusal (`unsigned`) in the producer's own intake dead letters with the
producer's password; publishes the death again signed under the same id, a birth and a move the
router admits, and two it refuses (a type the producer may not publish, an event altered after
signing), then the altered one corrected; reads dinsos', dinkes', bapenda's and the audit's
inboxes with each service's password, decodes (section 2) and verifies (section 10.4) every
entry, ties each projection to its original (section 11.3), refuses altered copies,
dead-letters one entry with the documented function (section 6) and acks the rest."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.bus.routed import ROOT, RoutedServer, routed_document, running, signer
from tests.bus.test_java_routed import SERVICES
from tests.bus.test_node_routed import password, shipped  # noqa: F401 (the module's fixture)
from tests.bus.test_projection import facts
from tests.bus.test_signing import doc_example
from tests.bus.test_wire_format import doc_block

PRODUCER = "adapter-dukcapil"
DEPARTMENT_STREAM = "simpul:{dukcapil.citizen}"
INTAKE = f"simpul:intake:{{{PRODUCER}}}"
WITHIN_S = 25  # the client waits at most this long for the router; the test, a little longer
DIED_ID = "2ee8b89c-643d-57a2-a420-2db15553b5b6"  # section 2.1's test vector, the example's id
# The PHP functions of docs/wire-format.md, in the order a developer copies them.
SNIPPETS = ("php-event-id", "php-publish", "php-sign", "php-verify", "php-origin")


def _wire_format_php() -> str:
    """The document's PHP functions, verbatim, in one file (strict types: they must hold)."""
    return "<?php\ndeclare(strict_types=1);\n\n" + "\n".join(doc_block(n) for n in SNIPPETS)


def _example_php(port: int) -> str:
    """Section 4's phpredis example, verbatim but for the port, printing what it got back."""
    example = doc_block("php-publish-example")
    assert example.count("6379") == 1
    return (
        _wire_format_php()
        + example.replace("6379", str(port))
        + '\necho json_encode([$added, $entryId, $fields]), "\\n";\n'
    )


def _config(port: int) -> dict[str, Any]:
    """What an outside developer is given: the port, each principal's user and password
    (deploy/dev.env), the producer's key file, the public keys of the topology, and the worked
    examples of sections 10.5 and 11.4."""
    document = routed_document()
    producer = next(p for p in document["producers"] if p["principal"] == PRODUCER)
    producer_key = producer["keys"][0]
    router_key = document["router"]["keys"][0]
    groups = {s["principal"]: s["group"] for s in document["services"]}
    key, original, result = doc_example()
    return {
        "port": port,
        "waitMs": WITHIN_S * 1000,
        "producer": {
            "user": PRODUCER,
            "password": password(PRODUCER),
            "keyId": producer_key["id"],
            "keyFile": str(ROOT / "deploy/keys" / f"{producer_key['id']}.key"),
            "publicKey": producer_key["public_key"],
            "notBefore": producer_key["not_before"],
            "types": producer["publishes"],
        },
        "router": {
            "keyId": router_key["id"],
            "publicKey": router_key["public_key"],
            "notBefore": router_key["not_before"],
        },
        **{
            role: {"user": p, "password": password(p), "group": groups[p]}
            for role, p in SERVICES.items()
        },
        "vectors": {
            "seed": key["seed"],
            "publicKey": key["public key"],
            "routerPublicKey": facts(doc_block("inbox-example-key"))["public key"],
            "original": original | {"signature": result["signature"]},
            "inbox": json.loads(doc_block("inbox-example-fields")),
        },
    }


def _php() -> str:
    php = shutil.which("php")
    if php is None:
        if os.environ.get("CI"):
            pytest.fail("php is missing on CI: `make system-deps` installs it (php-cli php-redis)")
        pytest.skip(
            "php is not installed, so the PHP client is not run (Debian: apt-get install php-cli"
            " php-redis, or `make system-deps`)"
        )
    modules = subprocess.run([php, "-m"], capture_output=True, text=True, check=True).stdout
    assert "sodium" in modules.split(), "php has no sodium extension (PHP >= 7.2 bundles it)"
    assert "redis" in modules.split(), (
        "php has no redis extension, which section 4's example uses: make system-deps installs"
        " php-redis"
    )
    return php


async def _run(*command: str, given: str = "", env: dict[str, str] | None = None) -> str:
    process = await asyncio.create_subprocess_exec(
        *command,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(process.communicate(given.encode()), 4 * WITHIN_S)
    assert process.returncode == 0, (out + err).decode()
    return out.decode()


async def test_a_php_client_publishes_to_its_intake_and_reads_its_inboxes_as_documented(
    shipped: RoutedServer,  # noqa: F811 (the imported fixture)
    tmp_path: Path,
) -> None:
    php = _php()
    snippets = tmp_path / "wire_format.php"
    snippets.write_text(_wire_format_php())
    example = tmp_path / "example.php"
    example.write_text(_example_php(shipped.port))
    client = Path(__file__).parent / "php" / "RoutedClient.php"
    env = dict(os.environ, SIMPUL_REDIS_PASSWORD_ADAPTER_DUKCAPIL=password(PRODUCER))
    async with running(shipped.router()):
        [added, intake_entry, unsigned] = json.loads(await _run(php, str(example), env=env))
        given = _config(shipped.port) | {"exampleEntry": intake_entry}
        out = await _run(php, str(client), str(snippets), given=json.dumps(given))
    seen = json.loads(out)
    producer_key = signer(PRODUCER).key_id

    # Section 4's example, under phpredis: the intake took the unsigned death ...
    assert added == 1 and intake_entry, (added, intake_entry)
    assert unsigned["id"] == DIED_ID
    # ... and the router refused it into the producer's own dead letters, which the producer
    # reads with its own password (section 3.1), its dedupe marker gone.
    refusal = seen["unsignedRefusal"]
    assert refusal["dlq.reason"] == "unsigned", refusal
    assert refusal["dlq.entry"] == intake_entry and refusal["dlq.stream"] == INTAKE
    assert {n: refusal[n] for n in unsigned} == unsigned
    assert seen["unsignedMarker"] is None

    # The figures of sections 2.1, 10.5 and 11.4, computed by the documented PHP functions.
    vectors = seen["vectors"]
    key, _, result = doc_example()
    assert vectors["eventId"] == DIED_ID
    assert vectors["signedBytes"] == result["signed bytes"]
    assert vectors["publicKey"] == key["public key"]
    assert vectors["signature"] == result["signature"]
    assert vectors["originalValid"] and vectors["signedWithSeedValid"]
    assert not vectors["alteredValid"] and not vectors["shortSignatureValid"]
    assert vectors["sodiumSeedSame"]
    assert vectors["inboxValid"] and not vectors["inboxWithProducerKeyValid"]
    assert vectors["inboxSignedBytes"] == facts(doc_block("inbox-example-result"))["signed bytes"]
    assert vectors["inboxMatchesOriginal"] and not vectors["alteredInboxMatchesOriginal"]

    # The producer's credentials reach only its intake and its refusals; the function deduplicates.
    assert seen["version"] == 1
    assert seen["departmentXadd"]["error"].startswith("NOPERM"), seen["departmentXadd"]
    assert seen["departmentRange"]["error"].startswith("NOPERM"), seen["departmentRange"]
    assert seen["published"][0] == 1
    assert seen["again"] == [0, seen["published"][1]]
    assert seen["publishedBorn"][0] == seen["publishedMoved"][0] == 1
    assert seen["publishedWrongType"][0] == seen["publishedTampered"][0] == 1
    assert seen["publishedTooLarge"][0] == 1
    for refused_op in ("refusalsXadd", "refusalsTrim", "refusalsDelete", "otherRefusals"):
        assert seen[refused_op]["error"].startswith("NOPERM"), (refused_op, seen[refused_op])
    assert isinstance(seen["refusalsNewest"], list) and len(seen["refusalsNewest"]) == 1
    assert isinstance(seen["intakeRange"], list)
    assert seen["intakeLength"]["error"].startswith("NOPERM"), seen["intakeLength"]

    stored, origin, refused = shipped.admitted_and_refused(
        DEPARTMENT_STREAM, INTAKE, by=b"dlq.entry"
    )
    # The router admitted the signed events verbatim onto the department stream ...
    assert stored == [
        seen["signed"],
        seen["signedBorn"],
        seen["signedMoved"],
        seen["signedCorrected"],
    ]
    # ... and refused the others: what the producer read is what an operator sees.
    assert seen["refusalsLength"] == len(refused) == 4
    assert refused == seen["refusals"] | {intake_entry: seen["unsignedRefusal"]}
    reasons = {entry: fields["dlq.reason"] for entry, fields in seen["refusals"].items()}
    assert reasons == {
        seen["publishedWrongType"][1]: "type_not_allowed",
        seen["publishedTampered"][1]: "bad_signature",
        seen["publishedTooLarge"][1]: "too_large",
    }
    # A too_large dead letter carries none of the event's fields (section 3.1) ...
    too_large = seen["refusals"][seen["publishedTooLarge"][1]]
    assert all(name.startswith("dlq.") for name in too_large), too_large
    # ... and its dedupe marker is gone too.
    assert seen["tooLargeMarker"] is None
    for fields in refused.values():
        assert fields["dlq.group"] == "router" and fields["dlq.stream"] == INTAKE
    assert seen["admittedMarker"] == seen["published"][1]
    assert seen["refusedMarker"] is None
    assert seen["republished"][0] == 1

    # dinsos: its credentials reach only its inbox, and only as its group.
    assert seen["departmentRead"]["error"].startswith("NOPERM"), seen["departmentRead"]
    assert seen["inboxRange"]["error"].startswith("NOPERM"), seen["inboxRange"]
    assert seen["service.group"] == "OK"
    assert set(seen["verdicts"].values()) == {"valid"}, seen["verdicts"]
    entry = seen["entry"]
    assert seen["projected"] and seen["routerSigned"]
    assert entry["originentry"] == origin.decode()
    assert entry["originsigner"] == producer_key
    assert not seen["validWithProducerKey"]
    assert seen["matchesOriginal"] and seen["correctedMatchesOriginal"]
    assert seen["alteredVerdict"] == seen["otherOriginVerdict"] == "bad_signature"
    # dinsos gave the birth up: acked and dead-lettered at once, beside its inbox; once only.
    dinsos_inbox = "simpul:inbox:{dinsos/dukcapil.citizen}"
    with shipped.admin() as admin:
        [(_, letter)] = admin.xrange(dinsos_inbox + ":dlq:dinsos")
        assert admin.xpending(dinsos_inbox, "dinsos")["pending"] == 0
    assert isinstance(seen["deadLetter"], str), seen["deadLetter"]
    assert seen["deadLetterAgain"] is None
    assert letter[b"id"].decode() == seen["signedBorn"]["id"]
    assert letter[b"dlq.reason"] == b"given_up"
    assert seen["read"] == 3 and seen["ack"] == 2  # the death and the corrected death
    # The move's handler failed: pending, claimed by the sweep with a second delivery, then acked.
    assert seen["pendingAfterFailure"][0] == 1
    assert seen["claimedIds"] == [seen["failedEntryId"]] and seen["claimedSame"]
    [[_, consumer, _, deliveries]] = seen["deliveries"]
    assert (consumer, deliveries) == ("dinsos-php-2", 2)
    assert seen["retryAck"] == 1
    assert seen["pending"][0] == 0
    # dinsos is approved `personal: [nik]` for deaths: every field, still re-signed; for moves
    # the address is withheld (section 11.2's example).
    assert entry["data"] == seen["signed"]["data"]
    assert seen["dinsosMovedData"] == (
        '{"nik":"3573014107900003","kecamatan":"35.73.02","moved_on":"2026-11-25"}'
    )

    # dinkes: the birth without the NIK and the family card, compact, in the original order.
    assert seen["bornVerdict"] == "valid" and seen["bornMatchesOriginal"]
    assert seen["bornEntry"]["data"] == (
        '{"child_ref":"abcdefghijklmnopqrstuvwxyz","born_on":"2026-11-20",'
        '"kelurahan":"35.73.02.1001","registered_on":"2026-11-27"}'
    )
    assert seen["bornAck"] == seen["bornRead"] == 1

    # bapenda: every field of a move, yet a projection: `data` written again, the escapes undone.
    moved = seen["movedEntry"]
    assert seen["movedVerdict"] == "valid" and seen["movedMatchesOriginal"]
    assert "origindigest" in moved
    assert moved["data"] == (
        '{"nik":"3573014107900003","address":"Jl. Ijen No. 5 \u2014 Klojen, RT 01/RW 02",'
        '"kecamatan":"35.73.02","moved_on":"2026-11-25"}'
    )
    assert seen["movedAck"] == seen["movedRead"] >= 1

    # The audit's inbox holds the originals as admitted, verified with the producer's key.
    assert not seen["auditProjected"]
    assert seen["auditEntry"] == seen["signed"]
    assert seen["auditVerdict"] == "valid" and not seen["auditValidWithRouterKey"]
    assert seen["auditAlteredVerdict"] == "bad_signature"
    assert seen["auditAck"] == seen["auditRead"] == len(stored)
