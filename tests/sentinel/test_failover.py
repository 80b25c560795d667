"""Clients made by connect() follow the master the Sentinels name, without a restart."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
from redis import Redis as SyncRedis

from bus import EventContext, Publisher, RedisUnavailable, Service, functions
from bus.connection import TRANSIENT, connect
from bus.local.sentinel import EmbeddedSentinelGroup
from bus.sentinel import RedisSentinels
from bus.testing import quick_settings
from schemas.dukcapil import CitizenDied
from tests.chaos.producer import died

pytestmark = pytest.mark.slow
SOURCE = "urn:malangkota:dukcapil:siak"
STREAM = CitizenDied.__contract__.stream


async def publish_until_ok(publisher: Publisher, n: int, limit_s: float = 20.0) -> float:
    """Seconds until the publish of event ``n`` returned (retrying as adapters do)."""
    started = time.monotonic()
    while True:
        try:
            await publisher.publish(died(n), id=f"e-{n}")
            return time.monotonic() - started
        except (*TRANSIENT, RedisUnavailable):
            assert time.monotonic() - started < limit_s, "no master took the publish in time"
            await asyncio.sleep(0.05)


async def test_a_publisher_follows_a_coordinated_failover(group: EmbeddedSentinelGroup) -> None:
    redis = connect(group.url)
    try:
        publisher = Publisher(redis, source=SOURCE, signer=None)
        await publish_until_ok(publisher, 1)
        old = group.master()
        new = await asyncio.to_thread(group.failover)
        assert new is not old
        await publish_until_ok(publisher, 2)
        with SyncRedis(new.host, new.port) as master:
            assert master.xlen(STREAM) == 2  # both: a coordinated failover loses nothing
            # The library was loaded on the first master only (a replica refuses FUNCTION LOAD):
            # the promoted replica has it by replication, and the publish above ran it.
            [library] = master.function_list()
            assert dict(zip(library[::2], library[1::2], strict=True))[b"library_name"] == (
                functions.LIBRARY.encode()
            )
    finally:
        await redis.aclose()


async def test_a_publisher_follows_the_master_after_it_is_killed(
    group: EmbeddedSentinelGroup,
) -> None:
    redis = connect(group.url)
    try:
        publisher = Publisher(redis, source=SOURCE, signer=None)
        await publish_until_ok(publisher, 1)  # confirmed by a replica: survives the kill
        old = group.master()
        old.kill()
        took = await publish_until_ok(publisher, 2)
        new = group.master()
        assert new is not old
        print(f"SIGKILL of the master to the next publish returning: {took:.2f} s")
        with SyncRedis(new.host, new.port) as master:
            assert master.xlen(STREAM) == 2
    finally:
        await redis.aclose()


async def test_a_service_given_sentinels_in_code_consumes_through_a_failover(
    group: EmbeddedSentinelGroup, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SIMPUL_REDIS_SENTINELS")  # only the Settings object names them
    settings = quick_settings(group.url, redis_sentinels=group.sentinel_addresses)
    service = Service("dinsos", settings=settings)
    seen: list[str] = []

    @service.on(CitizenDied)
    async def record(event: CitizenDied, ctx: EventContext) -> None:
        seen.append(ctx.event_id)

    redis = connect(group.url, sentinels=RedisSentinels.parse(group.sentinel_addresses))
    try:
        publisher = Publisher(redis, source=SOURCE, signer=None)
        async with service.running():
            await publish_until_ok(publisher, 1)
            await wait_until(lambda: "e-1" in seen)
            await asyncio.to_thread(group.failover)
            await publish_until_ok(publisher, 2)
            await wait_until(lambda: "e-2" in seen, timeout=20)
    finally:
        await redis.aclose()


async def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)
