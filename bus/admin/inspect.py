"""Inspecting the bus: what every stream, consumer group, dead-letter stream and quarantine holds.

The typed, read-only API behind ``simpul status``, ``tail``, ``pending``, ``map``, the Prometheus
exporter and the web dashboard. Nothing here writes to Redis, joins a consumer group or acks.

:func:`snapshot` (or :class:`Inspector` for a long-lived caller) returns a :class:`BusSnapshot`:
for every Simpul stream — found by ``SCAN`` (type stream, dead-letter streams excluded) plus the
stream of every registered contract, marked missing while absent — its length, first and newest
entry, and per consumer group the lag, pending entries, oldest pending age, consumers, entries
read and dead letters; the depth of every adapter's quarantine; every adapter's last report
(bus.adapter.report: position, lag behind its source, counts, last error, age); the Redis
version. On Redis 6.2 ``XINFO GROUPS`` has no ``lag`` and ``entries-read``: the snapshot says
``reduced=True``, and a group's lag is given only where it is certain (caught up: 0; everything
unread: the length), else None.

Cost of one snapshot of N streams with G consumer groups, Q quarantine streams and A adapter
reports (D dead-letter streams whose group is gone): 2 round trips of pipelined commands,
``2 + 2N + Q + 2A`` commands (TIME, INFO server, XINFO STREAM and XINFO GROUPS per stream, XLEN
per quarantine, HGETALL and PTTL per report) then ``3G + D`` (XPENDING summary, XINFO CONSUMERS
and XLEN of the dead letters per group) — plus discovery, ``SCAN MATCH simpul:* TYPE stream``
and ``SCAN MATCH simpul:adapter:* TYPE hash``, each of which walks the whole keyspace
(``ceil(keys / scan_count)`` calls each: every published event leaves a dedupe marker for 7
days). :func:`snapshot` discovers each time; an :class:`Inspector` rediscovers only every
``rediscover_s`` seconds, so an exporter scraped every 15 s pays for the SCANs once a minute.
On a Redis Cluster (docs/cluster.md) each SCAN walks every master in turn, each pipeline is
split by master and sent to them at once (still counted as one round trip), and TIME and INFO
come from one master.
:attr:`BusSnapshot.redis_commands` and :attr:`BusSnapshot.round_trips` count what a snapshot
cost. ``XINFO STREAM`` also returns the first and the newest entry; their contents are dropped
at once (never kept, never shown).

:func:`breaches` checks a snapshot against :class:`Thresholds` (``SIMPUL_STATUS_*``) and returns
one :class:`Breach` per problem, with a message naming streams, groups and adapters only.

:func:`decode_entry` and :func:`pending_entries` serve ``tail`` and ``pending``, masked
(unless revealed) by the one rule of :mod:`bus.privacy`.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal, cast

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError, ResponseError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bus import keys
from bus.adapter.report import AdapterReport
from bus.admin.replication import Topology, topology
from bus.connection import TRANSIENT, is_cluster, translate
from bus.contracts import Registry, default_registry
from bus.envelope import Envelope
from bus.errors import ConfigurationError, DecodeError, SimpulError
from bus.privacy import contract_of, mask_data, mask_subject, mask_text

__all__ = [
    "METRICS",
    "Breach",
    "BusCollector",
    "BusSnapshot",
    "ConsumerSnapshot",
    "GroupSnapshot",
    "Inspector",
    "PendingEntry",
    "StreamSnapshot",
    "Thresholds",
    "breaches",
    "decode_entry",
    "duration",
    "entry_age_s",
    "exporter_app",
    "pending_entries",
    "resolve_stream",
    "size",
    "snapshot",
    "stream_exists",
    "stream_keys",
]

MAX_CONSUMERS = 20  # consumers listed per group (freshest first); consumer_count has them all
_STREAM_PREFIX = f"{keys.PREFIX}:{{"
_QUARANTINE_PREFIX = f"{keys.PREFIX}:quarantine:{{"
_DLQ = re.compile(r"^(simpul:\{[^{}]+\}):dlq:(.+)$")
_REPORT = re.compile(rf"^{re.escape(keys.ADAPTER_REPORTS)}\{{([^{{}}]+)\}}:report$")
_Frozen = ConfigDict(frozen=True)


# -- the snapshot ------------------------------------------------------------------------------


class ConsumerSnapshot(BaseModel):
    """One consumer (one replica of a service) of a group."""

    model_config = _Frozen

    name: str
    pending: int = Field(description="entries delivered to it and not acked yet")
    idle_s: float = Field(description="seconds since it last received or claimed an entry")
    inactive_s: float | None = Field(
        default=None, description="Redis 7.2+: seconds since its last successful read"
    )


class GroupSnapshot(BaseModel):
    """One consumer group (one service) on one stream."""

    model_config = _Frozen

    name: str
    consumer_count: int
    consumers: list[ConsumerSnapshot] = Field(
        description=f"freshest first, at most {MAX_CONSUMERS}"
    )
    pending: int = Field(description="delivered, not acked (XPENDING)")
    oldest_pending_id: str | None
    oldest_pending_age_s: float | None = Field(description="age of the oldest pending entry")
    last_delivered_id: str
    entries_read: int | None = Field(description="Redis 7.0+; None on 6.2")
    lag: int | None = Field(
        description="entries not yet delivered to the group; None when Redis cannot tell (6.2)"
    )
    dead_letters: int = Field(description="XLEN of <stream>:dlq:<group>")

    @property
    def idle_s(self) -> float | None:
        """Seconds since any consumer of the group last received an entry (None: no consumer)."""
        return min((c.idle_s for c in self.consumers), default=None)

    @property
    def waiting(self) -> bool:
        """Work is waiting for the group: undelivered entries (lag) or unacked ones (pending)."""
        return bool(self.pending or self.lag)


class StreamSnapshot(BaseModel):
    """One aggregate stream, ``simpul:{<dept>.<aggregate>}``."""

    model_config = _Frozen

    key: str = Field(description="the Redis key, e.g. simpul:{dukcapil.citizen}")
    aggregate: str = Field(description="e.g. dukcapil.citizen")
    exists: bool = Field(
        description="False: a registered contract's stream nobody wrote yet, or a deleted "
        "stream whose dead letters remain"
    )
    registered: bool = Field(description="a registered contract publishes to it")
    length: int
    first_entry_id: str | None
    last_entry_id: str | None
    last_generated_id: str | None = Field(description="id of the newest entry ever added")
    first_entry_age_s: float | None
    last_entry_age_s: float | None = Field(
        description="seconds since the newest entry was added (from last_generated_id)"
    )
    groups: list[GroupSnapshot]
    dead_letters: dict[str, int] = Field(
        description="dead letters by group, including groups that no longer exist"
    )

    def group(self, name: str) -> GroupSnapshot | None:
        return next((g for g in self.groups if g.name == name), None)


class BusSnapshot(BaseModel):
    """The whole bus at one moment. ``model_dump(mode="json")`` is the stable JSON shape."""

    model_config = _Frozen

    taken_at: datetime = Field(description="Redis server time of the snapshot (UTC)")
    redis_version: str
    reduced: bool = Field(description="Redis < 7.0: no lag / entries_read from XINFO GROUPS")
    streams: list[StreamSnapshot] = Field(description="sorted by aggregate")
    quarantine: dict[str, int] = Field(description="records in quarantine, by adapter")
    adapters: list[AdapterReport] = Field(
        default_factory=list,
        description="each adapter's last report (bus.adapter.report), sorted by name",
    )
    redis_commands: int = Field(description="commands this snapshot sent (SCAN included)")
    round_trips: int

    @property
    def empty(self) -> bool:
        """No stream has been written yet, no dead letters nor quarantine exist."""
        written = any(s.exists or s.dead_letters for s in self.streams)
        return not written and not self.quarantine and not self.adapters

    def stream(self, name: str) -> StreamSnapshot | None:
        """By aggregate (``dukcapil.citizen``) or key (``simpul:{dukcapil.citizen}``)."""
        key = resolve_stream(name)
        return next((s for s in self.streams if s.key == key), None)


async def snapshot(
    redis: Redis, *, registry: Registry = default_registry, scan_count: int = 1000
) -> BusSnapshot:
    """One snapshot of the bus, discovering streams with SCAN (see the module's cost note).

    Raises :class:`~bus.errors.RedisUnavailable` if Redis cannot be reached,
    :class:`~bus.errors.PermissionDenied` if the ACL user may not run the commands.
    """
    return await Inspector(redis, registry=registry, rediscover_s=0, scan_count=scan_count).take()


class _Found:
    """What discovery found: aggregate streams, dead-letter streams, quarantine streams."""

    def __init__(self) -> None:
        self.streams: set[str] = set()
        self.dead_letters: set[tuple[str, str]] = set()  # (stream key, group)
        self.quarantines: set[str] = set()  # adapter names
        self.reports: set[str] = set()  # adapter names
        self.at = 0.0  # monotonic time of the SCAN
        self.commands = 0

    def add(self, key: str) -> None:
        if key.startswith(_QUARANTINE_PREFIX) and key.endswith("}"):
            self.quarantines.add(key[len(_QUARANTINE_PREFIX) : -1])
        elif (match := _DLQ.match(key)) is not None:
            self.dead_letters.add((match[1], match[2]))
        elif _is_aggregate_stream(key):
            self.streams.add(key)
        elif (match := _REPORT.match(key)) is not None:
            self.reports.add(match[1])


class Inspector:
    """Takes snapshots of one Redis for a long-lived caller (exporter, dashboard).

    Discovery (``SCAN``, the expensive part) runs on the first snapshot and then only every
    ``rediscover_s`` seconds; in between, the streams, dead-letter streams and quarantines found
    last time are measured again (the streams of registered contracts always are, and the
    dead letters of every group present).
    """

    def __init__(
        self,
        redis: Redis,
        *,
        registry: Registry = default_registry,
        rediscover_s: float = 60.0,
        scan_count: int = 1000,
        max_consumers: int = MAX_CONSUMERS,
    ) -> None:
        self.redis = redis
        self.registry = registry
        self.rediscover_s = rediscover_s
        self.scan_count = scan_count
        self.max_consumers = max_consumers
        self._found: _Found | None = None

    async def take(self) -> BusSnapshot:
        """A fresh snapshot (see :func:`snapshot`)."""
        try:
            return await self._take()
        except (ResponseError, *TRANSIENT) as exc:
            raise _simpul_error(exc) from None

    async def _take(self) -> BusSnapshot:
        scans = 0
        found = self._found
        if found is None or time.monotonic() - found.at >= self.rediscover_s:
            found = await self._discover()
            scans = found.commands
            self._found = found
        registered = {m.__contract__.stream for m in self.registry}
        with_dead_letters = {stream for stream, _ in found.dead_letters}
        streams = sorted(
            registered | found.streams | with_dead_letters,
            key=lambda k: k[len(_STREAM_PREFIX) : -1],
        )
        adapters = sorted(found.quarantines)
        reporting = sorted(found.reports)

        async with self.redis.pipeline(transaction=False) as pipe:
            # As pipe.time() and pipe.info(), which a cluster pipeline refuses by name; it
            # sends these to one master (the client's default node).
            pipe.execute_command("TIME")
            pipe.execute_command("INFO", "server")
            for key in streams:
                pipe.xinfo_stream(key)
                pipe.xinfo_groups(key)
            for adapter in adapters:
                pipe.xlen(keys.quarantine(adapter))
            for adapter in reporting:
                pipe.hgetall(keys.adapter_report(adapter))
                pipe.pttl(keys.adapter_report(adapter))
            first: list[Any] = await pipe.execute(raise_on_error=False)
        seconds, micros = _checked(first[0])
        now_ms = int(seconds) * 1000 + int(micros) // 1000
        version = str(_checked(first[1]).get("redis_version", "0"))
        infos = {key: _missing_or(first[2 + 2 * i]) for i, key in enumerate(streams)}
        groups_of = {
            key: [_group_fields(g) for g in _missing_or(first[3 + 2 * i]) or []]
            for i, key in enumerate(streams)
        }
        quarantine = {
            adapter: int(_missing_or(first[2 + 2 * len(streams) + i]) or 0)
            for i, adapter in enumerate(adapters)
        }
        at = 2 + 2 * len(streams) + len(adapters)
        reports = [
            AdapterReport.from_fields(
                adapter, raw, int(_checked(first[at + 2 * i + 1])), _time_of(now_ms)
            )
            for i, adapter in enumerate(reporting)
            if (raw := _checked(first[at + 2 * i]))  # empty: expired since discovery
        ]
        orphans = sorted(
            (stream, group)
            for stream, group in found.dead_letters
            if stream in groups_of and group not in {g["name"] for g in groups_of[stream]}
        )

        async with self.redis.pipeline(transaction=False) as pipe:
            for key in streams:
                for fields in groups_of[key]:
                    pipe.xpending(key, fields["name"])
                    pipe.xinfo_consumers(key, fields["name"])
                    pipe.xlen(keys.dead_letters(key, fields["name"]))
            for stream, group in orphans:
                pipe.xlen(keys.dead_letters(stream, group))
            second: list[Any] = await pipe.execute(raise_on_error=False) if len(pipe) else []

        replies = iter(second)
        groups = {
            key: [
                self._group(
                    fields, infos[key], (next(replies), next(replies), next(replies)), now_ms
                )
                for fields in groups_of[key]
            ]
            for key in streams
        }
        orphan_depths: dict[str, dict[str, int]] = {}
        for stream, group in orphans:
            orphan_depths.setdefault(stream, {})[group] = int(_missing_or(next(replies)) or 0)
        result = [
            _stream(
                key,
                infos[key],
                groups[key],
                orphan_depths.get(key, {}),
                now_ms,
                registered=key in registered,
            )
            for key in streams
            # A stream is left out only if gone (since discovery) with nothing left behind.
            if infos[key] is not None or key in registered or orphan_depths.get(key)
        ]
        return BusSnapshot(
            taken_at=_time_of(now_ms),
            redis_version=version,
            reduced=_version(version) < (7, 0),
            streams=result,
            quarantine=quarantine,
            adapters=reports,
            redis_commands=scans + len(first) + len(second),
            round_trips=scans + 1 + (1 if second else 0),
        )

    async def _discover(self) -> _Found:
        found = _Found()
        async for batch in _scan(self.redis, f"{keys.PREFIX}:*", self.scan_count):
            found.commands += 1
            for key in batch:
                found.add(_text(key))
        # A second walk: the reports are hashes, and the first keeps to streams so that the
        # dedupe markers (strings, most of the keyspace) are filtered out by Redis.
        reports = f"{keys.ADAPTER_REPORTS}*"
        async for batch in _scan(self.redis, reports, self.scan_count, kind="hash"):
            found.commands += 1
            for key in batch:
                found.add(_text(key))
        found.at = time.monotonic()
        return found

    def _group(
        self,
        fields: dict[str, Any],
        info: dict[str, Any] | None,
        replies: tuple[Any, Any, Any],
        now_ms: int,
    ) -> GroupSnapshot:
        pending_reply, consumers_reply, dead_reply = replies
        summary = _missing_or(pending_reply) or {}
        oldest = summary.get("min")
        oldest_id = _text(oldest) if oldest else None
        consumers = sorted(
            (_consumer(c) for c in _missing_or(consumers_reply) or []),
            key=lambda c: (c.idle_s, c.name),
        )
        lag = fields["lag"]
        if lag is None and info is not None:
            lag = _certain_lag(info, fields["last_delivered_id"])
        return GroupSnapshot(
            name=fields["name"],
            consumer_count=len(consumers),
            consumers=consumers[: self.max_consumers],
            pending=int(summary.get("pending") or 0),
            oldest_pending_id=oldest_id,
            oldest_pending_age_s=entry_age_s(oldest_id, now_ms) if oldest_id else None,
            last_delivered_id=fields["last_delivered_id"],
            entries_read=fields["entries_read"],
            lag=lag,
            dead_letters=int(_missing_or(dead_reply) or 0),
        )


def _stream(
    key: str,
    info: dict[str, Any] | None,
    groups: list[GroupSnapshot],
    orphans: Mapping[str, int],
    now_ms: int,
    *,
    registered: bool,
) -> StreamSnapshot:
    aggregate = key[len(_STREAM_PREFIX) : -1]
    if info is None:
        return StreamSnapshot(
            key=key,
            aggregate=aggregate,
            exists=False,
            registered=registered,
            length=0,
            first_entry_id=None,
            last_entry_id=None,
            last_generated_id=None,
            first_entry_age_s=None,
            last_entry_age_s=None,
            groups=[],
            dead_letters=dict(sorted(orphans.items())),
        )
    first = _entry_id(info.get("first-entry"))
    last = _entry_id(info.get("last-entry"))
    generated = _text(info.get("last-generated-id") or b"0-0")
    newest = generated if generated != "0-0" else last
    return StreamSnapshot(
        key=key,
        aggregate=aggregate,
        exists=True,
        registered=registered,
        length=int(info.get("length") or 0),
        first_entry_id=first,
        last_entry_id=last,
        last_generated_id=None if generated == "0-0" else generated,
        first_entry_age_s=entry_age_s(first, now_ms) if first else None,
        last_entry_age_s=entry_age_s(newest, now_ms) if newest else None,
        groups=groups,
        dead_letters=dict(sorted({**orphans, **{g.name: g.dead_letters for g in groups}}.items())),
    )


def _group_fields(raw: Mapping[str, Any]) -> dict[str, Any]:
    entries_read = raw.get("entries-read")
    lag = raw.get("lag")
    return {
        "name": _text(raw["name"]),
        "last_delivered_id": _text(raw.get("last-delivered-id") or b"0-0"),
        "entries_read": None if entries_read is None else int(entries_read),
        "lag": None if lag is None else int(lag),
    }


def _consumer(raw: Mapping[str, Any]) -> ConsumerSnapshot:
    inactive = raw.get("inactive")
    return ConsumerSnapshot(
        name=_text(raw["name"]),
        pending=int(raw.get("pending") or 0),
        idle_s=int(raw.get("idle") or 0) / 1000,
        inactive_s=None if inactive is None or int(inactive) < 0 else int(inactive) / 1000,
    )


def _certain_lag(info: Mapping[str, Any], last_delivered: str) -> int | None:
    """The lag where it is certain without Redis 7's counters: caught up, or nothing read."""
    generated = _text(info.get("last-generated-id") or b"0-0")
    if _id_key(last_delivered) >= _id_key(generated):
        return 0
    first = _entry_id(info.get("first-entry"))
    if first is not None and _id_key(last_delivered) < _id_key(first):
        return int(info.get("length") or 0)
    if first is None:
        return 0  # the stream is empty: nothing left to deliver
    return None


def _is_aggregate_stream(key: str) -> bool:
    inner = key[len(_STREAM_PREFIX) : -1]
    return (
        key.startswith(_STREAM_PREFIX)
        and key.endswith("}")
        and bool(inner)
        and not any(c in inner for c in "{}")
    )


def _simpul_error(exc: Exception) -> SimpulError:
    """Redis's failures as Simpul's errors: unreachable, refused by ACL, or another answer
    (e.g. a key of the wrong type where a stream was expected)."""
    translated = translate(exc)
    if isinstance(translated, SimpulError):
        return translated
    return SimpulError(f"Redis answered with an error: {exc}")


def _missing_or(reply: Any) -> Any:
    """The reply, or None if the key does not exist; other errors are raised."""
    if isinstance(reply, ResponseError):
        text = str(reply)
        if "no such key" in text.lower() or "NOGROUP" in text:
            return None
        raise reply
    if isinstance(reply, Exception):
        raise reply
    return reply


def _time_of(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _checked(reply: Any) -> Any:
    if isinstance(reply, Exception):
        raise reply
    return reply


def _entry_id(entry: Any) -> str | None:
    if not entry:
        return None
    return _text(entry[0])


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text)[:3]) or (0,)


