"""Naming and finding streams: aggregate stream keys, their consumer groups, and the errors for
neither.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, cast

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ResponseError

from bus import keys
from bus.connection import TRANSIENT, is_cluster, simpul_error
from bus.decoding import text as _text
from bus.errors import ConfigurationError, SimpulError

__all__ = [
    "UnknownGroup",
    "UnknownStream",
    "group_names",
    "resolve_stream",
    "scan",
    "stream_exists",
    "stream_key",
    "stream_keys",
]

_STREAM_PREFIX = f"{keys.PREFIX}:{{"


class UnknownStream(SimpulError):
    """No such stream, and no dead letters of it either."""


class UnknownGroup(SimpulError):
    """No such consumer group on the stream, and no dead letters of it either."""


def stream_key(name: str) -> str:
    """``dukcapil.citizen``, ``dukcapil.citizen.p3`` (a partition) or either key -> the key."""
    key = keys.stream_named(name)
    if key is not None:
        return key
    raise ConfigurationError(
        f"{name!r} is not a stream: give an aggregate (dukcapil.citizen) "
        "or a stream key (simpul:{dukcapil.citizen})"
    )


async def group_names(redis: Redis, stream: str) -> list[str]:
    """The consumer groups of ``stream`` (empty when the stream does not exist)."""
    return [info["name"].decode() for info in await _groups(redis, stream)]


async def _groups(redis: Redis, stream: str) -> list[dict[str, Any]]:
    try:
        groups: list[dict[str, Any]] = await redis.xinfo_groups(stream)
        return groups
    except ResponseError as exc:
        if "no such key" in str(exc).lower():
            return []
        raise


def _is_aggregate_stream(key: str) -> bool:
    inner = key[len(_STREAM_PREFIX) : -1]
    return (
        key.startswith(_STREAM_PREFIX)
        and key.endswith("}")
        and bool(inner)
        and not any(c in inner for c in "{}")
    )


def resolve_stream(name: str) -> str:
    """``dukcapil.citizen``, ``dukcapil.citizen.died.v1`` or ``simpul:{dukcapil.citizen}`` ->
    the stream key. Raises ConfigurationError for anything else."""
    if _is_aggregate_stream(name):
        return name
    if keys.TYPE_PATTERN.match(name):
        aggregate = keys.aggregate_of(name)
        if keys.partitions(aggregate) > 1:
            raise ConfigurationError(
                f"{name} is partitioned ({keys.partitions(aggregate)} partitions): give one "
                f"partition, e.g. {aggregate}.p0"
            )
        return keys.stream_of(name)
    key = keys.stream_named(name)
    if key is not None:
        return key
    raise ConfigurationError(
        f"{name[:80]!r} is not a stream: give the aggregate (dukcapil.citizen), "
        "an event type (dukcapil.citizen.died.v1) or the key (simpul:{dukcapil.citizen})"
    )


async def stream_keys(redis: Redis, *, scan_count: int = 1000) -> list[str]:
    """Every aggregate stream key in Redis, sorted (one SCAN of the keyspace)."""
    found: set[str] = set()
    try:
        async for batch in scan(redis, f"{_STREAM_PREFIX}*}}", scan_count):
            found.update(k for k in map(_text, batch) if _is_aggregate_stream(k))
    except (ResponseError, *TRANSIENT) as exc:
        raise simpul_error(exc) from None
    return sorted(found)


async def scan(
    redis: Redis, match: str, count: int, *, kind: str = "stream"
) -> AsyncIterator[list[Any]]:
    """Each reply of ``SCAN MATCH match TYPE kind`` until the keyspace is walked: on a
    cluster, that of every master in turn (a key lives on the master of its slot). The one way
    operator tooling discovers keys: streams, dead letters, adapter reports."""
    if not is_cluster(redis):
        cursor = 0
        while True:
            cursor, batch = await redis.scan(cursor, match=match, count=count, _type=kind)
            yield batch
            if cursor == 0:
                return
    cluster = cast(RedisCluster, redis)
    await cluster.initialize()  # learns the masters on first use
    for node in cluster.get_primaries():
        at = 0
        while True:
            # A cluster's SCAN answers per node: ({node name: cursor}, keys).
            reply: Any = await cluster.scan(
                at, match=match, count=count, _type=kind, target_nodes=node
            )
            cursors, batch = reply
            yield batch
            at = cursors[node.name]
            if at == 0:
                break


async def stream_exists(redis: Redis, stream: str) -> bool:
    """True if ``stream`` is a stream key in Redis."""
    try:
        return bool(await redis.type(stream) == b"stream")
    except (ResponseError, *TRANSIENT) as exc:
        raise simpul_error(exc) from None
