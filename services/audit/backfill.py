"""Backfill: give a new service the archived events that were trimmed from its streams.

For each stream the service subscribes to, the archived entries older than the oldest entry
still in the stream (entry ids compared as numbers, ``ms-seq``) and of the types the service
handles are delivered to its handlers in archive order, as live delivery would: validation,
``once`` dedupe, a few attempts with backoff, and a dead letter with the reason when it still
fails (``simpul:{<aggregate>}:dlq:<service>``, consumer ``audit-backfill``). The entries still in
the stream are left to the service's consumer group, which the service creates at ``0`` when it
starts: nothing is handled twice and nothing is missed.

Streams the service's group already exists on are skipped (it has consumed them live) unless
``force``. Entries trimmed while the backfill runs are picked up by another pass. Specific
personal data has no data in the archive: such events are counted as not backfillable.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from bus import (
    ConfigurationError,
    Envelope,
    Service,
    connect,
    entry_id_parts,
    get_logger,
    keys,
    mask_text,
    redis_text,
)
from bus.deadletter import MAX_ERROR, Reason, Verdict, dead_letter_fields
from bus.dispatch import Dispatcher, Failed

__all__ = ["NOT_BACKFILLABLE", "BackfillReport", "Failure", "StreamPlan", "backfill"]

NOT_BACKFILLABLE = (
    "specific personal data (or a type without a contract): the archive keeps its digest, "
    "not its data"
)
CONSUMER = "audit-backfill"  # dlq.consumer of the dead letters a backfill writes
_PAGE = 500
_MAX_PASSES = 10
_log = get_logger("services.audit")
Cutoff = tuple[int, int]  # exclusive upper bound of the entry ids to backfill


@dataclass(slots=True)
class StreamPlan:
    """What a backfill does (did) on one stream."""

    stream: str
    types: tuple[str, ...] | None  # the types the service handles there; None: every type
    cutoff: str = ""  # archived entries below this id are gone from the stream (exclusive)
    oldest: str | None = None  # the oldest entry still in the stream (None: it is empty)
    skipped: str | None = None  # why the stream is not backfilled
    warnings: list[str] = field(default_factory=list)
    events: int = 0  # archived events to backfill (not backfillable ones included)
    not_backfillable: int = 0
    delivered: int = 0
    dead_lettered: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "stream": self.stream,
            "types": None if self.types is None else list(self.types),
            "cutoff": self.cutoff,
            "oldest": self.oldest,
            "skipped": self.skipped,
            "warnings": list(self.warnings),
            "events": self.events,
            "not_backfillable": self.not_backfillable,
            "delivered": self.delivered,
            "dead_lettered": self.dead_lettered,
        }


@dataclass(frozen=True, slots=True)
class Failure:
    """An archived event the service's handler did not take (it is in the dead letters)."""

    seq: int
    stream: str
    entry_id: str
    event_id: str
    type: str
    reason: str
    error: str


@dataclass(slots=True)
class BackfillReport:
    service: str
    dry_run: bool
    streams: list[StreamPlan]
    failures: list[Failure] = field(default_factory=list)
    passes: int = 0

    @property
    def events(self) -> int:
        return sum(p.events for p in self.streams)

    @property
    def delivered(self) -> int:
        return sum(p.delivered for p in self.streams)

    @property
    def dead_lettered(self) -> int:
        return sum(p.dead_lettered for p in self.streams)

    @property
    def not_backfillable(self) -> int:
        return sum(p.not_backfillable for p in self.streams)

    @property
    def ok(self) -> bool:
        """True when every backfillable event was delivered."""
        return self.dead_lettered == 0

    def to_json(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "dry_run": self.dry_run,
            "ok": self.ok,
            "events": self.events,
            "delivered": self.delivered,
            "dead_lettered": self.dead_lettered,
            "not_backfillable": self.not_backfillable,
            "not_backfillable_reason": NOT_BACKFILLABLE,
            "passes": self.passes,
            "streams": [p.to_json() for p in self.streams],
            "failures": [asdict(f) for f in self.failures],
        }


