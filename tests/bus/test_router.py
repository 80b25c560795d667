"""The router against a real Redis 7 with the routed ACLs loaded (decision 0011).

Every principal connects with its own password: producers can only write their intake, the
router admits and fans out, a service reads only its own inboxes. What the issue names is
tried with the attacker's own credentials: another service's inbox group (read, ack, claim,
setid, LASTID), a far-future and the maximum entry id on an intake, oversized entries.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import random
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoPermissionError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from typer.testing import CliRunner

from bus import EventContext, Publisher, Service, keys
from bus.admin.exporter import _ahead_or_empty
from bus.cli.app import app
from bus.connection import connect
from bus.contracts import Contract, default_registry
from bus.envelope import Envelope
from bus.functions import LIBRARY
from bus.local.redis import EmbeddedRedis
from bus.projection import check_against_original
from bus.router import Router, RouterConfig, ahead_of_time, backfill, migrate, reset_intake
from bus.router.engine import _flat, _pairs
from bus.signing import KeyRing
from bus.testing import quick_settings, wait_until
from schemas.bapenda import PaymentReceived
from schemas.dukcapil import CitizenBorn, CitizenDied
from tests.bus.routed import (
    ADMIN,
    ROOT,
    TOPOLOGY,
    RoutedServer,
    assert_runs_no_code_of_its_own,
    keyring,
    routed_document,
    router_signer,
    running,
    signer,
)

EXAMPLES = ROOT / "schemas" / "examples"
CITIZEN = keys.stream("dukcapil.citizen")
PAYMENT = keys.stream("bapenda.payment")
DINSOS = keys.inbox(CITIZEN, "dinsos")
DINKES = keys.inbox(CITIZEN, "dinkes")
FAR_FUTURE = "4102444800000-0"  # 2100-01-01
MAXIMUM = "18446744073709551615-18446744073709551615"


def example(model: type[Contract], n: int = 0) -> Contract:
    folder = EXAMPLES / model.__contract__.event_type
    first = sorted(folder.glob("valid-*.json"))[0]
    return model.parse(first.read_text())


def publisher(routed: RoutedServer, principal: str, redis: Redis | None = None) -> Publisher:
    client = redis or routed.connect(principal)
    return Publisher(
        client,
        source=f"urn:malangkota:test:{principal}",
        signer=signer(principal),
        intake=principal,
    )


async def _entries(admin: Redis, key: str) -> list[dict[bytes, bytes]]:
    return [fields for _, fields in await admin.xrange(key)]


async def test_an_event_goes_intake_router_department_stream_and_each_approved_inbox(
    routed: RoutedServer,
) -> None:
    admin = routed.connect(ADMIN)
    dukcapil = publisher(routed, "adapter-dukcapil")
    born = await dukcapil.publish(example(CitizenBorn), id="born-1")
    died = await dukcapil.publish(example(CitizenDied), id="died-1")
    assert born.stream == keys.intake("adapter-dukcapil")
    async with running(routed.router()):
        await wait_until(lambda: _len(admin, DINSOS, 2), timeout=10)
        await wait_until(lambda: _len(admin, DINKES, 1), timeout=10)
        await wait_until(lambda: _len(admin, keys.intake("adapter-dukcapil"), 0), timeout=10)
    # The department stream holds each event once, with the producer's signed fields verbatim.
    stream = await _entries(admin, CITIZEN)
    assert [f[b"id"] for f in stream] == [b"born-1", b"died-1"]
    assert stream[0][b"signer"] == b"adapter-dukcapil-dev-2026"
    # dinkes subscribed to births only: its inbox holds no death.
    assert [f[b"type"] for f in await _entries(admin, DINKES)] == [b"dukcapil.citizen.born.v1"]
    # Need-to-know: dinkes' copy of the birth carries no NIK; dinsos' does (approved).
    [dinkes_birth] = await _entries(admin, DINKES)
    assert "nik" not in json.loads(dinkes_birth[b"data"])
    assert dinkes_birth[b"signer"] == b"router-dev-2026"
    dinsos_birth = (await _entries(admin, DINSOS))[0]
    assert "nik" in json.loads(dinsos_birth[b"data"])
    assert [f[b"id"] for f in await _entries(admin, DINSOS)] == [b"born-1", b"died-1"]
    # The audit's inbox has everything; the notifier (deaths, not births) one.
    assert await admin.xlen(keys.inbox(CITIZEN, "audit")) == 2
    # The audit may see every field: it gets each original as admitted, the producer's
    # signature intact (no router signature, no origin attributes), verifiable as on the
    # department stream; the projections are the router's.
    audit = await _entries(admin, keys.inbox(CITIZEN, "audit"))
    assert audit == stream
    ring = KeyRing(TOPOLOGY.signing_keys())
    for fields in audit:
        assert ring.check(Envelope.from_fields(fields), fields) is None
        assert check_against_original(fields, stream[audit.index(fields)]) is None
    assert dinsos_birth[b"signer"] == b"router-dev-2026"
    assert check_against_original(dinsos_birth, stream[0]) is None
    assert check_against_original(stream[1], stream[0]) is not None  # another event
    assert await admin.xlen(keys.inbox(CITIZEN, "notifier")) == 1
    # Publishing the same event again changes nothing anywhere.
    again = await dukcapil.publish(example(CitizenDied), id="died-1")
    assert again.duplicate and died.entry_id == again.entry_id
    await admin.aclose()


def test_an_original_naming_an_origin_of_its_own_is_forwarded_as_the_routers_copy(
    routed: RoutedServer,
) -> None:
    """A producer may set the reserved origin attributes (its signature covers them): passed
    on as it is, such an original would look like a projection naming another original, so
    every subscription gets the router's signed copy then, the audit's too. Without a keyring
    (nothing verified at admission) no original goes on as it is either."""
    producer = signer("adapter-dukcapil")
    event = Publisher(routed.connect(ADMIN), source="urn:test").envelope(example(CitizenDied))
    plain = producer.sign(event).to_fields()
    naming = producer.sign(
        event.with_attributes(extensions={"originentry": "1-0", "origindigest": "0" * 64})
    ).to_fields()
    router = routed.router()
    routes = router.routes[CITIZEN]["dukcapil.citizen.died.v1"]
    audit = next(i for i, r in enumerate(routes) if r.group == "audit")
    raw = {k.encode(): v.encode() for k, v in plain.items()}
    assert router._forward_each(raw, routes, "5-0")[audit] == _flat(raw)  # as admitted
    for fields, ring in ((naming, router.keyring), (plain, None)):
        router.keyring = ring
        raw = {k.encode(): v.encode() for k, v in fields.items()}
        forwarded = dict(_pairs(router._forward_each(raw, routes, "5-0")[audit]))
        assert forwarded[b"signer"] == b"router-dev-2026"
        assert forwarded[b"originentry"] == b"5-0"


async def _len(admin: Redis, key: str, n: int) -> bool:
    return bool(await admin.xlen(key) == n)


async def test_a_service_consumes_its_inbox_under_its_own_principal(
    routed: RoutedServer,
) -> None:
    admin = routed.connect(ADMIN)
    dukcapil = publisher(routed, "adapter-dukcapil")
    for i in range(5):
        await dukcapil.publish(example(CitizenDied), id=f"died-{i}")
    settings = quick_settings(routed.url("svc-dinsos"), inboxes=True)
    service = Service("dinsos", settings=settings)
    seen: list[str] = []

    @service.on(CitizenDied, once=True)
    async def on_died(event: CitizenDied, ctx: EventContext) -> None:
        assert ctx.stream == DINSOS
        seen.append(ctx.event_id)

    async with running(routed.router()), service.running():
        await wait_until(lambda: len(seen) == 5, timeout=15)
    assert seen == [f"died-{i}" for i in range(5)]
    [group] = await admin.xinfo_groups(DINSOS)
    assert group["pending"] == 0
    await admin.aclose()


# -- isolation: one service against another's inbox ------------------------------------------


async def test_dinkes_credentials_cannot_read_ack_claim_or_move_dinsos_inbox(
    routed: RoutedServer,
) -> None:
    """The attack of issue 16, with svc-dinkes's own password: every way to make dinsos miss
    a death is refused, and dinsos still gets it."""
    admin = routed.connect(ADMIN)
    dinkes = routed.connect("svc-dinkes")
    await publisher(routed, "adapter-dukcapil").publish(example(CitizenDied), id="died-x")
    async with running(routed.router()):
        await wait_until(lambda: _len(admin, DINSOS, 1), timeout=10)
    await admin.xgroup_create(DINSOS, "dinsos", "0")
    [[_, [(entry, _)]]] = await admin.xreadgroup("dinsos", "d1", {DINSOS: ">"})
    attacks: dict[str, Any] = {
        "read": ("XREADGROUP", "GROUP", "dinsos", "evil", "STREAMS", DINSOS, "0"),
        "read-own-group": ("XREADGROUP", "GROUP", "dinkes", "evil", "STREAMS", DINSOS, ">"),
        "ack": ("XACK", DINSOS, "dinsos", entry),
        "claim": ("XCLAIM", DINSOS, "dinsos", "evil", "0", entry),
        "claim-lastid": ("XCLAIM", DINSOS, "dinsos", "evil", "0", entry, "LASTID", MAXIMUM),
        "autoclaim": ("XAUTOCLAIM", DINSOS, "dinsos", "evil", "0", "0"),
        "setid": ("XGROUP", "SETID", DINSOS, "dinsos", "$"),
        "destroy": ("XGROUP", "DESTROY", DINSOS, "dinsos"),
        "create-group": ("XGROUP", "CREATE", DINSOS, "evil", "$"),
        "range": ("XRANGE", DINSOS, "-", "+"),
        "pending": ("XPENDING", DINSOS, "dinsos"),
        "dead-letter": ("XADD", keys.dead_letters(DINSOS, "dinsos"), "*", "dlq.reason", "x"),
        "done-marker": ("SET", keys.done(DINSOS, "dinsos", "died-x"), "done"),
        "del": ("DEL", DINSOS),
        # ... nor through the department stream or the intake.
        "stream-read": ("XREADGROUP", "GROUP", "dinsos", "evil", "STREAMS", CITIZEN, "0"),
        "stream-add": ("XADD", CITIZEN, "*", "type", "forged"),
        "intake-add": ("XADD", keys.intake("adapter-dukcapil"), "*", "type", "forged"),
    }
    allowed = []
    for name, command in attacks.items():
        try:
            await dinkes.execute_command(*command)
            allowed.append(name)
        except NoPermissionError:
            pass
    assert allowed == []
    [group] = await admin.xinfo_groups(DINSOS)
    assert group["pending"] == 1 and group["last-delivered-id"] == entry
    # The library's functions add nothing: their keys are checked as the caller's; and no
    # script of its own can be run (decision 0013).
    dead = keys.dead_letters(DINSOS, "dinsos")
    with pytest.raises(ResponseError, match=r"NOPERM|no permissions|can.t"):
        await dinkes.execute_command(
            "FCALL", f"{LIBRARY}_deadletter", 2, DINSOS, dead, "dinsos", entry, "dlq.reason", "x"
        )
    with pytest.raises(NoPermissionError):
        await dinkes.execute_command(
            "EVAL", "return redis.call('XACK', KEYS[1], 'dinsos', ARGV[1])", 1, DINSOS, entry
        )
    await dinkes.aclose()
    await admin.aclose()


async def test_the_router_principal_cannot_consume_an_inbox(routed: RoutedServer) -> None:
    """The router writes inboxes; it never reads or acks as their group."""
    router = routed.connect("router")
    for command in (
        ("XREADGROUP", "GROUP", "dinsos", "r", "STREAMS", DINSOS, ">"),
        ("XACK", DINSOS, "dinsos", "1-0"),
        ("XRANGE", DINSOS, "-", "+"),
    ):
        with pytest.raises(NoPermissionError):
            await router.execute_command(*command)
    await router.aclose()


async def test_in_routed_mode_no_principal_but_the_admin_runs_code_of_its_own(
    routed: RoutedServer,
) -> None:
    """The routed ACL grants FCALL of the admin's library, never SCRIPT/EVAL/EVALSHA/FUNCTION:
    to the router, an intake producer and an inbox service alike (decision 0013)."""
    for principal in ("router", "adapter-dukcapil", "svc-dinsos"):
        redis = routed.connect(principal)
        await assert_runs_no_code_of_its_own(redis)
        assert await redis.execute_command("FCALL", f"{LIBRARY}_version", 0) == 1
        await redis.aclose()


async def test_a_producer_writes_only_its_own_intake(routed: RoutedServer) -> None:
    dukcapil = routed.connect("adapter-dukcapil")
    for command in (
        ("XADD", CITIZEN, "*", "type", "x"),  # the department stream: the router's alone
        ("XADD", keys.intake("adapter-bapenda"), "*", "type", "x"),
        ("XADD", DINSOS, "*", "type", "x"),
        ("XREADGROUP", "GROUP", "router", "r", "STREAMS", keys.intake("adapter-dukcapil"), ">"),
    ):
        with pytest.raises(NoPermissionError):
            await dukcapil.execute_command(*command)
    assert await dukcapil.xadd(keys.intake("adapter-dukcapil"), {"type": "x"})
    await dukcapil.aclose()


# -- admission ----------------------------------------------------------------------------------


async def test_admission_refuses_with_the_reason_into_the_producers_own_dead_letters(
    routed: RoutedServer,
) -> None:
    admin = routed.connect(ADMIN)
    redis = routed.connect("adapter-dukcapil")
    intake = keys.intake("adapter-dukcapil")
    good = publisher(routed, "adapter-dukcapil", redis)
    unsigned = Publisher(redis, source="urn:x", signer=None, intake="adapter-dukcapil")
    foreign = Publisher(
        redis, source="urn:x", signer=signer("adapter-bapenda"), intake="adapter-dukcapil"
    )
    await good.publish(example(CitizenDied), id="ok-1")
    await unsigned.publish(example(CitizenDied), id="unsigned-1")
    await foreign.publish(example(CitizenDied), id="foreign-key-1")  # bapenda's key, dukcapil type
    envelope = good.envelope(example(CitizenDied), id="tampered-1")
    signed = good.signer.sign(envelope)  # type: ignore[union-attr]
    fields = signed.to_fields()
    fields["data"] = fields["data"].replace("}", ', "x": 1}', 1)
    await redis.xadd(intake, fields)  # type: ignore[arg-type]
    await redis.xadd(intake, {"type": "dukcapil.citizen.died.v1", "junk": "1"})
    huge = dict(good.signer.sign(good.envelope(example(CitizenDied), id="huge-1")).to_fields())  # type: ignore[union-attr]
    huge["padding"] = "x" * (70 * 1024)
    await redis.xadd(intake, huge)  # type: ignore[arg-type]
    bapenda = good.signer.sign(good.envelope(example(PaymentReceived), id="pay-1"))  # type: ignore[union-attr]
    await redis.xadd(intake, bapenda.to_fields())  # type: ignore[arg-type]
    # The router's key signs every type (its inbox copies): a valid signature, not the owner's.
    routers = router_signer().sign(good.envelope(example(CitizenDied), id="router-key-1"))
    await redis.xadd(intake, routers.to_fields())  # type: ignore[arg-type]
    async with running(routed.router()):
        await wait_until(
            lambda: _len(admin, keys.intake_dead_letters("adapter-dukcapil"), 7), timeout=10
        )
    assert [f[b"id"] for f in await _entries(admin, CITIZEN)] == [b"ok-1"]
    assert await admin.xlen(PAYMENT) == 0
    reasons = {
        (f.get(b"id", b"-").decode(), f[b"dlq.reason"].decode())
        for f in await _entries(admin, keys.intake_dead_letters("adapter-dukcapil"))
    }
    assert reasons == {
        ("unsigned-1", "unsigned"),
        ("foreign-key-1", "signer_not_allowed"),
        ("tampered-1", "bad_signature"),
        ("-", "undecodable"),
        ("-", "too_large"),  # not copied: only its reason and size
        ("pay-1", "type_not_allowed"),
        ("router-key-1", "signer_not_owner"),
    }
    dead = await _entries(admin, keys.intake_dead_letters("adapter-dukcapil"))
    large = next(f for f in dead if f[b"dlq.reason"] == b"too_large")
    assert b"65536 bytes" in large[b"dlq.error"] and b"padding" not in large
    # The intake keeps nothing the router settled; nothing pending.
    assert await admin.xlen(intake) == 0
    await redis.aclose()
    await admin.aclose()


async def test_a_producer_flooding_its_intake_with_junk_keeps_only_the_newest_refusals(
    routed: RoutedServer,
) -> None:
    """Refusals are evidence, bounded: beyond the router's cap the oldest go, so a producer's
    junk cannot grow Redis's memory without limit (under the rendered ACL: the router may trim
    its producers' dead letters)."""
    admin = routed.connect(ADMIN)
    redis = routed.connect("adapter-dukcapil")
    intake = keys.intake("adapter-dukcapil")
    dead = keys.intake_dead_letters("adapter-dukcapil")
    sent = [await redis.xadd(intake, {"junk": str(n)}) for n in range(12)]
    async with running(routed.router(max_refusals=4)):
        await wait_until(lambda: _len(admin, intake, 0), timeout=10)
    kept = await _entries(admin, dead)
    assert [f[b"junk"] for f in kept] == [b"8", b"9", b"10", b"11"]
    assert [f[b"dlq.entry"] for f in kept] == sent[-4:]
    assert {f[b"dlq.reason"] for f in kept} == {b"undecodable"}
    await redis.aclose()
    await admin.aclose()


