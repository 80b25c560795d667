"""Inspecting the bus: what every stream, consumer group, dead-letter stream and quarantine holds.

The typed, read-only API behind ``simpul status``, ``map``, the Prometheus exporter
(:mod:`bus.admin.exporter`) and the web dashboard. Nothing here writes to Redis, joins a consumer
group or acks.

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

Routed delivery (decision 0011) adds two kinds of streams, found by the same SCAN (and, given a
:class:`RoutingPlan` from the topology, expected even before they exist): each subscription's
**inbox** ``simpul:inbox:{<group>/<stream>}`` with its service group's lag, pending entries and
dead letters (:class:`InboxSnapshot`), and each producer's **intake**
``simpul:intake:{<principal>}`` with its backlog, the entries the router has not admitted yet
(:class:`IntakeSnapshot`). Every stream measured whose last-generated id lies more than a
minute ahead of ``TIME`` is listed in :attr:`BusSnapshot.ahead_of_time`. They cost one more
round trip (two with inbox groups): ``XINFO STREAM``, ``XINFO GROUPS`` and ``XLEN`` of the dead
letters per inbox and intake, then ``XPENDING`` and ``XINFO CONSUMERS`` per inbox group.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from bus import keys
from bus.access.topology import Topology, contracts, load_topology
from bus.adapter.report import AdapterReport
from bus.admin.snapshots import (
    AHEAD_TOLERANCE_S,
    MAX_CONSUMERS,
    AheadOfTimeSnapshot,
    BusSnapshot,
    ConsumerSnapshot,
    GroupSnapshot,
    InboxSnapshot,
    IntakeSnapshot,
    StreamSnapshot,
)
from bus.admin.streams import _is_aggregate_stream, scan
from bus.connection import TRANSIENT, simpul_error
from bus.contracts import Registry, default_registry
from bus.decoding import text as _text
from bus.entry_ids import age_s
from bus.entry_ids import parts_or_zero as _id_key

__all__ = [
    "Inspector",
    "RoutingPlan",
    "snapshot",
]

_STREAM_PREFIX = f"{keys.PREFIX}:{{"
_QUARANTINE_PREFIX = f"{keys.PREFIX}:quarantine:{{"
_DLQ = re.compile(r"^(simpul:\{[^{}]+\}):dlq:(.+)$")
_REPORT = re.compile(rf"^{re.escape(keys.ADAPTER_REPORTS)}\{{([^{{}}]+)\}}:report$")


@dataclass(frozen=True)
class RoutingPlan:
    """The inboxes and intakes a routed topology (decision 0011) says exist: listed by a
    snapshot even before the router first wrote them, inboxes with their subscription's types."""

    inboxes: Mapping[str, tuple[str, tuple[str, ...]]] = field(default_factory=dict)
    """inbox key -> (group, the subscription's event types on its stream)"""
    intakes: tuple[str, ...] = ()
    """the publishing principals"""

    @classmethod
    def of(cls, topology: Topology) -> RoutingPlan:
        """Every subscription's inbox (one per department stream or partition of its types)
        and every publisher's intake; empty for a topology without ``delivery: router``."""
        if not topology.routed:
            return cls()
        inboxes: dict[str, tuple[str, set[str]]] = {}
        for service in topology.services:
            for subscription in service.subscriptions:
                for stream in keys.streams(keys.aggregate_of(subscription.type)):
                    key = keys.inbox(stream, service.group)
                    inboxes.setdefault(key, (service.group, set()))[1].add(subscription.type)
        return cls(
            {k: (g, tuple(sorted(t))) for k, (g, t) in sorted(inboxes.items())},
            tuple(sorted(p.principal for p in topology.publishers())),
        )

    @classmethod
    def load(cls, path: str | Path) -> RoutingPlan:
        """:meth:`of` the topology YAML at ``path`` (validated against the registered
        contracts). Raises ConfigurationError naming the problem."""
        return cls.of(load_topology(path, registry=contracts()))


