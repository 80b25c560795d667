"""Every Redis key Simpul uses is built here, and nowhere else.

All keys of one aggregate share the hash tag ``{<dept>.<aggregate>}`` so that the stream, its
dead letters and its dedupe keys live on one Redis Cluster slot: moving an entry to dead
letters and acking it, or checking a dedupe key and adding the entry, can then be one atomic
script. The layout is part of wire format v1 (docs/wire-format.md); changing it is a breaking
change for every non-Python adapter.
"""

from __future__ import annotations

import functools
import re
import zlib

PREFIX = "simpul"

# <dept>.<aggregate>.<past-tense-verb>.v<major>; lowercase ASCII, words joined by "_" or "-".
_SEGMENT = r"[a-z][a-z0-9_-]*"
TYPE_PATTERN = re.compile(rf"^({_SEGMENT})\.({_SEGMENT})\.({_SEGMENT})\.v([1-9][0-9]*)$")


@functools.lru_cache(maxsize=1024)  # few types; bounded, as junk entries can invent many
@functools.lru_cache(maxsize=4096)  # a few dozen types; asked several times per event
def aggregate_of(event_type: str) -> str:
    """``dukcapil.citizen.died.v1`` -> ``dukcapil.citizen``. Raises ValueError on a bad type."""
    match = TYPE_PATTERN.match(event_type)
    if match is None:
        raise ValueError(
            f"event type {event_type!r} is not of the form <dept>.<aggregate>.<verb>.v<major> "
            "(lowercase, e.g. 'dukcapil.citizen.died.v1')"
        )
    return f"{match[1]}.{match[2]}"


def stream(aggregate: str) -> str:
    """The stream of an aggregate: ``simpul:{dukcapil.citizen}``."""
    return f"{PREFIX}:{{{aggregate}}}"


# Partitioned aggregates: name -> number of partitions, declared by their contracts
# (``Contract, partitions=N``) when the contracts module is imported. Every process that
# publishes or consumes the aggregate imports its contracts, so all agree on the count.
_PARTITIONS: dict[str, int] = {}
MAX_PARTITIONS = 1024


def declare_partitions(aggregate: str, count: int) -> None:
    """Record that ``aggregate`` is split into ``count`` partition streams (1: not split)."""
    if not isinstance(count, int) or not 1 <= count <= MAX_PARTITIONS:
        raise ValueError(f"partitions must be an integer from 1 to {MAX_PARTITIONS}, got {count!r}")
    known = _PARTITIONS.get(aggregate, count)
    if known != count:
        raise ValueError(
            f"aggregate {aggregate!r} is declared with {known} partitions by another contract "
            f"and {count} here: every type of an aggregate shares its streams"
        )
    _PARTITIONS[aggregate] = count


def partitions(aggregate: str) -> int:
    """How many partition streams ``aggregate`` has (1: one plain stream)."""
    return _PARTITIONS.get(aggregate, 1)


def partition_stream(aggregate: str, partition: int) -> str:
    """Partition ``partition`` of an aggregate: ``simpul:{dukcapil.citizen.p3}`` (a third
    segment no aggregate name can have). Its own hash tag, so the partitions of one aggregate
    spread over a cluster's slots, each with its own dead letters and markers."""
    return f"{PREFIX}:{{{aggregate}.p{partition}}}"


def partition_of(subject: str, count: int) -> int:
    """The partition of a subject: CRC-32 (ISO-HDLC, as zlib, PHP's ``crc32()`` and Java's
    ``java.util.zip.CRC32``) of its UTF-8 bytes, modulo ``count``."""
    return zlib.crc32(subject.encode()) % count


def streams(aggregate: str) -> list[str]:
    """Every stream key of ``aggregate``: the plain stream, or each partition in order."""
    count = partitions(aggregate)
    if count == 1:
        return [stream(aggregate)]
    return [partition_stream(aggregate, p) for p in range(count)]