async def test_a_refused_event_corrected_and_published_again_under_its_id_is_admitted(
    routed: RoutedServer,
) -> None:
    """An adapter's ids are deterministic: the corrected event comes back under the refused
    one's id, through the idempotent publish function, and must not be taken for a duplicate
    of an event that reached no stream; a second copy of an admitted event still is one."""
    admin = routed.connect(ADMIN)
    redis = routed.connect("adapter-dukcapil")
    unsigned = Publisher(redis, source="urn:x", signer=None, intake="adapter-dukcapil")
    good = publisher(routed, "adapter-dukcapil", redis)
    dead = keys.intake_dead_letters("adapter-dukcapil")
    await unsigned.publish(example(CitizenDied), id="fixed-1")
    await good.publish(example(CitizenDied), id="kept-1")
    async with running(routed.router()):
        await wait_until(lambda: _len(admin, dead, 1), timeout=10)
        await wait_until(lambda: _len(admin, CITIZEN, 1), timeout=10)
        again = await good.publish(example(CitizenDied), id="fixed-1")
        assert not again.duplicate  # the refusal took the producer's marker with it
        repeat = await good.publish(example(CitizenDied), id="kept-1")
        assert repeat.duplicate  # an admitted event's marker stays
        await wait_until(lambda: _len(admin, CITIZEN, 2), timeout=10)
    assert [f[b"id"] for f in await _entries(admin, CITIZEN)] == [b"kept-1", b"fixed-1"]
    assert [f[b"dlq.reason"] for f in await _entries(admin, dead)] == [b"unsigned"]
    assert await admin.xlen(DINSOS) == 2
    await redis.aclose()
    await admin.aclose()


