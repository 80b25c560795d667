"""The Prometheus exporter of the bus (``simpul exporter``): metrics from snapshots
(:class:`bus.admin.snapshots.BusSnapshot`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector
from redis.asyncio import Redis
from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bus import keys
from bus.adapter.report import AdapterReport
from bus.admin.inspect import Inspector
from bus.admin.replication import Topology, topology
from bus.admin.snapshots import BusSnapshot
from bus.connection import TRANSIENT
from bus.errors import SimpulError

__all__ = [
    "METRICS",
    "BusCollector",
    "exporter_app",
]

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
    "simpul_stream_ahead_of_time_seconds": "seconds by which the stream's last-generated id "
    "lies ahead of Redis TIME (an explicit far-future or the maximum id was added to it); only "
    "streams ahead are listed: department streams, intakes, inboxes (key: the stream's key)",
    "simpul_inbox_lag": "routed delivery: entries of the subscription's inbox not yet delivered "
    "to its service group (group: the service; stream: the department stream or partition "
    "feeding it)",
    "simpul_inbox_pending": "routed delivery: entries of the inbox delivered to the service "
    "group and not acked",
    "simpul_inbox_oldest_pending_age_seconds": "routed delivery: age of the oldest unacked entry "
    "of the inbox's group (0: none)",
    "simpul_inbox_dead_letters": "routed delivery: dead letters of the inbox's group "
    "(<inbox>:dlq:<group>)",
    "simpul_intake_backlog": "routed delivery: entries of the producer's intake the router has "
    "not admitted (or refused) yet (principal: the producer)",
    "simpul_intake_dead_letters": "routed delivery: entries of the producer's intake the router "
    "refused (<intake>:dlq)",
    "simpul_redis_up": "1 if the last snapshot of Redis succeeded, else 0",
    "simpul_exporter_scrape_seconds": "seconds the last snapshot of Redis took",
}
"""Every metric the exporter serves, with its help text. Labels: ``stream`` is the aggregate
(``dukcapil.citizen``; of an inbox, the department stream or partition feeding it), ``group``
the consumer group (the service), ``adapter`` the adapter, ``principal`` an intake's producer."""


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
        self.ahead: dict[str, float] = {}  # stream key -> seconds ahead of Redis TIME
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
            self.ahead = await _ahead_or_empty(self.inspector.redis) if self.up else {}
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
        if snap is not None:
            _add_routed(families, snap)
        if self.topology is not None:
            _add_topology(families, self.topology)
        for key, seconds in sorted(self.ahead.items()):
            families["simpul_stream_ahead_of_time_seconds"].add_metric([key], seconds)
        yield from families.values()


def _add_routed(families: Mapping[str, GaugeMetricFamily], snap: BusSnapshot) -> None:
    for inbox in snap.inboxes:
        labels = [inbox.group, inbox.stream]
        g = inbox.consumer_group
        if g is not None:
            if g.lag is not None:
                families["simpul_inbox_lag"].add_metric(labels, g.lag)
            families["simpul_inbox_pending"].add_metric(labels, g.pending)
            oldest = families["simpul_inbox_oldest_pending_age_seconds"]
            oldest.add_metric(labels, g.oldest_pending_age_s or 0.0)
        families["simpul_inbox_dead_letters"].add_metric(labels, inbox.dead_letters)
    for intake in snap.intakes:
        families["simpul_intake_backlog"].add_metric([intake.principal], intake.backlog)
        families["simpul_intake_dead_letters"].add_metric([intake.principal], intake.dead_letters)


async def _topology_or_none(redis: Redis) -> Topology | None:
    """The replication topology, or None if it cannot be read (the bus metrics still are)."""
    try:
        return await topology(redis)
    except (RedisError, *TRANSIENT):
        return None


AHEAD_TOLERANCE_MS = 60_000  # clocks of replicas and clients differ; ids from them do not


async def _ahead_or_empty(redis: Redis) -> dict[str, float]:
    """Stream key -> seconds its last-generated id is ahead of ``TIME`` (more than a minute):
    every ``simpul:`` stream, by SCAN. Empty if it cannot be read (the bus metrics still are)."""
    try:
        seconds, micros = await redis.time()
        now_ms = int(seconds) * 1000 + int(micros) // 1000
        found: dict[str, float] = {}
        async for raw in redis.scan_iter(match=f"{keys.PREFIX}:*", count=500, _type="stream"):
            key = raw.decode() if isinstance(raw, bytes) else raw
            info: Any = await redis.xinfo_stream(key)
            last = info.get("last-generated-id") or b"0-0"
            ms = int((last.decode() if isinstance(last, bytes) else last).split("-")[0])
            if ms - now_ms > AHEAD_TOLERANCE_MS:
                found[key] = (ms - now_ms) / 1000
        return found
    except (RedisError, *TRANSIENT):
        return {}


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
    "simpul_stream_ahead_of_time_seconds": ["key"],
    **{name: ["group", "stream"] for name in METRICS if name.startswith("simpul_inbox_")},
    **{name: ["principal"] for name in METRICS if name.startswith("simpul_intake_")},
    **{name: ["adapter"] for name in METRICS if name.startswith("simpul_adapter_")},
    "simpul_redis_replicas": ["shape", "shard"],
    "simpul_redis_replicas_in_sync": ["shape", "shard"],
    "simpul_redis_replica_behind_bytes": ["shard", "replica"],
    **{name: ["sentinel"] for name in METRICS if name.startswith("simpul_sentinel_")},
}


def _add_topology(families: Mapping[str, GaugeMetricFamily], topo: Topology) -> None:
    for shard in topo.shards:
        families["simpul_redis_replicas"].add_metric(
            [topo.shape, shard.master], len(shard.replicas)
        )
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
