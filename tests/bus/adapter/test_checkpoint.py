"""Checkpoints in Redis: JSON positions per adapter, under simpul:checkpoint:<adapter>."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from bus import keys
from bus.adapter.checkpoint import RedisCheckpoints
from bus.errors import ConfigurationError


async def test_a_new_adapter_starts_from_the_beginning(redis: Redis) -> None:
    assert await RedisCheckpoints(redis).load("dukcapil-siak") is None


async def test_positions_round_trip_as_json_per_adapter(redis: Redis) -> None:
    store = RedisCheckpoints(redis)
    await store.save("a", ["2026-11-01T07:00:00.000001+07:00", 42])
    await store.save("b", {"file": "pajak.csv", "line": 7})

    assert await store.load("a") == ["2026-11-01T07:00:00.000001+07:00", 42]
    assert await store.load("b") == {"file": "pajak.csv", "line": 7}
    assert await redis.get("simpul:checkpoint:a") == b'["2026-11-01T07:00:00.000001+07:00",42]'

    await store.reset("a")
    assert await store.load("a") is None


async def test_a_position_that_is_not_json_is_refused_on_save_and_on_load(redis: Redis) -> None:
    store = RedisCheckpoints(redis)
    with pytest.raises(ConfigurationError, match="not JSON-serialisable"):
        await store.save("a", object())
    await redis.set(keys.checkpoint("a"), b"{not json")
    with pytest.raises(ConfigurationError, match="delete the key"):
        await store.load("a")