async def test_a_revoked_key_is_measured_against_the_routers_clock_not_the_intake_id(
    routed: RoutedServer,
) -> None:
    """Revocation bounds arrival (decision 0013), and admission's arrival is Redis TIME when the
    router reads the entry: a back-dated signature, written with an explicit 1970 intake id,
    from a key whose not_after has passed, is refused as signer_expired; the department stream
    gets nothing."""
    admin = routed.connect(ADMIN)
    redis = routed.connect("adapter-dukcapil")
    intake = keys.intake("adapter-dukcapil")
    dukcapil = publisher(routed, "adapter-dukcapil", redis)
    now = datetime.now(UTC)
    revoked = [
        dataclasses.replace(k, not_after=now - timedelta(minutes=5))
        if k.principal == "adapter-dukcapil"
        else k
        for k in TOPOLOGY.signing_keys()
    ]
    back_dated = dukcapil.signer.sign(  # type: ignore[union-attr]
        dukcapil.envelope(example(CitizenDied), id="stolen-1"), at=now - timedelta(minutes=10)
    )
    await redis.xadd(intake, back_dated.to_fields(), id="1000-0")  # type: ignore[arg-type]
    router = routed.router()
    router.keyring = KeyRing(revoked)
    async with running(router):
        await wait_until(
            lambda: _len(admin, keys.intake_dead_letters("adapter-dukcapil"), 1), timeout=10
        )
    [dead] = await _entries(admin, keys.intake_dead_letters("adapter-dukcapil"))
    assert dead[b"id"] == b"stolen-1" and dead[b"dlq.reason"] == b"signer_expired"
    assert b"after key adapter-dukcapil-dev-2026 expired" in dead[b"dlq.error"]
    assert await admin.xlen(CITIZEN) == 0
    # The same event with the key still valid is admitted: the refusal was the revocation.
    router = routed.router(replica="router-2")
    await redis.xadd(
        intake,
        dukcapil.signer.sign(  # type: ignore[union-attr]
            dukcapil.envelope(example(CitizenDied), id="fine-1")
        ).to_fields(),
    )  # type: ignore[arg-type]
    async with running(router):
        await wait_until(lambda: _len(admin, CITIZEN, 1), timeout=10)
    await redis.aclose()
    await admin.aclose()