class Archive(Protocol):
    """What a backfill reads of the audit service: its own service's name and the archived rows
    (typed by use, so this module does not import the service that runs it)."""

    @property
    def service(self) -> Service: ...

    async def rows(
        self, sql_where: str, params: Sequence[Any], *, after: int, limit: int
    ) -> list[dict[str, Any]]: ...

    async def tally(self, sql_where: str, params: Sequence[Any]) -> tuple[int, int]: ...


async def backfill(
    audit: Archive,
    service: Service,
    *,
    redis_url: str | None = None,
    dry_run: bool = False,
    force: bool = False,
    attempts: int = 3,
    progress: Callable[[int, int], None] | None = None,
) -> BackfillReport:
    """Deliver to ``service`` the archived events trimmed from its streams (see the module).

    ``attempts``: deliveries per event before it is dead-lettered (at most the service's
    ``max_deliveries``). ``progress(done, total)`` is called after each event.
    """
    if service.name == audit.service.name:
        raise ConfigurationError("the audit service cannot be backfilled from its own archive")
    if not service.handlers and service.every is None:
        raise ConfigurationError(f"service {service.name} has no handlers to backfill")
    url = redis_url or service.settings.redis_url
    if url is None:
        raise ConfigurationError("no Redis: set SIMPUL_REDIS_URL")
    attempts = max(1, min(attempts, service.settings.max_deliveries))
    redis = connect(url, client_name=f"simpul:audit:backfill:{service.name}")
    run = _Run(audit, service, redis, BackfillReport(service.name, dry_run, []), progress)
    try:
        active = await run.plan(force=force)
        if dry_run or not active:
            return run.report
        async with service.dispatching(url) as dispatcher:
            await run.deliver(dispatcher, active, attempts)
    finally:
        await redis.aclose()
    report = run.report
    _log.info(
        "backfill_finished",
        service=service.name,
        delivered=report.delivered,
        dead_lettered=report.dead_lettered,
        not_backfillable=report.not_backfillable,
        passes=report.passes,
    )
    return report


