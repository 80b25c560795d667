"""Adapter checkpoints in Redis: the source position after the last batch known to be published.

The checkpoint lives in the same Redis as the streams, written after the batch's publish
returned. Redis applies (and its AOF replays) commands in order, so even a Redis that loses its
last second of writes loses the checkpoint together with, or before, the entries it covers: it
may lag behind the stream, never run ahead of it. Replication keeps that order too: a replica
holding the checkpoint holds the entries before it. With replicas, a save returns only once
they confirmed it (bus.durability), so a failover does not send the adapter back to re-read
what it had already published (a re-read would only publish duplicates, which are no-ops).
"""

from __future__ import annotations

import json

from redis.asyncio import Redis

from bus import keys
from bus.adapter.records import Position
from bus.durability import Durability, ReplicaWait
from bus.errors import ConfigurationError

__all__ = ["RedisCheckpoints"]


class RedisCheckpoints:
    """A :class:`bus.adapter.CheckpointStore` keeping each position as JSON text in a key."""

    def __init__(self, redis: Redis, durability: Durability | None = None) -> None:
        self.redis = redis
        self.replicas = ReplicaWait(redis, durability)

    async def load(self, adapter: str) -> Position:
        raw = await self.redis.get(keys.checkpoint(adapter))
        if raw is None:
            return None
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise ConfigurationError(
                f"checkpoint {keys.checkpoint(adapter)} is not JSON ({exc}); inspect it, then "
                "delete the key to backfill from the start (publishing is idempotent)"
            ) from exc

    async def save(self, adapter: str, position: Position) -> None:
        try:
            text = json.dumps(position, separators=(",", ":"))
        except TypeError as exc:
            raise ConfigurationError(
                f"the source gave a position that is not JSON-serialisable: {exc}"
            ) from exc
        key = keys.checkpoint(adapter)
        if not await self.replicas.required():
            await self.redis.set(key, text)
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(key, text)
            waits = self.replicas.add(pipe, [key])
            _, confirmed = await pipe.execute()
        self.replicas.confirm(waits, [confirmed], f"the checkpoint of adapter {adapter}")

    async def reset(self, adapter: str) -> None:
        """Forget the position: the next run starts from the beginning (and publishes only
        what is not already in the streams)."""
        await self.redis.delete(keys.checkpoint(adapter))
