"""How a consumer takes back entries that are not new: what it left pending before a restart,
the retries and dead consumers' entries the reclaim sweep finds, the partitions it takes over,
and the entries nobody read that are gone (bus.gaps).

A redelivered entry is claimed (and so counted as delivered) one at a time, right before its
handler runs: the sweep lists idle entries with ``XPENDING ... IDLE`` and ``XCLAIM``s each in
turn, a restart re-reads its own pending with ``XREADGROUP ... 0 COUNT 1``, and a partition
taken over is first claimed with ``XCLAIM ... JUSTID`` (no count). The delivery count then says
how often a handler really started on the entry. Claiming or re-reading a whole batch at once
would count a delivery for every entry of it each time a consumer dies, and a crash loop on one
event would dead-letter its whole batch as ``max_deliveries_exceeded`` (found by tests/chaos).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol, cast

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from bus import gaps, keys
from bus.connection import TRANSIENT
from bus.decoding import text as _text
from bus.dispatch import Dispatcher
from bus.functions import BusFunction
from bus.health import Health
from bus.partitions import Ordering
from bus.settings import Settings
from bus.settle import Settler

Entries = Sequence[tuple[bytes, Mapping[bytes, bytes] | None]]
_RECLAIM_PAGES = 10  # pages of `batch_size` per stream per sweep: bounds one sweep's work
# How often each stream's group is compared with its cursor (and the cursor moved): a consumer
# killed outright leaves a cursor up to this old, so a group deleted after that over-counts
# by what it handled in its last seconds. A graceful stop records the cursor as it leaves.
_GAP_CHECK_S = 2.0


@dataclass(frozen=True)
class Pending:
    """One row of ``XPENDING``: an entry read by ``consumer`` and not acked yet."""

    entry_id: str
    consumer: str
    deliveries: int


class Process(Protocol):
    """The consumer's handling of entries of a stream, with the delivery counts of those
    redelivered (``locked``: the caller holds the batch lock already)."""

    def __call__(
        self,
        stream: str,
        entries: Entries,
        deliveries: Mapping[str, int] | None,
        *,
        locked: bool = False,
    ) -> Awaitable[None]: ...


Guard = Callable[..., Awaitable[None]]
"""The consumer's recovery around one step (``guarded(step, until_done=, quiet=)``)."""


