"""Partitioned streams: one reader per partition and group, so a subject's events stay in order.

A hot aggregate is split into N streams by subject (``Contract, partitions=N``;
:func:`bus.keys.partition_of`). A consumer group still scales by replicas, but each partition
is read by one replica at a time: the replica holds a *lease* on it (``keys.lease``: ``SET NX
PX``), renews it while alive, and takes at most its fair share — ``ceil(partitions / live
replicas)``, the live replicas being the members of the group that sent a heartbeat within
one lease (``keys.members``, a sorted set scored by Redis' own clock). A replica that joins
makes the others release their surplus; one that dies stops renewing, and when its leases
expire the others take its partitions over, finishing what it left pending, in order, before
reading anything new (the consumer does that part).

Order holds as long as a lease outlives the longest handler between two renewals: renewals run
beside the handlers every third of a lease, so only a replica frozen for a whole lease (a
paused VM, SIGSTOP) can lose its partition while still holding events of it; when it wakes it
sees the lease gone and drops the partition before its next event (docs/delivery.md).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from redis.asyncio import Redis

from bus import keys
from bus.functions import BusFunction

__all__ = ["Leases", "Ordering", "Rebalance"]


@dataclass
class Rebalance:
    """What one :meth:`Leases.rebalance` changed."""

    acquired: list[str] = field(default_factory=list)
    released: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)  # a lease that expired under us


class Leases:
    """The partitions one consumer of ``group`` reads, out of ``partitions`` (stream keys)."""

    def __init__(
        self,
        redis: Redis,
        *,
        group: str,
        consumer: str,
        partitions: Sequence[str],
        lease_ms: int,
    ) -> None:
        self.group = group
        self.consumer = consumer
        self.partitions = list(partitions)
        self.lease_ms = lease_ms
        self.owned: set[str] = set()
        self.live = 1
        self._members = keys.members(group)
        self._heartbeat = BusFunction(redis, "heartbeat")
        self._renew = BusFunction(redis, "renew")
        self._release = BusFunction(redis, "release")
        self._redis = redis
        # Each consumer tries free partitions from its own starting point, so replicas that
        # start together do not all race for partition 0.
        start = zlib.crc32(consumer.encode()) % max(len(self.partitions), 1)
        self._order = self.partitions[start:] + self.partitions[:start]

    @property
    def share(self) -> int:
        """How many partitions this consumer may hold: its fair share of the live members."""
        return math.ceil(len(self.partitions) / max(self.live, 1))

    async def renew(self) -> list[str]:
        """Heartbeat, and extend every lease held. Returns the partitions lost (expired and
        perhaps taken by another consumer): stop reading them at once. Safe beside handlers."""
        self.live = int(
            await self._heartbeat(keys=[self._members], args=[self.consumer, self.lease_ms])
        )
        lost = []
        for partition in sorted(self.owned):
            key = keys.lease(partition, self.group)
            if not await self._renew(keys=[key], args=[self.consumer, self.lease_ms]):
                lost.append(partition)
        self.owned.difference_update(lost)
        return lost

    async def rebalance(self) -> Rebalance:
        """Renew; release what is above the fair share; take free partitions up to it.

        Call it between batches (never while a handler of a released partition runs)."""
        change = Rebalance(lost=await self.renew())
        surplus = len(self.owned) - self.share
        for partition in sorted(self.owned, reverse=True)[: max(surplus, 0)]:
            await self._drop(partition)
            change.released.append(partition)
        for partition in self._order:
            if len(self.owned) >= self.share:
                break
            if partition in self.owned:
                continue
            key = keys.lease(partition, self.group)
            if await self._redis.set(key, self.consumer, nx=True, px=self.lease_ms) or (
                # Ours from before a restart under the same name: no need to wait it out.
                await self._renew(keys=[key], args=[self.consumer, self.lease_ms])
            ):
                self.owned.add(partition)
                change.acquired.append(partition)
        return change

    async def release_all(self) -> None:
        """On a clean stop: hand every partition over at once instead of after a lease."""
        for partition in sorted(self.owned):
            await self._drop(partition)
        await self._redis.zrem(self._members, self.consumer)

    async def _drop(self, partition: str) -> None:
        await self._release(keys=[keys.lease(partition, self.group)], args=[self.consumer])
        self.owned.discard(partition)


class Ordering:
    """What a consumer knows about the partitions it reads in order: which it owns (through
    :class:`Leases`), which hold a failed event until its backoff has passed, and which have
    entries of theirs pending with this consumer that must be handled before anything new."""

    def __init__(self, leases: Leases) -> None:
        self.leases = leases
        self.partitions = frozenset(leases.partitions)
        self._held: dict[str, float] = {}  # partition -> monotonic time its backoff ends
        self._backlog: set[str] = set()  # partitions whose own pending entries come first

    def ordered(self, stream: str) -> bool:
        return stream in self.partitions

    def owns(self, stream: str) -> bool:
        return stream in self.leases.owned

    def hold(self, partition: str, backoff_ms: int, now: float) -> None:
        """A failed event: nothing of ``partition`` until ``backoff_ms``, then its pending."""
        self._held[partition] = now + backoff_ms / 1000
        self._backlog.add(partition)

    def took(self, partition: str) -> None:
        """A partition just acquired: what its previous owner left pending comes first."""
        self._backlog.add(partition)

    def drained(self, partition: str) -> None:
        self._backlog.discard(partition)

    def forget(self, partitions: Sequence[str]) -> None:
        """Partitions released or lost: whoever owns them next handles their pending."""
        for partition in partitions:
            self._held.pop(partition, None)
            self._backlog.discard(partition)

    def backlog(self, streams: Sequence[str], now: float) -> list[str]:
        """Owned partitions among ``streams`` whose own pending entries are due now."""
        return [s for s in streams if s in self._backlog and self._due(s, now) and self.owns(s)]

    def readable(self, streams: Sequence[str], now: float) -> list[str]:
        """``streams`` that may be read for new entries now: plain streams, and owned
        partitions with no failed event waiting and nothing of theirs pending first."""
        return [
            s
            for s in streams
            if s not in self.partitions
            or (self.owns(s) and s not in self._backlog and self._due(s, now))
        ]

    def next_due(self, now: float) -> float | None:
        """Seconds until the earliest held partition may go on (None: none held)."""
        ends = [end for end in self._held.values() if end > now]
        return min(ends) - now if ends else None

    def _due(self, partition: str, now: float) -> bool:
        end = self._held.get(partition)
        if end is not None and end <= now:
            del self._held[partition]
            return True
        return end is None
