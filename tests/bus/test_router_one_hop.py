"""Admission and fan-out in one call (decision 0014), against a real Redis 7 with the routed
ACLs loaded: the router chooses each admitted event's department-stream id, the admit function
writes the stream and every inbox at once — only where the fan-out has forwarded everything
before it, so the inboxes keep the stream's order and nothing is skipped."""

from __future__ import annotations

import time

import pytest
from redis.asyncio import Redis

from bus import Publisher, functions, keys
from bus.functions import FunctionsNotLoaded
from bus.router import Router
from bus.router.common import IdsMoved
from bus.testing import wait_until
from schemas.dukcapil import CitizenDied
from tests.bus.routed import ADMIN, RoutedServer, running, signer
from tests.bus.test_router import CITIZEN, DINSOS, _entries, example, publisher

INTAKE = keys.intake("adapter-dukcapil")
AUDIT = keys.inbox(CITIZEN, "audit")


async def _ready(router: Router) -> None:
    """The router holds both sources and their groups exist, as once its loops started."""
    for source in (INTAKE, CITIZEN):
        assert await router._hold(source)
        await router._ensure_group(source)


async def _admit(router: Router) -> None:
    await router.route(INTAKE, await router._read(INTAKE, ">", block=None))


async def _admit_as_the_loop_does(router: Router) -> None:
    """Admit what is new; ids taken meanwhile (a writer in the same millisecond) are chosen
    again for the batch, read again from what is pending, as the source loop does."""
    try:
        await _admit(router)
    except IdsMoved:
        await router.route(INTAKE, await router._read(INTAKE, "0", block=None))


async def _ids(admin: Redis, key: str) -> list[bytes]:
    return [fields[b"id"] for fields in await _entries(admin, key)]


async def _group(admin: Redis) -> dict[str, object]:
    [group] = [g for g in await admin.xinfo_groups(CITIZEN) if g["name"] == b"router"]
    return dict(group)


async def _direct(admin: Redis, event_id: str) -> None:
    """A producer-signed death written onto the department stream without admission (a
    producer not yet moved to its intake, during a migration)."""
    direct = Publisher(admin, source="urn:test", signer=signer("adapter-dukcapil"))
    await direct.publish(example(CitizenDied), id=event_id)


async def test_admission_writes_the_inboxes_in_the_same_call(routed: RoutedServer) -> None:
    admin = routed.connect(ADMIN)
    dukcapil = publisher(routed, "adapter-dukcapil")
    router = routed.router()
    await _ready(router)
    for i in range(3):
        await dukcapil.publish(example(CitizenDied), id=f"d-{i}")
    await _admit(router)
    # No fan-out read: the inboxes hold every event already, each naming its stream entry.
    stream = await admin.xrange(CITIZEN)
    assert [f[b"id"] for _, f in stream] == [b"d-0", b"d-1", b"d-2"]
    dinsos = await _entries(admin, DINSOS)
    assert [f[b"originentry"] for f in dinsos] == [entry for entry, _ in stream]
    assert await _ids(admin, AUDIT) == [b"d-0", b"d-1", b"d-2"]
    assert await admin.get(keys.routed_mark(DINSOS)) == stream[-1][0]
    # The fan-out's group is past them (nothing pending, no lag): it never reads them.
    group = await _group(admin)
    assert group["last-delivered-id"] == stream[-1][0]
    assert (group["pending"], group["lag"]) == (0, 0)
    assert await router._read(CITIZEN, ">", block=None) == []
    routes = router.routes[CITIZEN][CitizenDied.__contract__.event_type]
    assert router.counts.forwarded == 3 * len(routes)
    await router.redis.aclose()
    await admin.aclose()