def _id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    try:
        return int(ms), int(seq or 0)
    except ValueError:
        return 0, 0


def entry_age_s(entry_id: str, now_ms: int | None = None) -> float:
    """Seconds since a stream entry id's millisecond timestamp (never negative)."""
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    return max(0.0, (now - _id_key(entry_id)[0]) / 1000)


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


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


# -- thresholds and breaches -------------------------------------------------------------------


class Thresholds(BaseSettings):
    """When the bus is unhealthy. Each limit is from ``SIMPUL_STATUS_<NAME>`` (e.g.
    ``SIMPUL_STATUS_MAX_LAG=5000``) or passed explicitly; ``off`` (or ``none``) disables one.

    A value above its limit is a breach; a limit of 0 tolerates none.
    """

    model_config = SettingsConfigDict(env_prefix="SIMPUL_STATUS_", extra="forbid", frozen=True)

    max_lag: int | None = Field(
        default=1000, ge=0, description="entries a group has not been delivered yet"
    )
    max_pending_age_s: float | None = Field(
        default=600, ge=0, description="age of a group's oldest unacked entry, seconds"
    )
    max_dead_letters: int | None = Field(default=0, ge=0, description="dead letters per group")
    max_quarantine: int | None = Field(default=0, ge=0, description="records per quarantine")
    max_consumer_idle_s: float | None = Field(
        default=300,
        ge=0,
        description="seconds no consumer of a group read anything while work waits for it",
    )
    max_silence_s: float | None = Field(
        default=None, ge=0, description="seconds since a stream's newest event (off by default)"
    )
    max_source_behind_s: float | None = Field(
        default=300, ge=0, description="seconds a CDC adapter's oldest unpublished change waits"
    )
    max_source_behind_bytes: int | None = Field(
        default=None, ge=0, description="bytes of log a CDC adapter has not published (off)"
    )
    max_source_retained_bytes: int | None = Field(
        default=1024**3,
        ge=0,
        description="bytes of log (WAL) the source database keeps for a CDC adapter",
    )
    max_report_age_s: float | None = Field(
        default=60,
        ge=0,
        description="seconds since a running (or any CDC) adapter last reported",
    )

    @field_validator("*", mode="before")
    @classmethod
    def _off(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() in ("off", "none", ""):
            return None
        return value

    @classmethod
    def load(cls, **overrides: Any) -> Thresholds:
        """Environment, then ``overrides`` (None values are ignored); one clear error."""
        given = {k: v for k, v in overrides.items() if v is not None}
        try:
            return cls(**given)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'/'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
            )
            raise ConfigurationError(f"invalid thresholds: {problems}") from None


