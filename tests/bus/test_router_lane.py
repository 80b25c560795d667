"""The router's lanes (bus/router/lane.py): one round trip of queued commands on a connection of
a source's own, with redis-py's semantics for what comes back — on real Redis."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bus.connection import connect
from bus.local.redis import EmbeddedRedis
from bus.router.lane import Lane, open_lane


def _lane(redis: Redis) -> Lane:
    lane = open_lane(redis)
    assert lane is not None
    return lane


async def test_replies_in_order_with_error_replies_in_their_place(redis: Redis) -> None:
    await redis.set("plain", "x")
    lane = _lane(redis)
    try:
        async with lane as pipe:
            pipe.execute_command("XADD", "s", "*", "a", "1")
            pipe.xread({"s": "0"}, count=10, block=None)
            pipe.execute_command("XADD", "plain", "*", "a", "1")  # WRONGTYPE
            pipe.xack("s", "g", "0-1")  # NOGROUP: 0 (XACK of an unknown group is no error)
            pipe.xtrim("s", minid="0-2", approximate=False)
            replies = await pipe.execute(raise_on_error=False)
    finally:
        await lane.close()
    entry_id = replies[0]
    assert isinstance(entry_id, bytes)
    assert replies[1] == {b"s": [[entry_id, [b"a", b"1"]]]}  # RESP3, as connect() speaks it
    assert isinstance(replies[2], ResponseError)
    assert "WRONGTYPE" in str(replies[2])
    assert replies[3] == 0
    assert replies[4] == 0


async def test_a_turn_cut_short_leaves_no_reply_for_the_next(redis: Redis) -> None:
    """A cancellation while a blocking read waits: the connection is closed, so the reply that
    comes later is never taken for the next turn's."""
    lane = _lane(redis)
    try:
        lane.xread({"quiet": "$"}, count=1, block=2_000)
        waiting = asyncio.create_task(lane.execute())
        await asyncio.sleep(0.2)
        waiting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiting
        await redis.xadd("quiet", {"late": "1"})  # would have answered the cut read
        lane.execute_command("PING")
        assert await lane.execute() == [b"PONG"]
    finally:
        await lane.close()


async def test_a_connection_killed_by_the_server_is_an_outage_then_reconnects(
    redis: Redis,
) -> None:
    lane = _lane(redis)
    try:
        lane.execute_command("CLIENT", "SETNAME", "lane-under-test")
        await lane.execute()
        await redis.execute_command("CLIENT", "KILL", "SKIPME", "yes")  # every other client
        lane.execute_command("PING")
        with pytest.raises(RedisConnectionError):
            await lane.execute()
        lane.execute_command("PING")
        assert await lane.execute() == [b"PONG"]
    finally:
        await lane.close()


async def test_no_reply_within_the_socket_timeout_is_an_outage(redis_url: str) -> None:
    client = connect(redis_url, block_ms=100)  # socket timeout: block + 5 s
    client.connection_pool.connection_kwargs["socket_timeout"] = 0.3
    lane = _lane(client)
    try:
        lane.xread({"quiet": "$"}, count=1, block=5_000)
        with pytest.raises(RedisTimeoutError):
            await lane.execute()
        lane.execute_command("PING")
        assert await lane.execute() == [b"PONG"]  # a fresh connection: the late reply is gone
    finally:
        await lane.close()
        await client.aclose()


async def test_a_replica_is_an_outage_until_the_master_answers(
    private_redis: EmbeddedRedis, redis_url: str
) -> None:
    """READONLY (the old master after a failover) closes the connection and raises the
    connection error redis-py raises for it behind Sentinels: the next turn reconnects."""
    client = connect(private_redis.url)
    admin = connect(private_redis.url)
    primary = connect(redis_url)
    lane = _lane(client)
    try:
        host, port = (
            primary.connection_pool.connection_kwargs["host"],
            primary.connection_pool.connection_kwargs["port"],
        )
        await admin.execute_command("REPLICAOF", host, port)
        lane.execute_command("XADD", "s", "*", "a", "1")
        with pytest.raises(RedisConnectionError, match="READONLY"):
            await lane.execute()
        await admin.execute_command("REPLICAOF", "NO", "ONE")
        lane.execute_command("XADD", "s", "*", "a", "1")
        (entry_id,) = await lane.execute()
        assert isinstance(entry_id, bytes)
    finally:
        await lane.close()
        with contextlib.suppress(Exception):
            await admin.execute_command("REPLICAOF", "NO", "ONE")
        for c in (client, admin, primary):
            await c.aclose()


async def test_a_push_message_is_no_commands_reply(redis: Redis) -> None:
    """RESP3 pushes (here: client-side caching's invalidation) are skipped, as redis-py's
    parser skips them: the next turn's replies stay its own."""
    lane = _lane(redis)
    try:
        lane.execute_command("CLIENT", "TRACKING", "ON")
        lane.execute_command("GET", "tracked")
        assert await lane.execute() == [b"OK", None]
        await redis.set("tracked", "changed")  # invalidates the lane's connection's key
        await asyncio.sleep(0.1)
        lane.execute_command("PING")
        assert await lane.execute() == [b"PONG"]
    finally:
        await lane.close()