def stream_of(event_type: str, subject: str | None = None) -> str:
    """The stream an event of ``event_type`` goes to: its aggregate's stream, or on a
    partitioned aggregate the partition of ``subject`` (ValueError without one)."""
    aggregate = aggregate_of(event_type)
    count = partitions(aggregate)
    if count == 1:
        return stream(aggregate)
    if not subject:
        raise ValueError(
            f"{event_type} needs a subject: {aggregate} is partitioned by subject "
            f"({count} partitions), and the subject picks the partition"
        )
    return partition_stream(aggregate, partition_of(subject, count))


_STREAM_NAME = re.compile(rf"^({_SEGMENT})\.({_SEGMENT})(?:\.p(0|[1-9][0-9]*))?$")


def stream_named(name: str) -> str | None:
    """The stream key an operator means: an aggregate (``dukcapil.citizen``), one partition of
    it (``dukcapil.citizen.p3``) or either key as it is; None for anything else."""
    if is_stream(name):
        name = name[len(PREFIX) + 2 : -1]
    match = _STREAM_NAME.match(name)
    if match is None:
        return None
    aggregate = f"{match[1]}.{match[2]}"
    if match[3] is None:
        return stream(aggregate)
    return partition_stream(aggregate, int(match[3]))


def aggregate_of_stream(stream_key: str) -> str | None:
    """``simpul:{dukcapil.citizen.p3}`` -> ``dukcapil.citizen``; an inbox's key gives its
    department stream's aggregate; None for other keys."""
    found = inbox_of(stream_key)
    if found is not None:
        stream_key = found[0]
    if not is_stream(stream_key):
        return None
    dept, _, rest = stream_key[len(PREFIX) + 2 : -1].partition(".")
    return f"{dept}.{rest.partition('.')[0]}"


def is_partition(stream_key: str) -> bool:
    """True for a partition of a partitioned aggregate (``simpul:{dukcapil.citizen.p3}``)."""
    aggregate = aggregate_of_stream(stream_key)
    return aggregate is not None and partitions(aggregate) > 1


def dead_letters(stream_key: str, group: str) -> str:
    """Dead letters of one consumer group: ``simpul:{dukcapil.citizen}:dlq:<group>``."""
    return f"{stream_key}:dlq:{group}"


def seen(stream_key: str, event_id: str) -> str:
    """Producer dedupe marker of one event id on one stream."""
    return f"{stream_key}:seen:{event_id}"


def done(stream_key: str, group: str, event_id: str) -> str:
    """Consumer-side "handled once" marker of one event id for one group (the dedupe helper)."""
    return f"{stream_key}:done:{group}:{event_id}"


def last_failure(stream_key: str, group: str, entry_id: str) -> str:
    """The last error of ``group``'s handler on a pending entry (a string with a TTL): carried
    into the dead letter if the entry's consumers then die until it runs out of deliveries
    (``max_deliveries_exceeded``), so the handler's own error is not lost."""
    return f"{stream_key}:failure:{group}:{entry_id}"


def lease(partition_key: str, group: str) -> str:
    """Which consumer of ``group`` owns a partition right now (a string with a TTL): one reader
    per partition and group is what keeps a subject's events in order (bus.partitions)."""
    return f"{partition_key}:lease:{group}"


def members(group: str) -> str:
    """The live consumers of a group that reads partitions (a sorted set of consumer names by
    last heartbeat, in ms): how each one knows its fair share of partitions."""
    return f"{PREFIX}:members:{{{group}}}"


def cursor(stream_key: str, group: str) -> str:
    """Where ``group`` had read ``stream_key`` up to, as its consumers last saw (a hash: ``id``,
    ``read``): how a group recreated after a deletion learns what it lost (bus.gaps)."""
    return f"{stream_key}:cursor:{group}"


def quarantine(adapter: str) -> str:
    """Source records an adapter could not map: ``simpul:quarantine:{<adapter>}``.

    The adapter name is the hash tag, so the stream and its index share a Cluster slot and one
    script can update both.
    """
    return f"{PREFIX}:quarantine:{{{adapter}}}"


def quarantine_index(adapter: str) -> str:
    """Which records (event id + raw digest) are in an adapter's quarantine already."""
    return f"{quarantine(adapter)}:index"


