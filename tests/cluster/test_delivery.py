"""Delivery on a 3-master Redis Cluster: the bus runs unchanged, with streams on every master."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

import pytest
from redis.asyncio import Redis
from structlog.testing import capture_logs

from bus import EventContext, Publisher, Service, keys
from bus.contracts import Contract
from bus.local.cluster import EmbeddedCluster
from bus.testing import quick_settings, wait_until
from schemas.dpmptsp import PermitIssued
from schemas.dukcapil import CitizenDied
from tests.cluster.helpers import MODELS, SOURCE, STREAMS, example, key_type_on, master_of

pytestmark = pytest.mark.slow
GROUP = "cluster"


class Seen:
    """(event id, stream, delivery, consumer) of every handler call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, int, str]] = []

    def record(self, ctx: EventContext) -> None:
        self.calls.append((ctx.event_id, ctx.stream, ctx.delivery, ctx.consumer))

    def ids(self) -> set[str]:
        return {call[0] for call in self.calls}

    def of(self, event_id: str) -> list[int]:
        return [delivery for eid, _, delivery, _ in self.calls if eid == event_id]


def recording(service: Service, seen: Seen, models: Iterable[type[Contract]] = MODELS) -> None:
    for model in models:

        @service.on(model)
        async def record(event: Contract, ctx: EventContext) -> None:
            seen.record(ctx)


def contains(ids: Callable[[], set[str]], event_id: str) -> bool:
    return event_id in ids()


async def pending(redis: Redis, stream: str, group: str = GROUP) -> int:
    return int((await redis.xpending(stream, group))["pending"])


async def all_settled(redis: Redis, streams: Iterable[str] = STREAMS) -> bool:
    return all([await pending(redis, stream) == 0 for stream in streams])


def test_the_streams_live_on_three_different_masters(
    cluster: EmbeddedCluster, cluster_url: str
) -> None:
    masters = {master_of(cluster, stream) for stream in STREAMS}
    assert masters == set(cluster.addresses)
    # A stream and its dead letters, dedupe and done markers share the hash tag: one master.
    stream = STREAMS[1]
    related = [
        keys.dead_letters(stream, GROUP),
        keys.seen(stream, "e"),
        keys.done(stream, "g", "e"),
    ]
    assert {master_of(cluster, key) for key in related} == {master_of(cluster, stream)}


async def test_a_service_consumes_streams_on_every_master_with_reads_blocked_on_each(
    cluster: EmbeddedCluster, cluster_redis: Redis
) -> None:
    seen = Seen()
    # Reads block for a minute: a stream read only after another's read returned would wait
    # that long, so handling each event quickly needs a blocked read per slot at the same time.
    settings = quick_settings(cluster.url, block_ms=60_000, shutdown_grace_s=5.0)
    service = Service(GROUP, settings=settings)
    recording(service, seen)
    publisher = Publisher(cluster_redis, source=SOURCE)
    before = await publisher.publish(example(CitizenDied), id="before-start")
    with capture_logs() as logs:
        async with service.running():
            await wait_until(lambda: "before-start" in seen.ids(), timeout=10)
            for model in reversed(MODELS):  # the last stream's read was issued last
                published = await publisher.publish(example(model, 1), id=f"late-{model.__name__}")
                await wait_until(partial(contains, seen.ids, published.event_id), timeout=10)
            await wait_until(lambda: all_settled(cluster_redis), timeout=10)
            # redis-py 8.1 can lose a cancel that lands in the first ~2 ms of a read (on one
            # server too): let the last reads reach their blocking wait before leaving.
            await asyncio.sleep(0.5)
    assert "shutdown_grace_expired" not in [log["event"] for log in logs]  # stop cut every read
    assert seen.ids() == {"before-start", *(f"late-{m.__name__}" for m in MODELS)}
    assert {call[1] for call in seen.calls} == set(STREAMS)
    for stream in STREAMS:
        assert key_type_on(master_of(cluster, stream), stream) == "stream"
        [group] = await cluster_redis.xinfo_groups(stream)
        assert group["name"] == GROUP.encode() and group["pending"] == 0
    assert before.stream == STREAMS[0]