@dataclass
class _Run:
    """One backfill: the bounds per stream, the report, how far it got."""

    audit: Archive
    service: Service
    redis: Redis
    report: BackfillReport
    progress: Callable[[int, int], None] | None
    cutoffs: dict[str, Cutoff] = field(default_factory=dict)  # exclusive upper bounds
    lower: dict[str, Cutoff] = field(default_factory=dict)  # inclusive lower bounds (pass 2+)
    done: int = 0

    async def plan(self, *, force: bool) -> list[StreamPlan]:
        """Bounds and counts per stream; return the streams to backfill."""
        for stream in _streams(self.service):
            plan = _plan_of(self.service, stream)
            self.report.streams.append(plan)
            self.cutoffs[stream] = await _inspect(
                self.redis,
                plan,
                group=self.service.name,
                audit_group=self.audit.service.name,
                force=force,
            )
        active = [p for p in self.report.streams if p.skipped is None]
        for plan in active:
            plan.events, plan.not_backfillable = await self.audit.tally(*self._where([plan]))
        return active

    async def deliver(
        self, dispatcher: Dispatcher, active: list[StreamPlan], attempts: int
    ) -> None:
        """Deliver pass after pass, until nothing was trimmed during the last one."""
        while active and self.report.passes < _MAX_PASSES:
            self.report.passes += 1
            sql, params = self._where(active)
            after = 0
            while rows := await self.audit.rows(sql, params, after=after, limit=_PAGE):
                for row in rows:
                    await self._one(dispatcher, row, attempts)
                    self.done += 1
                    if self.progress is not None:
                        self.progress(self.done, self.report.events)
                after = int(rows[-1]["seq"])
            active = await self._trimmed_meanwhile(active)
            for plan in active:  # entries trimmed during this pass: one more pass for them
                more, thin = await self.audit.tally(*self._where([plan]))
                plan.events += more
                plan.not_backfillable += thin

    async def _trimmed_meanwhile(self, plans: list[StreamPlan]) -> list[StreamPlan]:
        """Streams whose oldest entry moved during the pass; their bounds move to the gap."""
        moved = []
        for plan in plans:
            cutoff = await _cutoff(self.redis, plan)
            if cutoff > self.cutoffs[plan.stream]:
                self.lower[plan.stream] = self.cutoffs[plan.stream]
                self.cutoffs[plan.stream] = cutoff
                plan.cutoff = _id(cutoff)
                moved.append(plan)
        return moved

    def _where(self, plans: Iterable[StreamPlan]) -> tuple[str, list[Any]]:
        """A WHERE clause for the archived entries of ``plans`` between their bounds."""
        clauses: list[str] = []
        params: list[Any] = []
        for plan in plans:
            ms, seq = self.cutoffs[plan.stream]
            clause = "stream = ? AND (entry_ms < ? OR (entry_ms = ? AND entry_seq < ?))"
            params += [plan.stream, ms, ms, seq]
            if plan.stream in self.lower:
                low_ms, low_seq = self.lower[plan.stream]
                clause += " AND (entry_ms > ? OR (entry_ms = ? AND entry_seq >= ?))"
                params += [low_ms, low_ms, low_seq]
            if plan.types is not None:
                clause += f" AND type IN ({', '.join('?' for _ in plan.types)})"
                params += plan.types
            clauses.append(f"({clause})")
        return " OR ".join(clauses) or "1 = 0", params

    async def _one(self, dispatcher: Dispatcher, row: dict[str, Any], attempts: int) -> None:
        if row["data"] is None:
            return  # metadata only: counted as not backfillable by the tally
        plan = next(p for p in self.report.streams if p.stream == row["stream"])
        raw = _raw(row)
        verdict = await self._attempt(dispatcher, row, raw, attempts)
        if verdict is None:
            plan.delivered += 1
            return
        group = self.service.name
        fields = dead_letter_fields(
            raw,
            verdict,
            stream=row["stream"],
            group=group,
            consumer=CONSUMER,
            entry_id=row["entry_id"],
        )
        pairs = dict(zip(fields[::2], fields[1::2], strict=True))
        dlq = keys.dead_letters(row["stream"], group)
        await self.redis.xadd(dlq, pairs)  # type: ignore[arg-type]
        plan.dead_lettered += 1
        self.report.failures.append(
            Failure(
                seq=int(row["seq"]),
                stream=row["stream"],
                entry_id=row["entry_id"],
                event_id=row["event_id"],
                type=row["type"],
                reason=verdict.reason.value,
                error=mask_text(verdict.error)[:MAX_ERROR],
            )
        )
        _log.error(
            "backfill_dead_lettered",
            service=group,
            stream=row["stream"],
            entry_id=row["entry_id"],
            event_id=row["event_id"],
            reason=verdict.reason.value,
            attempts=verdict.attempts,
        )

    async def _attempt(
        self, dispatcher: Dispatcher, row: dict[str, Any], raw: dict[bytes, bytes], attempts: int
    ) -> Verdict | None:
        """Dispatch as a delivery would be, retrying with backoff; a Verdict when it gave up."""
        settings = self.service.settings
        delivery = 1
        while True:
            try:
                return await dispatcher.dispatch(row["stream"], row["entry_id"], raw, delivery)
            except Failed as retry:
                if delivery >= attempts:
                    return Verdict(Reason.HANDLER_FAILED, str(retry), delivery)
                _log.warning(
                    "backfill_handler_failed",
                    service=self.service.name,
                    entry_id=row["entry_id"],
                    delivery=delivery,
                    error_type=type(retry.cause).__name__,
                )
                await asyncio.sleep(settings.retry_delay_ms(delivery) / 1000)
                delivery += 1


