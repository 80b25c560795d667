"""Partitioned streams keep each subject's events in order: across replicas, retries and a
replica handing its partitions over (real Redis, in-process replicas)."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis

from bus import Contract, EventContext, Publisher, Service, keys
from bus.admin.deadletter_types import Outcome
from bus.admin.deadletters import DeadLetters
from bus.contracts import Registry
from bus.testing import quick_settings, wait_until


class Reading(Contract, event_type="test.gauge.read.v1", partitions=4, register=False):
    """A partitioned aggregate of the tests: test.gauge, 4 partitions."""

    gauge: str
    seq: int


REGISTRY = Registry()
REGISTRY.register(Reading)
PARTITIONS = Reading.__contract__.streams
GROUP = "gauges"
SOURCE = "urn:malangkota:test:gauge"


class Seen:
    """(subject, seq, consumer) of every handler call, in call order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int, str]] = []

    def by_subject(self) -> dict[str, list[int]]:
        found: dict[str, list[int]] = defaultdict(list)
        for subject, seq, _ in self.calls:
            found[subject].append(seq)
        return found

    def consumers(self) -> set[str]:
        return {consumer for _, _, consumer in self.calls}


def replica(
    url: str,
    consumer: str,
    seen: Seen,
    *,
    fail: Callable[[Reading, int], bool] | None = None,
    claim_idle_ms: int = 1_000,
) -> Service:
    settings = quick_settings(url, consumer=consumer, claim_idle_ms=claim_idle_ms)
    service = Service(GROUP, settings=settings, registry=REGISTRY)

    @service.on(Reading)
    async def handle(event: Reading, ctx: EventContext) -> None:
        await asyncio.sleep(random.uniform(0, 0.002))  # let replicas interleave
        if fail is not None and fail(event, ctx.delivery):
            raise RuntimeError("flaky")
        seen.calls.append((event.gauge, event.seq, ctx.consumer))

    return service


async def publish(redis: Redis, subjects: int, per_subject: int) -> int:
    publisher = Publisher(redis, source=SOURCE, signer=None)
    events = [
        publisher.envelope(Reading(gauge=f"g-{s}", seq=n), subject=f"g-{s}")
        for n in range(1, per_subject + 1)
        for s in range(subjects)
    ]
    await publisher.publish_many(events)
    return len(events)


async def owners(redis: Redis) -> dict[str, str]:
    found = {}
    for partition in PARTITIONS:
        owner = await redis.get(keys.lease(partition, GROUP))
        if owner is not None:
            found[partition] = owner.decode()
    return found


def in_order(seen: Seen) -> dict[str, list[int]]:
    """Subjects whose events were not handled 1, 2, 3, ... (with their sequence)."""
    return {s: seqs for s, seqs in seen.by_subject().items() if seqs != sorted(set(seqs))}


async def test_two_replicas_split_the_partitions_and_keep_every_subject_in_order(
    redis_url: str, redis: Redis
) -> None:
    seen = Seen()
    a, b = replica(redis_url, "a", seen), replica(redis_url, "b", seen)
    async with a.running(), b.running():

        async def split() -> bool:
            held = await owners(redis)
            return len(held) == 4 and sorted(held.values()) == ["a", "a", "b", "b"]

        await wait_until(split, timeout=15)
        total = await publish(redis, subjects=12, per_subject=25)
        await wait_until(lambda: len(seen.calls) >= total, timeout=30)
    assert len(seen.calls) == total  # each once
    assert in_order(seen) == {}
    assert seen.consumers() == {"a", "b"}
    # Each partition was read by one replica: the leases did not move while both ran.
    readers: dict[str, set[str]] = defaultdict(set)
    for subject, _, consumer in seen.calls:
        readers[keys.stream_of(Reading.__contract__.event_type, subject)].add(consumer)
    assert all(len(consumers) == 1 for consumers in readers.values()), readers
    assert await owners(redis) == {}  # a clean stop hands every lease back


async def test_a_failed_event_holds_its_partition_until_it_succeeds(
    redis_url: str, redis: Redis
) -> None:
    seen = Seen()

    def flaky(event: Reading, delivery: int) -> bool:
        return event.gauge == "g-0" and event.seq == 3 and delivery <= 2

    service = replica(redis_url, "a", seen, fail=flaky)
    async with service.running():
        total = await publish(redis, subjects=6, per_subject=10)
        await wait_until(lambda: len(seen.calls) >= total, timeout=30)
    assert len(seen.calls) == total
    assert in_order(seen) == {}
    assert seen.by_subject()["g-0"] == list(range(1, 11))
    for partition in PARTITIONS:
        assert not await redis.xlen(keys.dead_letters(partition, GROUP))


