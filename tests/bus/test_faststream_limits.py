"""What FastStream 0.7's own stream subscriber does with a consumer group, on a real Redis: the
reasons of docs/decisions/0002-own-consume-loop.md. If one of these fails after an upgrade,
FastStream changed, and the decision deserves another look."""

from __future__ import annotations

import asyncio

from faststream import FastStream
from faststream.redis import RedisBroker, StreamSub
from redis.asyncio import Redis

from bus.testing import wait_until

STREAM = "test:fs:orders"


async def test_its_group_starts_at_the_end_and_skips_what_the_stream_holds(
    redis_url: str, redis: Redis
) -> None:
    broker = RedisBroker(redis_url, logger=None)  # type: ignore[arg-type]
    seen: list[str] = []

    @broker.subscriber(stream=StreamSub(STREAM, group="g", consumer="c"))
    async def handle(body: dict[str, str]) -> None:
        seen.append(body["n"])

    async with RedisBroker(redis_url, logger=None) as publisher:  # type: ignore[arg-type]
        for n in ("1", "2", "3"):
            await publisher.publish({"n": n}, stream=STREAM)
        async with FastStream(broker, logger=None):
            await wait_until(lambda: _group_exists(redis, "g"))
            await publisher.publish({"n": "4"}, stream=STREAM)
            await wait_until(lambda: seen == ["4"])
            await asyncio.sleep(0.5)
    assert seen == ["4"]  # entries 1-3, there before the group, were never delivered


async def test_a_failed_message_stays_pending_forever_without_a_retry_or_a_dead_letter(
    redis_url: str, redis: Redis
) -> None:
    broker = RedisBroker(redis_url, logger=None)  # type: ignore[arg-type]
    calls: list[str] = []
    await redis.xgroup_create(STREAM, "g", id="0", mkstream=True)

    @broker.subscriber(stream=StreamSub(STREAM, group="g", consumer="c"))
    async def handle(body: dict[str, str]) -> None:
        calls.append(body["n"])
        raise RuntimeError("the department's database is down")

    async with FastStream(broker, logger=None):
        await broker.publish({"n": "1"}, stream=STREAM)
        await wait_until(lambda: calls == ["1"])
        await asyncio.sleep(2.0)  # Simpul would have retried by now (SIMPUL_RETRY_BACKOFF_MS)
    assert calls == ["1"]  # one delivery, no retry
    pending = await redis.xpending(STREAM, "g")
    assert pending["pending"] == 1  # left pending: nothing ever reads it again
    keys = {k.decode() if isinstance(k, bytes) else k for k in await redis.keys("*")}
    assert keys == {STREAM}  # no dead-letter stream, no retry schedule


async def _group_exists(redis: Redis, group: str) -> bool:
    if not await redis.exists(STREAM):
        return False
    return any(g["name"] == group.encode() for g in await redis.xinfo_groups(STREAM))
