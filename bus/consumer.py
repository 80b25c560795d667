"""The consume loop of one service: read, dispatch, settle (ack / retry / dead-letter), reclaim.

One consumer group per service, one consumer per replica. The hot path is one XREADGROUP for
a batch on all subscribed streams, a handler call per event, and one XACK per batch
(docs/decisions/0002-own-consume-loop.md says why this is not FastStream's subscriber).

Retries need no timer of ours: a failed entry stays pending, and we age it (XCLAIM ... IDLE)
so that the reclaim sweep — XAUTOCLAIM of entries idle for ``claim_idle_ms`` — picks it up
after its backoff. The same sweep finishes the entries of consumers that died.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from bus import keys
from bus.connection import TRANSIENT
from bus.deadletter import SCRIPT as DEAD_LETTER_SCRIPT
from bus.deadletter import Reason, Verdict, dead_letter_fields
from bus.dispatch import Dispatcher, Retry
from bus.health import Health
from bus.logging import get_logger
from bus.settings import Settings

_log = get_logger("bus.consumer")
Entries = Sequence[tuple[bytes, Mapping[bytes, bytes] | None]]
_RECLAIM_PAGES = 10  # pages of `batch_size` per stream per sweep: bounds one sweep's work


@dataclass
class _Settlement:
    """What to tell Redis about one processed batch."""

    acks: list[str] = field(default_factory=list)
    dead: list[tuple[str, Mapping[bytes, bytes], Verdict]] = field(default_factory=list)
    retries: list[tuple[str, int]] = field(default_factory=list)  # entry id, idle to set (ms)

    def __bool__(self) -> bool:
        return bool(self.acks or self.dead or self.retries)


class Consumer:
    """Consumes the streams of ``dispatcher.handlers`` as one member of ``dispatcher.group``."""

    def __init__(
        self, redis: Redis, dispatcher: Dispatcher, settings: Settings, health: Health
    ) -> None:
        self.redis = redis
        self.dispatcher = dispatcher
        self.settings = settings
        self.health = health
        self.group = dispatcher.group
        self.name = dispatcher.consumer
        self.streams = sorted({h.model.__contract__.stream for h in dispatcher.handlers.values()})
        self._dead_letter = redis.register_script(DEAD_LETTER_SCRIPT)
        self._stopping = asyncio.Event()
        self._lock = asyncio.Lock()  # one batch at a time: handlers never run concurrently
        self._read_task: asyncio.Future[list[tuple[bytes, Entries]]] | None = None
        self._outage = False
        self._delay = 0.05  # seconds before the next attempt after an outage; doubles to 5 s

    # -- lifecycle ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Consume until :meth:`stop`; recovers from Redis outages and lost groups by itself."""
        self.health.running = True
        self._log = _log.bind(group=self.group, consumer=self.name)
        self._log.info("consumer_started", streams=self.streams)
        try:
            await self._retrying(self._ensure_groups)
            reclaimer = asyncio.create_task(
                self._reclaim_loop(), name=f"simpul-reclaim-{self.group}"
            )
            try:
                await self._retrying(self._drain_own_pending)
                await self._read_loop()
            finally:
                reclaimer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reclaimer
        finally:
            self.health.running = False
            self._log.info("consumer_stopped")

    def stop(self) -> None:
        """Ask the loop to finish its current batch, ack it, and return."""
        self._stopping.set()
        if self._read_task is not None and not self._lock.locked():
            self._read_task.cancel()  # only a blocked read is cut short, never a handler

    # -- reading ----------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        fresh = dict.fromkeys(self.streams, ">")
        while not self._stopping.is_set():
            reply = await self._poll(fresh)
            for stream, entries in reply:
                await self._process(stream.decode(), entries, None)

    async def _poll(self, streams: Mapping[str, str]) -> list[tuple[bytes, Entries]]:
        self._read_task = asyncio.ensure_future(self._xreadgroup(streams, self.settings.block_ms))
        try:
            reply = await self._read_task
        except asyncio.CancelledError:
            if self._stopping.is_set():
                return []
            raise
        except ResponseError as exc:
            await self._on_response_error(exc)
            return []
        except TRANSIENT as exc:
            await self._on_outage(exc)
            return []
        finally:
            self._read_task = None
        self._on_success()
        return reply

    async def _xreadgroup(
        self, streams: Mapping[str, str], block: int | None
    ) -> list[tuple[bytes, Entries]]:
        reply = await self.redis.xreadgroup(
            self.group,
            self.name,
            dict(streams),  # type: ignore[arg-type]  # redis-py's annotation is invariant
            count=self.settings.batch_size,
            block=block,
        )
        return cast(list[tuple[bytes, Entries]], reply or [])

    async def _drain_own_pending(self) -> None:
        """After a restart under the same consumer name, finish what this name left pending."""
        cursors = dict.fromkeys(self.streams, "0")
        while cursors and not self._stopping.is_set():
            reply = await self._xreadgroup(cursors, None)
            for stream_b, entries in reply:
                stream = stream_b.decode()
                if not entries:
                    del cursors[stream]
                    continue
                deliveries = await self._deliveries(stream, entries)
                await self._process(stream, entries, deliveries)
                cursors[stream] = entries[-1][0].decode()
            if not reply:
                break

    # -- processing -------------------------------------------------------------------------

    async def _process(
        self, stream: str, entries: Entries, deliveries: Mapping[str, int] | None
    ) -> None:
        settle = _Settlement()
        async with self._lock:
            try:
                for entry_b, raw in entries:
                    entry_id = entry_b.decode()
                    delivery = deliveries.get(entry_id, 1) if deliveries else 1
                    await self._one(stream, entry_id, raw, delivery, settle)
            finally:  # also on cancellation (shutdown grace ran out): settle what is done
                await self._settle(stream, settle)

    async def _one(
        self,
        stream: str,
        entry_id: str,
        raw: Mapping[bytes, bytes] | None,
        delivery: int,
        settle: _Settlement,
    ) -> None:
        if not raw:  # deleted or trimmed while pending: nothing left to process
            self._log.warning("pending_entry_vanished", stream=stream, entry_id=entry_id)
            settle.acks.append(entry_id)
            return
        try:
            verdict = await self.dispatcher.dispatch(stream, entry_id, raw, delivery)
        except Retry as retry:
            verdict = self._retry_or_give_up(stream, entry_id, delivery, retry, settle)
            if verdict is None:
                return  # left pending, aged to come back after its backoff
        if verdict is None:
            settle.acks.append(entry_id)
        else:
            settle.dead.append((entry_id, raw, verdict))

    def _retry_or_give_up(
        self, stream: str, entry_id: str, delivery: int, retry: Retry, settle: _Settlement
    ) -> Verdict | None:
        error_type = type(retry.cause).__name__
        self.health.count("handler_failures")
        if delivery >= self.settings.max_deliveries:
            return Verdict(Reason.HANDLER_FAILED, str(retry), delivery)
        backoff = self._backoff(delivery)
        self._log.warning(
            "handler_failed",
            stream=stream,
            entry_id=entry_id,
            delivery=delivery,
            error_type=error_type,
            retry_in_ms=backoff,
        )
        settle.retries.append((entry_id, self.settings.claim_idle_ms - backoff))
        return None

    def _backoff(self, delivery: int) -> int:
        base = self.settings.retry_backoff_ms * 2 ** (delivery - 1)
        capped = min(base, self.settings.retry_backoff_max_ms)
        return int(capped * random.uniform(0.9, 1.0))

    async def _settle(self, stream: str, settle: _Settlement) -> None:
        if not settle:
            return
        try:
            if settle.dead or settle.retries:
                await self._settle_slow(stream, settle)
            else:
                await self.redis.xack(stream, self.group, *settle.acks)
        except TRANSIENT as exc:
            # The entries stay pending under our name: the reclaim sweep brings them back.
            self._log.warning(
                "settle_failed", stream=stream, entries=len(settle.acks), error=str(exc)
            )
            return
        self.health.acked()
        self.health.count("acked", len(settle.acks))

    async def _settle_slow(self, stream: str, settle: _Settlement) -> None:
        dlq = keys.dead_letters(stream, self.group)
        async with self.redis.pipeline(transaction=False) as pipe:
            if settle.acks:
                pipe.xack(stream, self.group, *settle.acks)
            for entry_id, idle in settle.retries:
                pipe.xclaim(stream, self.group, self.name, 0, [entry_id], idle=idle, justid=True)
            for entry_id, raw, verdict in settle.dead:
                fields = dead_letter_fields(
                    raw,
                    verdict,
                    stream=stream,
                    group=self.group,
                    consumer=self.name,
                    entry_id=entry_id,
                )
                await self._dead_letter(
                    keys=[stream, dlq], args=[self.group, entry_id, *fields], client=pipe
                )
            await pipe.execute()
        for entry_id, _, verdict in settle.dead:
            self.health.count("dead_lettered")
            self._log.error(
                "event_dead_lettered",
                stream=stream,
                entry_id=entry_id,
                dead_letters=dlq,
                reason=verdict.reason.value,
                attempts=verdict.attempts,
            )

    # -- reclaiming -------------------------------------------------------------------------

    async def _reclaim_loop(self) -> None:
        interval = self.settings.reclaim_interval_ms / 1000
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), interval)
            if self._stopping.is_set():
                return
            try:
                for stream in self.streams:
                    await self._reclaim(stream)
            except ResponseError as exc:
                await self._on_response_error(exc)
            except TRANSIENT:
                continue  # the read loop reports outages; the next sweep tries again

    async def _reclaim(self, stream: str) -> None:
        cursor: bytes | str = "0-0"
        for _ in range(_RECLAIM_PAGES):
            reply = await self.redis.xautoclaim(
                stream, self.group, self.name, self.settings.claim_idle_ms,
                start_id=cursor, count=self.settings.batch_size,
            )  # fmt: skip
            cursor, claimed = reply[0], [(i, f) for i, f in reply[1] if i is not None]
            lost = reply[2] if len(reply) > 2 else []
            if lost:  # Redis >= 7.0 names entries trimmed or deleted before anyone acked them
                self._log.error(
                    "pending_entries_lost",
                    stream=stream,
                    count=len(lost),
                    entry_ids=[i.decode() for i in lost[:20]],
                )
            if claimed:
                self.health.count("reclaimed", len(claimed))
                await self._process(stream, claimed, await self._deliveries(stream, claimed))
            if cursor in (b"0-0", "0-0"):
                return

    async def _deliveries(self, stream: str, entries: Entries) -> dict[str, int]:
        """Delivery counts of entries this consumer holds (XPENDING, one round trip)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for entry_id, _ in entries:
                pipe.xpending_range(stream, self.group, min=entry_id, max=entry_id, count=1)
            replies = await pipe.execute()
        return {
            row["message_id"].decode(): int(row["times_delivered"])
            for reply in replies
            for row in reply
        }

    # -- recovery ---------------------------------------------------------------------------

    async def _ensure_groups(self) -> None:
        for stream in self.streams:
            try:
                await self.redis.xgroup_create(stream, self.group, id="0", mkstream=True)
                self._log.info("group_created", stream=stream)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def _on_response_error(self, exc: ResponseError) -> None:
        if "NOGROUP" in str(exc):
            # Group or stream deleted (or Redis lost its data): recreate at 0 so nothing still
            # in the stream is skipped; handlers may see events again (at-least-once).
            self._log.warning("group_missing", streams=self.streams, error=str(exc))
            await self._retrying(self._ensure_groups)
            return
        raise exc

    async def _on_outage(self, exc: BaseException) -> None:
        self.health.failed(f"{type(exc).__name__}: {exc}")
        if not self._outage:
            self._outage = True
            self._log.error("redis_unavailable", error=str(exc))
        self._delay = min(self._delay * 2, 5.0)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), self._delay * random.uniform(0.5, 1.0))

    def _on_success(self) -> None:
        self.health.polled()
        self._delay = 0.05
        if self._outage:
            self._outage = False
            self._log.info("redis_recovered")

    async def _retrying(self, step: Any) -> None:
        """Run a setup step until it succeeds (or we are asked to stop)."""
        while not self._stopping.is_set():
            try:
                await step()
            except TRANSIENT as exc:
                await self._on_outage(exc)
                continue
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                await self._ensure_groups()
                continue
            self._on_success()
            return
