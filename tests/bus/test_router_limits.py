"""What one producer's credentials can do to the rest of a routed bus: "a producer can only hurt
itself" (decision 0011), tried with its own password and signing key against a real Redis 7
loaded with the rendered ACLs and a real router replica.

A flood of its own intake must not starve another producer's; an intake grown towards
``maxmemory`` (``noeviction``, as deploy/redis/redis.conf ships it) must not make every other
write fail; entries built to break the router (thousands of fields, a repeated name, bytes that
are no UTF-8, JSON nested deep or with a number of thousands of digits, signatures and key ids
of any shape) must each end in the producer's own dead letters with the reason while the
router goes on, and another department's event still arrives.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import OutOfMemoryError, ResponseError

from bus import Publisher, keys
from bus.access import acl
from bus.functions import load_sync
from bus.replies import field_pairs
from bus.router.common import MAX_FIELDS
from bus.testing import wait_until
from schemas.bapenda import PaymentReceived
from schemas.dukcapil import CitizenDied
from tests.bus.routed import (
    ADMIN,
    PASSWORDS,
    TOPOLOGY,
    RoutedServer,
    acl_server,
    running,
    signer,
)
from tests.bus.test_router import example, publisher

ATTACKER = "adapter-dukcapil"
OTHER = "adapter-bapenda"
INTAKE = keys.intake(ATTACKER)
REFUSALS = keys.intake_dead_letters(ATTACKER)
CITIZEN = keys.stream("dukcapil.citizen")
PAYMENT = keys.stream("bapenda.payment")
MAXMEMORY = 48 * 1024 * 1024
JUNK = 60_000  # bytes of one junk entry: under the router's 64 KiB, so refused as undecodable


@pytest.fixture(scope="module")
def small_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RoutedServer]:
    """A routed Redis whose memory runs out as the shipped one's does, only sooner."""
    aclfile = tmp_path_factory.mktemp("small-redis") / "users.acl"
    aclfile.write_text(acl.render(TOPOLOGY, PASSWORDS))
    options = ("--maxmemory", str(MAXMEMORY), "--maxmemory-policy", "noeviction")
    with acl_server(aclfile, extra_args=options) as server:
        yield server


@pytest.fixture
def small(small_server: RoutedServer) -> RoutedServer:
    with small_server.admin() as admin:
        admin.flushall()
        load_sync(admin)
    return small_server


async def _len(admin: Redis, key: str, n: int) -> bool:
    return bool(await admin.xlen(key) == n)


async def _within(admin: Redis, cap: int) -> bool:
    """The attacker's intake drained and its refusals within ``cap`` bytes (as Redis counts
    them, the way the router's cap does)."""
    return await admin.xlen(INTAKE) == 0 and int(await admin.memory_usage(REFUSALS) or 0) <= cap


async def _refusals(admin: Redis) -> list[dict[bytes, bytes]]:
    return [fields for _, fields in await admin.xrange(REFUSALS)]


async def _publish_despite_oom(other: Publisher, event_id: str) -> None:
    """Publish, asking again while Redis refuses for memory: what an adapter does (its
    checkpoint stays where it was). On a bus the flood silenced, every try fails."""
    for _ in range(100):
        try:
            await other.publish(example(PaymentReceived), id=event_id)
            return
        except OutOfMemoryError:
            await wait_until(lambda: True, timeout=0.1)  # let the router free memory
    raise AssertionError("Redis refused every write of another department for memory")


async def _flood(redis: Redis, entries: int) -> int:
    """Junk into the attacker's intake, 20 entries a round trip, straight with XADD (what the
    producer's ACL allows it, bypassing any publish function); until Redis refuses. Returns
    how many were added."""
    added = 0
    for start in range(0, entries, 20):
        async with redis.pipeline(transaction=False) as pipe:
            for n in range(start, min(start + 20, entries)):
                pipe.xadd(INTAKE, {"junk": "x" * JUNK, "n": str(n)})
            try:
                replies = await pipe.execute(raise_on_error=False)
            except OutOfMemoryError:  # the whole round trip refused
                break
        added += sum(not isinstance(reply, Exception) for reply in replies)
        if any(isinstance(reply, OutOfMemoryError) for reply in replies):
            break
    return added


async def test_one_producer_filling_redis_memory_cannot_silence_the_other_departments(
    small: RoutedServer,
) -> None:
    """120 MB of junk into a 48 MB Redis: without a cap its intake and the copies of its
    refusals reached maxmemory, Redis refused every other write (another department's publish,
    the router's read function, its dead letters), and the router, unable to read, never
    drained the intake: the bus stayed silent after the flood. The router's cap on what an
    intake and its refusals hold keeps them within their share."""
    admin = small.connect(ADMIN)
    attacker = small.connect(ATTACKER)
    other = publisher(small, OTHER)
    router = small.router(max_intake_bytes=4 * 1024 * 1024, max_refusal_bytes=2 * 1024 * 1024)
    async with running(router):
        await _flood(attacker, 2_000)
        await _publish_despite_oom(other, "pay-during-flood")
        await wait_until(lambda: _len(admin, PAYMENT, 1), timeout=20)
        # The attacker's own valid events still go through once its junk is gone.
        await publisher(small, ATTACKER, attacker).publish(example(CitizenDied), id="died-1")
        await wait_until(lambda: _len(admin, CITIZEN, 1), timeout=20)
        await wait_until(lambda: _within(admin, 2 * 1024 * 1024), timeout=20)
    assert {f[b"dlq.reason"] for f in await _refusals(admin)} <= {
        b"undecodable",
        b"intake_overflow",
    }
    await attacker.aclose()
    await other.redis.aclose()
    await admin.aclose()


