"""Telling Redis the outcome of a batch: acks, retries, dead letters — in as few calls as possible.

Plain success is one ``XACK`` for the whole batch. Anything else goes out in one pipeline: the
acks, an ``XCLAIM ... IDLE`` per retry (docs/decisions/0003-retries-by-ageing-pending-entries.md)
and the dead-letter script per poison entry.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoPermissionError, ResponseError

from bus import keys
from bus.connection import TRANSIENT, is_cluster
from bus.deadletter import Verdict, confirm_moves, dead_letter_fields, wait_for_replicas
from bus.durability import NO_WAITS, ReplicaWait
from bus.functions import BusFunction
from bus.health import Health
from bus.metrics import ServiceMetrics, TypeMetrics

_UNACKED_MAX = 100_000  # acks remembered across one outage


def _refused(exc: BaseException) -> bool:
    """NOPERM, as redis-py raises it (NoPermissionError) or relays it from a pipeline."""
    return isinstance(exc, NoPermissionError) or "NOPERM" in str(exc)


@dataclass
class Settlement:
    """The outcome of the entries of one stream processed since the last settle."""

    acks: list[str] = field(default_factory=list)
    dead: list[tuple[str, Mapping[bytes, bytes], Verdict]] = field(default_factory=list)
    # entry id, idle to set (ms), and the delivery count to set (None: leave it counting)
    retries: list[tuple[str, int, int | None]] = field(default_factory=list)
    handled: list[TypeMetrics] = field(default_factory=list)  # acks whose handler ran, by type
    failures: list[tuple[str, str]] = field(default_factory=list)  # entry id, handler's error

    def __bool__(self) -> bool:
        return bool(self.acks or self.dead or self.retries)

    def clear(self) -> None:
        self.acks.clear()
        self.dead.clear()
        self.retries.clear()
        self.handled.clear()
        self.failures.clear()


class Settler:
    """Writes settlements of one consumer of one group."""

    def __init__(
        self,
        redis: Redis,
        *,
        group: str,
        consumer: str,
        health: Health,
        log: Any,
        metrics: ServiceMetrics | None = None,
        failure_ttl_ms: int = 0,
    ) -> None:
        self.redis = redis
        # How long a handler's last error is kept beside its pending entry (0: not kept).
        self.failure_ttl_ms = failure_ttl_ms
        self.group = group
        self.consumer = consumer
        self.health = health
        self.log = log
        self.metrics = metrics
        self._cluster = is_cluster(redis)
        self._dead_letter = BusFunction(redis, "deadletter")
        self._touch = BusFunction(redis, "touch")
        # Acks an outage kept us from writing, by stream: their handlers ran, so they are
        # written when Redis returns rather than left for a reclaim to run them again.
        self._unacked: dict[str, set[str]] = {}
        self._replicas = ReplicaWait(redis)

    async def settle(self, stream: str, settlement: Settlement) -> None:
        """Write the outcome. On a connection error the entries stay pending under our name and
        come back through the reclaim sweep (at-least-once), so the error is logged, not raised.
        """
        if not settlement:
            return
        try:
            if settlement.dead or settlement.retries:
                await self._settle_slow(stream, settlement)
            else:
                await self.redis.xack(stream, self.group, *settlement.acks)
        except TRANSIENT as exc:
            self.log.warning(
                "settle_failed", stream=stream, entries=len(settlement.acks), error=str(exc)
            )
            # Only acks are kept (retries and dead letters come back through the reclaim);
            # none here leaves no stream behind, whose XACK without ids Redis would refuse.
            if settlement.acks and sum(map(len, self._unacked.values())) < _UNACKED_MAX:
                self._unacked.setdefault(stream, set()).update(settlement.acks)
            return
        self.health.acked()
        self.health.count("acked", len(settlement.acks))
        for kind in settlement.handled:  # counted once Redis has the ack
            kind.consumed += 1

    async def ack_leftovers(self) -> None:
        """Write the acks an outage kept us from writing (raises if Redis is still away)."""
        for stream in list(self._unacked):
            await self.redis.xack(stream, self.group, *self._unacked[stream])
            del self._unacked[stream]
            self.health.acked()

    async def keep(self, stream: str, entry_ids: list[str]) -> set[str]:
        """Refresh the idle time of entries still ours; return the ids we still own."""
        owned = await self._touch(keys=[stream], args=[self.group, self.consumer, *entry_ids])
        return {entry.decode() for entry in owned}

    async def _settle_slow(self, stream: str, settlement: Settlement) -> None:
        dlq = keys.dead_letters(stream, self.group)
        async with self.redis.pipeline(transaction=False) as pipe:
            if settlement.acks:
                pipe.xack(stream, self.group, *settlement.acks)
            for entry_id, idle, count in settlement.retries:
                pipe.xclaim(
                    stream,
                    self.group,
                    self.consumer,
                    0,
                    [entry_id],
                    idle=idle,
                    retrycount=count,
                    justid=True,
                )
            for entry_id, raw, verdict in settlement.dead:
                args = self._dead_letter_args(stream, entry_id, raw, verdict)
                if self._cluster:  # its pipeline cannot carry scripts: one call each (rare)
                    await self._dead_letter(keys=[stream, dlq], args=args)
                else:
                    await self._dead_letter(keys=[stream, dlq], args=args, client=pipe)
            notes = len(pipe) if self.failure_ttl_ms else None  # where the notes begin
            for entry_id, error in settlement.failures if notes is not None else ():
                key = keys.last_failure(stream, self.group, entry_id)
                pipe.set(key, error, px=self.failure_ttl_ms)
            waits = NO_WAITS
            if settlement.dead:
                waits = await wait_for_replicas(self._replicas, pipe, dlq)
            replies = await pipe.execute(raise_on_error=False)
        self._check(replies, notes)
        confirm_moves(self._replicas, waits, replies[len(replies) - waits.count :], dlq, self.log)
        self._report_dead(stream, dlq, settlement)

    def _check(self, replies: list[Any], notes: int | None) -> None:
        """Raise the first error of a settle pipeline — except a refused note (an ACL rendered
        before notes existed): then stop writing them, say so once, and settle all the same."""
        for index, reply in enumerate(replies):
            if not isinstance(reply, Exception):
                continue
            if notes is not None and index >= notes and _refused(reply):
                self.failure_ttl_ms = 0
                self.log.warning("failure_note_not_permitted", error=str(reply))
                continue
            raise reply

    async def last_failure(self, stream: str, entry_id: str) -> str | None:
        """The handler's last error noted beside ``entry_id`` (None: none, or not permitted)."""
        if not self.failure_ttl_ms:
            return None
        try:
            note = await self.redis.get(keys.last_failure(stream, self.group, entry_id))
        except ResponseError as exc:
            if not _refused(exc):
                raise
            self.failure_ttl_ms = 0
            self.log.warning("failure_note_not_permitted", error=str(exc))
            return None
        return note.decode() if isinstance(note, bytes) else note

    def _dead_letter_args(
        self, stream: str, entry_id: str, raw: Mapping[bytes, bytes], verdict: Verdict
    ) -> list[bytes | str]:
        fields = dead_letter_fields(
            raw,
            verdict,
            stream=stream,
            group=self.group,
            consumer=self.consumer,
            entry_id=entry_id,
        )
        return [self.group, entry_id, *fields]

    def _report_dead(self, stream: str, dlq: str, settlement: Settlement) -> None:
        for entry_id, raw, verdict in settlement.dead:
            self.health.count("dead_lettered")
            if self.metrics is not None:
                self.metrics.dead_lettered(raw.get(b"type", b""), verdict.reason)
            self.log.error(
                "event_dead_lettered",
                stream=stream,
                entry_id=entry_id,
                dead_letters=dlq,
                reason=verdict.reason.value,
                attempts=verdict.attempts,
            )