async def test_far_future_and_maximum_ids_on_an_intake_hurt_only_that_producer(
    routed: RoutedServer,
) -> None:
    admin = routed.connect(ADMIN)
    dukcapil_redis = routed.connect("adapter-dukcapil")
    intake = keys.intake("adapter-dukcapil")
    dukcapil = publisher(routed, "adapter-dukcapil", dukcapil_redis)
    bapenda = publisher(routed, "adapter-bapenda")
    # A far-future id: every later id of this intake lies in 2100 too.
    signed = dukcapil.signer.sign(dukcapil.envelope(example(CitizenDied), id="future-1"))  # type: ignore[union-attr]
    await dukcapil_redis.xadd(intake, signed.to_fields(), id=FAR_FUTURE)  # type: ignore[arg-type]
    after = await dukcapil.publish(example(CitizenDied), id="after-future")
    assert after.entry_id.startswith("4102444800000-")
    await bapenda.publish(example(PaymentReceived), id="pay-1")
    async with running(routed.router()) as router:
        await wait_until(lambda: _len(admin, keys.inbox(CITIZEN, "dinsos"), 2), timeout=10)
        await wait_until(lambda: _len(admin, keys.inbox(PAYMENT, "notifier"), 1), timeout=10)
        # Detected: the intake's last-generated id is ahead of Redis's clock ...
        ahead = await ahead_of_time(admin, [intake, CITIZEN, PAYMENT])
        assert [a.stream for a in ahead] == [intake]
        assert ahead[0].ahead_s > 60 * 365 * 24 * 3600
        # ... while the department stream's ids are the server's own, now.
        [(entry, _), _] = await admin.xrange(CITIZEN)
        assert int(entry.split(b"-")[0]) < 4102444800000
        # The maximum id: this producer's every later publish fails, no one else's.
        await dukcapil_redis.xadd(intake, {"type": "x"}, id=MAXIMUM)
        with pytest.raises(ResponseError, match=r"equal or smaller|ID"):
            await dukcapil.publish(example(CitizenDied), id="wedged")
        await bapenda.publish(example(PaymentReceived), id="pay-2")
        await wait_until(lambda: _len(admin, keys.inbox(PAYMENT, "notifier"), 2), timeout=10)
        # The dinsos service and every consumer see nothing of it (the wedged entry is junk,
        # dead-lettered in the producer's own dead letters).
        await wait_until(
            lambda: _len(admin, keys.intake_dead_letters("adapter-dukcapil"), 1), timeout=10
        )
        router.stop()
    # Recovery: the operator's command gives the intake a fresh stream.
    report = await reset_intake(admin, "adapter-dukcapil")
    assert report.last_id_before == MAXIMUM
    assert await ahead_of_time(admin, [intake]) == []
    recovered = await dukcapil.publish(example(CitizenDied), id="after-reset")
    assert not recovered.duplicate
    async with running(routed.router(replica="router-2")):
        await wait_until(lambda: _len(admin, keys.inbox(CITIZEN, "dinsos"), 3), timeout=10)
    ids = [f[b"id"] for f in await _entries(admin, keys.inbox(CITIZEN, "dinsos"))]
    assert ids == [b"future-1", b"after-future", b"after-reset"]
    await dukcapil_redis.aclose()
    await admin.aclose()


async def test_the_routers_password_alone_cannot_forge_what_the_router_forwards_signed(
    routed: RoutedServer,
) -> None:
    """Who holds the router's Redis password (or the admin's, or restores a forged dump) can
    write a department stream; the router forwards what it finds there, signed with its own
    key, so a service would take a forged death for a real one. Fan-out verifies each entry's
    producer signature first, with the department stream's entry id as arrival: unsigned,
    altered, foreign-signed or router-signed entries reach no inbox (and are settled, not
    retried)."""
    admin = routed.connect(ADMIN)
    router_redis = routed.connect("router")
    dukcapil = publisher(routed, "adapter-dukcapil")
    bapenda = publisher(routed, "adapter-bapenda")
    forged = dukcapil.envelope(example(CitizenDied), id="forged-unsigned").to_fields()
    altered = dukcapil.signer.sign(  # type: ignore[union-attr]
        dukcapil.envelope(example(CitizenDied), id="forged-altered")
    ).to_fields()
    altered["subject"] = "3573014107780004"
    foreign = bapenda.signer.sign(  # type: ignore[union-attr]
        bapenda.envelope(example(CitizenDied), id="forged-foreign")
    ).to_fields()
    # The router's signature, as on every projection it wrote to an inbox, copied back.
    projection = router_signer().sign(dukcapil.envelope(example(CitizenDied), id="copied"))
    for fields in (forged, altered, foreign, projection.to_fields()):
        await router_redis.xadd(CITIZEN, fields)  # type: ignore[arg-type]
    await dukcapil.publish(example(CitizenDied), id="genuine-1")
    async with running(routed.router()):
        await wait_until(lambda: _len(admin, DINSOS, 1), timeout=10)
        await wait_until(lambda: _pending(admin, CITIZEN, 0))
    for inbox in (DINSOS, keys.inbox(CITIZEN, "audit"), keys.inbox(CITIZEN, "notifier")):
        assert [f[b"id"] for f in await _entries(admin, inbox)] == [b"genuine-1"]
    await router_redis.aclose()
    await admin.aclose()