async def test_what_the_fan_out_has_not_forwarded_is_left_to_it_in_order(
    routed: RoutedServer,
) -> None:
    """An entry written onto the stream by another writer, and one the fan-out has read but
    not forwarded yet (pending): admission forwards nothing after them — a forward above an
    inbox's high-water mark would make the fan-out skip them — and the fan-out forwards all
    of them in the stream's order."""
    admin = routed.connect(ADMIN)
    dukcapil = publisher(routed, "adapter-dukcapil")
    router = routed.router()
    await _ready(router)
    await _direct(admin, "d-direct")
    await dukcapil.publish(example(CitizenDied), id="d-behind")
    await _admit_as_the_loop_does(router)
    assert await _ids(admin, CITIZEN) == [b"d-direct", b"d-behind"]
    assert await admin.xlen(DINSOS) == 0  # left to the fan-out: its group is behind
    await router.route(CITIZEN, await router._read(CITIZEN, ">", block=None))
    assert await _ids(admin, DINSOS) == [b"d-direct", b"d-behind"]
    await dukcapil.publish(example(CitizenDied), id="d-caught-up")
    await _admit_as_the_loop_does(router)  # the fan-out caught up: admission forwards again
    assert await _ids(admin, DINSOS) == [b"d-direct", b"d-behind", b"d-caught-up"]
    # Read by the fan-out, not yet forwarded (a replica mid-batch): pending.
    await _direct(admin, "d-pending")
    read = await router._read(CITIZEN, ">", block=None)
    assert [f[b"id"] for _, f in read] == [b"d-pending"]
    await dukcapil.publish(example(CitizenDied), id="d-after")
    await _admit_as_the_loop_does(router)
    assert await admin.xlen(DINSOS) == 3  # not forwarded over the pending entry
    await router.route(CITIZEN, read)
    await router.route(CITIZEN, await router._read(CITIZEN, ">", block=None))
    expected = [b"d-direct", b"d-behind", b"d-caught-up", b"d-pending", b"d-after"]
    for inbox in (DINSOS, AUDIT):
        assert await _ids(admin, inbox) == expected, inbox
    assert await _ids(admin, CITIZEN) == expected
    await router.redis.aclose()
    await admin.aclose()


async def test_an_id_already_taken_is_chosen_again_and_nothing_is_written_twice(
    routed: RoutedServer,
) -> None:
    """A replica whose idea of the time lags (or another that wrote the stream in the same
    millisecond): the admit function refuses an id at or below the stream's last one, the
    batch stays pending, and read again it is admitted under new ids, each event once."""
    admin = routed.connect(ADMIN)
    dukcapil = publisher(routed, "adapter-dukcapil")
    router = routed.router()
    await _ready(router)
    await dukcapil.publish(example(CitizenDied), id="d-first")
    await _admit(router)
    await dukcapil.publish_many(
        [dukcapil.envelope(example(CitizenDied), id=f"d-{i}") for i in range(3)]
    )
    router._last_ids.clear()
    router._clock = (int(time.time() * 1000) - 60_000, time.monotonic())  # a minute behind
    try:
        await _admit(router)
    except IdsMoved as exc:
        assert CITIZEN in str(exc)
    else:
        raise AssertionError("an id a minute behind the stream's last one was accepted")
    assert await admin.xlen(CITIZEN) == 1
    last = (await admin.xrevrange(CITIZEN, count=1))[0][0]
    assert router._last_ids[CITIZEN] == tuple(int(p) for p in last.split(b"-"))
    await router.route(INTAKE, await router._read(INTAKE, "0", block=None))  # read again
    expected = [b"d-first", b"d-0", b"d-1", b"d-2"]
    assert await _ids(admin, CITIZEN) == expected
    assert await _ids(admin, DINSOS) == expected
    assert await admin.xpending(INTAKE, "router") == {
        "pending": 0,
        "min": None,
        "max": None,
        "consumers": [],
    }
    await router.redis.aclose()
    await admin.aclose()


