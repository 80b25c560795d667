"""Transient failures are retried with the delivery count; exhausted ones become dead letters."""

from __future__ import annotations

import asyncio
import time

from redis.asyncio import Redis

from bus import EventContext, GiveUp, Publisher, Retry, Service
from bus.deadletter import Reason, original_fields
from bus.testing import capture_logs, quick_settings, wait_until
from schemas.dukcapil import CitizenDied
from tests.bus.delivery.helpers import (
    DLQ,
    GROUP,
    STREAM,
    Calls,
    as_bytes,
    barrier,
    dead_letters,
    died,
    fields_of,
    pending,
    text,
    wait_dead_letters,
    wait_pending,
)


def failing_service(
    redis_url: str, calls: Calls, *, failures: int, max_deliveries: int = 5
) -> Service:
    """Its handler raises ValueError on the first ``failures`` calls of events named 'bad-*'."""
    settings = quick_settings(redis_url, consumer="retry-1", max_deliveries=max_deliveries)
    service = Service(GROUP, settings=settings)

    @service.on(CitizenDied)
    async def flaky(event: CitizenDied, ctx: EventContext) -> None:
        calls.record(ctx)
        if ctx.event_id.startswith("bad-") and len(calls.of(ctx.event_id)) <= failures:
            raise ValueError(f"temporary failure number {len(calls.of(ctx.event_id))}")

    return service


async def test_failing_handler_is_retried_until_it_succeeds(
    redis: Redis, redis_url: str, publisher: Publisher
) -> None:
    calls = Calls()
    async with failing_service(redis_url, calls, failures=2).running():
        await publisher.publish(died(), id="bad-twice")
        await wait_until(lambda: len(calls.of("bad-twice")) >= 3, timeout=20)
        await wait_pending(redis, 0)
        await barrier(publisher, calls, "retry-sentinel")
    assert calls.of("bad-twice") == [1, 2, 3]
    assert await pending(redis) == 0
    assert await redis.exists(DLQ) == 0


async def test_always_failing_handler_is_dead_lettered_after_max_deliveries(
    redis: Redis, redis_url: str, publisher: Publisher
) -> None:
    calls = Calls()
    original = fields_of(died(), "bad-always", subject="citizen-key-1", correlationid="corr-1")
    async with failing_service(redis_url, calls, failures=1_000, max_deliveries=3).running():
        entry_id = (await redis.xadd(STREAM, original)).decode()
        [dead] = await wait_dead_letters(redis, 1, timeout=30)
        await wait_pending(redis, 0)
        await barrier(publisher, calls, "dlq-sentinel")
    assert calls.of("bad-always") == [1, 2, 3]
    assert text(dead, "dlq.reason") == Reason.HANDLER_FAILED == "handler_failed"
    assert text(dead, "dlq.attempts") == "3"
    assert "ValueError" in text(dead, "dlq.error")
    assert text(dead, "dlq.group") == GROUP
    assert text(dead, "dlq.consumer") == "retry-1"
    assert text(dead, "dlq.entry") == entry_id
    assert text(dead, "dlq.stream") == STREAM
    assert text(dead, "dlq.time")
    assert original_fields(dead) == as_bytes(original)
    assert list(original_fields(dead)) == list(as_bytes(original))  # same order too
    assert await pending(redis) == 0
    assert len(await dead_letters(redis)) == 1


async def test_two_replicas_count_each_attempt_once_and_dead_letter_with_the_handler_error(
    redis: Redis, redis_url: str, publisher: Publisher
) -> None:
    """Each replica's sweep lists idle entries, then claims them one by one while a slow
    handler runs: the number a handler sees must come from its own claim, not from the list."""
    calls = Calls()

    def slow_failing(consumer: str) -> Service:
        settings = quick_settings(redis_url, consumer=consumer, max_deliveries=3)
        service = Service(GROUP, settings=settings)

        @service.on(CitizenDied)
        async def fail(event: CitizenDied, ctx: EventContext) -> None:
            calls.record(ctx)
            await asyncio.sleep(0.15)  # the handler's own work, before it fails
            raise ValueError("the archive refused the record")

        return service

    ids = [f"slow-{n}" for n in range(20)]
    async with slow_failing("count-1").running(), slow_failing("count-2").running():
        for eid in ids:
            await publisher.publish(died(), id=eid)
        letters = await wait_dead_letters(redis, len(ids), timeout=60)
    assert {eid: calls.of(eid) for eid in ids} == {eid: [1, 2, 3] for eid in ids}
    assert {text(d, "dlq.reason") for d in letters} == {Reason.HANDLER_FAILED.value}
    assert all("the archive refused the record" in text(d, "dlq.error") for d in letters)
    assert all(text(d, "dlq.attempts") == "3" for d in letters)