async def test_a_backfill_gives_a_new_subscription_its_history_once_and_nothing_forged(
    routed: RoutedServer,
) -> None:
    """`simpul router backfill`: a subscription added later gets its department stream's
    history up to the router's position, in order and projected as the fan-out would; run
    again it writes nothing (the inbox's high-water mark). An entry that never went through
    admission (the router's password alone wrote it) is no part of the history it writes."""
    admin = routed.connect(ADMIN)
    router_redis = routed.connect("router")
    dukcapil = publisher(routed, "adapter-dukcapil")
    forged = dukcapil.envelope(example(CitizenDied), id="forged").to_fields()
    await router_redis.xadd(CITIZEN, forged)  # type: ignore[arg-type]
    for n in range(3):
        await dukcapil.publish(example(CitizenDied, n), id=f"death-{n}")
    async with running(routed.router()):
        await wait_until(lambda: _len(admin, DINSOS, 3), timeout=10)
        await wait_until(lambda: _pending(admin, CITIZEN, 0))
    forwarded = await _entries(admin, DINSOS)
    # dinsos subscribes anew: an empty inbox with no mark, the stream's history behind it.
    await admin.delete(DINSOS, keys.routed_mark(DINSOS))
    # As the admin, with the router's key (docs/operations.md).
    router = Router(admin, TOPOLOGY, default_registry, keyring=keyring(), signer=router_signer())
    assert await backfill(router, CITIZEN, "dinsos") == 3
    assert await backfill(router, CITIZEN, "dinsos") == 0
    again = await _entries(admin, DINSOS)
    assert [f[b"id"] for f in again] == [b"death-0", b"death-1", b"death-2"]
    assert [f[b"data"] for f in again] == [f[b"data"] for f in forwarded]  # the same fields
    verified = keyring()
    for fields in again:
        assert verified.check(Envelope.from_fields(fields), fields, None) is None
    await router_redis.aclose()
    await admin.aclose()


async def test_a_producer_deleting_entries_the_router_holds_loses_none_of_the_others(
    routed: RoutedServer,
) -> None:
    """A producer may trim its own intake (XADD's MINID), also below entries the router read
    and had not settled yet (a replica died with them): they come back from its pending list
    without fields. They are acked (nothing to route), and the entries pending behind them are
    still routed: a batch of deleted entries does not pass for the end of what is pending."""
    admin = routed.connect(ADMIN)
    redis = routed.connect("adapter-dukcapil")
    intake = keys.intake("adapter-dukcapil")
    dukcapil = publisher(routed, "adapter-dukcapil", redis)
    for n in range(3):
        await dukcapil.publish(example(CitizenDied), id=f"deleted-{n}")
    await dukcapil.publish(example(CitizenDied), id="held-1")
    # A replica read all four and died before settling them.
    await admin.xgroup_create(intake, "router", "0")
    read = await admin.xreadgroup("router", "router", {intake: ">"})
    held = read[0][1][-1][0]
    # The producer trims its intake below its last entry, with its own rights.
    await redis.xadd(intake, {"junk": "1"}, minid=held, approximate=False)
    assert await admin.xlen(intake) == 2
    async with running(routed.router(batch_size=2)):
        await wait_until(lambda: _len(admin, keys.intake_dead_letters("adapter-dukcapil"), 1))
        await wait_until(lambda: _len(admin, CITIZEN, 1))
        await wait_until(lambda: _pending(admin, intake, 0))
    assert [f[b"id"] for f in await _entries(admin, CITIZEN)] == [b"held-1"]
    await redis.aclose()
    await admin.aclose()


async def _pending(admin: Redis, key: str, n: int) -> bool:
    return int((await admin.xpending(key, "router"))["pending"]) == n


async def _wedged_intake(routed: RoutedServer, first: str) -> tuple[Redis, Redis, Publisher]:
    """The admin, dukcapil's client and publisher, its intake wedged by a signed death
    ``first`` added with an id in the year 2100."""
    admin = routed.connect(ADMIN)
    redis = routed.connect("adapter-dukcapil")
    dukcapil = publisher(routed, "adapter-dukcapil", redis)
    signed = dukcapil.signer.sign(dukcapil.envelope(example(CitizenDied), id=first))  # type: ignore[union-attr]
    await redis.xadd(keys.intake("adapter-dukcapil"), signed.to_fields(), id=FAR_FUTURE)  # type: ignore[arg-type]
    return admin, redis, dukcapil


async def test_reset_intake_moves_unsettled_events_in_order(routed: RoutedServer) -> None:
    """Events written after a wedge but before the router read them are not lost by a reset."""
    admin, redis, dukcapil = await _wedged_intake(routed, "f-0")
    intake = keys.intake("adapter-dukcapil")
    for i in range(1, 4):
        await dukcapil.publish(example(CitizenDied), id=f"f-{i}")
    report = await reset_intake(admin, "adapter-dukcapil")
    assert report.moved == 4
    moved = await admin.xrange(intake)
    assert [f[b"id"] for _, f in moved] == [b"f-0", b"f-1", b"f-2", b"f-3"]
    assert all(int(e.split(b"-")[0]) < 4102444800000 for e, _ in moved)
    async with running(routed.router()):
        await wait_until(lambda: _len(admin, DINSOS, 4), timeout=10)
    await redis.aclose()
    await admin.aclose()


async def test_reset_intake_keeps_what_the_producer_publishes_meanwhile(
    routed: RoutedServer,
) -> None:
    """An intake ahead of time still takes entries: those the producer adds while the reset
    copies the old stream are in the fresh one too, in order — none dropped with the old."""
    admin, redis, dukcapil = await _wedged_intake(routed, "m-0000")
    intake = keys.intake("adapter-dukcapil")
    await dukcapil.publish_many(
        [dukcapil.envelope(example(CitizenDied), id=f"m-{i:04d}") for i in range(1, 400)]
    )
    acked: list[str] = []

    async def keep_publishing() -> None:
        for i in range(400, 1000):
            event_id = f"m-{i:04d}"
            await dukcapil.publish(example(CitizenDied), id=event_id)
            acked.append(event_id)  # the intake has it: the producer was told so
            await asyncio.sleep(0.01)

    producing = asyncio.create_task(keep_publishing())
    await wait_until(lambda: len(acked) >= 5, timeout=10)
    # Read again after every change it met: a loaded machine reads slower than this producer.
    report = await reset_intake(admin, "adapter-dukcapil", attempts=200)
    await producing
    ids = [f[b"id"].decode() for _, f in await admin.xrange(intake)]
    assert ids == [f"m-{i:04d}" for i in range(1000)]  # everything acknowledged, in order
    assert report.moved >= 405
    await redis.aclose()
    await admin.aclose()


# -- crash safety ----------------------------------------------------------------------------