BreachKind = Literal[
    "lag", "pending_age", "dead_letters", "quarantine", "consumer_idle", "silence",
    "source_behind", "source_behind_bytes", "source_retained", "report_stale",
    "replicas_out_of_sync", "sentinel_quorum",
]  # fmt: skip


class Breach(BaseModel):
    """One threshold exceeded. The message names streams, groups and adapters, never data."""

    model_config = _Frozen

    kind: BreachKind
    stream: str | None = Field(default=None, description="aggregate, e.g. dukcapil.citizen")
    group: str | None = None
    adapter: str | None = None
    value: float | None = Field(description="the measured value; None for 'never' (no consumer)")
    limit: float
    message: str


def breaches(snap: BusSnapshot, thresholds: Thresholds) -> list[Breach]:
    """Every threshold ``snap`` exceeds, in a stable order (streams, quarantines, adapters)."""
    t = thresholds
    found: list[Breach] = []

    def add(
        kind: BreachKind, value: float, limit: float | None, message: str, **where: str
    ) -> None:
        if limit is not None and value > limit:
            shown = None if value == float("inf") else value
            found.append(Breach(kind=kind, value=shown, limit=limit, message=message, **where))

    for s in snap.streams:
        name = s.aggregate
        if s.exists and s.last_entry_age_s is not None:
            add("silence", s.last_entry_age_s, t.max_silence_s,
                f"stream {name}: no new event for {duration(s.last_entry_age_s)} "
                f"(max {duration(t.max_silence_s or 0)})", stream=name)  # fmt: skip
        for g in s.groups:
            where = {"stream": name, "group": g.name}
            if g.lag is not None:
                add("lag", g.lag, t.max_lag,
                    f"group {g.name} on {name} lags {g.lag} entries (max {t.max_lag})",
                    **where)  # fmt: skip
            if g.oldest_pending_age_s is not None:
                add("pending_age", g.oldest_pending_age_s, t.max_pending_age_s,
                    f"group {g.name} on {name}: oldest unacked entry is "
                    f"{duration(g.oldest_pending_age_s)} old (max "
                    f"{duration(t.max_pending_age_s or 0)}, {g.pending} pending)",
                    **where)  # fmt: skip
            if g.waiting or _undelivered(s, g):
                idle = g.idle_s if g.idle_s is not None else float("inf")
                since = (
                    f"no consumer has read anything for {duration(idle)}"
                    if g.consumer_count
                    else "the group has no consumer"
                )
                add("consumer_idle", idle, t.max_consumer_idle_s,
                    f"group {g.name} on {name}: work is waiting but {since} (max "
                    f"{duration(t.max_consumer_idle_s or 0)}): is the service running?",
                    **where)  # fmt: skip
        for group, depth in s.dead_letters.items():
            add("dead_letters", depth, t.max_dead_letters,
                f"group {group} on {name} has {depth} dead letter{_s(depth)} "
                f"(max {t.max_dead_letters})", stream=name, group=group)  # fmt: skip
    for adapter, depth in snap.quarantine.items():
        add("quarantine", depth, t.max_quarantine,
            f"adapter {adapter} has {depth} record{_s(depth)} in quarantine "
            f"(max {t.max_quarantine})", adapter=adapter)  # fmt: skip
    for r in snap.adapters:
        _adapter_breaches(r, t, add)
    return found


