"""At-least-once: an entry is acked only after its handler returned."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from bus import EventContext, Publisher, Service
from bus.settings import Settings
from bus.testing import wait_until
from schemas.dukcapil import CitizenDied
from tests.bus.delivery.helpers import (
    GROUP,
    STREAM,
    Calls,
    barrier,
    dead_letters,
    died,
    pending,
    recording_service,
    wait_pending,
)


async def test_handled_event_is_acked_and_seen_once(
    redis: Redis, settings: Settings, publisher: Publisher
) -> None:
    calls = Calls()
    service = recording_service(settings, calls)
    async with service.running():
        await publisher.publish(died(), id="ack-1")
        await wait_until(lambda: "ack-1" in calls.ids())
        await wait_pending(redis, 0)
        await barrier(publisher, calls, "ack-sentinel")
    assert calls.of("ack-1") == [1]
    assert await pending(redis) == 0
    assert await dead_letters(redis) == []


async def test_entry_stays_pending_while_its_handler_runs(
    redis: Redis, settings: Settings, publisher: Publisher
) -> None:
    started, release = asyncio.Event(), asyncio.Event()
    calls = Calls()
    service = Service(GROUP, settings=settings)

    @service.on(CitizenDied)
    async def slow(event: CitizenDied, ctx: EventContext) -> None:
        started.set()
        await release.wait()
        calls.record(ctx)

    async with service.running():
        published = await publisher.publish(died(), id="held-1")
        await asyncio.wait_for(started.wait(), 15)
        rows = await redis.xpending_range(STREAM, GROUP, min="-", max="+", count=10)
        assert [(r["message_id"].decode(), r["consumer"].decode()) for r in rows] == [
            (published.entry_id, settings.consumer)
        ]
        assert rows[0]["times_delivered"] == 1
        release.set()
        await wait_pending(redis, 0)
    assert calls.of("held-1") == [1]
