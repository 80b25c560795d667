"""The consume loop of one service replica: read, dispatch, settle, reclaim — and recover.

One consumer group per service, one consumer per replica. The hot path is one XREADGROUP for
a batch on all subscribed streams, a handler call per event, and one XACK per batch
(docs/decisions/0002-own-consume-loop.md says why this is not FastStream's subscriber).

On a Redis Cluster one XREADGROUP can only name streams of one hash slot, so the streams are
read per slot: one blocking read each, concurrently, while their handlers still run one batch
at a time (docs/cluster.md).

Retries need no timer of ours: a failed entry stays pending, aged (XCLAIM ... IDLE) so that the
reclaim sweep — entries idle for ``claim_idle_ms``, claimed one at a time — picks it up after
its backoff.
The same sweep finishes the entries of consumers that died (bus.reclaim).

Partitions of a partitioned aggregate are read in order (bus.partitions): only those this
replica holds a lease on, a failed event holding its partition until its backoff has passed,
and what is pending with us on a partition before anything new of it; the sweep leaves them be.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from functools import partial
from typing import cast

from redis.asyncio import Redis
from redis.crc import key_slot
from redis.exceptions import ResponseError

from bus import keys
from bus.connection import TRANSIENT, is_cluster, outage_text
from bus.deadletter import Reason, Verdict
from bus.dispatch import Dispatcher, Failed
from bus.errors import DependencyUnavailable, NotDurable
from bus.health import Health
from bus.logging import get_logger
from bus.metrics import ServiceMetrics
from bus.outcomes import GiveUp, Retry
from bus.partitions import Leases, Ordering
from bus.privacy import mask_text
from bus.reclaim import Entries, Reclaimer
from bus.settings import Settings
from bus.settle import Settlement, Settler

_log = get_logger("bus.consumer")
_OUTAGES_MAX = 10_000
_WARN_FIRST_S, _WARN_MAX_S = 2.0, 300.0  # redis_unavailable repeats with this backoff
_SETTLE_FIRST_S = 2.0  # after an outage: leftovers settled before any sweep (at least this)
# Replies that mean our group (or its stream) is gone: recreate it and carry on.
_GROUP_LOST = ("NOGROUP", "UNBLOCKED")


def _outage(cause: BaseException | None) -> bool:
    """Whether a handler failed for an outage rather than for its event: DependencyUnavailable
    (its own dependency says so), NotDurable, or an error of the bus's Redis client (redis-py's
    connection, timeout and cluster errors: ``ctx.publish`` while Redis fails over). Python's
    own ConnectionError and TimeoutError are not among them: a handler's HTTP call that times
    out is the handler's to judge (DependencyUnavailable), else an attempt is spent."""
    if isinstance(cause, DependencyUnavailable | NotDurable):
        return True
    return isinstance(cause, TRANSIENT) and not isinstance(cause, OSError)


