"""Redis restarts (AOF, appendfsync always): nothing acknowledged is lost, the loop recovers."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from bus import EventContext, Publisher, Service, event_id
from bus.connection import connect
from bus.local.redis import EmbeddedRedis
from bus.testing import quick_settings, wait_until
from schemas.dukcapil import CitizenDied
from tests.bus.delivery.helpers import GROUP, SOURCE, died, publish_retrying, surviving

pytestmark = pytest.mark.slow


def crash_and_restart(server: EmbeddedRedis, down_s: float = 0.3) -> None:
    server.kill()  # SIGKILL: only what appendfsync always wrote survives
    time.sleep(down_s)
    server.restart()


@contextlib.asynccontextmanager
async def client(url: str) -> AsyncIterator[Redis]:
    redis = connect(url)
    try:
        yield redis
    finally:
        await redis.aclose()


async def test_restart_while_publishing_and_consuming_loses_nothing(
    private_redis: EmbeddedRedis,
) -> None:
    handled: set[str] = set()
    returned: list[str] = []
    snapshots: list[dict[str, object]] = []
    service = Service(GROUP, settings=quick_settings(private_redis.url, consumer="restart-1"))

    @service.on(CitizenDied)
    async def record(event: CitizenDied, ctx: EventContext) -> None:
        handled.add(ctx.event_id)

    async def publish_all(publisher: Publisher) -> None:
        for i in range(300):
            eid = event_id(SOURCE, "restart-test", i)
            await publish_retrying(publisher, eid)
            returned.append(eid)
            await asyncio.sleep(0.002)  # spread over time, so the restart lands mid-way

    async def watch() -> None:
        while True:
            snapshots.append(service.health.snapshot())
            await asyncio.sleep(0.01)

    async with client(private_redis.url) as redis, surviving(service):
        watcher = asyncio.create_task(watch())
        publishing = asyncio.create_task(publish_all(Publisher(redis, source=SOURCE)))
        await wait_until(lambda: len(returned) >= 100, timeout=30)
        await asyncio.to_thread(crash_and_restart, private_redis)
        await asyncio.wait_for(publishing, 60)
        await wait_until(lambda: set(returned) <= handled or not service.health.running, timeout=60)
        assert service.health.running, f"the consumer loop died: {service.health.snapshot()}"
        await wait_until(
            lambda: service.health.ready and service.health.last_error is None, timeout=30
        )
        watcher.cancel()
    assert len(returned) == 300
    assert set(returned) <= handled, f"{len(set(returned) - handled)} acknowledged publishes lost"
    assert any(s["last_error"] for s in snapshots), "the consumer never noticed the outage"
    assert snapshots[-1]["ready"] is True


async def test_outage_while_a_once_handler_runs_does_not_kill_the_consumer(
    private_redis: EmbeddedRedis,
) -> None:
    """The dedupe helper's own Redis calls (begin/finish/abandon) fail like any other during an
    outage; the loop must survive them as it survives a failed poll or ack."""
    started, release, seen = asyncio.Event(), asyncio.Event(), []
    service = Service(GROUP, settings=quick_settings(private_redis.url, consumer="once-1"))

    @service.on(CitizenDied, once=True)
    async def effect(event: CitizenDied, ctx: EventContext) -> None:
        seen.append(ctx.event_id)
        if ctx.event_id == "held" and ctx.delivery == 1:
            started.set()
            await release.wait()

    async with client(private_redis.url) as redis, surviving(service):
        publisher = Publisher(redis, source=SOURCE)
        await publisher.publish(died(), id="held")
        await asyncio.wait_for(started.wait(), 15)
        await asyncio.to_thread(private_redis.kill)
        release.set()  # the handler returns while Redis is down
        await wait_until(
            lambda: service.health.last_error or not service.health.running, timeout=20
        )
        await asyncio.to_thread(private_redis.restart)
        await publish_retrying(publisher, "after-outage")
        await wait_until(lambda: "after-outage" in seen or not service.health.running, timeout=30)
        assert service.health.running, f"the consumer loop died: {service.health.snapshot()}"
        await wait_until(lambda: "after-outage" in seen, timeout=30)