async def test_an_intake_over_its_cap_loses_its_oldest_entries_with_a_dead_letter_naming_them(
    small: RoutedServer,
) -> None:
    """What the router was not running to read (12 MB here) is cut to half the cap at its first
    turn: the oldest entries go, and one dead letter says how many, from which id, and which
    limit; the rest is routed as usual."""
    admin = small.connect(ADMIN)
    attacker = small.connect(ATTACKER)
    first = await attacker.xadd(INTAKE, {"junk": "x" * JUNK, "n": "0"})
    assert await _flood(attacker, 199) == 199
    cap = 4 * 1024 * 1024
    async with running(small.router(max_intake_bytes=cap, max_refusal_bytes=cap)) as router:
        await wait_until(lambda: _len(admin, INTAKE, 0), timeout=20)
    refusals = await _refusals(admin)
    overflow = [f for f in refusals if f[b"dlq.reason"] == b"intake_overflow"]
    assert len(overflow) == 1
    letter = overflow[0]
    removed = router.counts.rejected["intake_overflow"]
    assert letter[b"dlq.entry"] == first
    assert letter[b"dlq.stream"] == INTAKE.encode()
    error = letter[b"dlq.error"].decode()
    assert f"its {removed} oldest entries, from {first.decode()} up to" in error
    assert "SIMPUL_ROUTER_MAX_INTAKE_BYTES" in error
    assert f"the {cap} bytes the router lets an intake hold" in error
    # Half the cap was kept (by the entries' average size) and refused as the junk it is.
    undecodable = [f for f in refusals if f[b"dlq.reason"] == b"undecodable"]
    assert removed + len(undecodable) == 200
    assert 0 < len(undecodable) < 100
    await attacker.aclose()
    await admin.aclose()


async def test_refusals_are_kept_within_their_bytes_as_well_as_their_number(
    small: RoutedServer,
) -> None:
    """10,000 refusals of 64 KiB each would be 640 MiB of one producer's junk: the newest are
    kept within ``max_refusal_bytes`` too."""
    admin = small.connect(ADMIN)
    attacker = small.connect(ATTACKER)
    cap = 2 * 1024 * 1024
    async with running(small.router(max_refusal_bytes=cap)):
        await _flood(attacker, 150)  # 9 MB of refusals, were they all kept
        await wait_until(lambda: _within(admin, cap), timeout=20)
    kept = await _refusals(admin)
    assert 0 < len(kept) < 150
    assert kept[-1][b"n"] == b"149"  # the newest stay
    await attacker.aclose()
    await admin.aclose()


def _signed(base: dict[str, str], **changes: str) -> dict[str, str]:
    """``base`` with ``changes``, signed again by the attacker's own key: every check before
    the one each poison aims at passes."""
    fields = {k: v for k, v in {**base, **changes}.items() if k != "signature"}
    fields["signature"] = signer(ATTACKER).signature_of(fields)
    return fields


def _poison(base: dict[str, str]) -> dict[str, list[Any]]:
    """Entries (as XADD arguments: name, value, name, value, ...) each meant to break a part of
    the router, by what it should be refused as."""
    data = json.loads(base["data"])

    def with_data(text: str) -> list[Any]:
        return _flat(_signed(base, data=text))

    many = {f"x{n}": "1" for n in range(5_000)}  # 5,000 extension attributes, 39 KB
    return {
        "too_large": [
            _flat(_signed(base, **many)),
            _flat({**base, **many}),  # the same, unsigned
            ["junk", "1"] * 5_000,  # one name 5,000 times
        ],
        "undecodable": [
            [*_flat(base), "id", "again"],  # a repeated name
            [*_flat(base), "data", b"\xff\xfe"],
            [b"\xff", b"\xfe", *_flat(base)],
            _flat(_signed(base, time="2026-13-45T99:99:99Z")),
            _flat(_signed(base, id="i" * 300)),
            _flat({**base, "": "empty name"}),
        ],
        "contract_violation": [
            with_data('{"a":' * 10_000 + "1" + "}" * 10_000),
            with_data(json.dumps(data)[:-1] + ', "n": ' + "9" * 40_000 + "}"),
            with_data(json.dumps(data)[:-1] + ', "n": 1e999999}'),
            with_data("[1, 2]"),
            with_data('{"a": '),
        ],
        "bad_signature": [
            _flat({**base, "signature": "!!not base64$$"}),
            _flat({**base, "signature": "AAAA"}),
            _flat(_signed(base, signedat="not a time")),
        ],
        "unknown_signer": [
            _flat({**base, "signer": "../\x00*{}" + "k" * 40_000}),
        ],
    }