async def snapshot(
    redis: Redis,
    *,
    registry: Registry = default_registry,
    scan_count: int = 1000,
    plan: RoutingPlan | None = None,
) -> BusSnapshot:
    """One snapshot of the bus, discovering streams with SCAN (see the module's cost note).

    Raises :class:`~bus.errors.RedisUnavailable` if Redis cannot be reached,
    :class:`~bus.errors.PermissionDenied` if the ACL user may not run the commands.
    """
    inspector = Inspector(
        redis, registry=registry, rediscover_s=0, scan_count=scan_count, plan=plan
    )
    return await inspector.take()


class _Found:
    """What discovery found: aggregate streams, dead-letter streams, quarantine streams."""

    def __init__(self) -> None:
        self.streams: set[str] = set()
        self.dead_letters: set[tuple[str, str]] = set()  # (stream key, group)
        self.quarantines: set[str] = set()  # adapter names
        self.reports: set[str] = set()  # adapter names
        self.inboxes: set[str] = set()  # inbox keys
        self.intakes: set[str] = set()  # principals
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
        elif keys.is_inbox(key):
            self.inboxes.add(key)
        elif (principal := keys.intake_owner(key)) is not None and "{" not in principal:
            self.intakes.add(principal)


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
        plan: RoutingPlan | None = None,
    ) -> None:
        self.redis = redis
        self.plan = plan or RoutingPlan()
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
            raise simpul_error(exc) from None

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
        routed = await self._routed(found, now_ms)
        ahead = _ahead(
            [(s.key, s.last_generated_id) for s in result]
            + [(i.key, i.last_generated_id) for i in routed.inboxes]
            + [(i.key, i.last_generated_id) for i in routed.intakes],
            now_ms,
        )
        return BusSnapshot(
            taken_at=_time_of(now_ms),
            redis_version=version,
            reduced=_version(version) < (7, 0),
            streams=result,
            quarantine=quarantine,
            adapters=reports,
            inboxes=routed.inboxes,
            intakes=routed.intakes,
            ahead_of_time=ahead,
            redis_commands=scans + len(first) + len(second) + routed.commands,
            round_trips=scans + 1 + (1 if second else 0) + routed.round_trips,
        )

    async def _routed(self, found: _Found, now_ms: int) -> _Routed:
        """The inboxes and intakes: found by SCAN or named by the plan."""
        routed = _Routed()
        inboxes = sorted(found.inboxes | set(self.plan.inboxes), key=_inbox_order)
        intakes = sorted(found.intakes | set(self.plan.intakes))
        if not inboxes and not intakes:
            return routed
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in inboxes:
                pipe.xinfo_stream(key)
                pipe.xinfo_groups(key)
                pipe.xlen(keys.dead_letters(key, _inbox_group(key)))
            for principal in intakes:
                pipe.xinfo_stream(keys.intake(principal))
                pipe.xinfo_groups(keys.intake(principal))
                pipe.xlen(keys.intake_dead_letters(principal))
            first: list[Any] = await pipe.execute(raise_on_error=False)
        routed.commands, routed.round_trips = len(first), 1
        replies = iter(first)
        # (key, XINFO STREAM or None, the service group's fields or None, XLEN of dead letters)
        measured: list[tuple[str, dict[str, Any] | None, dict[str, Any] | None, Any]] = []
        for key in inboxes:
            info, groups, dead = next(replies), next(replies), next(replies)
            mine = [
                g
                for g in map(_group_fields, _missing_or(groups) or [])
                if g["name"] == _inbox_group(key)
            ]
            measured.append((key, _missing_or(info), mine[0] if mine else None, dead))
        present = [(key, fields) for key, _, fields, _ in measured if fields is not None]
        second: list[Any] = []
        if present:
            async with self.redis.pipeline(transaction=False) as pipe:
                for key, fields in present:
                    pipe.xpending(key, fields["name"])
                    pipe.xinfo_consumers(key, fields["name"])
                second = await pipe.execute(raise_on_error=False)
            routed.commands += len(second)
            routed.round_trips += 1
        group_replies = iter(second)
        for key, info, own, dead in measured:
            group: GroupSnapshot | None = None
            if own is not None:
                pending, consumers = next(group_replies), next(group_replies)
                group = self._group(own, info, (pending, consumers, dead), now_ms)
            routed.inboxes.append(self._inbox(key, info, group, dead))
        for principal in intakes:
            info, groups, dead = next(replies), next(replies), next(replies)
            routed.intakes.append(
                _intake(principal, _missing_or(info), _missing_or(groups) or [], dead, now_ms)
            )
        return routed

    def _inbox(
        self, key: str, info: dict[str, Any] | None, group: GroupSnapshot | None, dead: Any
    ) -> InboxSnapshot:
        found = keys.inbox_of(key)
        assert found is not None  # every key here is an inbox key
        stream, name = found
        generated = _text(info.get("last-generated-id") or b"0-0") if info else "0-0"
        return InboxSnapshot(
            key=key,
            group=name,
            stream=stream[len(_STREAM_PREFIX) : -1],
            types=list(self.plan.inboxes.get(key, (name, ()))[1]),
            exists=info is not None,
            length=int(info.get("length") or 0) if info else 0,
            last_generated_id=None if generated == "0-0" else generated,
            consumer_group=group,
            dead_letters=int(_missing_or(dead) or 0),
        )

    async def _discover(self) -> _Found:
        found = _Found()
        async for batch in scan(self.redis, f"{keys.PREFIX}:*", self.scan_count):
            found.commands += 1
            for key in batch:
                found.add(_text(key))
        # A second walk: the reports are hashes, and the first keeps to streams so that the
        # dedupe markers (strings, most of the keyspace) are filtered out by Redis.
        reports = f"{keys.ADAPTER_REPORTS}*"
        async for batch in scan(self.redis, reports, self.scan_count, kind="hash"):
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
            oldest_pending_age_s=age_s(oldest_id, now_ms) if oldest_id else None,
            last_delivered_id=fields["last_delivered_id"],
            entries_read=fields["entries_read"],
            lag=lag,
            dead_letters=int(_missing_or(dead_reply) or 0),
        )