def checkpoint(adapter: str) -> str:
    """Where an adapter resumes reading its source (JSON position of the last published record)."""
    return f"{PREFIX}:checkpoint:{adapter}"


def adapter_report(adapter: str) -> str:
    """What an adapter last told operators (a hash with a TTL, bus.adapter.report): its source's
    position and lag, its counts, its last error. Written by the adapter alone (the ACL allows no
    other adapter); read by ``simpul status`` and the exporter, which find it by SCAN."""
    return f"{ADAPTER_REPORTS}{{{adapter}}}:report"


ADAPTER_REPORTS = f"{PREFIX}:adapter:"
"""The prefix of every adapter report key (the SCAN pattern is this and ``*``)."""


def is_stream(key: str) -> bool:
    """True for an aggregate stream key (not its dead letters or markers)."""
    return key.startswith(f"{PREFIX}:{{") and key.endswith("}")


def stream_pattern() -> str:
    """SCAN pattern that matches aggregate streams and their sub-keys."""
    return f"{PREFIX}:{{*}}*"


# -- per-subscription delivery through the router (docs/decisions/0011) --------------------------

INTAKES = f"{PREFIX}:intake:"
INBOXES = f"{PREFIX}:inbox:"
ROUTER_GROUP = "router"
"""The consumer group of the router on every intake and department stream."""


def intake(principal: str) -> str:
    """Where a producer writes in routed delivery: ``simpul:intake:{<principal>}``. Its own
    hash tag: the intake, its dead letters and its dedupe markers share a Cluster slot, and
    nothing of another principal does."""
    return f"{INTAKES}{{{principal}}}"


def intake_dead_letters(principal: str) -> str:
    """What the router refused from a producer, with the reason: ``<intake>:dlq``."""
    return f"{intake(principal)}:dlq"


def intake_owner(key: str) -> str | None:
    """``simpul:intake:{adapter-dukcapil}`` -> ``adapter-dukcapil``; None for other keys."""
    if key.startswith(INTAKES + "{") and key.endswith("}"):
        return key[len(INTAKES) + 1 : -1]
    return None


def inbox(stream_key: str, group: str) -> str:
    """The inbox of one subscription: what the router forwards from a department stream (or
    one partition of it) to one service group, e.g. ``simpul:inbox:{dinsos/dukcapil.citizen}``.
    Its own hash tag, so inboxes spread over a Cluster's masters; its dead letters, markers
    and cursor (``<inbox>:dlq:<group>`` ...) hang off it as off a stream."""
    name = stream_key[len(PREFIX) + 2 : -1] if is_stream(stream_key) else stream_key
    return f"{INBOXES}{{{group}/{name}}}"


def inbox_of(key: str) -> tuple[str, str] | None:
    """An inbox key -> (its department stream key, its group); None for other keys."""
    if not (key.startswith(INBOXES + "{") and key.endswith("}")):
        return None
    group, sep, name = key[len(INBOXES) + 1 : -1].partition("/")
    if not sep or not group or not name:
        return None
    return f"{PREFIX}:{{{name}}}", group


def is_inbox(key: str) -> bool:
    """True for an inbox stream key (not its dead letters or markers)."""
    return inbox_of(key) is not None


def routed_mark(inbox_key: str) -> str:
    """The high-water mark of one inbox: the department-stream entry id of the last entry the
    router forwarded to it (``<inbox>:routed``, on the inbox's slot). What is at or below it is
    not written again when the router routes a batch a second time (decision 0011)."""
    return f"{inbox_key}:routed"


ROUTER_REPLICAS = "simpul:router:replicas"
"""The live router replicas: a sorted set, each replica's name scored with the time (Redis's
clock, ms) its presence expires unless renewed. Each replica holds at most its share of the
sources, ceil(sources / live replicas), so several replicas spread them (decision 0011)."""


def router_lease(source: str) -> str:
    """Which router replica reads ``source`` (an intake or a department stream) right now: a
    string with a TTL, beside the source on its slot. One reader per source keeps its order."""
    return f"{source}:lease:{ROUTER_GROUP}"
