"""Prometheus metrics of one service replica: what it consumed, failed, dead-lettered, published.

Every :class:`~bus.service.Service` owns a :class:`ServiceMetrics` with a ``CollectorRegistry``
of its own, so several services in one process (the demo) never collide; a service run with
``SIMPUL_HTTP`` serves it at ``GET /metrics`` beside ``/healthz`` and ``/readyz``
(:func:`bus.health.health_app`). The bus-wide view (stream lengths, group lag, pending, dead
letters, quarantine, Redis up) is ``simpul exporter``'s (:mod:`bus.admin.exporter`);
docs/operations.md lists both.

Labels stay bounded and impersonal: ``service`` is the service's name, ``type`` an event type
the contract registry knows (or a type the service has a handler for) and anything else — junk
entries can carry any text — is ``unknown``; ``reason`` is a :class:`~bus.deadletter.Reason`.

The hot path is cheap. prometheus_client's metric objects take a lock per increment, which
costs more than everything else a metric needs; a replica's counters are only ever changed by
its own event loop, so they are plain numbers here, per type, in a :class:`TypeMetrics` found
with one dict lookup, and rendered as Prometheus families when scraped (in the same loop).
One event costs a dict lookup, two ``perf_counter`` calls, a ``bisect`` and three additions.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Container, Iterable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from bus.contracts import Registry
from bus.deadletter import Reason
from bus.health import Health

__all__ = ["HANDLER_BUCKETS", "UNKNOWN", "ServiceMetrics", "TypeMetrics"]

UNKNOWN = "unknown"  # the type label of anything the registry does not know
# Handler durations: 1 ms .. 30 s (a handler slower than claim_idle_ms is reclaimed anyway).
HANDLER_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
_LE = [*(str(b) for b in HANDLER_BUCKETS), "+Inf"]  # as prometheus_client writes "le"
# Reasons a known type can be dead-lettered for; unknown/undecodable entries get the others.
_TYPED_REASONS = (
    Reason.HANDLER_FAILED,
    Reason.GIVEN_UP,
    Reason.MAX_DELIVERIES,
    Reason.CONTRACT_VIOLATION,
)


class TypeMetrics:
    """What one service did with one ``type`` label: plain numbers, changed by its event loop."""

    __slots__ = ("buckets", "consumed", "failed", "label", "seconds")

    def __init__(self, label: str) -> None:
        self.label = label
        self.consumed = 0  # handled and acked
        self.failed = 0  # handler failures, each attempt
        self.buckets = [0] * (len(HANDLER_BUCKETS) + 1)  # not cumulative; the last is +Inf
        self.seconds = 0.0  # total handler time

    def observe(self, seconds: float) -> None:
        """One successful handler run of ``seconds``."""
        self.buckets[bisect_left(HANDLER_BUCKETS, seconds)] += 1
        self.seconds += seconds


class ServiceMetrics:
    """The metrics of one service, in their own registry (:attr:`registry`).

    ``contracts`` and ``handled`` say which event types are labels of their own: a type in
    either (both are looked up live, so contracts imported later count too); any other type is
    :data:`UNKNOWN`. ``health`` feeds the readiness and age gauges at scrape time.

    Not thread-safe: the consume loop, its handlers' ``ctx.publish`` and the HTTP server of a
    service share one event loop, which is the only place these numbers change or are read.
    """

    def __init__(
        self,
        service: str,
        *,
        contracts: Registry,
        health: Health,
        handled: Container[str] = (),
        process: bool = True,
    ) -> None:
        self.service = service
        self.health = health
        self._contracts = contracts
        self._handled = handled
        self._kinds: dict[str | bytes, TypeMetrics] = {}  # by label, and by raw type bytes
        self._unknown: TypeMetrics | None = None  # made on first use (on_every, junk types)
        self.dead_letters: dict[tuple[str, str], int] = {}  # (type label, reason) -> count
        self.published_by_type: dict[str, int] = {}  # type label -> count
        self.registry = CollectorRegistry()
        self.registry.register(_Collector(self))
        if process:  # memory, CPU, open files of this process (Linux /proc)
            ProcessCollector(registry=self.registry)

    # -- labels -----------------------------------------------------------------------------

    def kind(self, event_type: str | bytes) -> TypeMetrics:
        """The numbers of ``event_type`` (a raw entry's ``type`` field works as is)."""
        kind = self._kinds.get(event_type)
        if kind is not None:
            return kind
        label = self.label(event_type)
        if label == UNKNOWN:  # not cached by its text: junk types must not grow the cache
            if self._unknown is None:
                self._unknown = TypeMetrics(UNKNOWN)
            return self._unknown
        kind = self._kinds.get(label) or TypeMetrics(label)
        self._kinds[label] = self._kinds[event_type] = kind
        return kind

    def label(self, event_type: str | bytes) -> str:
        """``event_type`` if the registry (or a handler) knows it, else :data:`UNKNOWN`."""
        kind = self._kinds.get(event_type)
        if kind is not None:
            return kind.label
        if isinstance(event_type, bytes):
            try:
                event_type = event_type.decode()
            except UnicodeDecodeError:
                return UNKNOWN
        known = event_type in self._contracts or event_type in self._handled
        return event_type if known else UNKNOWN

    def prepare(self, event_types: Iterable[str]) -> None:
        """Report the types a service consumes at zero from the start, so that ``rate()`` and
        ``increase()`` see the first event and the first dead letter of each."""
        for event_type in event_types:
            label = self.kind(event_type).label
            for reason in _TYPED_REASONS:
                self.dead_letters.setdefault((label, reason.value), 0)
        for reason in Reason:
            self.dead_letters.setdefault((UNKNOWN, reason.value), 0)

    # -- hooks of the consume loop and the publisher ----------------------------------------

    def dead_lettered(self, event_type: str | bytes, reason: Reason) -> None:
        key = (self.label(event_type), reason.value)  # bounded: registry types x an enum
        self.dead_letters[key] = self.dead_letters.get(key, 0) + 1

    def published(self, event_type: str) -> None:
        label = self.label(event_type)
        self.published_by_type[label] = self.published_by_type.get(label, 0) + 1

    # -- exposition -------------------------------------------------------------------------

    def kinds(self) -> list[TypeMetrics]:
        """Every type with numbers, sorted by label."""
        unique = {id(k): k for k in self._kinds.values()}
        if self._unknown is not None:
            unique[id(self._unknown)] = self._unknown
        return sorted(unique.values(), key=lambda k: k.label)

    def exposition(self, accept: str = "") -> tuple[bytes, str]:
        """What ``GET /metrics`` serves: the body and its content type, in the format the
        request's Accept header asks for (Prometheus text 0.0.4 by default, or OpenMetrics)."""
        encode, content_type = choose_encoder(accept)
        return encode(self.registry), content_type


class _Collector(Collector):
    """Renders a :class:`ServiceMetrics` as Prometheus metric families at scrape time."""

    def __init__(self, metrics: ServiceMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        metrics, service = self.metrics, self.metrics.service
        labels = ["service", "type"]
        consumed = CounterMetricFamily(
            "simpul_events_consumed", "Events handled and acked.", labels=labels
        )
        failed = CounterMetricFamily(
            "simpul_events_failed", "Handler failures, each attempt.", labels=labels
        )
        seconds = HistogramMetricFamily(
            "simpul_handler_seconds", "Duration of handler runs that succeeded.", labels=labels
        )
        for kind in metrics.kinds():
            consumed.add_metric([service, kind.label], kind.consumed)
            failed.add_metric([service, kind.label], kind.failed)
            cumulative: list[tuple[str, float]] = []
            total = 0
            for le, count in zip(_LE, kind.buckets, strict=True):
                total += count
                cumulative.append((le, float(total)))
            seconds.add_metric([service, kind.label], cumulative, kind.seconds)
        dead = CounterMetricFamily(
            "simpul_events_dead_lettered",
            "Entries moved to the group's dead letters.",
            labels=[*labels, "reason"],
        )
        for (label, reason), count in sorted(metrics.dead_letters.items()):
            dead.add_metric([service, label, reason], count)
        published = CounterMetricFamily(
            "simpul_events_published",
            "Events the service's handlers published that were new "
            "on their stream (a duplicate of an event already there is not counted).",
            labels=labels,
        )
        for label, count in sorted(metrics.published_by_type.items()):
            published.add_metric([service, label], count)
        yield from (consumed, failed, dead, published, seconds)
        yield from self._health(metrics.health, service)

    @staticmethod
    def _health(health: Health, service: str) -> Iterator[Metric]:
        now = time.monotonic()
        ready = GaugeMetricFamily(
            "simpul_consumer_ready",
            "1 while /readyz answers 200: a recent successful poll of Redis and no error since.",
            labels=["service"],
        )
        ready.add_metric([service], 1.0 if health.ready else 0.0)
        poll = GaugeMetricFamily(
            "simpul_consumer_last_poll_age_seconds",
            "Seconds since the last successful read of Redis (absent before the first).",
            labels=["service"],
        )
        if health.last_poll is not None:
            poll.add_metric([service], now - health.last_poll)
        ack = GaugeMetricFamily(
            "simpul_consumer_last_ack_age_seconds",
            "Seconds since the last successful ack (absent before the first).",
            labels=["service"],
        )
        if health.last_ack is not None:
            ack.add_metric([service], now - health.last_ack)
        lost = CounterMetricFamily(
            "simpul_entries_lost",
            "Entries of the service's streams trimmed or deleted before its group read them "
            "(bus.gaps; the log says which, as entries_lost_unread).",
            labels=["service"],
        )
        lost.add_metric([service], health.counters.get("entries_lost", 0))
        yield from (ready, poll, ack, lost)