@pytest.mark.parametrize("one_hop", [True, False], ids=["one-hop", "two-stage"])
async def test_router_replicas_killed_mid_batch_lose_and_repeat_nothing(
    routed: RoutedServer, one_hop: bool
) -> None:
    """Replicas are cancelled at random moments (mid-pipeline: their connection dropped with
    writes half done, nothing acked); whoever takes over re-reads what was pending. Every
    inbox ends with each event exactly once, in publish order — admission forwarding itself
    (decision 0014) or leaving it to the fan-out, as on a cluster."""
    admin = routed.connect(ADMIN)
    dukcapil = publisher(routed, "adapter-dukcapil")
    total = 300
    events = [example(CitizenDied) for _ in range(total)]
    rng = random.Random(16)

    async def publish_all() -> None:
        for i in range(0, total, 20):
            await dukcapil.publish_many(
                [
                    dukcapil.envelope(e, id=f"e-{i + k:04d}")
                    for k, e in enumerate(events[i : i + 20])
                ]
            )
            await asyncio.sleep(0.01)

    producing = asyncio.create_task(publish_all())
    kills = 0
    replica = 0
    while kills < 8 or not await _len(admin, DINSOS, total):
        replica += 1
        router = routed.router(replica=f"r{replica}", batch_size=17, lease_ms=300, one_hop=one_hop)
        task = asyncio.create_task(router.run())
        await asyncio.sleep(rng.uniform(0.02, 0.25))
        task.cancel()  # no stop(): its lease stays until it expires, as after a kill -9
        await asyncio.gather(task, return_exceptions=True)
        await router.redis.aclose()
        kills += 1
        if kills > 60:
            break
    await producing
    async with running(routed.router(replica="final", lease_ms=300, one_hop=one_hop)):
        await wait_until(lambda: _len(admin, DINSOS, total), timeout=20)
        await wait_until(lambda: _len(admin, keys.inbox(CITIZEN, "audit"), total), timeout=20)
    expected = [f"e-{i:04d}".encode() for i in range(total)]
    for inbox in (DINSOS, keys.inbox(CITIZEN, "audit"), keys.inbox(CITIZEN, "notifier")):
        assert [f[b"id"] for f in await _entries(admin, inbox)] == expected, inbox
    assert [f[b"id"] for f in await _entries(admin, CITIZEN)] == expected
    assert await admin.xlen(DINKES) == 0  # deaths only: dinkes is not subscribed
    await admin.aclose()


async def test_a_cancellation_lost_in_a_redis_call_still_stops_the_replica(
    routed: RoutedServer,
) -> None:
    """redis-py can lose a cancellation that hits a command as its reply arrives (the command
    returns). One lost while the replica announced itself (before its sources started) left
    run() waiting for a stop that never came, the replica routing on: a test that cancels
    replicas hung on it. run() now also watches its own task for a cancellation."""
    router = routed.router(replica="swallower", lease_ms=300)
    announce = router._announce
    announcing = asyncio.Event()

    async def announce_losing_a_cancellation() -> None:
        announcing.set()
        # as redis-py's wait_for does when the reply is there: the command returns
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(0.5)
        await announce()

    router._announce = announce_losing_a_cancellation  # type: ignore[method-assign]
    task = asyncio.create_task(router.run())
    await announcing.wait()
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=10)
    assert done, "the cancelled replica ran on"
    assert task.cancelled()
    await router.redis.aclose()


async def test_a_replica_paused_past_its_lease_reads_nothing_and_its_late_writes_are_no_ops(
    routed: RoutedServer,
) -> None:
    """The fan-out writes an inbox only above its high-water mark, which is sound only if every
    entry is read by the lease's holder of the time: a replica paused past its lease (here:
    its lease taken over, as after a pause) is refused its next read, its successor first
    re-reads what the paused one left pending, and the paused one's late writes of the batch
    it read before change nothing. Every inbox: each event once, in order."""
    admin = routed.connect(ADMIN)
    dukcapil = publisher(routed, "adapter-dukcapil")
    total = 40
    await dukcapil.publish_many(
        [dukcapil.envelope(example(CitizenDied), id=f"p-{i:02d}") for i in range(total)]
    )
    # The fan-out's own reading, as on a cluster: admission leaves forwarding to it.
    paused = routed.router(replica="paused", batch_size=10, lease_ms=60_000, one_hop=False)
    successor = routed.router(replica="successor", batch_size=10, lease_ms=60_000, one_hop=False)
    intake = keys.intake("adapter-dukcapil")
    for source in (intake, CITIZEN):
        assert await paused._hold(source)
        await paused._ensure_group(source)
    await paused.route(intake, await paused._read(intake, ">", block=None))
    while entries := await paused._read(intake, ">", block=None):
        await paused.route(intake, entries)
    assert await admin.xlen(CITIZEN) == total
    first = await paused._read(CITIZEN, ">", block=None)
    await paused.route(CITIZEN, first)  # written and acked
    stale = await paused._read(CITIZEN, ">", block=None)  # read; then the pause
    assert [e for e, _ in stale] and not await _len(admin, DINSOS, 20)
    await admin.delete(keys.router_lease(CITIZEN))  # the lease ran out meanwhile
    async with running(successor):
        await wait_until(lambda: _len(admin, DINSOS, total), timeout=20)
    with pytest.raises(ResponseError, match="SIMPUL_NOT_HOLDER"):
        await paused._read(CITIZEN, ">", block=None)  # a read after the pause: refused
    await paused.route(CITIZEN, stale)  # its late writes: no-ops
    expected = [f"p-{i:02d}".encode() for i in range(total)]
    for inbox in (DINSOS, keys.inbox(CITIZEN, "audit"), keys.inbox(CITIZEN, "notifier")):
        assert [f[b"id"] for f in await _entries(admin, inbox)] == expected, inbox
    marks = [await admin.get(keys.routed_mark(i)) for i in (DINSOS, keys.inbox(CITIZEN, "audit"))]
    last = (await admin.xrevrange(CITIZEN, count=1))[0][0]
    assert marks == [last, last]  # the department-stream id of the last entry forwarded
    assert await admin.keys(f"{DINSOS}:seen:*") == []  # no marker per inbox entry
    for router in (paused, successor):
        await router.redis.aclose()
    await admin.aclose()