async def test_a_replica_that_stops_hands_its_pending_over_in_order(
    redis_url: str, redis: Redis
) -> None:
    seen = Seen()
    a = replica(redis_url, "a", seen)
    async with a.running():
        await wait_until(lambda: _owned_by(redis, "a", 4), timeout=15)
        total = await publish(redis, subjects=8, per_subject=40)
        await wait_until(lambda: len(seen.calls) >= total // 4, timeout=30)
    handled_by_a = len(seen.calls)
    assert 0 < handled_by_a < total  # stopped mid-way: the rest waits, pending or new
    b = replica(redis_url, "b", seen)
    async with b.running():
        await wait_until(lambda: len(seen.calls) >= total, timeout=30)
    assert len(seen.calls) == total
    assert in_order(seen) == {}
    assert seen.consumers() == {"a", "b"}


async def _owned_by(redis: Redis, consumer: str, count: int) -> bool:
    held = await owners(redis)
    return sum(1 for c in held.values() if c == consumer) == count


async def test_a_dead_letter_replayed_to_a_partition_is_handled_by_its_owner(
    redis_url: str, redis: Redis
) -> None:
    seen = Seen()
    broken = {"g-1"}

    def failing(event: Reading, delivery: int) -> bool:
        return event.gauge in broken and event.seq == 2

    service = replica(redis_url, "a", seen, fail=failing)
    home = keys.stream_of(Reading.__contract__.event_type, "g-1")
    async with service.running():
        total = await publish(redis, subjects=4, per_subject=5)
        await wait_until(lambda: len(seen.calls) >= total - 1, timeout=30)  # all but g-1 #2
        assert seen.by_subject()["g-1"] == [1, 3, 4, 5]  # dead-lettered, the partition went on
        letters = await DeadLetters(redis, registry=REGISTRY).entries(home, GROUP)
        assert [letter.reason for letter in letters] == ["handler_failed"]
        broken.clear()  # the cause is fixed
        report = await DeadLetters(redis, registry=REGISTRY).replay([letters[0].ref])
        assert report.count(Outcome.REPLAYED) == 1
        await wait_until(lambda: len(seen.calls) >= total, timeout=30)
    assert seen.by_subject()["g-1"] == [1, 3, 4, 5, 2]
    assert await redis.xpending(home, GROUP) == {
        "pending": 0,
        "min": None,
        "max": None,
        "consumers": [],
    }


async def test_a_replica_that_joins_gets_its_share_within_seconds_not_a_lease(
    redis_url: str, redis: Redis
) -> None:
    seen = Seen()
    lease_ms = 60_000  # a third of it is 20 s: the test would time out waiting for that
    a = replica(redis_url, "a", seen, claim_idle_ms=lease_ms)
    b = replica(redis_url, "b", seen, claim_idle_ms=lease_ms)
    async with a.running():
        await wait_until(lambda: _owned_by(redis, "a", 4), timeout=10)
        async with b.running():

            async def shared() -> bool:
                return sorted((await owners(redis)).values()) == ["a", "a", "b", "b"]

            await wait_until(shared, timeout=8)
            total = await publish(redis, subjects=8, per_subject=5)
            await wait_until(lambda: len(seen.calls) >= total, timeout=15)
    assert in_order(seen) == {}
    assert seen.consumers() == {"a", "b"}


class Pair(Contract, event_type="test.pair.read.v1", partitions=2, register=False):
    """Two partitions, for three replicas: one of them stands by."""

    gauge: str


async def test_a_standby_replica_with_no_partition_stays_ready(
    redis_url: str, redis: Redis
) -> None:
    registry = Registry()
    registry.register(Pair)
    replicas = []
    for name in ("a", "b", "c"):
        service = Service(
            "pairs", settings=quick_settings(redis_url, consumer=name), registry=registry
        )

        @service.on(Pair)
        async def handle(event: Pair) -> None:
            pass

        replicas.append(service)
    async with replicas[0].running(), replicas[1].running(), replicas[2].running():

        async def spread() -> bool:
            held = [await redis.get(keys.lease(p, "pairs")) for p in Pair.__contract__.streams]
            return None not in held and len(set(held)) == 2

        await wait_until(spread, timeout=10)
        stale = replicas[0].health.stale_after_s
        await asyncio.sleep(stale + 1)  # past the point where an idle replica would look stale
        assert [r.health.ready for r in replicas] == [True, True, True]


async def test_on_partitions_each_attempt_is_numbered_once_and_the_last_dead_letters(
    redis_url: str, redis: Redis
) -> None:
    deliveries: dict[tuple[str, int], list[int]] = defaultdict(list)

    def failing(consumer: str) -> Service:
        settings = quick_settings(redis_url, consumer=consumer, max_deliveries=3)
        service = Service(GROUP, settings=settings, registry=REGISTRY)

        @service.on(Reading)
        async def handle(event: Reading, ctx: EventContext) -> None:
            deliveries[(event.gauge, event.seq)].append(ctx.delivery)
            if event.gauge == "g-0":
                await asyncio.sleep(0.05)
                raise RuntimeError("the gauge's calibration is unknown")

        return service

    async with failing("a").running(), failing("b").running():
        await publish(redis, subjects=4, per_subject=3)

        async def dead() -> int:
            return sum([await redis.xlen(keys.dead_letters(p, GROUP)) for p in PARTITIONS])

        await wait_until(lambda: _equals(dead(), 3), timeout=60)
    assert {seq: deliveries[("g-0", seq)] for seq in (1, 2, 3)} == {s: [1, 2, 3] for s in (1, 2, 3)}
    letters = [f for p in PARTITIONS for _, f in await redis.xrange(keys.dead_letters(p, GROUP))]
    assert {f[b"dlq.reason"] for f in letters} == {b"handler_failed"}
    assert all(b"calibration is unknown" in f[b"dlq.error"] for f in letters)


async def _equals(value: Awaitable[int], expected: int) -> bool:
    return await value == expected