def _adapter_breaches(r: AdapterReport, t: Thresholds, add: Callable[..., None]) -> None:
    name = r.name
    if r.must_be_fresh and r.age_s is not None:
        was = "running" if r.state == "running" else f"a CDC adapter, {r.state}"
        add("report_stale", r.age_s, t.max_report_age_s,
            f"adapter {name} has not reported for {duration(r.age_s)} (max "
            f"{duration(t.max_report_age_s or 0)}; it was {was}): is it alive?",
            adapter=name)  # fmt: skip
    if r.behind_seconds is not None:
        add("source_behind", r.behind_seconds, t.max_source_behind_s,
            f"adapter {name} is {duration(r.behind_seconds)} behind its source (max "
            f"{duration(t.max_source_behind_s or 0)})", adapter=name)  # fmt: skip
    if r.behind_bytes is not None:
        add("source_behind_bytes", r.behind_bytes, t.max_source_behind_bytes,
            f"adapter {name} has {size(r.behind_bytes)} of its source's log to publish (max "
            f"{size(t.max_source_behind_bytes or 0)})", adapter=name)  # fmt: skip
    if r.retained_bytes is not None:
        add("source_retained", r.retained_bytes, t.max_source_retained_bytes,
            f"the source database of adapter {name} keeps {size(r.retained_bytes)} of log for "
            f"it (max {size(t.max_source_retained_bytes or 0)}): its disk fills while this "
            "grows", adapter=name)  # fmt: skip