async def test_two_replicas_each_hold_a_share_and_a_dead_ones_share_goes_to_the_other(
    routed: RoutedServer,
) -> None:
    """Each replica holds at most ceil(sources / live replicas): the first takes every source,
    gives half up once a second one is counted, and takes the share of one that died (killed:
    no stop, its presence and leases expire). Events keep flowing through every change."""
    admin = routed.connect(ADMIN)
    dukcapil = publisher(routed, "adapter-dukcapil")
    first = routed.router(replica="first", lease_ms=600)
    second = routed.router(replica="second", lease_ms=600)
    sources = len(first.sources)
    half = -(-sources // 2)

    async def holders() -> dict[str, int]:
        found: dict[str, int] = {}
        for source in first.sources:
            holder = await admin.get(keys.router_lease(source))
            if holder is not None:
                found[holder.decode()] = found.get(holder.decode(), 0) + 1
        return found

    async with running(first):
        await wait_until(lambda: _holding(holders, {"first": sources}), timeout=10)
        assert first.share() == sources
        task = asyncio.create_task(second.run())
        await wait_until(
            lambda: _holding(holders, {"first": half, "second": sources - half}), timeout=15
        )
        assert first.live == second.live == 2
        assert len(first.owned) <= half and len(second.owned) <= half
        for i in range(10):
            await dukcapil.publish(example(CitizenDied), id=f"s-{i}")
        await wait_until(lambda: _len(admin, DINSOS, 10), timeout=10)
        task.cancel()  # killed: no stop(), its presence and leases stay until they expire
        await asyncio.gather(task, return_exceptions=True)
        await second.redis.aclose()
        for i in range(10, 20):
            await dukcapil.publish(example(CitizenDied), id=f"s-{i}")
        await wait_until(lambda: _holding(holders, {"first": sources}), timeout=15)
        assert first.live == 1
        await wait_until(lambda: _len(admin, DINSOS, 20), timeout=10)
    assert [f[b"id"] for f in await _entries(admin, DINSOS)] == [
        f"s-{i}".encode() for i in range(20)
    ]
    assert await admin.zcard(keys.ROUTER_REPLICAS) == 0  # a graceful stop leaves no presence
    await admin.aclose()


async def _holding(holders: Any, expected: dict[str, int]) -> bool:
    return bool(await holders() == expected)


async def test_inboxes_are_trimmed_once_their_group_acked(routed: RoutedServer) -> None:
    admin = routed.connect(ADMIN)
    dukcapil = publisher(routed, "adapter-dukcapil")
    for i in range(10):
        await dukcapil.publish(example(CitizenBorn), id=f"b-{i}")
    async with running(routed.router()):
        await wait_until(lambda: _len(admin, DINKES, 10), timeout=10)
        await admin.xgroup_create(DINKES, "dinkes", "0")
        reply = await admin.xreadgroup("dinkes", "c", {DINKES: ">"}, count=6)
        ids = [e for e, _ in reply[0][1]]
        await admin.xack(DINKES, "dinkes", *ids[:4])  # 4 acked, 2 pending, 4 unread
        await wait_until(lambda: _len(admin, DINKES, 6), timeout=10)
    assert next(e for e, _ in await admin.xrange(DINKES)) == ids[4]
    # The department stream (the archive's source) keeps every event.
    assert await admin.xlen(CITIZEN) == 10
    await admin.aclose()


def test_the_routing_table_follows_the_topology() -> None:
    router = Router(None, TOPOLOGY, default_registry, keyring=None)  # type: ignore[arg-type]
    births = router.routes[CITIZEN]["dukcapil.citizen.born.v1"]
    assert sorted(r.group for r in births) == ["audit", "dinkes", "dinsos", "profile"]
    deaths = router.routes[CITIZEN]["dukcapil.citizen.died.v1"]
    assert sorted(r.group for r in deaths) == ["audit", "bapenda", "dinsos", "notifier", "profile"]
    assert keys.intake("adapter-dukcapil") in router.sources


# -- migration: shared groups -> inboxes -------------------------------------------------------


async def test_migration_from_shared_groups_loses_and_repeats_nothing(
    routed: RoutedServer,
) -> None:
    """Before: producers wrote the department stream, dinsos consumed it as a shared group (4
    acked, 2 pending of which one had run its once-handler, 4 unread). After `migrate`, the
    router and the inbox-reading service: each event is handled exactly once overall, in order,
    including events published during and after the switch."""
    admin = routed.connect(ADMIN)
    direct = Publisher(admin, source="urn:x", signer=signer("adapter-dukcapil"), intake=None)
    for i in range(10):
        await direct.publish(example(CitizenDied), id=f"m-{i}")
    await admin.xgroup_create(CITIZEN, "dinsos", "0")
    reply = await admin.xreadgroup("dinsos", "old", {CITIZEN: ">"}, count=6)
    ids = [e for e, _ in reply[0][1]]
    await admin.xack(CITIZEN, "dinsos", *ids[:4])
    handled_before = [f"m-{i}" for i in range(4)] + ["m-4"]  # m-4's handler ran, ack lost
    await admin.set(keys.done(CITIZEN, "dinsos", "m-4"), "done", px=60_000)
    report = await migrate(
        Router(admin, TOPOLOGY, default_registry, keyring=None, signer=router_signer())
    )
    assert report.copied[DINSOS] == 6 and report.markers == 1
    assert report.copied.get(keys.inbox(CITIZEN, "bapenda")) is None  # no group: nothing
    # After the cut-over: an old producer not yet switched, and one writing its intake.
    await direct.publish(example(CitizenDied), id="m-10")
    await publisher(routed, "adapter-dukcapil").publish(example(CitizenDied), id="m-11")
    settings = quick_settings(routed.url("svc-dinsos"), inboxes=True)
    service = Service("dinsos", settings=settings)
    handled: list[str] = []

    @service.on(CitizenDied, once=True)
    async def on_died(event: CitizenDied, ctx: EventContext) -> None:
        handled.append(ctx.event_id)

    async with running(routed.router()), service.running():
        await wait_until(lambda: len(handled) >= 7, timeout=15)
        await asyncio.sleep(0.5)  # room for a repeat to show
    assert handled_before + handled == [f"m-{i}" for i in range(12)]
    # bapenda's subscription (no shared group before) starts with the router's forwards.
    assert [f[b"id"] for f in await _entries(admin, keys.inbox(CITIZEN, "bapenda"))] == [
        b"m-10",
        b"m-11",
    ]
    await admin.aclose()


# -- the router as a process: the CLI, kill -9 mid-fan-out ------------------------------------


def _topology_file(tmp_path: Path) -> Path:
    path = tmp_path / "topology.yaml"
    path.write_text(yaml.safe_dump(routed_document(), sort_keys=False))
    return path


def _router_process(routed: RoutedServer, topology: Path, name: str) -> subprocess.Popen[bytes]:
    assert TOPOLOGY.router is not None
    key = TOPOLOGY.router.keys[0].id
    env = {
        **os.environ,
        "SIMPUL_REDIS_URL": routed.url("router"),
        "SIMPUL_CONSUMER": name,
        "SIMPUL_LOG_LEVEL": "warning",
        "SIMPUL_BLOCK_MS": "100",
        "SIMPUL_SIGNING_KEY_FILE": str(ROOT / "deploy/keys" / f"{key}.key"),
        "SIMPUL_SIGNER": key,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "bus.cli.app", "router", "run", "--topology", str(topology)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@pytest.mark.slow
async def test_router_processes_killed_mid_fan_out_lose_and_repeat_nothing(
    routed: RoutedServer, tmp_path: Path
) -> None:
    """Two router processes, each killed (SIGKILL) at random moments while 300 events flow;
    a replacement started each time. Every inbox ends with each event once, in order."""
    admin = routed.connect(ADMIN)
    topology = _topology_file(tmp_path)
    dukcapil = publisher(routed, "adapter-dukcapil")
    total, rng = 300, random.Random(7)

    async def produce() -> None:
        for i in range(0, total, 25):
            await dukcapil.publish_many(
                [dukcapil.envelope(example(CitizenDied), id=f"k-{i + k:04d}") for k in range(25)]
            )
            await asyncio.sleep(0.02)

    producing = asyncio.create_task(produce())
    procs = [_router_process(routed, topology, f"p{n}") for n in range(2)]
    kills = 0
    try:
        for n in range(2, 8):
            await asyncio.sleep(rng.uniform(0.3, 1.0))
            victim = procs.pop(rng.randrange(len(procs)))
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            kills += 1
            procs.append(_router_process(routed, topology, f"p{n}"))
        await producing
        # A killed replica's sources wait out its lease (5 s) before another takes them.
        await wait_until(lambda: _len(admin, DINSOS, total), timeout=120)
        await wait_until(lambda: _len(admin, keys.inbox(CITIZEN, "audit"), total), timeout=60)
        await asyncio.sleep(3)  # the last replacement up (signal handlers set) before SIGTERM
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            assert proc.wait(timeout=20) == 0
    expected = [f"k-{i:04d}".encode() for i in range(total)]
    for inbox in (DINSOS, keys.inbox(CITIZEN, "audit"), keys.inbox(CITIZEN, "bapenda")):
        assert [f[b"id"] for f in await _entries(admin, inbox)] == expected, inbox
    assert kills == 6
    await admin.aclose()


def test_the_cli_finds_a_wedged_intake_and_resets_it(
    routed: RoutedServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    topology = _topology_file(tmp_path)
    monkeypatch.setenv("SIMPUL_REDIS_URL", routed.url(ADMIN))
    with routed.admin() as admin:
        admin.xadd(keys.intake("adapter-bapenda"), {"type": "x"}, id=MAXIMUM)
    runner = CliRunner()
    found = runner.invoke(app, ["router", "ahead", "--topology", str(topology)])
    assert found.exit_code == 1, found.output
    assert "simpul:intake:{adapter-bapenda}" in found.output
    reset = runner.invoke(app, ["router", "reset-intake", "adapter-bapenda"])
    assert reset.exit_code == 0, reset.output
    assert "1 unsettled entries moved" in reset.output
    again = runner.invoke(app, ["router", "ahead", "--topology", str(topology)])
    assert again.exit_code == 0, again.output
    assert "no stream is ahead" in again.output


def test_the_router_refuses_development_keys_outside_development_mode(
    routed: RoutedServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """deploy/topology.yaml trusts the development keys (their private halves are in git),
    and deploy/dev.env's router password is public too: a router given either refuses to
    start unless SIMPUL_DEV_MODE=1 (decision 0013)."""
    topology = _topology_file(tmp_path)
    monkeypatch.setenv("SIMPUL_REDIS_URL", routed.url("router"))
    monkeypatch.delenv("SIMPUL_DEV_MODE")
    result = CliRunner().invoke(app, ["router", "run", "--topology", str(topology)])
    assert result.exit_code == 2, result.output
    assert "development password of deploy/dev.env" in result.output
    own = "a-router-password-of-its-own-0123"
    with routed.admin() as admin:
        admin.execute_command("ACL", "SETUSER", "router", f">{own}")
    try:  # with a password of its own, the topology's development keys are still refused
        monkeypatch.setenv("SIMPUL_REDIS_URL", f"redis://router:{own}@127.0.0.1:{routed.port}/0")
        result = CliRunner().invoke(app, ["router", "run", "--topology", str(topology)])
    finally:
        with routed.admin() as admin:
            admin.execute_command("ACL", "SETUSER", "router", f"<{own}")
    assert result.exit_code == 2, result.output
    assert "development key(s)" in result.output
    assert "adapter-dukcapil-dev-2026" in result.output and "SIMPUL_DEV_MODE=1" in result.output
    with routed.admin() as admin:  # it never started: no router group on any intake
        assert not admin.exists(keys.intake("adapter-dukcapil"))


async def test_the_exporter_reports_a_stream_ahead_of_time_as_the_readonly_operator(
    routed: RoutedServer,
) -> None:
    """What SimpulStreamAheadOfTime reads: only the stream ahead, by its key; the read-only
    operator (the exporter's user) may compute it."""
    with routed.admin() as admin:
        admin.xadd(keys.intake("adapter-dukcapil"), {"type": "x"}, id=FAR_FUTURE)
        admin.xadd(PAYMENT, {"type": "x"})
    readonly = routed.connect("operator-readonly")
    ahead = await _ahead_or_empty(readonly)
    assert list(ahead) == [keys.intake("adapter-dukcapil")]
    assert ahead[keys.intake("adapter-dukcapil")] > 60 * 365 * 24 * 3600
    await readonly.aclose()


@pytest.mark.slow
async def test_redis_killed_under_the_router_loses_and_repeats_nothing(
    private_redis: EmbeddedRedis,
) -> None:
    """Redis (AOF, appendfsync always) SIGKILLed twice while a producer publishes to its intake
    (retrying what failed, as adapters do) and a router routes; every event the producer saw
    acknowledged, and every one it retried, ends in each inbox exactly once, in order."""
    url = private_redis.url
    producer_redis, admin = connect(url), connect(url)
    producer = Publisher(
        producer_redis, source="urn:x", signer=signer("adapter-dukcapil"), intake="adapter-dukcapil"
    )
    router = Router(
        connect(url),
        TOPOLOGY,
        default_registry,
        keyring=None,
        signer=router_signer(),
        config=RouterConfig(block_ms=50, lease_ms=500),
        replica="r1",
    )
    task = asyncio.create_task(router.run())
    total = 200
    try:
        for i in range(total):
            if i in (60, 140):
                private_redis.kill()
                private_redis.start()
            while True:
                try:
                    await producer.publish(example(CitizenDied), id=f"r-{i:03d}")
                    break
                except (RedisConnectionError, RedisTimeoutError, OSError):
                    await asyncio.sleep(0.05)
        await wait_until(lambda: _len(admin, DINSOS, total), timeout=30)
    finally:
        router.stop()
        await asyncio.wait_for(task, 10)
        await router.redis.aclose()
    expected = [f"r-{i:03d}".encode() for i in range(total)]
    for inbox in (DINSOS, keys.inbox(CITIZEN, "audit")):
        assert [f[b"id"] for f in await _entries(admin, inbox)] == expected, inbox
    await producer_redis.aclose()
    await admin.aclose()
