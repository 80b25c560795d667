"""Run a side-effecting handler once per event id per group, even under redelivery.

At-least-once delivery means a handler can see the same event again (a retry after a failure,
an entry reclaimed from a consumer that died after its handler finished but before its ack).
``@service.on(Model, once=True)`` wraps the handler in this guard:

* before the handler: take a lease on ``keys.done(stream, group, event_id)``; if the marker says
  ``done`` the event is acked without running the handler again;
* after success: the marker becomes ``done`` for ``dedupe_ttl``;
* after a failure: the lease is dropped so the retry can run.

With replicas (bus.durability), ``begin`` and ``finish`` each send ``WAIT`` behind their call,
on its connection, because a failover promotes a replica that may not have the latest writes:

* the lease is on a replica **before the handler runs**: a promoted replica then still knows
  an attempt is under way, and answers ``busy`` to other consumers until the lease ends —
  the time the replica that ran the handler has to write its marker there. Without that WAIT,
  a master lost during the effect could take the lease with it, and another consumer would run
  the handler again at once;
* the ``done`` marker is on a replica **before the entry is acked**: an unconfirmed marker
  raises NotDurable, and the dispatcher handles it as a marker Redis refused (it remembers the
  event and writes the marker again on the new master, never running the handler for it);
* a ``done`` found by ``begin`` is rewritten as it is, so the WAIT confirms it too before the
  redelivery is acked unrun.

It cannot make a side effect and the marker atomic together (no distributed transaction can):
if a process dies between the effect and the ``done`` marker, the handler runs again. A live
replica whose marker write failed (Redis away) remembers the event and writes the marker when
Redis returns (``Dispatcher.mark_finished``), never running the handler for it again. Handlers
that write to their own database should record the event id in the same transaction instead.
"""

from __future__ import annotations

import enum
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from bus import keys
from bus.durability import Durability, ReplicaWait
from bus.functions import BusFunction


class Claim(enum.Enum):
    RUN = "run"  # first attempt, or the earlier ones failed: run the handler
    DONE = "done"  # a previous delivery completed: skip the handler, ack
    BUSY = "busy"  # another consumer holds the lease right now: retry later


class Dedupe:
    """The guard of one consumer group. ``lease_ms`` should match the group's claim idle time.

    ``begin`` and ``finish`` raise :class:`~bus.errors.NotDurable` when fewer replicas than
    ``durability`` requires confirmed their write in time."""

    def __init__(
        self,
        redis: Redis,
        *,
        group: str,
        consumer: str,
        lease_ms: int,
        ttl_ms: int,
        durability: Durability | None = None,
    ) -> None:
        self._redis = redis
        self._function = BusFunction(redis, "dedupe")  # bus/dedupe.lua
        self._replicas = ReplicaWait(redis, durability)
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
        # No WAIT: an abandon lost in a failover only leaves the lease to expire.
        await self._call("abandon", stream, event_id, entry_id, self._lease_ms, durable=False)

    async def _call(
        self, op: str, stream: str, event_id: str, entry_id: str, ttl: str, *, durable: bool = True
    ) -> bytes | None:
        lease = f"lease:{self._consumer}:{entry_id}"
        key = keys.done(stream, self._group, event_id)
        args = (key.encode(), op.encode(), lease.encode(), ttl.encode())
        if not (durable and await self._replicas.required()):
            result: bytes | None = await self._function(keys=args[:1], args=args[1:])
            return result
        head = await self._function.command_head()  # FCALL <name> (EVAL <body> on Redis < 7)
        async with self._redis.pipeline(transaction=False) as pipe:
            # A cluster pipeline routes the call by its key; the WAIT behind it rides the same
            # connection (bus.durability).
            pipe.execute_command(*head, 1, *args)
            waits = self._replicas.add(pipe, [key])
            try:
                replies: list[Any] = await pipe.execute()
            except ResponseError as exc:
                raise self._function.translate(exc) from None
        self._replicas.confirm(waits, replies[1:], f"the once marker of an event in {key}")
        return replies[0]  # type: ignore[no-any-return]