async def test_a_stream_whose_last_id_lies_ahead_of_time_is_written_on_after_it(
    routed: RoutedServer,
) -> None:
    """An id ahead of Redis's TIME is refused, except the one right after a last id that
    already is (an operator's write): the stream goes on as XADD * would make it, its
    alert (`ahead_of_time`) is the operator's cue, and the router does not stop."""
    admin = routed.connect(ADMIN)
    dukcapil = publisher(routed, "adapter-dukcapil")
    router = routed.router()
    await _ready(router)
    ahead = f"{int(time.time() * 1000) + 3_600_000}-0"  # an hour ahead
    await admin.xadd(CITIZEN, {"note": "an operator's write"}, id=ahead)
    await router.route(CITIZEN, await router._read(CITIZEN, ">", block=None))  # withheld
    await dukcapil.publish(example(CitizenDied), id="d-late")
    try:  # the first choice (now) is refused; the next one is right after the last id
        await _admit(router)
    except IdsMoved:
        await router.route(INTAKE, await router._read(INTAKE, "0", block=None))
    else:
        raise AssertionError("an id an hour behind the stream's last one was accepted")
    [(entry, fields)] = await admin.xrange(CITIZEN, min=f"({ahead}")
    assert fields[b"id"] == b"d-late"
    assert entry.decode() == ahead.replace("-0", "-1")
    assert await _ids(admin, DINSOS) == [b"d-late"]
    # Far ahead without a last id there to follow: refused, nothing written.
    router._clock = (int(time.time() * 1000) + 7_200_000, time.monotonic())
    await dukcapil.publish(example(CitizenDied), id="d-clock")
    try:
        await _admit(router)
    except IdsMoved:
        pass
    else:
        raise AssertionError("an id two hours ahead of TIME was accepted")
    assert await admin.xlen(CITIZEN) == 2
    await router.redis.aclose()
    await admin.aclose()


async def test_a_quiet_fan_out_still_finds_what_admission_left_to_it(
    routed: RoutedServer,
) -> None:
    """While admission forwards, the fan-out stops waiting on the stream (every admitted entry
    would wake it for nothing) — and still finds, by looking, an entry another writer put
    there, which it forwards in order before admission forwards again."""
    admin = routed.connect(ADMIN)
    dukcapil = publisher(routed, "adapter-dukcapil")
    async with running(routed.router()) as router:
        await dukcapil.publish(example(CitizenDied), id="d-0")
        await wait_until(lambda: _count(admin, DINSOS, 1), timeout=10)
        await dukcapil.publish(example(CitizenDied), id="d-1")
        await wait_until(lambda: _count(admin, DINSOS, 2), timeout=10)
        await wait_until(lambda: _true(CITIZEN in router._quiet), timeout=10)
        await _direct(admin, "d-direct")
        await wait_until(lambda: _count(admin, DINSOS, 3), timeout=10)
        await dukcapil.publish(example(CitizenDied), id="d-2")
        await wait_until(lambda: _count(admin, DINSOS, 4), timeout=10)
    expected = [b"d-0", b"d-1", b"d-direct", b"d-2"]
    for inbox in (DINSOS, AUDIT):
        assert await _ids(admin, inbox) == expected, inbox
    await admin.aclose()


async def _count(admin: Redis, key: str, n: int) -> bool:
    return bool(await admin.xlen(key) == n)


async def _true(value: bool) -> bool:
    return value


async def test_a_library_older_than_the_admit_function_is_named_and_nothing_is_lost(
    routed: RoutedServer,
) -> None:
    """A server whose library an older Simpul loaded has no admit function: the router says
    which function is missing and what to run, the event waits in its intake, and once the
    admin loads the library it is admitted."""
    admin = routed.connect(ADMIN)
    spec = functions.FUNCTIONS.pop("admit_batch")
    try:
        await admin.execute_command("FUNCTION", "LOAD", "REPLACE", functions.library_code())
    finally:
        functions.FUNCTIONS["admit_batch"] = spec
    dukcapil = publisher(routed, "adapter-dukcapil")
    router = routed.router()
    await _ready(router)
    await dukcapil.publish(example(CitizenDied), id="d-upgrade")
    with pytest.raises(
        FunctionsNotLoaded, match=r"no function simpul_1_admit_batch.*simpul functions load"
    ):
        await _admit(router)
    assert await admin.xlen(INTAKE) == 1 and await admin.xlen(CITIZEN) == 0
    await functions.load(admin)  # what `simpul functions load` does
    await router.route(INTAKE, await router._read(INTAKE, "0", block=None))
    assert await _ids(admin, DINSOS) == [b"d-upgrade"]
    await router.redis.aclose()
    await admin.aclose()