class Consumer:
    """Consumes the streams of ``dispatcher.handlers`` as one member of ``dispatcher.group``."""

    def __init__(
        self,
        redis: Redis,
        dispatcher: Dispatcher,
        settings: Settings,
        health: Health,
        metrics: ServiceMetrics | None = None,
    ) -> None:
        self.redis = redis
        self.dispatcher = dispatcher
        self.settings = settings
        self.health = health
        self.group = dispatcher.group
        self.name = dispatcher.consumer
        self.streams = dispatcher.streams()
        partitioned = [s for s in self.streams if keys.is_partition(s)]
        leases = Leases(
            redis,
            group=self.group,
            consumer=self.name,
            partitions=partitioned,
            lease_ms=settings.claim_idle_ms,
        )
        self.ordering = Ordering(leases) if partitioned else None
        self._reads = _read_groups(self.streams, cluster=is_cluster(redis))
        self._log = _log.bind(group=self.group, consumer=self.name)
        self._settler = Settler(
            redis,
            group=self.group,
            consumer=self.name,
            health=health,
            log=self._log,
            metrics=metrics,
            # An entry's consumers can die claim_idle_ms apart until it runs out of deliveries.
            failure_ttl_ms=settings.claim_idle_ms * (settings.max_deliveries + 1),
        )
        self._stopping = asyncio.Event()
        self._lock = asyncio.Lock()  # one batch at a time: handlers never run concurrently
        self.reclaim = Reclaimer(
            redis,
            group=self.group,
            name=self.name,
            streams=self.streams,
            ordering=self.ordering,
            dispatcher=dispatcher,
            settler=self._settler,
            settings=settings,
            health=health,
            log=self._log,
            stopping=self._stopping,
            lock=self._lock,
            process=self._process,
            guarded=self._guarded,
            outage=lambda: self._outage,
        )
        self._read_tasks: set[asyncio.Future[list[tuple[bytes, Entries]]]] = set()
        self._outage = False
        self._outage_since = self._warn_at = 0.0  # monotonic times (while _outage)
        self._warn_every = _WARN_FIRST_S
        self._delay = 0.05  # seconds before the next attempt after an outage; doubles to 5 s
        # Entry id -> attempts that met a dependency outage (their backoff keeps growing);
        # bounded: forgotten on success, and reset when it grows past _OUTAGES_MAX entries.
        self._outages: dict[str, int] = {}

    # -- lifecycle ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Consume until :meth:`stop`; recovers from Redis outages and lost groups by itself."""
        self.health.running = True
        self._log.info("consumer_started", streams=self.streams)
        try:
            await self._guarded(self.reclaim.ensure_groups, until_done=True)
            reclaim = self.reclaim
            helpers = [asyncio.create_task(reclaim.sweep_loop(), name=f"reclaim-{self.group}")]
            if self.ordering is not None:
                helpers.append(
                    asyncio.create_task(reclaim.lease_loop(), name=f"leases-{self.group}")
                )
            try:
                await self._guarded(self.reclaim.drain_own_pending, until_done=True)
                await self._read_loop()
            finally:
                await self._finish(helpers)
        except Exception as exc:
            self.health.failed(f"{type(exc).__name__}: {mask_text(str(exc))}")
            self._log.error("consumer_crashed", error_type=type(exc).__name__, error=str(exc))
            raise
        finally:
            self.health.running = False
            self._log.info("consumer_stopped")

    def stop(self) -> None:
        """Ask the loop to finish the handler in hand, settle, and return."""
        self._stopping.set()
        for read in self._read_tasks:
            read.cancel()  # only blocked reads are cut short, never a handler

    async def _finish(self, helpers: list[asyncio.Task[None]]) -> None:
        for helper in helpers:
            if not self._stopping.is_set():  # we are failing: don't wait for the sweep
                helper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await helper  # on a graceful stop, its handler in hand finishes first
        if not self._stopping.is_set():
            return
        with contextlib.suppress(ResponseError, *TRANSIENT):  # the cursors as we leave them
            await self.reclaim.check_gaps()
        with contextlib.suppress(*TRANSIENT):  # else they stay pending for a reclaim
            await self.reclaim.settle_leftovers()
        if self.ordering is not None:
            with contextlib.suppress(*TRANSIENT):  # else the leases simply expire
                await self.ordering.leases.release_all()

    # -- reading ----------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        if len(self._reads) == 1:  # a single server: one read for every stream
            await self._read_streams(self._reads[0])
            return
        readers = [asyncio.create_task(self._read_streams(group)) for group in self._reads]
        try:
            await asyncio.gather(*readers)
        finally:  # one reader failed (or we are cancelled): the others stop too
            for reader in readers:
                reader.cancel()
            await asyncio.gather(*readers, return_exceptions=True)

    async def _read_streams(self, streams: Sequence[str]) -> None:
        fresh = dict.fromkeys(streams, ">")
        while not self._stopping.is_set():
            if self.ordering is not None:
                fresh = await self._ordered_turn(streams, self.ordering)
                if not fresh:
                    continue
            for stream, entries in await self._poll(fresh):
                await self._guarded(partial(self._process, stream.decode(), entries, None))

    async def _ordered_turn(self, streams: Sequence[str], ordering: Ordering) -> dict[str, str]:
        """Partition upkeep before a read; returns what to read new entries from (empty: the
        turn went to pending entries, or to waiting)."""
        if time.monotonic() >= self.reclaim.rebalance_at:
            leases = ordering.leases
            await self._guarded(self.reclaim.rebalance)
            # Short of its share (another replica has yet to release its surplus): try again
            # in a second; else a third of a lease, or as soon as the members change.
            again = 1.0 if len(leases.owned) < leases.share else leases.lease_ms / 3000
            self.reclaim.rebalance_at = time.monotonic() + again
        now = time.monotonic()
        backlog = ordering.backlog(streams, now)
        if backlog:
            await self._guarded(partial(self.reclaim.backlog, backlog))
            return {}
        readable = ordering.readable(streams, now)
        if not readable:  # nothing owned here (yet), or every partition waits for a backoff
            wait = min(ordering.next_due(now) or 1.0, self.settings.block_ms / 1000)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), wait)
            await self._guarded(self._idle_poll)
        return dict.fromkeys(readable, ">")

    async def _idle_poll(self) -> None:
        """Nothing of ours to read (a standby replica, more replicas than partitions): Redis
        answering is what /readyz needs to know, so a standby is not restarted for idling."""
        await self.redis.ping()
        self._on_success()

    async def _poll(self, streams: Mapping[str, str]) -> list[tuple[bytes, Entries]]:
        read = asyncio.ensure_future(self._xreadgroup(streams, self.settings.block_ms))
        self._read_tasks.add(read)
        try:
            reply = await read
        except asyncio.CancelledError:
            if self._stopping.is_set():
                return []
            raise
        except (ResponseError, *TRANSIENT) as exc:
            await self._recover(exc)
            return []
        finally:
            self._read_tasks.discard(read)
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

    # -- processing -------------------------------------------------------------------------

    async def _process(
        self,
        stream: str,
        entries: Entries,
        deliveries: Mapping[str, int] | None,
        *,
        locked: bool = False,
    ) -> None:
        """Handle ``entries`` under the batch lock (``locked``: the caller holds it already,
        e.g. the reclaim sweep, which claims under it)."""
        settlement = Settlement()
        keep_by = time.monotonic() + self.settings.claim_idle_ms / 2000
        owned: set[str] | None = None  # after a keep-alive: the entries still ours
        ordered = self.ordering is not None and self.ordering.ordered(stream)
        async with contextlib.nullcontext() if locked else self._lock:
            try:
                for index, (entry_b, raw) in enumerate(entries):
                    entry_id = entry_b.decode()
                    if self._stopping.is_set():  # leave the rest to the group, due at once
                        rest = self._unhandled(entries[index:], deliveries, owned)
                        settlement.retries += [(e, self.settings.claim_idle_ms, n) for e, n in rest]
                        break
                    if ordered and not self._owns(stream):
                        break  # lease lost: its next owner takes the rest over, in order
                    if time.monotonic() > keep_by:  # a long batch: keep what is still ours
                        owned = await self._keep(stream, entries[index:], settlement)
                        keep_by = time.monotonic() + self.settings.claim_idle_ms / 2000
                    if owned is not None and entry_id not in owned:
                        continue  # another consumer claimed it meanwhile: it is theirs now
                    delivery = deliveries.get(entry_id, 1) if deliveries else 1
                    settled = await self._one(stream, entry_id, raw, delivery, settlement)
                    if ordered and not settled:  # a failure holds its partition: stop here
                        self._hold(stream, settlement)
                        rest = self._unhandled(entries[index + 1 :], deliveries, owned)
                        settlement.retries += [(e, 0, n) for e, n in rest]  # our backlog
                        break
            finally:  # also on cancellation (shutdown grace ran out): settle what is done
                await self._settler.settle(stream, settlement)

    @staticmethod
    def _unhandled(
        rest: Entries, deliveries: Mapping[str, int] | None, owned: set[str] | None
    ) -> list[tuple[str, int]]:
        """Entries of a batch left without a handler run, with the delivery count to set back:
        their read counted a delivery no handler made, and the number a handler sees must
        count only real attempts (else one failure ahead of them on a partition, or a
        shutdown, would spend an attempt of each)."""
        found = []
        for entry_b, _ in rest:
            entry_id = entry_b.decode()
            if owned is None or entry_id in owned:
                count = deliveries.get(entry_id, 1) if deliveries else 1
                found.append((entry_id, max(count - 1, 0)))
        return found

    def _owns(self, stream: str) -> bool:
        return self.ordering is not None and self.ordering.owns(stream)

    def _hold(self, partition: str, settlement: Settlement) -> None:
        assert self.ordering is not None
        _, idle, _ = settlement.retries[-1]
        self.ordering.hold(partition, self.settings.claim_idle_ms - idle, time.monotonic())

    async def _keep(self, stream: str, rest: Entries, settlement: Settlement) -> set[str]:
        await self._settler.settle(stream, settlement)  # ack what is done before going on
        settlement.clear()
        return await self._settler.keep(stream, [e.decode() for e, _ in rest])

    async def _one(
        self,
        stream: str,
        entry_id: str,
        raw: Mapping[bytes, bytes] | None,
        delivery: int,
        settlement: Settlement,
    ) -> bool:
        """Handle one entry; False when it stays pending for a retry."""
        if not raw:  # deleted or trimmed while pending: nothing left to process
            self._log.warning("pending_entry_vanished", stream=stream, entry_id=entry_id)
            settlement.acks.append(entry_id)
            return True
        ran = len(settlement.handled)
        try:
            verdict = await self.dispatcher.dispatch(
                stream, entry_id, raw, delivery, settlement.handled
            )
        except Failed as retry:
            verdict = self._retry_or_give_up(stream, entry_id, delivery, retry, settlement)
            if verdict is None:
                return False  # left pending, aged to come back after its backoff
        self._outages.pop(entry_id, None)
        if verdict is not None and verdict.reason is Reason.MAX_DELIVERIES:
            note = await self._settler.last_failure(stream, entry_id)
            if note is not None:  # it failed before its consumers died: keep the handler's word
                error = f"{verdict.error}; the handler's last error: {note}"
                verdict = replace(verdict, error=error)
        if self.health.dependency_down and len(settlement.handled) > ran:
            self.health.dependency_down = None  # a handler got through: the outage is over
        if verdict is None:
            settlement.acks.append(entry_id)
        else:
            settlement.dead.append((entry_id, raw, verdict))
        return True

    def _retry_or_give_up(
        self, stream: str, entry_id: str, delivery: int, retry: Failed, settlement: Settlement
    ) -> Verdict | None:
        self.health.count("handler_failures")
        if _outage(retry.cause):
            # An outage, not the event's fault: wait it out without spending an attempt (the
            # claim below sets the count back, the reclaim sweep's claim adds it again). A
            # replica missing (NotDurable: a once lease or marker, or a handler's publish, not
            # confirmed) is one too: a cluster shard whose master died has none for a while;
            # and so is the bus's Redis away under a handler (its ctx.publish in a failover).
            backoff = self.settings.retry_delay_ms(delivery + self._outages.get(entry_id, 0))
            if len(self._outages) >= _OUTAGES_MAX:
                self._outages.clear()
            self._outages[entry_id] = self._outages.get(entry_id, 0) + 1
            self.health.dependency_down = f"{type(retry.cause).__name__}"
            self._log.warning(
                "dependency_unavailable",
                stream=stream,
                entry_id=entry_id,
                error_type=type(retry.cause).__name__,
                retry_in_ms=backoff,
            )
            idle = self.settings.claim_idle_ms - backoff
            settlement.retries.append((entry_id, idle, max(delivery - 1, 0)))
            return None
        if isinstance(retry.cause, GiveUp):
            return Verdict(Reason.GIVEN_UP, retry.error, delivery)
        last = delivery >= self.settings.max_deliveries
        backoff = self.settings.retry_delay_ms(delivery)
        if isinstance(retry.cause, Retry):  # the handler's own delay, at most claim idle
            backoff = min(max(backoff, retry.cause.after_ms), self.settings.claim_idle_ms)
        self._log.warning(
            "handler_failed",
            stream=stream,
            entry_id=entry_id,
            delivery=delivery,
            error_type=type(retry.cause).__name__,
            error=retry.error,
            retry_in_ms=None if last else backoff,
            **_trace(retry),
        )
        if last:
            return Verdict(Reason.HANDLER_FAILED, retry.error, delivery)
        settlement.failures.append((entry_id, retry.error))  # for a dead letter after crashes
        settlement.retries.append((entry_id, self.settings.claim_idle_ms - backoff, None))
        return None

    # -- recovery ---------------------------------------------------------------------------

    async def _guarded(
        self, step: Callable[[], Awaitable[None]], *, until_done: bool = False, quiet: bool = False
    ) -> None:
        """Run ``step``; on a lost group or a Redis outage recover, and retry if ``until_done``."""
        while not self._stopping.is_set():
            try:
                await step()
            except (ResponseError, *TRANSIENT) as exc:
                if quiet and isinstance(exc, TRANSIENT):
                    return  # the read loop reports outages; the next sweep tries again
                await self._recover(exc)
                if until_done:
                    continue
                return
            if until_done:
                self._on_success()
            return

    async def _recover(self, exc: BaseException) -> None:
        # A cluster's CLUSTERDOWN is a ResponseError too, but an outage: it passes by itself.
        if isinstance(exc, ResponseError) and not isinstance(exc, TRANSIENT):
            # Substring, not prefix: a pipeline wraps the reply in "Command # n (...) caused".
            if not any(code in str(exc) for code in _GROUP_LOST):
                raise exc
            # Group or stream deleted (or Redis lost its data): recreate at 0 so nothing still
            # in the stream is skipped; handlers may see events again (at-least-once).
            self._log.warning("group_missing", streams=self.streams, error=str(exc))
            with contextlib.suppress(*TRANSIENT):
                await self.reclaim.ensure_groups()  # and its gap check: what the deletion cost
            return
        self.health.failed(f"{type(exc).__name__}: {outage_text(exc)}")
        self._report_outage(exc)
        self._delay = min(self._delay * 2, 5.0)
        pause = self._delay * random.uniform(0.5, 1.0)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), pause)

    def _report_outage(self, exc: BaseException) -> None:
        """``redis_unavailable`` at once, then again after 2 s, 4 s, 8 s ... (at most every
        5 minutes) while it lasts: a service pointed at the wrong port must not fall silent."""
        now = time.monotonic()
        if not self._outage:
            self._outage, self._outage_since, self._warn_every = True, now, _WARN_FIRST_S
            self._warn_at = now + self._warn_every
            self._log.error("redis_unavailable", error=outage_text(exc))
        elif now >= self._warn_at:
            self._warn_every = min(self._warn_every * 2, _WARN_MAX_S)
            self._warn_at = now + self._warn_every
            self._log.error(
                "redis_unavailable",
                error=outage_text(exc),
                down_for_s=round(now - self._outage_since),
            )

    def _on_success(self) -> None:
        self.health.polled()
        self._delay = 0.05
        if self._outage:
            # Every replica lost Redis too: for a moment, each only settles what it finished
            # during the outage and sweeps nothing, so no replica reclaims (and reruns) an
            # entry another one finished but could not settle yet.
            self.reclaim.sweep_after = time.monotonic() + max(
                _SETTLE_FIRST_S, 4 * self.settings.reclaim_interval_ms / 1000
            )
            self._outage = False
            self._log.info("redis_recovered")


def _trace(failed: Failed) -> dict[str, str]:
    """The handler's traceback for the log, when the dispatcher kept one (development)."""
    return {"traceback": failed.trace} if failed.trace is not None else {}


def _read_groups(streams: Sequence[str], *, cluster: bool) -> list[list[str]]:
    """Streams that one XREADGROUP can name together: all of them on a single server, those of
    one hash slot on a cluster (slot order, so replicas read alike)."""
    if not cluster:
        return [list(streams)]
    by_slot: dict[int, list[str]] = {}
    for stream in streams:
        by_slot.setdefault(key_slot(stream.encode()), []).append(stream)
    return [by_slot[slot] for slot in sorted(by_slot)]