async def test_a_handler_that_raises_retry_after_is_called_again_no_sooner(
    redis: Redis, redis_url: str, publisher: Publisher
) -> None:
    calls, times = Calls(), list[float]()
    service = Service(GROUP, settings=quick_settings(redis_url, consumer="retry-after"))

    @service.on(CitizenDied)
    async def later(event: CitizenDied, ctx: EventContext) -> None:
        calls.record(ctx)
        times.append(time.monotonic())
        if ctx.delivery == 1:
            raise Retry("the registry asks us to come back later", after=0.6)

    with capture_logs() as logs:
        async with service.running():
            await publisher.publish(died(), id="later")
            await wait_until(lambda: len(calls.of("later")) == 2, timeout=20)
            await wait_pending(redis, 0)
    assert calls.of("later") == [1, 2]  # an attempt like any other
    assert times[1] - times[0] >= 0.6 - 0.01  # the retry backoff alone is 50 ms
    [asked] = [log for log in logs if log["event"] == "handler_failed"]
    assert asked["error_type"] == "Retry" and asked["retry_in_ms"] == 600


async def test_a_handler_that_raises_give_up_is_dead_lettered_at_once(
    redis: Redis, redis_url: str, publisher: Publisher
) -> None:
    calls = Calls()
    service = Service(GROUP, settings=quick_settings(redis_url, consumer="give-up"))

    @service.on(CitizenDied)
    async def hopeless(event: CitizenDied, ctx: EventContext) -> None:
        calls.record(ctx)
        raise GiveUp("the grant this death suspends was closed in 2019")

    async with service.running():
        await publisher.publish(died(), id="hopeless")
        [letter] = await wait_dead_letters(redis, 1)
        await wait_pending(redis, 0)
    assert calls.of("hopeless") == [1]  # max_deliveries is 5: none of the rest was spent
    assert text(letter, "dlq.reason") == Reason.GIVEN_UP == "given_up"
    assert text(letter, "dlq.error") == "the grant this death suspends was closed in 2019"
    assert text(letter, "dlq.attempts") == "1"


async def test_the_sweep_claims_an_idle_entry_only_when_its_handler_can_run_at_once(
    redis: Redis, redis_url: str, publisher: Publisher
) -> None:
    """A claim counts a delivery: made while the consumer's own batch still holds it, the entry
    would sit claimed, counted and unhandled, for another replica to claim again (a handler
    seeing deliveries 1 then 3). The sweep claims under the consumer's batch lock instead."""
    calls, release = Calls(), asyncio.Event()
    service = Service(GROUP, settings=quick_settings(redis_url, consumer="busy"))

    @service.on(CitizenDied)
    async def handle(event: CitizenDied, ctx: EventContext) -> None:
        calls.record(ctx)
        if ctx.event_id == "long":
            await release.wait()  # the consumer's batch, holding its lock

    await redis.xgroup_create(STREAM, GROUP, "$", mkstream=True)
    await publisher.publish(died(), id="orphan")
    [[_, [(orphan, _)]]] = await redis.xreadgroup(GROUP, "gone", {STREAM: ">"})  # died with it
    await publisher.publish(died(), id="long")
    async with service.running():
        await wait_until(lambda: calls.of("long") == [1], timeout=10)
        await asyncio.sleep(2.5)  # the orphan idle past claim_idle_ms (1 s), swept every 50 ms
        [row] = await redis.xpending_range(STREAM, GROUP, min=orphan, max=orphan, count=1)
        assert (row["consumer"], row["times_delivered"]) == (b"gone", 1)  # not claimed yet
        release.set()
        await wait_until(lambda: calls.of("orphan") == [2], timeout=10)
        await wait_pending(redis, 0)
    assert calls.of("orphan") == [2] and calls.of("long") == [1]
