"""Graceful shutdown finishes the handlers in flight and acks them."""

from __future__ import annotations

import asyncio
import time

from redis.asyncio import Redis

from bus import EventContext, Publisher, Service
from bus.settings import Settings
from bus.testing import quick_settings, wait_until
from schemas.dukcapil import CitizenDied
from tests.bus.delivery.helpers import (
    GROUP,
    Calls,
    dead_letters,
    died,
    pending,
    recording_service,
)


def held_service(
    settings: Settings,
    calls: Calls,
    started: asyncio.Event,
    release: asyncio.Event,
    *,
    fail_first: bool = False,
) -> Service:
    """Its handler (optionally failing its first delivery) waits for ``release`` and records."""
    service = Service(GROUP, settings=settings)

    @service.on(CitizenDied)
    async def held(event: CitizenDied, ctx: EventContext) -> None:
        if fail_first and ctx.delivery == 1:
            raise ConnectionError("the registry API is down")
        started.set()
        await release.wait()
        calls.record(ctx)

    return service


async def _leave_while_handler_runs(
    service: Service,
    publisher: Publisher,
    event_id: str,
    started: asyncio.Event,
    release: asyncio.Event,
) -> None:
    async with service.running():
        await publisher.publish(died(), id=event_id)
        await asyncio.wait_for(started.wait(), 15)
        # Release the handler only once shutdown has begun (the block below exits first).
        asyncio.get_running_loop().call_later(0.5, release.set)


async def test_shutdown_lets_the_running_handler_finish_and_acks_it(
    redis: Redis, settings: Settings, publisher: Publisher
) -> None:
    calls, started, release = Calls(), asyncio.Event(), asyncio.Event()
    service = held_service(settings, calls, started, release)
    await _leave_while_handler_runs(service, publisher, "inflight-1", started, release)
    assert calls.of("inflight-1") == [1]
    assert await pending(redis) == 0
    assert await dead_letters(redis) == []


async def test_shutdown_lets_a_retry_in_flight_finish_and_acks_it(
    redis: Redis, settings: Settings, publisher: Publisher
) -> None:
    """The second delivery of a failed event runs in the reclaim sweep; shutdown must wait for it
    just as for a handler of the read loop, not cancel it half-way."""
    calls, started, release = Calls(), asyncio.Event(), asyncio.Event()
    service = held_service(settings, calls, started, release, fail_first=True)
    await _leave_while_handler_runs(service, publisher, "inflight-retry", started, release)
    assert calls.of("inflight-retry") == [2], "the retry was cancelled by the shutdown"
    assert await pending(redis) == 0


async def test_leaving_right_after_entering_stops_promptly(redis: Redis, redis_url: str) -> None:
    """Nothing is in flight, so stopping must not wait out the shutdown grace period (and then
    cancel a consumer that never heard it was asked to stop)."""
    settings = quick_settings(redis_url, consumer="prompt-1", shutdown_grace_s=4.0)
    service = recording_service(settings, Calls())
    began = time.monotonic()
    async with service.running():
        pass
    elapsed = time.monotonic() - began
    assert elapsed < 2.0, f"stopping an idle service took {elapsed:.1f} s"


async def test_entries_of_a_batch_left_at_shutdown_come_back_as_their_first_delivery(
    redis: Redis, settings: Settings, publisher: Publisher
) -> None:
    """The read counted a delivery for every entry of the batch; those no handler started
    must not have spent an attempt when another replica (here: the same, restarted) runs them."""
    calls, started, release = Calls(), asyncio.Event(), asyncio.Event()
    service = held_service(settings, calls, started, release)
    for n in range(3):  # one batch: the first holds the handler, two wait behind it
        await publisher.publish(died(), id=f"batch-{n}")
    await _leave_while_handler_runs(service, publisher, "batch-0", started, release)
    assert calls.of("batch-0") == [1] and await pending(redis) == 2
    release.clear()
    calls_after = Calls()
    again = recording_service(settings, calls_after)
    async with again.running():
        await wait_until(lambda: len(calls_after.seen) == 2, timeout=20)
    assert calls_after.of("batch-1") == calls_after.of("batch-2") == [1]
