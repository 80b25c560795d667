"""Run a side-effecting handler once per event id per group, even under redelivery.

At-least-once delivery means a handler can see the same event again (a retry after a failure,
an entry reclaimed from a consumer that died after its handler finished but before its ack).
``@service.on(Model, once=True)`` wraps the handler in this guard:

* before the handler: take a lease on ``keys.done(stream, group, event_id)``; if the marker says
  ``done`` the event is acked without running the handler again;
* after success: the marker becomes ``done`` for ``dedupe_ttl``;
* after a failure: the lease is dropped so the retry can run.

It cannot make a side effect and the marker atomic together (no distributed transaction can):
if a process dies between the effect and the ``done`` marker, the handler runs again. A live
replica whose marker write failed (Redis away) remembers the event and writes the marker when
Redis returns (``Dispatcher.mark_finished``), never running the handler for it again. Handlers
that write to their own database should record the event id in the same transaction instead.
"""

from __future__ import annotations

import enum

from redis.asyncio import Redis

from bus import keys
from bus.functions import BusFunction


class Claim(enum.Enum):
    RUN = "run"  # first attempt, or the earlier ones failed: run the handler
    DONE = "done"  # a previous delivery completed: skip the handler, ack
    BUSY = "busy"  # another consumer holds the lease right now: retry later


class Dedupe:
    """The guard of one consumer group. ``lease_ms`` should match the group's claim idle time."""

    def __init__(
        self, redis: Redis, *, group: str, consumer: str, lease_ms: int, ttl_ms: int
    ) -> None:
        self._script = BusFunction(redis, "dedupe")
        self._group = group
        self._consumer = consumer
        self._lease_ms = str(lease_ms)
        self._ttl_ms = str(ttl_ms)

    async def begin(self, stream: str, event_id: str, entry_id: str) -> Claim:
        current = await self._call("begin", stream, event_id, entry_id, self._lease_ms)
        if current is None:
            return Claim.RUN
        return Claim.DONE if current == b"done" else Claim.BUSY

    async def finish(self, stream: str, event_id: str, entry_id: str) -> None:
        await self._call("finish", stream, event_id, entry_id, self._ttl_ms)

    async def abandon(self, stream: str, event_id: str, entry_id: str) -> None:
        await self._call("abandon", stream, event_id, entry_id, self._lease_ms)

    async def _call(
        self, op: str, stream: str, event_id: str, entry_id: str, ttl: str
    ) -> bytes | None:
        lease = f"lease:{self._consumer}:{entry_id}"
        key = keys.done(stream, self._group, event_id)
        result: bytes | None = await self._script(keys=[key], args=[op, lease, ttl])
        return result
