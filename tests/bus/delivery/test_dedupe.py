"""Idempotency: the publisher drops a duplicate id; ``once=True`` runs an effect once per id."""

from __future__ import annotations

from redis.asyncio import Redis

from bus import EventContext, Publisher, Service, keys
from bus.settings import Settings
from bus.testing import wait_until
from schemas.dukcapil import CitizenDied
from tests.bus.delivery.helpers import (
    GROUP,
    NIK,
    STREAM,
    Calls,
    dead_letters,
    died,
    fields_of,
    moved,
    wait_pending,
)

EFFECTS = "test:once:effects"


async def test_publishing_the_same_id_twice_leaves_one_entry(
    redis: Redis, publisher: Publisher
) -> None:
    first = await publisher.publish(died(), id="dup-1")
    second = await publisher.publish(died(), id="dup-1")
    assert not first.duplicate
    assert second.duplicate
    assert second.entry_id == first.entry_id
    assert second.stream == first.stream == STREAM
    assert await redis.xlen(STREAM) == 1


async def test_publish_many_drops_a_duplicate_inside_the_batch(
    redis: Redis, publisher: Publisher
) -> None:
    before = await publisher.publish(moved(), id="dup-earlier")
    batch = [publisher.envelope(died(), id=i) for i in ("dup-a", "dup-b", "dup-a", "dup-earlier")]
    results = await publisher.publish_many(batch)
    assert [r.duplicate for r in results] == [False, False, True, True]
    assert results[2].entry_id == results[0].entry_id
    assert results[3].entry_id == before.entry_id
    assert await redis.xlen(STREAM) == 3
    entries = await redis.xrange(STREAM)
    assert [f[b"id"] for _, f in entries] == [b"dup-earlier", b"dup-a", b"dup-b"]


def once_service(settings: Settings, redis: Redis, calls: Calls, *, failures: int = 0) -> Service:
    """A ``once=True`` handler whose effect is an RPUSH; it fails its first ``failures`` calls
    before doing anything."""
    service = Service(GROUP, settings=settings)

    @service.on(CitizenDied, once=True)
    async def effect(event: CitizenDied, ctx: EventContext) -> None:
        calls.record(ctx)
        if len(calls.of(ctx.event_id)) <= failures:
            raise TimeoutError("the notification gateway timed out")
        await redis.rpush(EFFECTS, f"{ctx.event_id}@{ctx.entry_id}")

    return service


async def test_once_handler_runs_once_for_one_event_id_in_two_entries(
    redis: Redis, settings: Settings, publisher: Publisher
) -> None:
    calls = Calls()
    async with once_service(settings, redis, calls).running():
        first = (await redis.xadd(STREAM, fields_of(died(), "same-event"))).decode()
        again = (
            await redis.xadd(STREAM, fields_of(died(), "same-event"))
        ).decode()  # bypasses the publisher
        other = await publisher.publish(died(), id="other-event")
        await wait_until(lambda: "other-event" in calls.ids())
        await wait_pending(redis, 0)
    effects = [e.decode() for e in await redis.lrange(EFFECTS, 0, -1)]
    assert effects == [f"same-event@{first}", f"other-event@{other.entry_id}"]
    assert calls.of("same-event") == [1]  # the second entry was acked without a call
    assert again != first
    assert await dead_letters(redis) == []
    done = await redis.get(keys.done(STREAM, GROUP, "same-event"))
    assert done == b"done"


async def test_failed_once_handler_releases_its_lease_and_its_effect_happens_once(
    redis: Redis, settings: Settings, publisher: Publisher
) -> None:
    calls = Calls()
    async with once_service(settings, redis, calls, failures=1).running():
        published = await publisher.publish(died(NIK), id="flaky-once")
        await wait_until(lambda: len(calls.of("flaky-once")) >= 2, timeout=20)
        await wait_pending(redis, 0)
        await redis.xadd(STREAM, fields_of(died(), "flaky-once"))  # and a redelivery-like copy
        await publisher.publish(died(), id="flaky-sentinel")
        await wait_until(lambda: "flaky-sentinel" in calls.ids(), timeout=20)
        await wait_pending(redis, 0)
    # The retry ran the handler at delivery 2: the failed attempt had dropped its lease.
    assert calls.of("flaky-once") == [1, 2]
    effects = [e.decode() for e in await redis.lrange(EFFECTS, 0, -1)]
    assert effects.count(f"flaky-once@{published.entry_id}") == 1
    assert [e for e in effects if e.startswith("flaky-once@")] == [
        f"flaky-once@{published.entry_id}"
    ]
    assert await dead_letters(redis) == []