async def test_a_failing_handler_is_retried_then_dead_lettered_on_its_streams_master(
    cluster: EmbeddedCluster, cluster_redis: Redis
) -> None:
    seen = Seen()
    service = Service(GROUP, settings=quick_settings(cluster.url, max_deliveries=3))
    recording(service, seen, [CitizenDied])

    @service.on(PermitIssued)
    async def refuse(event: PermitIssued, ctx: EventContext) -> None:
        seen.record(ctx)
        raise RuntimeError("the licensing database refused the update")

    publisher = Publisher(cluster_redis, source=SOURCE)
    permits = keys.stream("dpmptsp.permit")
    dlq = keys.dead_letters(permits, GROUP)
    async with service.running():
        await publisher.publish(example(PermitIssued), id="permit-1")
        await cluster_redis.xadd(permits, {"not": "an event"})  # poison: dead at once
        await publisher.publish(example(CitizenDied), id="death-1")
        await wait_until(lambda: at_least(cluster_redis, dlq, 2), timeout=20)
        await wait_until(lambda: all_settled(cluster_redis, [permits, STREAMS[0]]), timeout=10)
    assert seen.of("permit-1") == [1, 2, 3]
    assert seen.of("death-1") == [1]
    entries: Any = await cluster_redis.xrange(dlq)
    letters = {f[b"dlq.reason"].decode(): f for _, f in entries}
    assert set(letters) == {"handler_failed", "undecodable"}
    assert letters["handler_failed"][b"dlq.attempts"] == b"3"
    assert letters["handler_failed"][b"id"] == b"permit-1"
    assert master_of(cluster, dlq) == master_of(cluster, permits) != master_of(cluster, STREAMS[0])


async def at_least(redis: Redis, key: str, count: int) -> bool:
    return int(await redis.xlen(key)) >= count


async def test_a_once_handler_runs_once_per_event_under_redelivery(
    cluster: EmbeddedCluster, cluster_redis: Redis
) -> None:
    effects: list[str] = []
    failures = {"flaky": 1}
    seen = Seen()
    service = Service(GROUP, settings=quick_settings(cluster.url))

    for model in MODELS:

        @service.on(model, once=True)
        async def effect(event: Contract, ctx: EventContext) -> None:
            seen.record(ctx)
            if failures.get(ctx.event_id, 0) >= len(seen.of(ctx.event_id)):
                raise TimeoutError("the notification gateway timed out")
            effects.append(ctx.event_id)

    publisher = Publisher(cluster_redis, source=SOURCE)
    ids = ["flaky", "permit", "payment"]
    async with service.running():
        for model, event_id in zip(MODELS, ids, strict=True):
            await publisher.publish(example(model), id=event_id)
        await wait_until(lambda: len(effects) == 3, timeout=15)
        await wait_until(lambda: all_settled(cluster_redis), timeout=10)
        # Redeliver everything: each group reads its streams again from the start.
        for stream in STREAMS:
            await cluster_redis.xgroup_setid(stream, GROUP, "0")
        await publisher.publish(example(CitizenDied, 2), id="sentinel")
        await wait_until(lambda: "sentinel" in effects, timeout=10)
        await wait_until(lambda: all_settled(cluster_redis), timeout=10)
    assert sorted(effects) == sorted([*ids, "sentinel"])  # no effect twice
    assert seen.of("flaky") == [1, 2]  # the failed attempt released its lease
    assert seen.of("permit") == seen.of("payment") == [1]  # redelivered, acked without a call
    for stream, event_id in zip(STREAMS, ids, strict=True):
        assert await cluster_redis.get(keys.done(stream, GROUP, event_id)) == b"done"


async def test_a_restarted_replica_drains_its_own_pending_entries_on_every_master(
    cluster: EmbeddedCluster, cluster_redis: Redis
) -> None:
    seen = Seen()
    # Nobody claims an entry idle for less than a minute: only the drain can deliver them.
    settings = quick_settings(cluster.url, consumer="pod-0", claim_idle_ms=60_000)
    first = Service(GROUP, settings=settings)
    recording(first, seen)
    publisher = Publisher(cluster_redis, source=SOURCE)
    async with first.running():  # creates the groups, as a first deployment does
        await publisher.publish(example(CitizenDied), id="first-run")
        await wait_until(lambda: "first-run" in seen.ids(), timeout=10)
    # "pod-0" reads a batch from every stream and dies before handling it.
    for model in MODELS:
        await publisher.publish(example(model, 1), id=f"crashed-{model.__name__}")
    for stream in STREAMS:
        assert await cluster_redis.xreadgroup(GROUP, "pod-0", {stream: ">"}, count=10)
        assert await pending(cluster_redis, stream) == 1
    restarted = Service(GROUP, settings=settings)
    recording(restarted, seen)
    async with restarted.running():
        await wait_until(lambda: all_settled(cluster_redis), timeout=10)
    crashed = {call for call in seen.calls if call[0].startswith("crashed-")}
    assert {(eid, delivery, consumer) for eid, _, delivery, consumer in crashed} == {
        (f"crashed-{m.__name__}", 2, "pod-0") for m in MODELS
    }