class Reclaimer:
    """The recovery half of a consumer: its groups and gap checks, what it left pending before a
    restart, the reclaim sweep, and the partitions it holds leases on.

    A :class:`bus.consumer.Consumer` owns one and calls it; the reclaimer hands entries back
    through ``process`` (under the consumer's batch ``lock``) and runs each step of its loops
    through ``guarded``, the consumer's recovery. It stops when ``stopping`` is set.
    """

    def __init__(
        self,
        redis: Redis,
        *,
        group: str,
        name: str,
        streams: list[str],
        ordering: Ordering | None,
        dispatcher: Dispatcher,
        settler: Settler,
        settings: Settings,
        health: Health,
        log: Any,
        stopping: asyncio.Event,
        lock: asyncio.Lock,
        process: Process,
        guarded: Guard,
        outage: Callable[[], bool],
    ) -> None:
        self.redis = redis
        self.group = group
        self.name = name
        self.streams = streams
        self.plain = [s for s in streams if not keys.is_partition(s)]  # swept by the loop
        self.ordering = ordering
        self.dispatcher = dispatcher
        self.settler = settler
        self.settings = settings
        self.health = health
        self._log = log
        self._stopping = stopping
        self._lock = lock
        self._process = process
        self._guarded = guarded
        self._outage = outage  # Redis was unreachable at the read loop's last try
        self._claim = BusFunction(redis, "claim")  # bus/claim.lua
        self._gap_checks = True
        self.sweep_after = 0.0  # monotonic time before which the sweep waits (after an outage)
        self.rebalance_at = 0.0  # monotonic time of the next partition rebalance

    # -- groups and gaps --------------------------------------------------------------------

    async def ensure_groups(self) -> None:
        for stream in self.streams:
            try:
                await self.redis.xgroup_create(stream, self.group, id="0", mkstream=True)
                self._log.info("group_created", stream=stream)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
        await self.check_gaps()  # before anything is read: a new group must not hide a gap

    async def check_gaps(self) -> None:
        """Report entries of our streams that were trimmed or deleted before we read them."""
        for stream in self.streams if self._gap_checks else ():
            try:
                gap = await gaps.check(self.redis, stream, self.group)
            except ResponseError as exc:
                if not str(exc).startswith("NOPERM"):
                    raise
                self._gap_checks = False  # an ACL rendered before gap checks existed
                self._log.warning("gap_check_not_permitted", stream=stream, error=str(exc))
                return
            if gap is not None:
                self.health.count("entries_lost", gap.lost)
                self._log.error(
                    "entries_lost_unread",
                    stream=stream,
                    lost=gap.lost,
                    after=gap.after,
                    before=gap.before,
                    detail=gap.describe(),
                )

    # -- own pending after a restart ----------------------------------------------------------

    async def drain_own_pending(self) -> None:
        """After a restart under the same consumer name, finish what this name left pending on
        the plain streams, one entry at a time (partitions: when taken over)."""
        cursors = dict.fromkeys(self.plain, "0")
        while cursors and not self._stopping.is_set():
            for stream in list(cursors):
                entries = await self._own_pending(stream, cursors[stream])
                if not entries:
                    del cursors[stream]
                    continue
                await self._process(stream, entries, await self._deliveries(stream, entries))
                cursors[stream] = entries[-1][0].decode()

    async def _own_pending(self, stream: str, after: str) -> Entries:
        """The first entry pending with this consumer after ``after`` (one delivery counted)."""
        reply = await self.redis.xreadgroup(self.group, self.name, {stream: after}, count=1)
        rows = cast(list[tuple[bytes, Entries]], reply or [])
        return rows[0][1] if rows else []

    # -- the reclaim sweep --------------------------------------------------------------------

    async def sweep_loop(self) -> None:
        interval = self.settings.reclaim_interval_ms / 1000
        checked = time.monotonic()
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), interval)
            # Before any sweep: what ran here during an outage is settled, never run again.
            await self._guarded(self.settle_leftovers, quiet=True)
            if self._outage() or time.monotonic() < self.sweep_after:
                continue  # (just back) from an outage: every replica settles its own first
            for stream in self.plain:
                if self._stopping.is_set():
                    return
                await self._guarded(partial(self._reclaim, stream), quiet=True)
            for partition in sorted(self.ordering.leases.owned) if self.ordering else ():
                await self._guarded(partial(self._adopt, partition), quiet=True)
            if time.monotonic() - checked > _GAP_CHECK_S:
                checked = time.monotonic()
                await self._guarded(self.check_gaps, quiet=True)

    async def settle_leftovers(self) -> None:
        """Once Redis is back: the ``done`` markers, then the acks, of handlers that returned
        while it was away."""
        await self.dispatcher.mark_finished()
        await self.settler.ack_leftovers()

    async def _reclaim(self, stream: str) -> None:
        """Entries idle past ``claim_idle_ms`` (retries due, dead consumers'), page by page."""
        start = "-"
        for _ in range(_RECLAIM_PAGES):
            rows = await self._pending(
                stream, start, self.settings.batch_size, idle=self.settings.claim_idle_ms
            )
            if rows:
                self.health.count("reclaimed", len(rows))
                await self._redeliver(stream, rows)
            if len(rows) < self.settings.batch_size or self._stopping.is_set():
                return
            start = "(" + rows[-1].entry_id

    async def _pending(
        self, stream: str, start: str, count: int, *, idle: int | None = None
    ) -> list[Pending]:
        """A page of the group's pending entries from ``start`` (idle for ``idle`` ms)."""
        rows = await self.redis.xpending_range(
            stream, self.group, min=start, max="+", count=count, idle=idle
        )
        return [
            Pending(_text(r["message_id"]), _text(r["consumer"]), int(r["times_delivered"]))
            for r in rows
        ]

    async def _redeliver(self, stream: str, rows: Sequence[Pending]) -> None:
        """Claim and handle idle entries in order, one at a time: each delivery counted is a
        handler about to run. An entry another replica claimed first is left to it. The count
        a handler sees is the one its claim gave (bus/claim.lua), never the listing's: another
        replica may have claimed and failed the entry since ``rows`` were read."""
        for row in rows:
            if self._stopping.is_set():
                return  # not claimed: the next sweep (of any replica) finds them as they were
            entry_id = row.entry_id
            args: list[str | int] = [self.group, self.name, self.settings.claim_idle_ms, entry_id]
            # Claim under the batch lock, and handle before letting go of it: a claim made
            # while the consumer's own batch still runs would leave the entry idle, counted and
            # unhandled, for another replica to claim again (a handler seeing 1 then 3).
            async with self._lock:
                reply = await self._claim(keys=[stream], args=args)
                if isinstance(reply, list):
                    flat, delivery = reply
                    raw = dict(zip(flat[::2], flat[1::2], strict=True))
                    await self._process(
                        stream, [(entry_id.encode(), raw)], {entry_id: delivery}, locked=True
                    )
            if reply == 0:
                # Pending and idle, but trimmed or deleted: the claim's 0 (no XRANGE, which a
                # service's ACL does not grant); Redis dropped it from the PEL as it was claimed.
                self._log.error(
                    "pending_entries_lost", stream=stream, count=1, entry_ids=[entry_id]
                )
            # None (false): another replica claimed or acked it first; it is left to it.

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

    # -- partitions -------------------------------------------------------------------------

    async def lease_loop(self) -> None:
        """Renew leases beside the handlers; a lease lost stops its partition at once."""
        assert self.ordering is not None
        leases = self.ordering.leases
        # Heartbeats every second (at most a third of a lease): a replica that joins or leaves
        # is seen within a second, and the shares are rebalanced at once, not a lease later.
        every = min(leases.lease_ms / 3000, 1.0)
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), every)
            if self._stopping.is_set():
                return
            live = leases.live
            with contextlib.suppress(*TRANSIENT):  # the read loop reports outages
                lost = await leases.renew()
                if lost:
                    self.ordering.forget(lost)
                    self._log.warning("partitions_lost", partitions=lost)
                if lost or leases.live != live:
                    self.rebalance_at = 0.0  # the read loop rebalances before its next read

    async def rebalance(self) -> None:
        """Take this consumer's fair share of partitions, between batches."""
        assert self.ordering is not None
        async with self._lock:
            change = await self.ordering.leases.rebalance()
            self.ordering.forget([*change.released, *change.lost])
            for partition in change.acquired:
                await self._take_over(partition)
        if change.acquired or change.released or change.lost:
            self._log.info(
                "partitions_rebalanced",
                acquired=change.acquired,
                released=change.released,
                lost=change.lost,
                owned=sorted(self.ordering.leases.owned),
            )

    async def _take_over(self, partition: str) -> None:
        """Everything pending on ``partition`` becomes ours (``XCLAIM ... JUSTID``: no delivery
        counted), to be handled in order before anything new."""
        assert self.ordering is not None
        start, page = "-", 1_000
        while True:
            rows = await self._pending(partition, start, page)
            others: list[str | bytes | int | memoryview[int]] = [
                r.entry_id for r in rows if r.consumer != self.name
            ]
            if others:
                await self.redis.xclaim(partition, self.group, self.name, 0, others, justid=True)
            if len(rows) < page:
                break
            start = "(" + rows[-1].entry_id
        self.ordering.took(partition)

    async def _adopt(self, partition: str) -> None:
        """On a partition we own, entries idle past ``claim_idle_ms`` — a dead letter replayed
        to the group (parked under the consumer that gave up), an entry a frozen ex-owner
        still held — become ours and join the partition's backlog (handled in id order)."""
        assert self.ordering is not None
        rows = await self._pending(
            partition, "-", self.settings.batch_size, idle=self.settings.claim_idle_ms
        )
        others: list[str | bytes | int | memoryview[int]] = [
            r.entry_id for r in rows if r.consumer != self.name
        ]
        if others:
            await self.redis.xclaim(partition, self.group, self.name, 0, others, justid=True)
        if rows:
            self.ordering.took(partition)

    async def backlog(self, partitions: Sequence[str]) -> None:
        """The oldest entry pending with us on each partition, in order; none left: drained."""
        assert self.ordering is not None
        for partition in partitions:
            entries = await self._own_pending(partition, "0")
            if not entries:
                self.ordering.drained(partition)
                continue
            await self._process(partition, entries, await self._deliveries(partition, entries))