def _undelivered(stream: StreamSnapshot, group: GroupSnapshot) -> bool:
    """Lag unknown (Redis 6.2): entries were added after the group's last delivery."""
    if group.lag is not None or stream.last_generated_id is None:
        return False
    return _id_key(stream.last_generated_id) > _id_key(group.last_delivered_id)


def duration(seconds: float) -> str:
    """``42 s``, ``5 min``, ``3.5 h``, ``2 d`` — for people."""
    if seconds == float("inf"):
        return "ever"
    if seconds < 90:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def size(n: float) -> str:
    """``512 B``, ``3.4 MiB``, ``1.2 GiB`` — for people."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _s(n: float) -> str:
    return "" if n == 1 else "s"


# -- reading entries: tail and pending ---------------------------------------------------------


def decode_entry(
    stream: str,
    entry_id: str,
    raw: Mapping[bytes, bytes] | None,
    *,
    registry: Registry = default_registry,
    reveal: bool = False,
) -> dict[str, Any]:
    """One stream entry for people and machines: its envelope attributes and ``data``, with
    personal fields masked (unless ``reveal``). The shape (``tail --json``, one per line)::

        {"stream", "entry_id", "id", "type", "source", "time", "subject", "correlationid",
         "causationid", "extensions", "data", "masked", "known_type"}

    An entry that is not wire format v1 gives ``{"stream", "entry_id", "error", "fields"}``
    (its fields masked as of an unknown type); a deleted one ``{..., "error": "deleted"}``.
    """
    base: dict[str, Any] = {"stream": stream, "entry_id": entry_id}
    if raw is None:
        return {**base, "error": "deleted or trimmed"}
    try:
        envelope = Envelope.from_fields(raw)
    except DecodeError as exc:
        fields = {_text(k): _text(v) for k, v in raw.items()}
        if not reveal:  # not an event: no contract says what its fields mean
            fields = mask_data(fields, None)
        return {**base, "error": f"not wire format v1: {mask_text(str(exc))}", "fields": fields}
    data: Any
    try:
        data = json.loads(envelope.data)
    except ValueError:
        data = envelope.data
    contract = contract_of(envelope.type, registry)
    if not reveal:
        data = mask_data(data, contract)

    def attribute(value: str | None) -> str | None:
        return value if reveal or value is None else mask_text(value)

    return {
        **base,
        "id": envelope.id,
        "type": envelope.type,
        "source": envelope.source,
        "time": envelope.time,
        "subject": envelope.subject if reveal else mask_subject(envelope.subject, contract),
        "correlationid": attribute(envelope.correlationid),
        "causationid": attribute(envelope.causationid),
        "extensions": {k: attribute(v) for k, v in (envelope.extensions or {}).items()} or None,
        "data": data,
        "masked": not reveal,
        "known_type": contract is not None,
    }


class PendingEntry(BaseModel):
    """One entry delivered to a group and not acked."""

    model_config = _Frozen

    entry_id: str
    consumer: str
    idle_s: float = Field(description="seconds since it was last delivered")
    deliveries: int
    age_s: float = Field(description="seconds since it was added to the stream")
    exists: bool = Field(description="False: deleted or trimmed while pending (lost)")
    type: str | None = Field(description="its event type, if it still exists and has one")


async def pending_entries(
    redis: Redis, stream: str, group: str, *, count: int = 20
) -> list[PendingEntry]:
    """The oldest ``count`` pending entries of ``group`` on ``stream`` (two round trips).

    Raises ConfigurationError if the stream or the group does not exist.
    """
    try:
        try:
            rows = await redis.xpending_range(stream, group, min="-", max="+", count=count)
        except ResponseError as exc:
            if "NOGROUP" in str(exc) or "no such key" in str(exc).lower():
                raise ConfigurationError(await _no_group(redis, stream, group)) from None
            raise
        now_ms = await _now_ms(redis)
        async with redis.pipeline(transaction=False) as pipe:
            for row in rows:
                pipe.xrange(stream, min=row["message_id"], max=row["message_id"], count=1)
            found: Sequence[Any] = await pipe.execute() if rows else []
    except (ResponseError, *TRANSIENT) as exc:
        raise _simpul_error(exc) from None
    entries = []
    for row, hit in zip(rows, found, strict=True):
        entry_id = _text(row["message_id"])
        fields = hit[0][1] if hit else None
        kind = fields.get(b"type") if fields else None
        entries.append(
            PendingEntry(
                entry_id=entry_id,
                consumer=_text(row["consumer"]),
                idle_s=int(row["time_since_delivered"]) / 1000,
                deliveries=int(row["times_delivered"]),
                age_s=entry_age_s(entry_id, now_ms),
                exists=bool(hit),
                type=_text(kind) if kind else None,
            )
        )
    return entries


async def _no_group(redis: Redis, stream: str, group: str) -> str:
    if await redis.type(stream) != b"stream":
        return f"no stream {stream}"
    names = sorted(_text(g["name"]) for g in await redis.xinfo_groups(stream))
    known = ", ".join(names) if names else "none"
    return f"no consumer group {group!r} on {stream} (groups: {known})"


async def _now_ms(redis: Redis) -> int:
    seconds, micros = await redis.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def stream_keys(redis: Redis, *, scan_count: int = 1000) -> list[str]:
    """Every aggregate stream key in Redis, sorted (one SCAN of the keyspace)."""
    found: set[str] = set()
    try:
        async for batch in _scan(redis, f"{_STREAM_PREFIX}*}}", scan_count):
            found.update(k for k in map(_text, batch) if _is_aggregate_stream(k))
    except (ResponseError, *TRANSIENT) as exc:
        raise _simpul_error(exc) from None
    return sorted(found)


async def _scan(
    redis: Redis, match: str, count: int, *, kind: str = "stream"
) -> AsyncIterator[list[Any]]:
    """Each reply of ``SCAN MATCH match TYPE kind`` until the keyspace is walked: on a
    cluster, that of every master in turn (a key lives on the master of its slot)."""
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
        raise _simpul_error(exc) from None


# -- Prometheus -------------------------------------------------------------------------------

METRICS: dict[str, str] = {
    "simpul_stream_length": "entries in the stream (0 for a registered stream not written yet)",
    "simpul_stream_last_entry_age_seconds": "seconds since the stream's newest entry was added",
    "simpul_group_lag": "entries not yet delivered to the group (absent where Redis 6.2 cannot "
    "tell)",
    "simpul_group_pending": "entries delivered to the group and not acked",
    "simpul_group_oldest_pending_age_seconds": "age of the group's oldest unacked entry (0: none)",
    "simpul_group_consumers": "consumers (replicas) the group has",
    "simpul_dead_letters": "dead letters of the group (<stream>:dlq:<group>)",
    "simpul_quarantine": "records of the adapter in quarantine",
    "simpul_adapter_report_age_seconds": "seconds since the adapter last reported (from its "
    "report's TTL)",
    "simpul_adapter_running": "1 if the adapter's last report said it runs (polls or streams), "
    "0 if it stopped or made one pass",
    "simpul_adapter_change_data_capture": "1 if the adapter's source is change-data-capture",
    "simpul_adapter_failing": "1 if the adapter's last pass (or lag query) failed",
    "simpul_adapter_source_behind_seconds": "age of the oldest change the CDC adapter has not "
    "published (0: caught up), as last reported",
    "simpul_adapter_source_behind_bytes": "bytes of log the CDC adapter has not published, as "
    "last reported",
    "simpul_adapter_source_behind_rows": "records the adapter's current pass has not read yet",
    "simpul_adapter_source_retained_bytes": "bytes of log the source database keeps for the CDC "
    "adapter (a replication slot's WAL), as last reported",
    "simpul_redis_replicas": "replicas connected to the shard's master (shard: the master's "
    "address; shape: single, sentinel or cluster)",
    "simpul_redis_replicas_in_sync": "replicas online that acknowledged within 10 s: what a "
    "publish's WAIT needs (0 under Sentinel or a cluster: publishes fail NotDurable)",
    "simpul_redis_replica_behind_bytes": "bytes of the master's replication stream the replica "
    "has not acknowledged",
    "simpul_sentinel_up": "1 if the Sentinel answered",
    "simpul_sentinel_quorum_ok": "1 if the Sentinel confirms enough Sentinels to agree on and "
    "authorise a failover (SENTINEL CKQUORUM)",
    "simpul_sentinel_config_epoch": "the master's config epoch as the Sentinel knows it: grows "
    "by one with every failover",
    "simpul_redis_up": "1 if the last snapshot of Redis succeeded, else 0",
    "simpul_exporter_scrape_seconds": "seconds the last snapshot of Redis took",
}
"""Every metric the exporter serves, with its help text. Labels: ``stream`` is the aggregate
(``dukcapil.citizen``), ``group`` the consumer group (the service), ``adapter`` the adapter."""


class BusCollector(Collector):
    """A prometheus_client collector of the bus from :class:`BusSnapshot` s.

    ``collect()`` is synchronous (prometheus_client calls it while rendering), so the caller
    awaits :meth:`refresh` before rendering: it takes a fresh snapshot unless the last one is
    younger than ``interval_s`` (several scrapers share it). When Redis cannot be reached the
    metrics are ``simpul_redis_up 0`` and the scrape time only — never stale values.
    """

    def __init__(self, inspector: Inspector, *, interval_s: float = 5.0) -> None:
        self.inspector = inspector
        self.interval_s = interval_s
        self.snapshot: BusSnapshot | None = None
        self.up = False
        self.scrape_s = 0.0
        self.error: str | None = None  # why the last snapshot failed (no personal data)
        self.topology: Topology | None = None
        self._taken_at = float("-inf")
        self._lock = asyncio.Lock()

    async def refresh(self) -> None:
        async with self._lock:
            if time.monotonic() - self._taken_at < self.interval_s:
                return
            started = time.perf_counter()
            try:
                self.snapshot, self.up, self.error = await self.inspector.take(), True, None
            except SimpulError as exc:
                self.snapshot, self.up, self.error = None, False, str(exc)
            self.topology = await _topology_or_none(self.inspector.redis) if self.up else None
            self.scrape_s = time.perf_counter() - started
            self._taken_at = time.monotonic()

    def collect(self) -> Iterator[Metric]:
        families = {
            name: GaugeMetricFamily(name, text, labels=_LABELS.get(name, []))
            for name, text in METRICS.items()
        }
        families["simpul_redis_up"].add_metric([], 1.0 if self.up else 0.0)
        families["simpul_exporter_scrape_seconds"].add_metric([], self.scrape_s)
        snap = self.snapshot if self.up else None
        for s in snap.streams if snap else []:
            families["simpul_stream_length"].add_metric([s.aggregate], s.length)
            if s.last_entry_age_s is not None:
                age = families["simpul_stream_last_entry_age_seconds"]
                age.add_metric([s.aggregate], s.last_entry_age_s)
            for g in s.groups:
                labels = [s.aggregate, g.name]
                if g.lag is not None:
                    families["simpul_group_lag"].add_metric(labels, g.lag)
                families["simpul_group_pending"].add_metric(labels, g.pending)
                oldest = families["simpul_group_oldest_pending_age_seconds"]
                oldest.add_metric(labels, g.oldest_pending_age_s or 0.0)
                families["simpul_group_consumers"].add_metric(labels, g.consumer_count)
            for group, depth in s.dead_letters.items():
                families["simpul_dead_letters"].add_metric([s.aggregate, group], depth)
        for adapter, depth in (snap.quarantine if snap else {}).items():
            families["simpul_quarantine"].add_metric([adapter], depth)
        for report in snap.adapters if snap else []:
            _add_report(families, report)
        if self.topology is not None:
            _add_topology(families, self.topology)
        yield from families.values()


async def _topology_or_none(redis: Redis) -> Topology | None:
    """The replication topology, or None if it cannot be read (the bus metrics still are)."""
    try:
        return await topology(redis)
    except (RedisError, *TRANSIENT):
        return None


def _add_report(families: Mapping[str, GaugeMetricFamily], r: AdapterReport) -> None:
    values: dict[str, float | None] = {
        "report_age_seconds": r.age_s,
        "running": float(r.state == "running"),
        "change_data_capture": float(r.cdc),
        "failing": float(r.last_error is not None),
        "source_behind_seconds": r.behind_seconds,
        "source_behind_bytes": r.behind_bytes,
        "source_behind_rows": r.behind_rows,
        "source_retained_bytes": r.retained_bytes,
    }
    for name, value in values.items():
        if value is not None:  # unknown is absent, never 0 (0 would say "caught up")
            families[f"simpul_adapter_{name}"].add_metric([r.name], value)


_LABELS = {
    "simpul_stream_length": ["stream"],
    "simpul_stream_last_entry_age_seconds": ["stream"],
    "simpul_group_lag": ["stream", "group"],
    "simpul_group_pending": ["stream", "group"],
    "simpul_group_oldest_pending_age_seconds": ["stream", "group"],
    "simpul_group_consumers": ["stream", "group"],
    "simpul_dead_letters": ["stream", "group"],
    "simpul_quarantine": ["adapter"],
    **{name: ["adapter"] for name in METRICS if name.startswith("simpul_adapter_")},
    "simpul_redis_replicas": ["shape", "shard"],
    "simpul_redis_replicas_in_sync": ["shape", "shard"],
    "simpul_redis_replica_behind_bytes": ["shard", "replica"],
    **{name: ["sentinel"] for name in METRICS if name.startswith("simpul_sentinel_")},
}


def _add_topology(families: Mapping[str, GaugeMetricFamily], topo: Topology) -> None:
    for shard in topo.shards:
        families["simpul_redis_replicas"].add_metric([topo.shape, shard.master],
                                                     len(shard.replicas))  # fmt: skip
        in_sync = families["simpul_redis_replicas_in_sync"]
        in_sync.add_metric([topo.shape, shard.master], shard.in_sync)
        for replica in shard.replicas:
            behind = families["simpul_redis_replica_behind_bytes"]
            behind.add_metric([shard.master, replica.address], replica.behind_bytes)
    for sentinel in topo.sentinels:
        families["simpul_sentinel_up"].add_metric([sentinel.address], float(sentinel.reachable))
        if sentinel.reachable:
            ok = families["simpul_sentinel_quorum_ok"]
            ok.add_metric([sentinel.address], float(bool(sentinel.quorum_ok)))
            epoch = families["simpul_sentinel_config_epoch"]
            epoch.add_metric([sentinel.address], sentinel.config_epoch or 0)


def replication_breaches(topo: Topology) -> list[Breach]:
    """What ``simpul status`` reports about replication: a shard whose replicas are all out of
    sync (under Sentinel or a cluster, or where replicas are attached), a lost quorum."""
    found = []
    for shard in topo.shards:
        expected = topo.shape != "single" or shard.replicas
        if expected and shard.in_sync == 0:
            found.append(Breach(
                kind="replicas_out_of_sync", value=0, limit=1,
                message=f"master {shard.master}: no replica in sync, so every publish fails "
                "NotDurable (or is refused by min-replicas-to-write); see the replicas below",
            ))  # fmt: skip
    if topo.quorum_ok is False:
        found.append(Breach(
            kind="sentinel_quorum", value=0, limit=1,
            message="the Sentinels cannot reach their quorum: a failed master would not be "
            "replaced; start or reach the missing Sentinels",
        ))  # fmt: skip
    return found


def exporter_app(collector: BusCollector) -> Starlette:
    """``GET /metrics`` (Prometheus text, a fresh snapshot per scrape unless one is younger than
    the collector's interval) and ``GET /healthz`` (200 while the exporter runs, with whether
    Redis answered last time)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)

    async def metrics(request: Request) -> Response:
        await collector.refresh()
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(encoder(registry), media_type=content_type)

    async def healthz(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "redis_up": collector.up, "error": collector.error})

    return Starlette(routes=[Route("/metrics", metrics), Route("/healthz", healthz)])