@dataclass
class _Routed:
    inboxes: list[InboxSnapshot] = field(default_factory=list)
    intakes: list[IntakeSnapshot] = field(default_factory=list)
    commands: int = 0
    round_trips: int = 0


def _inbox_group(key: str) -> str:
    found = keys.inbox_of(key)
    return found[1] if found else ""


def _inbox_order(key: str) -> tuple[str, str]:
    found = keys.inbox_of(key)
    return (found[1], found[0]) if found else ("", key)


def _intake(
    principal: str, info: dict[str, Any] | None, groups: list[Any], dead: Any, now_ms: int
) -> IntakeSnapshot:
    """The backlog is what the router has not settled: its lag plus its pending entries. Where
    Redis cannot tell the lag (6.2, or an intake reset), the intake's length, which the router's
    trimming keeps to what it has not settled."""
    length = int(info.get("length") or 0) if info else 0
    router = next((g for g in groups if _text(g["name"]) == keys.ROUTER_GROUP), None)
    pending = int(router.get("pending") or 0) if router else 0
    lag = router.get("lag") if router else None
    backlog = length if router is None or lag is None else int(lag) + pending
    first = _entry_id(info.get("first-entry")) if info else None
    generated = _text(info.get("last-generated-id") or b"0-0") if info else "0-0"
    return IntakeSnapshot(
        key=keys.intake(principal),
        principal=principal,
        exists=info is not None,
        length=length,
        backlog=backlog,
        router_pending=pending,
        router_reading=router is not None,
        oldest_age_s=age_s(first, now_ms) if first and length else None,
        last_generated_id=None if generated == "0-0" else generated,
        dead_letters=int(_missing_or(dead) or 0),
    )


def _ahead(streams: list[tuple[str, str | None]], now_ms: int) -> list[AheadOfTimeSnapshot]:
    found = []
    for key, last in streams:
        if last is None:
            continue
        ahead_s = (_id_key(last)[0] - now_ms) / 1000
        if ahead_s > AHEAD_TOLERANCE_S:
            found.append(AheadOfTimeSnapshot(key=key, last_generated_id=last, ahead_s=ahead_s))
    return sorted(found, key=lambda a: a.key)


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
        first_entry_age_s=age_s(first, now_ms) if first else None,
        last_entry_age_s=age_s(newest, now_ms) if newest else None,
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