def _flat(fields: dict[str, str]) -> list[Any]:
    return [text for pair in fields.items() for text in pair]


async def test_entries_built_to_break_the_router_each_end_in_the_producers_dead_letters(
    routed: RoutedServer,
) -> None:
    """Each poison is refused with its reason, after which the producer's own next event and
    another department's are admitted: nothing crashed or stalled the router's loop. Before,
    an entry of thousands of fields (under 64 KiB, correctly signed) was admitted by the
    checks but failed the publish function (Lua's unpack limit) at every try, and the
    intake stayed wedged behind it; a repeated field name was taken as its last value."""
    admin = routed.connect(ADMIN)
    attacker = routed.connect(ATTACKER)
    own = publisher(routed, ATTACKER, attacker)
    base = own.signer.sign(own.envelope(example(CitizenDied), id="poison")).to_fields()  # type: ignore[union-attr]
    poison = _poison(base)
    for entries in poison.values():
        for fields in entries:
            await attacker.execute_command("XADD", INTAKE, "*", *fields)
    await own.publish(example(CitizenDied), id="after-the-poison")
    other = publisher(routed, OTHER)
    await other.publish(example(PaymentReceived), id="pay-1")
    count = sum(len(entries) for entries in poison.values())
    async with running(routed.router()) as router:
        await wait_until(lambda: _len(admin, REFUSALS, count), timeout=20)
        await wait_until(lambda: _len(admin, CITIZEN, 1), timeout=20)
        await wait_until(lambda: _len(admin, PAYMENT, 1), timeout=20)
    assert [f[b"id"] for _, f in await admin.xrange(CITIZEN)] == [b"after-the-poison"]
    reasons = [f[b"dlq.reason"].decode() for f in await _refusals(admin)]
    assert reasons == [reason for reason, entries in poison.items() for _ in entries]
    assert sum(router.counts.rejected.values()) == count
    letters = await _refusals(admin)
    fields = next(f for f in letters if f[b"dlq.reason"] == b"too_large")
    assert f"more than the {MAX_FIELDS} an event may have".encode() in fields[b"dlq.error"]
    assert b"x1" not in fields  # not copied: only its reason
    # The repeated name is refused, and its dead letter keeps both values (wire-format.md 1).
    twice = next(f for f in letters if f.get(b"id") == b"again")
    assert [name for name, _ in field_pairs(twice)].count(b"id") == 2
    await attacker.aclose()
    await other.redis.aclose()
    await admin.aclose()


async def test_a_flooded_intake_does_not_starve_another_producers(routed: RoutedServer) -> None:
    """Every source is read by its own loop a batch at a time, so a producer's 20,000 queued
    entries do not go first: another producer's event published once the router runs is
    admitted long before the flood is drained."""
    admin = routed.connect(ADMIN)
    attacker = routed.connect(ATTACKER)
    flood = 20_000
    for start in range(0, flood, 2_000):
        async with attacker.pipeline(transaction=False) as pipe:
            for n in range(start, start + 2_000):
                pipe.xadd(INTAKE, {"junk": "1", "n": str(n)})
            await pipe.execute()
    other = publisher(routed, OTHER)
    async with running(routed.router()):
        await wait_until(lambda: admin.exists(REFUSALS), timeout=20)  # the flood is being read
        await other.publish(example(PaymentReceived), id="pay-1")
        await wait_until(lambda: _len(admin, PAYMENT, 1), timeout=20)
        refused_before = await admin.xlen(REFUSALS)
        left = await admin.xlen(INTAKE)
    assert refused_before < flood / 2
    assert left > flood / 2
    await attacker.aclose()
    await other.redis.aclose()
    await admin.aclose()


async def test_the_cap_function_gives_a_producer_nothing(routed: RoutedServer) -> None:
    """``simpul_1_intake_cap`` runs while Redis refuses writes for memory (``allow-oom``) and
    takes its caps as arguments: a producer calling it on its own intake is refused (its ACL
    pairs ``FCALL`` with neither its dead letters nor ``MEMORY USAGE``), so it can neither
    write past ``maxmemory`` with it nor empty its intake under the router."""
    attacker = routed.connect(ATTACKER)
    await attacker.xadd(INTAKE, {"junk": "1"})
    for second in (REFUSALS, keys.seen(INTAKE, "x")):
        with pytest.raises(ResponseError, match=r"no permissions|can.t run this command"):
            await attacker.execute_command(
                "FCALL", "simpul_1_intake_cap", 2, INTAKE, second, 0, 0, "t", "router"
            )
    assert await attacker.xrange(INTAKE) != []
    await attacker.aclose()
