"""Naming and finding streams: aggregate stream keys, their consumer groups, the errors for
neither, and where dead letters live (department streams', inboxes' and intakes').
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
    "dead_letter_key",
    "dead_letter_keys",
    "group_names",
    "is_within",
    "kind_of",
    "resolve_stream",
    "scan",
    "source_key",
    "split_dead_letter_key",
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


# -- where dead letters live ---------------------------------------------------------------------


def source_key(name: str) -> str:
    """What an operator names -> the key dead letters hang off: a department stream or partition
    (``dukcapil.citizen``, ``dukcapil.citizen.p3`` or the key), an inbox (its key, or
    ``<group>/<dept>.<aggregate>``) or an intake (its key). ConfigurationError otherwise."""
    if keys.is_inbox(name) or keys.intake_owner(name) is not None:
        return name
    group, sep, rest = name.partition("/")
    inner = keys.stream_named(rest) if sep and group else None
    if inner is not None:
        return keys.inbox(inner, group)
    found = keys.stream_named(name)
    if found is not None:
        return found
    raise ConfigurationError(
        f"{name[:80]!r} is not a stream: give an aggregate (dukcapil.citizen), a stream key "
        "(simpul:{dukcapil.citizen}), an inbox (dinsos/dukcapil.citizen or "
        "simpul:inbox:{dinsos/dukcapil.citizen}) or an intake (simpul:intake:{adapter-dukcapil})"
    )


def kind_of(source: str) -> str:
    """``inbox``, ``intake`` or ``stream`` (a department stream or partition)."""
    if keys.is_inbox(source):
        return "inbox"
    return "intake" if keys.intake_owner(source) is not None else "stream"


def dead_letter_key(source: str, group: str) -> str:
    """The dead-letter stream of ``group`` on ``source``; an intake has one, the router's."""
    owner = keys.intake_owner(source)
    if owner is not None:
        return keys.intake_dead_letters(owner)
    return keys.dead_letters(source, group)


def split_dead_letter_key(key: str) -> tuple[str, str] | None:
    """A dead-letter key -> (its source, its group); None for other keys."""
    if key.endswith(":dlq") and keys.intake_owner(key[: -len(":dlq")]) is not None:
        return key[: -len(":dlq")], keys.ROUTER_GROUP
    source, sep, group = key.rpartition(":dlq:")
    if not sep or not group or not (keys.is_stream(source) or keys.is_inbox(source)):
        return None
    return source, group


def _dead_letter_patterns(source: str | None, group: str | None) -> list[str]:
    """SCAN patterns of the dead-letter streams of ``source`` (all if None), of ``group``. A
    department stream's include its inboxes' (routed delivery: that is where its groups are)."""
    g = group or "*"
    intakes = [f"{keys.INTAKES}{{*}}:dlq"] if group in (None, keys.ROUTER_GROUP) else []
    if source is None:
        return [f"{keys.PREFIX}:{{*}}:dlq:{g}", f"{keys.INBOXES}{{*}}:dlq:{g}", *intakes]
    match kind_of(source):
        case "intake":
            return [dead_letter_key(source, keys.ROUTER_GROUP)] if intakes else []
        case "inbox":
            return [f"{source}:dlq:{g}"]
    name = source[len(keys.PREFIX) + 2 : -1]
    return [f"{source}:dlq:{g}", f"{keys.INBOXES}{{{g}/{name}}}:dlq:{g}"]


def is_within(source: str, selected: str | None) -> bool:
    """Whether dead letters of ``source`` are among those of ``selected`` (None: all)."""
    if selected is None or source == selected:
        return True
    found = keys.inbox_of(source)
    return found is not None and found[0] == selected


async def dead_letter_keys(redis: Redis, source: str | None, group: str | None) -> list[str]:
    found: set[str] = set()
    for pattern in _dead_letter_patterns(source, group):
        async for batch in scan(redis, pattern, 1000):
            found.update(map(_text, batch))
    return sorted(found)