def _streams(service: Service) -> list[str]:
    own = {s for h in service.handlers.values() for s in h.model.__contract__.streams}
    return sorted(own | set(service.every_streams))


def _plan_of(service: Service, stream: str) -> StreamPlan:
    if service.every is not None and stream in service.every_streams:
        return StreamPlan(stream, None)
    types = sorted(t for t, h in service.handlers.items() if stream in h.model.__contract__.streams)
    return StreamPlan(stream, tuple(types))


async def _inspect(
    redis: Redis, plan: StreamPlan, *, group: str, audit_group: str, force: bool
) -> Cutoff:
    """Set the plan's cutoff, skip reason and warnings; return the cutoff."""
    cutoff = await _cutoff(redis, plan)
    plan.cutoff = _id(cutoff)
    groups = await _groups(redis, plan.stream)
    if group in groups and not force:
        plan.skipped = (
            f"consumer group {group} exists on this stream: the service has consumed it live "
            "(force to deliver the archived events anyway)"
        )
    if audit_group not in groups:
        plan.warnings.append(
            f"the {audit_group} service has no consumer group on this stream: its events may "
            "never have been archived"
        )
        return cutoff
    missed = await _unread_trimmed(redis, plan.stream, groups[audit_group])
    if missed:
        plan.warnings.append(
            f"{missed} entries were trimmed before the {audit_group} service read them: they "
            "are not in the archive"
        )
    return cutoff


async def _cutoff(redis: Redis, plan: StreamPlan) -> Cutoff:
    """The oldest entry still in the stream; for an empty or missing stream, Redis's clock
    (read first: entries added afterwards get larger ids, so they stay the group's)."""
    seconds, micros = await redis.time()
    now: Cutoff = (int(seconds) * 1000 + int(micros) // 1000, 0)
    first = await redis.xrange(plan.stream, count=1)
    if not first:
        plan.oldest = None
        return now
    plan.oldest = redis_text(first[0][0])
    return entry_id_parts(plan.oldest)


async def _groups(redis: Redis, stream: str) -> dict[str, dict[str, Any]]:
    """Consumer groups of ``stream`` by name (XINFO GROUPS)."""
    try:
        groups = await redis.xinfo_groups(stream)
    except ResponseError:  # no such stream
        return {}
    return {redis_text(g["name"]): g for g in groups}


async def _unread_trimmed(redis: Redis, stream: str, group: dict[str, Any]) -> int:
    """Entries trimmed from ``stream`` before ``group`` read them (Redis 7 counts; else 0)."""
    read = group.get("entries-read")
    if not isinstance(read, int):
        return 0  # Redis < 7, or the count is unknown (deletions in the middle)
    try:
        info = await redis.xinfo_stream(stream)
    except ResponseError:
        return 0
    added, length = info.get("entries-added"), info.get("length")
    if not isinstance(added, int) or not isinstance(length, int):
        return 0
    return max(0, added - length - read)


def _raw(row: dict[str, Any]) -> dict[bytes, bytes]:
    """The stream entry as the producer wrote it, rebuilt from the archive."""
    envelope = Envelope(
        id=row["event_id"],
        source=row["source"],
        type=row["type"],
        time=row["time"],
        dataschema=row["dataschema"],
        data=row["data"],
        subject=row["subject"],
        correlationid=row["correlationid"],
        causationid=row["causationid"],
        traceparent=row["traceparent"],
        signature=row["signature"],
        signer=row["signer"],
        extensions=json.loads(row["extensions"]) if row["extensions"] else None,
    )
    return {name.encode(): value.encode() for name, value in envelope.to_fields().items()}


def _id(cutoff: Cutoff) -> str:
    return f"{cutoff[0]}-{cutoff[1]}"
