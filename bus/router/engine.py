"""The router: the one trusted writer of department streams and inboxes (decision 0011).

Two stages, each an ordered reader of one source at a time:

* **admission** reads a producer's intake ``simpul:intake:{<principal>}``: an entry goes onto
  its department stream (server-generated id ``*``, the producer's fields verbatim, so the
  archive keeps the producer's signature verifiable) only if it is small enough, decodes, is of
  a type its principal may publish, is signed by a key of that principal (the keyring: its
  right to the type, validity window and age, measured against the router's clock, never the
  intake's entry id) and satisfies its contract. Anything else goes to the producer's own dead
  letters ``<intake>:dlq`` with the reason, acked in the same function call.
* **fan-out** reads each department stream (each partition on its own) and writes every entry
  to the inbox of each approved subscription of its type, ``simpul:inbox:{<group>/<stream>}``,
  with the fields that subscription may see (``bus.projection.forward``), once its producer's
  signature verifies (with a keyring): an entry written there other than by admission (the
  router's password alone, a restored dump) would otherwise go out signed by the router.

Crash safety is at-least-once reading plus idempotent writes, acked only once a replica
confirmed them where the bus has replicas (WAIT; decision 0011), so an entry read again after a
crash (it stays pending with the router's consumer until acked) is written nowhere twice:
admission writes with the publisher's function (``publish_batch.lua`` in the ``simpul_1``
library, bus.functions), which remembers the event id per department stream (a producer's
retry is a duplicate there too); fan-out with ``forward_batch.lua``, which keeps one high-water
mark per inbox (``<inbox>:routed``: the department-stream entry id of the last entry forwarded
to it) and writes only what lies above it — the department stream is read in order by one
replica at a time, so what lies at or below the mark was forwarded before. Order: each source
is read by one replica at a time (a lease beside the source, every read fenced by it), always
with the same consumer name, so a replica taking over first reads what its predecessor left
pending, in order, before anything new.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from pydantic import ValidationError
from redis.asyncio import Redis
from redis.exceptions import OutOfMemoryError, ResponseError

from bus import keys
from bus.access.topology import Topology
from bus.connection import TRANSIENT
from bus.contracts import Registry, violation
from bus.durability import NO_WAITS, ReplicaWait, Waits
from bus.envelope import MAX_ID, Envelope, format_time
from bus.errors import ConfigurationError, DecodeError, NotDurable
from bus.functions import BusFunction
from bus.logging import get_logger
from bus.projection import FORWARDING_FIELDS, disclosures, forward_each
from bus.replies import field_pairs
from bus.router.common import (
    CONSUMER,
    MAX_FIELDS,
    NOT_HOLDER,
    Counts,
    Entries,
    IdsMoved,
    Refusal,
    RejectReason,
    Route,
    RouterConfig,
    Settlement,
    _flat,
    _next_id,
    _pairs,
    _text,
    trim_inbox,
)
from bus.router.lane import Lane, open_lane
from bus.signing import KeyRing, Signer

_log = get_logger("bus.router")

_ORIGIN_FIELDS = tuple(name.encode() for name in FORWARDING_FIELDS)
VERIFIED_MEMORY = 20_000
"""How many entries a replica remembers having verified at admission (their fields, by
signature: ~1 KB each, ~20 MB): their fan-out, by the same replica, need not verify the
signature again. Fan-out follows admission by a round trip or two, so this is seconds of
traffic even at the router's full rate."""


@dataclass
class _Batch:
    """The entries bound for one target stream in one call of the publish_batch function."""

    seen: list[bytes] = field(default_factory=list)  # each entry's dedupe key, in order
    args: list[bytes] = field(default_factory=list)  # per entry: its field count, its fields

    def add(self, seen: str, fields: list[bytes]) -> None:
        self.seen.append(seen.encode())
        self.args.append(str(len(fields)).encode())
        self.args += fields


@dataclass
class _Admits:
    """The entries bound for one department stream in one call of the admit_batch function
    (decision 0014): per entry its dedupe key, the id the router chose, its fields and its
    inbox entries."""

    seen: list[bytes] = field(default_factory=list)
    args: list[bytes] = field(default_factory=list)
    inboxes: dict[str, int] = field(default_factory=dict)  # inbox -> its index in the call
    forwards: list[int] = field(default_factory=list)  # per entry: how many inbox entries

    def add(
        self,
        seen: str,
        chosen: str,
        fields: list[bytes],
        inboxes: Sequence[tuple[str, list[bytes]]],
    ) -> None:
        self.seen.append(seen.encode())
        self.args += (chosen.encode(), b"%d" % len(fields), *fields, b"%d" % len(inboxes))
        for inbox, entry in inboxes:
            index = self.inboxes.setdefault(inbox, len(self.inboxes) + 1)
            self.args += (b"%d" % index, b"%d" % len(entry), *entry)
        self.forwards.append(len(inboxes))


@dataclass
class _Forwards:
    """The entries bound for one inbox in one call of the forward_batch function: per entry
    its department-stream entry id, its field count, its fields."""

    args: list[bytes] = field(default_factory=list)

    def add(self, origin: bytes, fields: list[bytes]) -> None:
        self.args += (origin, b"%d" % len(fields), *fields)


@dataclass
class _Turn:
    """A routed batch's writes, not sent yet: they go with the source's next read (one round
    trip a batch), and once every one of them returned and a replica confirmed them (WAIT),
    ``settlement`` (the batch's ack, an intake's trim) goes with the read after."""

    commands: list[tuple[Any, ...]]  # the writes, in order
    settlement: Settlement
    function: BusFunction  # whose errors the writes' errors are (a library gone: translated)
    replied: Callable[[list[Any]], None] = lambda replies: None  # the counts, from the replies
    written: tuple[str, ...] = ()  # the keys written: on a cluster, a WAIT per node of them


class Router:
    """One router replica. ``await run()`` until ``stop()``; several replicas share the work."""

    def __init__(
        self,
        redis: Redis,
        topology: Topology,
        registry: Registry,
        *,
        keyring: KeyRing | None,
        signer: Signer | None = None,
        config: RouterConfig | None = None,
        replica: str = "router",
    ) -> None:
        """``keyring`` None: admission checks no signature (a bus without signing keys)."""
        self.redis = redis
        self.topology = topology
        self.registry = registry
        self.keyring = keyring
        self.signer = signer
        self.config = config or RouterConfig()
        self.replica = replica
        self.counts = Counts()
        self._stopping = asyncio.Event()
        self._publish_batch = BusFunction(redis, "publish_batch")  # bus/publish_batch.lua
        self._admit_batch = BusFunction(redis, "admit_batch")  # bus/admit_batch.lua
        self._forward_batch = BusFunction(redis, "forward_batch")  # bus/forward_batch.lua
        self._dead_letter = BusFunction(redis, "deadletter")  # bus/deadletter.lua
        self._read_fenced = BusFunction(redis, "router_read")  # bus/router_read.lua
        self._intake_cap = BusFunction(redis, "intake_cap")  # bus/intake_cap.lua
        self.replicas = ReplicaWait(redis)  # SIMPUL_REDIS_WAIT_*, as every publish (ha.md)
        self.may_publish = {p.principal: frozenset(p.publishes) for p in topology.publishers()}
        self.intakes = sorted(keys.intake(p) for p in self.may_publish)
        self._clock: tuple[int, float] | None = None  # Redis TIME (ms), local monotonic then
        # Admission and fan-out in one call where one server holds every key (decision 0014):
        # a cluster spreads the inboxes over other slots, so there the fan-out forwards.
        self.one_hop = self.config.one_hop and not hasattr(redis, "get_primaries")
        self._last_ids: dict[str, tuple[int, int]] = {}  # stream -> the last id chosen there
        self._quiet: set[str] = set()  # department streams whose entries admission forwards
        self._grouped: set[str] = set()  # department streams whose fan-out group exists
        self.routes = self._routes()
        self.sources = [*self.intakes, *sorted(self.routes)]
        self.owned: set[str] = set()
        self.live = 1  # router replicas alive, this one included (keys.ROUTER_REPLICAS)
        self._taking: set[str] = set()  # sources whose lease this replica is asking for
        self._renewed: dict[str, float] = {}  # source -> when its lease was last taken/renewed
        self._taken: set[str] = set()  # sources whose lease was taken anew, not renewed
        self._tail: dict[str, bytes] = {}  # source -> the last id seen there (to wait from)
        self._lanes: dict[str, Lane] = {}  # source -> its loop's own connection (lane.py)
        self._unsettled: dict[str, Settlement] = {}  # source -> its last batch's ack, not sent
        self._unwritten: dict[str, _Turn] = {}  # source -> its last batch's writes, not sent
        self._sent: dict[str, _Turn] = {}  # source -> writes sent, their replies not back yet
        self._read_to: dict[str, bytes] = {}  # source -> the last id its last read returned
        # What admission verified: each entry's fields, by its signature (see _genuine).
        self._verified: OrderedDict[bytes, Mapping[bytes, bytes]] = OrderedDict()
        self._log = _log.bind(replica=replica)

    # -- the routing table ------------------------------------------------------------------

    def _routes(self) -> dict[str, dict[str, list[Route]]]:
        """Department stream -> event type -> the subscriptions' inboxes."""
        approved = disclosures(self.topology)
        table: dict[str, dict[str, list[Route]]] = {}
        for service in self.topology.services:
            for subscription in service.subscriptions:
                aggregate = keys.aggregate_of(subscription.type)
                for stream in keys.streams(aggregate):
                    route = Route(
                        service.group,
                        keys.inbox(stream, service.group),
                        approved[(service.group, subscription.type)],
                    )
                    table.setdefault(stream, {}).setdefault(subscription.type, []).append(route)
        return table

    def inboxes(self) -> list[tuple[str, str]]:
        """Every (inbox, group) the router writes."""
        return sorted(
            {(r.inbox, r.group) for t in self.routes.values() for rs in t.values() for r in rs}
        )

    # -- lifecycle --------------------------------------------------------------------------

    async def run(self) -> None:
        """Read every source this replica can lease, until :meth:`stop`. Refuses to start
        without a signing key when a subscription is a projection (it could forward nothing)."""
        if self.signer is None:
            projected = sorted(
                {
                    (r.group, r.disclosure.event_type)
                    for t in self.routes.values()
                    for rs in t.values()
                    for r in rs
                    if r.disclosure.fields is not None
                }
            )
            if projected:
                group, event_type = projected[0]
                raise ConfigurationError(
                    f"the router needs its signing key (SIMPUL_SIGNING_KEY_FILE, SIMPUL_SIGNER): "
                    f"{len(projected)} subscriptions are projections it must sign, e.g. "
                    f"{group}'s to {event_type}"
                )
        self._log.info("router_started", sources=len(self.sources))
        await self._announce()  # counted before taking a source: newcomers get their share
        tasks = [
            asyncio.create_task(self._source_loop(s), name=f"router:{s}") for s in self.sources
        ]
        tasks.append(asyncio.create_task(self._trim_loop(), name="router:trim"))
        tasks.append(asyncio.create_task(self._presence_loop(), name="router:presence"))
        try:
            await self._until_stopped()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self._stopping.is_set():  # a graceful stop hands its sources over at once
                with contextlib.suppress(ResponseError, NotDurable, IdsMoved, *TRANSIENT):
                    for source in {*self._unsettled, *self._sent, *self._unwritten}:
                        await self._flush(source)
                    for source in list(self.owned):
                        await self._release(source)
                    await self.redis.zrem(keys.ROUTER_REPLICAS, self.replica)
            self._log.info("router_stopped")

    def stop(self) -> None:
        self._stopping.set()

    async def _until_stopped(self) -> None:
        """Wait for :meth:`stop` or a cancellation — also one redis-py swallowed: a cancellation
        that hit ``_announce`` as its reply arrived was lost there (its command returned), and
        the replica then ran on with the caller waiting for it to end."""
        task = asyncio.current_task()
        while not self._stopping.is_set():
            if task is not None and task.cancelling():
                raise asyncio.CancelledError
            await self._sleep(0.2)

    async def _source_loop(self, source: str) -> None:
        lane = open_lane(self.redis)  # the hot loop's own connection (bus/router/lane.py)
        if lane is not None:
            self._lanes[source] = lane
        try:
            await self._turns(source)
        finally:
            if lane is not None:
                del self._lanes[source]
                await lane.close()

    async def _turns(self, source: str) -> None:
        delay = 0.05
        drained = False  # nothing pending with the router's consumer on this source
        after = b"0"  # where the next read of what is pending starts
        task = asyncio.current_task()
        while not self._stopping.is_set():
            # redis-py may swallow a cancellation that hits a command in flight: ask the task.
            if task is not None and task.cancelling():
                raise asyncio.CancelledError
            try:
                if self._surplus(source):  # another replica came: hand this one over
                    drained, after = False, b"0"
                    await self._hand_over(source)
                    await self._sleep(self.config.lease_ms / 3000)
                    continue
                if not await self._hold(source):
                    drained, after = False, b"0"  # whoever has it may leave entries pending
                    self._forget(source)  # the next holder reads them again
                    await self._sleep(self.config.lease_ms / 3000)
                    continue
                if source in self._taken:  # newly taken (maybe after another's tenure)
                    self._taken.discard(source)
                    drained, after = False, b"0"
                if not drained:
                    await self._ensure_group(source)
                # What this source's consumer has pending (a predecessor's, or ours after an
                # error) comes first, in order; then what is new. Once nothing is pending, only
                # new entries are read while the lease stays ours. One round trip a turn: the
                # read carries the writes of the batch before and the ack of the one before
                # that (see _Turn); a read of what is pending starts after the last one's
                # batch, whose writes and ack are not sent yet.
                pending = [] if drained else await self._read(source, after, block=None)
                drained = not pending
                after = self._read_to.get(source, b"0") if pending else b"0"
                entries = pending or await self._next(source)
                if entries:
                    self._unwritten[source] = await self._route(source, entries)
                delay = 0.05
            except asyncio.CancelledError:
                raise
            except (ResponseError, NotDurable, IdsMoved, *TRANSIENT) as exc:
                drained, after = False, b"0"  # a batch may be left pending: read it again first
                self._forget(source)
                if self._read_again(source, exc):
                    continue
                await self._failed(source, exc)
                await self._sleep(delay)
                delay = min(delay * 2, 5.0)
            except Exception as exc:  # a bug must not silently stop a source: log, retry
                drained, after = False, b"0"
                self._forget(source)
                self._log.error(
                    "router_source_crashed",
                    source=source,
                    error_type=type(exc).__name__,
                    error=str(exc)[:200],
                )
                await self._sleep(5.0)

    async def _flush(self, source: str) -> None:
        """Settle what ``source``'s batches left: the ack of the batch whose writes returned,
        then the writes sent with a read still waiting (their replies never came) or not sent
        yet — (again) now, idempotent — each batch settled once they returned."""
        settlement = self._unsettled.pop(source, None)
        if settlement:
            await self._settle(source, settlement)
        for pending in (self._sent, self._unwritten):
            turn = pending.pop(source, None)
            if turn is not None:
                await self._settle(source, await self._write(turn))

    def _read_again(self, source: str, exc: Exception) -> bool:
        """Whether a failed turn of ``source`` is read again at once: its lease lapsed (a pause:
        Redis is asked next turn), or the ids admission chose were taken (chosen anew)."""
        if isinstance(exc, IdsMoved):
            self._log.info("router_ids_moved", source=source, error=str(exc)[:200])
            return True
        if NOT_HOLDER in str(exc):
            self._renewed.pop(source, None)
            self.owned.discard(source)
            self._log.info("router_lease_lost", source=source)
            return True
        return False

    def _forget(self, source: str) -> None:
        """Drop what this replica has not sent for ``source``: what it read stays pending with
        the router's consumer, and is read (and written, idempotently) again first."""
        self._unsettled.pop(source, None)
        self._unwritten.pop(source, None)
        self._sent.pop(source, None)
        self._quiet.discard(source)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    def share(self) -> int:
        """How many sources this replica may hold: ceil(sources / live replicas)."""
        return -(-len(self.sources) // max(1, self.live))

    def _renewal_due(self, source: str) -> bool:
        renewed = self._renewed.get(source)
        return renewed is None or time.monotonic() - renewed >= self.config.lease_ms / 3000

    def _surplus(self, source: str) -> bool:
        """Whether to give ``source`` up: held, due for renewal, and this replica holds more
        than its share (a replica joined)."""
        return source in self.owned and self._renewal_due(source) and len(self.owned) > self.share()

    async def _hand_over(self, source: str) -> None:
        """Give ``source`` up cleanly: what was read is written and acked first, then the lease
        goes (a replica with fewer than its share takes it at its next try)."""
        self.owned.discard(source)  # at once: no other source of this replica also goes for it
        try:
            await self._flush(source)
        finally:
            self._forget(source)  # on an error: pending, read again by the next holder
            await self._release(source)
        self._log.info("router_source_handed_over", source=source, share=self.share())

    async def _announce(self) -> None:
        """Renew this replica's presence and count the live ones (keys.ROUTER_REPLICAS, Redis's
        clock); a Redis that refuses it (an ACL from before) leaves the count at one: this
        replica then takes every free source, as before there was a share."""
        try:
            now = await self._now_ms()
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.zadd(keys.ROUTER_REPLICAS, {self.replica: now + self.config.lease_ms})
                pipe.zremrangebyscore(keys.ROUTER_REPLICAS, "-inf", now)
                pipe.zcard(keys.ROUTER_REPLICAS)
                replies = await pipe.execute()
        except (ResponseError, *TRANSIENT) as exc:
            self.live = 1
            self._log.warning("router_presence_failed", error=str(exc)[:200])
            return
        self.live = max(1, int(replies[-1]))

    async def _presence_loop(self) -> None:
        task = asyncio.current_task()
        while not self._stopping.is_set():
            await self._sleep(self.config.lease_ms / 3000)
            await self._announce()
            if task is not None and task.cancelling():  # as in _trim_loop
                raise asyncio.CancelledError

    async def _hold(self, source: str) -> bool:
        """Whether this replica holds ``source``'s lease: renewed once a third of it has passed
        (not every turn: two round trips a turn were a third of an idle source's traffic and
        delayed every event by them). A free source is taken only while this replica holds
        fewer than its share."""
        if not self._renewal_due(source):
            return True
        if source not in self.owned and len(self.owned | self._taking) >= self.share():
            return False
        began = time.monotonic()
        self._taking.add(source)  # counted at once: the other sources' loops run meanwhile
        try:
            held = await self._lease(source)
        finally:
            self._taking.discard(source)
        if held:
            self._renewed[source] = began
            return True
        self._renewed.pop(source, None)
        return False

    async def _lease(self, source: str) -> bool:
        """Take or renew the lease on ``source`` (SET NX GET: no script needed)."""
        key = keys.router_lease(source)
        holder: Any = await self.redis.set(
            key, self.replica, nx=True, get=True, px=self.config.lease_ms
        )
        if holder is None:
            self.owned.add(source)
            self._taken.add(source)
            return True
        if holder.decode() == self.replica:
            await self.redis.pexpire(key, self.config.lease_ms)
            self.owned.add(source)
            return True
        self.owned.discard(source)
        return False

    async def _release(self, source: str) -> None:
        self._renewed.pop(source, None)
        key = keys.router_lease(source)
        holder: Any = await self.redis.get(key)
        if holder is not None and holder.decode() == self.replica:
            await self.redis.delete(key)
        self.owned.discard(source)

    async def _ensure_group(self, source: str) -> None:
        try:
            await self.redis.xgroup_create(source, keys.ROUTER_GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _next(self, source: str) -> Entries:
        """The next batch of new entries of ``source``, waiting for it — or, for a department
        stream whose entries admission forwards itself (decision 0014), looking every
        ``block_ms``: every admitted entry would wake a blocked read for nothing. What
        admission leaves to the fan-out (its group behind: an entry written there by another
        writer, a batch pending after a crash) is found at the next look, and the source goes
        back to waiting until a wake again brings nothing."""
        if source not in self._quiet:
            return await self._read(source, ">", block=self.config.block_ms)
        await self._sleep(self.config.block_ms / 1000)
        entries = await self._read(source, ">", block=None)
        if entries:
            self._quiet.discard(source)
        return entries

    async def _read(self, source: str, cursor: str | bytes, *, block: int | None) -> Entries:
        """The next batch of ``source`` (``0`` or an entry id: what is pending with the
        router's consumer after it; ``>``: new entries), in the round trip that also sends
        the writes of the batch routed before and the ack of the one before that.

        The read is fenced by the lease (bus/router_read.lua: XREADGROUP only while this
        replica holds it, one atomic step): a replica paused past its lease reads nothing
        (SIMPUL_NOT_HOLDER), so a new holder's first read of what is pending finds all that
        its predecessors read and did not settle — which the inboxes' high-water marks need.
        A function cannot block, so with ``block`` the read of new entries is queued behind an
        ``XREAD BLOCK`` (no group: it delivers nothing) from the last id this replica saw on
        the source: it runs as soon as something new is there, still one round trip.

        The writes go first in the pipeline, so they run at once, before any wait; their
        replies come back with the read's. A batch is acked only in a later round trip, once
        every write of it returned without an error: an error (or a crash) leaves it pending,
        to be read and written again (idempotent: publish_batch's event ids, forward_batch's
        high-water marks), and everything read after it with it, in order."""
        settlement = [*await self._cap(source), *(self._unsettled.pop(source, None) or [])]
        turn = self._unwritten.pop(source, None)
        # Where admission forwards (decision 0014), a fan-out batch's writes and the ack after
        # them go at once, not behind a wait: until they are done, admission leaves every new
        # entry to the fan-out.
        hurry = turn is not None and self._forwards_itself(source)
        waits = cursor == ">" and block is not None and not hurry
        tail = self._tail.get(source) if waits else None
        read = (
            *await self._read_fenced.command_head(),
            2,
            source,
            keys.router_lease(source),
            self.replica,
            keys.ROUTER_GROUP,
            CONSUMER,
            self.config.batch_size,
            cursor,
        )
        if settlement or turn is not None or tail is not None or source in self._lanes:
            reply = await self._round_trip(source, settlement, turn, tail, block, read)
        else:
            try:
                reply = await self.redis.execute_command(*read)  # type: ignore[no-untyped-call]
            except ResponseError as exc:
                raise self._read_fenced.translate(exc) from None
        found = cast(list[Any], reply)
        if found[0]:
            self._read_to[source] = found[0][-1][0]
        if cursor == ">":  # where to wait from next time: the last entry read, or the stream's
            if found[0]:
                self._tail[source] = found[0][-1][0]
            elif len(found) > 1:
                if tail is not None and found[1] != tail and self._forwards_itself(source):
                    self._quiet.add(source)  # woken by an entry admission forwarded itself
                self._tail[source] = found[1]
        return [(e, _pairs(f)) for e, f in found[0]]  # deleted ones were acked in the read

    async def _cap(self, source: str) -> Settlement:
        """For an intake, the call of the cap on what it and its refusals hold
        (bus/intake_cap.lua), first in each of its turns: a producer's own intake is the one
        key it can grow without bound, and Redis's memory (maxmemory, noeviction) is every
        department's. The function runs even when Redis refuses writes for memory, and what it
        frees lets the writes queued behind it in the same turn run."""
        owner = keys.intake_owner(source)
        if owner is None:
            return []
        command = (
            *await self._intake_cap.command_head(),
            2,
            source,
            keys.intake_dead_letters(owner),
            self.config.max_intake_bytes,
            self.config.max_refusal_bytes,
            format_time(datetime.now(UTC)),
            keys.ROUTER_GROUP,
        )
        return [lambda pipe: pipe.execute_command(*command)]

    async def _failed(self, source: str, exc: Exception) -> None:
        self._log.warning("router_source_failed", source=source, error=str(exc)[:200])
        if _out_of_memory(exc):  # any write of the turn, the lease's renewal included
            await self._free_memory()

    async def _free_memory(self) -> None:
        """Redis refused a write for memory: the cap on every intake, now, whoever holds it.
        An intake's loop may be stuck before its read, where the cap usually runs (its lease's
        renewal and its group's creation are writes Redis refuses too), and the function is
        safe beside its holder: it removes only an intake's oldest entries, and the holder's
        read acks those of its own it finds gone (bus/router_read.lua)."""
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for intake in self.intakes:
                    for queue in await self._cap(intake):
                        queue(pipe)
                replies = await pipe.execute(raise_on_error=False)
        except (ResponseError, *TRANSIENT) as exc:
            self._log.warning("router_cap_failed", error=str(exc)[:200])
            return
        for intake, reply in zip(self.intakes, replies, strict=True):
            self._capped(intake, reply)

    def _capped(self, source: str, reply: Any) -> None:
        """What the cap removed (its reply), for the operators: an intake over its cap is a
        producer flooding it, or its router stopped for long."""
        if not isinstance(reply, list) or not any(int(n) for n in reply):
            return
        removed, refusals = (int(n) for n in reply)
        if removed:
            self.counts.rejected[RejectReason.INTAKE_OVERFLOW] = (
                self.counts.rejected.get(RejectReason.INTAKE_OVERFLOW, 0) + removed
            )
        self._log.warning(
            "intake_over_cap", intake=source, removed=removed, refusals_removed=refusals
        )

    async def _round_trip(  # noqa: PLR0917
        self,
        source: str,
        settlement: Settlement,
        turn: _Turn | None,
        tail: bytes | None,
        block: int | None,
        read: tuple[Any, ...],
    ) -> Any:
        """One pipeline: the settlement, the writes and their WAIT, the wait, the fenced read;
        its reply."""
        if turn is not None:
            self._sent[source] = turn
        waits = None
        lane = self._lanes.get(source)
        pipeline: Any = lane if lane is not None else self.redis.pipeline(transaction=False)
        async with pipeline as pipe:
            for queue in settlement:
                queue(pipe)
            if turn is not None:
                waits = await self._queue(pipe, turn)
            if tail is not None:
                pipe.xread({source: tail}, count=1, block=block)
            pipe.execute_command(*read)
            replies = await pipe.execute(raise_on_error=False)
        self._sent.pop(source, None)
        _raise_first(replies[: len(settlement)], self._read_fenced)
        if settlement and keys.intake_owner(source) is not None:
            self._capped(source, replies[0])  # the cap goes first in an intake's turn (_cap)
        if turn is not None and waits is not None:
            written = replies[len(settlement) : -1 - (tail is not None)]
            self._written(source, turn, written, waits)
        _raise_first(replies[-1:], self._read_fenced)
        return replies[-1]

    async def _queue(self, pipe: Any, turn: _Turn) -> Waits:
        """Queue a batch's writes, then the WAIT behind them on their connection (a WAIT per
        node written on a cluster, bus.durability): a batch is settled only once a replica
        holds its writes. Else a failover that promotes a replica without them would keep the
        ack and the trim (made later, or on another shard) and lose the batch."""
        for command in turn.commands:
            pipe.execute_command(*command)
        if turn.commands and await self.replicas.required():
            return self.replicas.add(pipe, turn.written)
        return NO_WAITS

    def _written(self, source: str, turn: _Turn, replies: list[Any], waits: Waits) -> None:
        """A batch's writes returned: its settlement goes with the next read, unless one of
        them failed or too few replicas confirmed them (NotDurable) — then the batch stays
        pending, read and written again (the writes are idempotent)."""
        self._confirmed(turn, replies, waits, f"the router's writes of a batch of {source}")
        self._unsettled[source] = turn.settlement

    async def _write(self, turn: _Turn) -> Settlement:
        """Send a batch's writes now (one round trip); its settlement once they returned and
        were confirmed."""
        if turn.commands:
            async with self.redis.pipeline(transaction=False) as pipe:
                waits = await self._queue(pipe, turn)
                replies = await pipe.execute(raise_on_error=False)
            self._confirmed(turn, replies, waits, "the router's writes of a batch")
        return turn.settlement

    def _confirmed(self, turn: _Turn, replies: list[Any], waits: Waits, what: str) -> None:
        """Check a batch's replies — its writes' (the first error raised, ``turn.function``'s
        translated), then its WAITs' (NotDurable when too few replicas confirmed) — and count
        what the writes did."""
        count = len(replies) - waits.count
        writes, confirmed = replies[:count], replies[count:]
        _raise_first(writes, turn.function)
        _raise_first(confirmed, turn.function)
        self.replicas.confirm(waits, confirmed, what)
        turn.replied(writes)

    # -- routing one batch --------------------------------------------------------------------

    async def route(self, source: str, entries: Entries) -> None:
        """Admit (from an intake) or fan out (from a department stream) one batch, then ack."""
        await self._settle(source, await self._write(await self._route(source, entries)))

    async def _route(self, source: str, entries: Entries) -> _Turn:
        """Route one batch: its writes, and what settles it once they have all returned."""
        await self.replicas.required()  # asked once, here: never while a pipeline is queued
        owner = keys.intake_owner(source)
        if owner is not None:
            return await self._admit(source, owner, entries)
        return await self._fan_out(source, entries)

    async def _settle(self, source: str, settlement: Settlement) -> None:
        if source in self._unsettled and self._unsettled[source] is settlement:
            del self._unsettled[source]
        async with self.redis.pipeline(transaction=False) as pipe:
            for queue in settlement:
                queue(pipe)
            await pipe.execute()

    async def _admit(self, intake: str, owner: str, entries: Entries) -> _Turn:
        """The writes (one publish_batch call per department stream, in entry order, and the
        dead letters); once all of them returned, the ack and the trim of the intake settle
        the batch."""
        now_ms = await self._now_ms()
        writes: dict[str, _Batch] = {}  # department stream -> its entries, in order
        hops: dict[str, _Admits] = {}  # the same, where admission forwards (decision 0014)
        admitted: list[bytes] = []
        rejects: list[tuple[bytes, dict[bytes, bytes], str, str]] = []
        for entry_id, raw in entries:
            verdict = self.check(owner, raw, now_ms)
            if isinstance(verdict, Refusal):
                rejects.append((entry_id, raw, verdict.reason, verdict.error))
                continue
            stream, event_id = verdict
            self._remember(raw)
            seen = keys.seen(stream, event_id)
            if self.one_hop:
                if stream not in self._grouped:  # else admission forwards nothing until the
                    await self._ensure_group(stream)  # fan-out's loop made it (a first start)
                    self._grouped.add(stream)
                chosen = self._choose(stream, now_ms)
                routes = self.routes.get(stream, {}).get(raw[b"type"].decode(), [])
                inboxes = zip(
                    (r.inbox for r in routes),
                    self._forward_each(raw, routes, chosen) if routes else (),
                    strict=True,
                )
                hops.setdefault(stream, _Admits()).add(seen, chosen, _flat(raw), list(inboxes))
            else:
                writes.setdefault(stream, _Batch()).add(seen, _flat(raw))
            admitted.append(entry_id)
        commands = await self._batch_commands(writes) + await self._admit_commands(hops)
        for entry_id, raw, reason, error in rejects:
            commands += await self._reject_commands(
                intake, owner, entry_id, raw, reason, error, now_ms
            )
        if rejects:
            # The newest refusals stay as evidence, the oldest beyond the cap go: a producer
            # that floods its intake with junk cannot grow Redis's memory without bound
            # (maxmemory with noeviction would then refuse every department's writes).
            commands.append(
                (b"XTRIM", keys.intake_dead_letters(owner), b"MAXLEN", self.config.max_refusals)
            )

        def replied(replies: list[Any]) -> None:
            for reply in replies[: len(writes)]:
                added = sum(int(a) for a in reply[::2])
                self.counts.admitted += added
                self.counts.duplicates += len(reply) // 2 - added
            moved = [
                moves
                for (stream, batch), reply in zip(
                    hops.items(), replies[len(writes) : len(writes) + len(hops)], strict=True
                )
                if (moves := self._admitted(stream, batch, reply))
            ]
            for entry_id, _, reason, _ in rejects:
                self.counts.rejected[reason] = self.counts.rejected.get(reason, 0) + 1
                self._log.info(
                    "event_rejected", intake=intake, entry_id=entry_id.decode(), reason=reason
                )
            if moved:
                raise IdsMoved("; ".join(moved))

        # Everything up to the last entry of the batch is settled (admitted or dead-lettered):
        # the intake keeps nothing the router has done with.
        settlement: Settlement = []
        if admitted:
            settlement.append(lambda pipe: pipe.xack(intake, keys.ROUTER_GROUP, *admitted))
        floor = _next_id(entries[-1][0])
        settlement.append(lambda pipe: pipe.xtrim(intake, minid=floor, approximate=False))
        written = (
            *writes,
            *hops,
            *(inbox for batch in hops.values() for inbox in batch.inboxes),
            *([intake] if rejects else ()),
        )
        function = self._admit_batch if hops else self._publish_batch
        return _Turn(commands, settlement, function, replied, written)

    def _forwards_itself(self, source: str) -> bool:
        """Whether admission forwards the entries of ``source`` (a department stream) itself."""
        return self.one_hop and keys.intake_owner(source) is None

    def _choose(self, stream: str, now_ms: int) -> str:
        """The department-stream entry id of an admitted event (decision 0014): Redis's time
        (the router's estimate of it), after the last id chosen there; the admit function
        refuses one at or below the stream's last id, or ahead of its TIME."""
        last_ms, last_seq = self._last_ids.get(stream, (0, -1))
        chosen = (now_ms, 0) if now_ms > last_ms else (last_ms, last_seq + 1)
        self._last_ids[stream] = chosen
        return f"{chosen[0]}-{chosen[1]}"

    def _admitted(self, stream: str, batch: _Admits, reply: list[Any]) -> str:
        """Count what one admit call did; when it stopped at an id it refused, note the
        stream's last id and Redis's time for the ids chosen next, and say so."""
        at = 0
        for forwards in batch.forwards:
            status = int(reply[at])
            if status == -1:
                last, clock = _text(reply[at + 1]), int(reply[at + 2])
                ms, _, seq = last.partition("-")
                self._last_ids[stream] = (int(ms), int(seq))
                self._clock = (clock, time.monotonic())
                return f"{stream} was at {last} (Redis time {clock} ms)"
            if status == 0:
                self.counts.duplicates += 1
            else:
                self.counts.admitted += 1
                if status == 1:
                    self.counts.forwarded += forwards
            at += 2
        return ""

    def check(  # noqa: PLR0911  (one return per check, in the order they are made)
        self, owner: str, raw: Mapping[bytes, bytes], now_ms: int
    ) -> tuple[str, str] | Refusal:
        """(stream, event id) for an entry to admit, else why it is refused."""
        pairs = field_pairs(raw)  # a repeated name's every pair: decoding refuses them
        size = sum(len(k) + len(v) for k, v in pairs)
        if size > self.config.max_entry_bytes:
            return Refusal(
                RejectReason.TOO_LARGE,
                f"the entry is {size} bytes, more than the {self.config.max_entry_bytes} "
                "bytes an event may have",
            )
        if len(pairs) > MAX_FIELDS:
            return Refusal(
                RejectReason.TOO_LARGE,
                f"the entry has {len(pairs)} fields, more than the {MAX_FIELDS} an event may have",
            )
        try:
            envelope = Envelope.from_fields(raw)
        except DecodeError as exc:
            return Refusal(RejectReason.UNDECODABLE, str(exc))
        allowed = self.may_publish.get(owner, frozenset())
        if envelope.type not in allowed:
            return Refusal(
                RejectReason.TYPE_NOT_ALLOWED,
                f"principal {owner} may not publish type {envelope.type[:120]}",
            )
        if self.keyring is not None:
            # Arrival is now, by the router's clock: an intake's entry ids are the producer's
            # to choose (an explicit id in 2100 must not make its events look stale or fresh).
            rejected = self.keyring.check(envelope, raw, f"{now_ms}-0")
            if rejected is not None:
                return Refusal(str(rejected.reason), rejected.error)
            key = self.keyring.get(envelope.signer or "")
            if key is not None and key.principal != owner:
                return Refusal(
                    RejectReason.SIGNER_NOT_OWNER,
                    f"signed by key {key.key_id} of principal {key.principal}, not by a key "
                    f"of {owner}, whose intake it came through",
                )
        if envelope.type not in self.registry:
            return Refusal(
                RejectReason.UNKNOWN_TYPE, f"no contract is registered for type {envelope.type}"
            )
        model = self.registry.resolve(envelope.type)
        try:
            model.model_validate_json(envelope.data)
        except ValidationError as exc:  # its own text may quote personal data: ours does not
            return Refusal(RejectReason.CONTRACT_VIOLATION, str(violation(envelope.type, exc)))
        try:
            stream = keys.stream_of(envelope.type, envelope.subject)
        except ValueError as exc:
            return Refusal(RejectReason.UNDECODABLE, str(exc))
        return stream, envelope.id

    async def _reject_commands(  # noqa: PLR0917
        self,
        intake: str,
        owner: str,
        entry_id: bytes,
        raw: Mapping[bytes, bytes],
        reason: str,
        error: str,
        now_ms: int,
    ) -> list[tuple[Any, ...]]:
        """A refused entry's dead letter (and its ack, in the same function call)."""
        fields: list[bytes] = []
        if reason != RejectReason.TOO_LARGE:  # an oversized entry is not copied: its reason is
            fields = _flat(raw)
        fields += [
            b"dlq.reason",
            reason.encode(),
            b"dlq.error",
            error[:500].encode(),
            b"dlq.stream",
            intake.encode(),
            b"dlq.entry",
            entry_id,
            b"dlq.group",
            keys.ROUTER_GROUP.encode(),
            b"dlq.attempts",
            b"1",
            b"dlq.time",
            format_time(datetime.fromtimestamp(now_ms / 1000, UTC)).encode(),
        ]
        # Ack and dead-letter in one function call: the intake and its dead letters share a slot.
        head = await self._dead_letter.command_head()
        dead_letters = keys.intake_dead_letters(owner)
        out: list[tuple[Any, ...]] = [
            (*head, 2, intake, dead_letters, keys.ROUTER_GROUP, entry_id, *fields)
        ]
        # The producer's dedupe marker of a refused event goes too: the event is on no stream,
        # so its corrected version, published again under the same id (an adapter's ids are
        # deterministic), must not be taken for a duplicate. Were the refused entry a second
        # copy of an admitted event, the department stream's own marker still stops a repeat.
        event_id = raw.get(b"id", b"")
        if 0 < len(event_id) <= MAX_ID:  # a longer one is no id the publish function marked
            out.append((b"DEL", keys.seen(intake, event_id.decode(errors="replace"))))
        return out

    async def _fan_out(self, stream: str, entries: Entries) -> _Turn:
        """The writes (one forward_batch call per inbox, in entry order); once all of them
        returned, the ack settles the batch."""
        by_type = self.routes.get(stream, {})
        writes: dict[str, _Forwards] = {}  # inbox -> its entries, in order
        for entry_id, raw in entries:
            routes = by_type.get(raw.get(b"type", b"").decode(errors="replace"), ())
            if not routes or not self._genuine(stream, entry_id, raw):
                continue
            forwarded = self._forward_each(raw, routes, entry_id.decode())
            for route, fields in zip(routes, forwarded, strict=True):
                batch = writes.get(route.inbox)
                if batch is None:
                    batch = writes[route.inbox] = _Forwards()
                batch.add(entry_id, fields)

        def replied(replies: list[Any]) -> None:
            self.counts.forwarded += sum(int(a) for reply in replies for a in reply[::2])

        done = [e for e, _ in entries]
        return _Turn(
            await self._forward_commands(writes),
            [lambda pipe: pipe.xack(stream, keys.ROUTER_GROUP, *done)],
            self._forward_batch,
            replied,
            tuple(writes),
        )

    def _remember(self, raw: Mapping[bytes, bytes]) -> None:
        """Note an entry admission verified, so that its fan-out here skips the signature."""
        signature = raw.get(b"signature")
        if self.keyring is None or not signature:
            return
        self._verified[signature] = raw
        if len(self._verified) > VERIFIED_MEMORY:
            self._verified.popitem(last=False)

    def _genuine(self, stream: str, entry_id: bytes, raw: Mapping[bytes, bytes]) -> bool:
        """Whether a department-stream entry may be forwarded, signed by the router: its
        producer's signature verifies, the entry id (generated at admission) as its arrival.

        The router's Redis password (the admin's, a restored dump) can write a department
        stream without admission; what the router found there it would sign as its own. An
        entry that fails is settled without being forwarded (logged with its reason), and stays
        on the stream as evidence. Entries this replica admitted are known by their digest."""
        # Known if admission here verified an entry with this signature and the very same
        # fields (a dict comparison: no digest to compute, and no copied signature passes).
        if self.keyring is None or self._verified.get(raw.get(b"signature", b"")) == raw:
            return True
        try:
            envelope = Envelope.from_fields(raw)
        except DecodeError:
            reason = RejectReason.UNDECODABLE
        else:
            rejected = self.keyring.check(envelope, raw, entry_id.decode())
            if rejected is not None:
                reason = str(rejected.reason)
            else:
                # None: unsigned, which this keyring accepts. The router's own keys sign every
                # type, for its inboxes: a copy of one of its projections is no producer's event.
                key = self.keyring.get(envelope.signer or "")
                if key is None or key.principal in self.may_publish:
                    return True
                reason = RejectReason.SIGNER_NOT_OWNER
        self.counts.withheld[reason] = self.counts.withheld.get(reason, 0) + 1
        self._log.warning(
            "stream_entry_withheld", stream=stream, entry_id=entry_id.decode(), reason=reason
        )
        return False

    def _forward(self, raw: Mapping[bytes, bytes], route: Route, origin: str) -> list[bytes]:
        """One subscription's inbox entry (see :meth:`_forward_each`)."""
        return self._forward_each(raw, [route], origin)[0]

    def _forward_each(
        self, raw: Mapping[bytes, bytes], routes: Sequence[Route], origin: str
    ) -> list[list[bytes]]:
        """Each route's inbox entry, flat: projected and signed by the router (decision 0012),
        one signature per distinct projection; without a router key (a bus without signing),
        the original as it is, where every field is approved — never more than approved."""
        if self.signer is None:
            for route in routes:
                if route.disclosure.fields is not None:
                    raise ConfigurationError(
                        f"the router has no signing key (SIMPUL_SIGNING_KEY_FILE), and "
                        f"{route.group}'s subscription to {route.disclosure.event_type} is a "
                        "projection, which the router must sign"
                    )
            flat = _flat(raw)
            return [flat] * len(routes)
        # A subscription that may see every field gets the original as admitted, its
        # producer's signature intact (docs/wire-format.md, 11.2) — when admission verified
        # that signature (a keyring) and the original names no origin of its own.
        original = _flat(raw) if self._verbatim(raw) else None
        projected = [r for r in routes if original is None or r.disclosure.fields is not None]
        entries = iter(
            forward_each(raw, [r.disclosure for r in projected], signer=self.signer, origin=origin)
            if projected
            else ()
        )
        flats: dict[int, list[bytes]] = {}  # one flat list per distinct (shared) entry
        out = []
        for route in routes:
            if original is not None and route.disclosure.fields is None:
                out.append(original)
                continue
            entry = next(entries)
            if id(entry) not in flats:
                flats[id(entry)] = _flat(entry)
            out.append(flats[id(entry)])
        return out

    def _verbatim(self, raw: Mapping[bytes, bytes]) -> bool:
        """Whether an admitted entry may go as it is to a subscription that may see all of it:
        its producer's signature was verified (a keyring: :meth:`_genuine`), and it carries
        none of the attributes that name an original (it would pass for a projection)."""
        return (
            self.keyring is not None
            and bool(raw.get(b"signature"))
            and not any(name in raw for name in _ORIGIN_FIELDS)
        )

    async def _batch_commands(self, writes: Mapping[str, _Batch]) -> list[tuple[Any, ...]]:
        """One idempotent publish_batch call per target stream (the event id remembered per
        target: an entry routed again after a crash is written nowhere twice)."""
        if not writes:
            return []
        ttl = str(self.config.dedupe_ttl_ms).encode()
        head = await self._publish_batch.command_head()  # FCALL <name> (EVAL <body> on < 7)
        return [
            (*head, 1 + len(batch.seen), target.encode(), *batch.seen, ttl, b"", *batch.args)
            for target, batch in writes.items()
        ]

    async def _admit_commands(self, hops: Mapping[str, _Admits]) -> list[tuple[Any, ...]]:
        """One admit_batch call per department stream: its events under the ids chosen for
        them, each with its inbox entries (decision 0014)."""
        if not hops:
            return []
        ttl = str(self.config.dedupe_ttl_ms).encode()
        head = await self._admit_batch.command_head()
        commands = []
        for stream, batch in hops.items():
            inboxes = list(batch.inboxes)  # in index order
            commands.append(
                (
                    *head,
                    1 + len(batch.seen) + 2 * len(inboxes),
                    stream.encode(),
                    *batch.seen,
                    *(inbox.encode() for inbox in inboxes),
                    *(keys.routed_mark(inbox).encode() for inbox in inboxes),
                    ttl,
                    keys.ROUTER_GROUP.encode(),
                    b"%d" % len(batch.seen),
                    b"%d" % len(inboxes),
                    b"%d" % self.config.id_drift_ms,
                    *batch.args,
                )
            )
        return commands

    async def _forward_commands(self, writes: Mapping[str, _Forwards]) -> list[tuple[Any, ...]]:
        """One forward_batch call per inbox: its entries in department-stream order, each
        written unless the inbox's high-water mark (``<inbox>:routed``, the department-stream
        entry id of the last entry forwarded) is at or above it — so an entry routed again
        after a crash is written nowhere twice."""
        if not writes:
            return []
        head = await self._forward_batch.command_head()  # FCALL <name> (EVAL <body> on < 7)
        return [
            (*head, 2, inbox, keys.routed_mark(inbox), *batch.args)
            for inbox, batch in writes.items()
        ]

    async def _forward_all(self, inbox: str, entries: Sequence[tuple[bytes, list[bytes]]]) -> int:
        """Write ``entries`` (department-stream entry id, inbox entry fields), in that order,
        to ``inbox`` as the fan-out does (its high-water mark: idempotent; confirmed by a
        replica where the bus has one); 100 a call, one pipeline. Returns how many were
        written."""
        if not entries:
            return 0
        head = await self._forward_batch.command_head()
        commands = []
        for start in range(0, len(entries), 100):
            batch = _Forwards()
            for origin, fields in entries[start : start + 100]:
                batch.add(origin, fields)
            commands.append((*head, 2, inbox, keys.routed_mark(inbox), *batch.args))
        written = 0

        def replied(replies: list[Any]) -> None:
            nonlocal written
            written = sum(int(a) for reply in replies for a in reply[::2])

        await self.replicas.required()  # before the pipeline is queued (see _route)
        await self._write(_Turn(commands, [], self._forward_batch, replied, (inbox,)))
        return written

    async def _now_ms(self) -> int:
        """Redis's clock (``TIME``), never the intake's entry ids: asked once a third of the
        lease time and carried forward with the local monotonic clock in between (a round trip
        per batch saved; the drift over seconds is far below the age checks' resolution)."""
        now = time.monotonic()
        if self._clock is None or now - self._clock[1] > self.config.lease_ms / 3000:
            seconds, micros = await self.redis.time()
            self._clock = (int(seconds) * 1000 + int(micros) // 1000, time.monotonic())
        base_ms, at = self._clock
        return base_ms + int((time.monotonic() - at) * 1000)

    # -- trimming inboxes once their group has acked -------------------------------------------

    async def _trim_loop(self) -> None:
        task = asyncio.current_task()
        while not self._stopping.is_set():
            await self._sleep(self.config.trim_every_s)
            with contextlib.suppress(ResponseError, *TRANSIENT):
                await self.trim_inboxes()
            # redis-py may swallow a cancellation that hits a command in flight (as in
            # _source_loop): without this check a cancelled router's run() never returned.
            if task is not None and task.cancelling():
                raise asyncio.CancelledError

    async def trim_inboxes(self) -> int:
        """Drop what each inbox's group has acked (the department stream keeps the archive
        copy). Returns how many entries went. Only the replica owning the inbox's department
        stream trims it, so one replica does each."""
        removed = 0
        for inbox, group in self.inboxes():
            source = keys.inbox_of(inbox)
            if source is None or source[0] not in self.owned:
                continue
            removed += await trim_inbox(self.redis, inbox, group)
        self.counts.trimmed += removed
        return removed


def _out_of_memory(exc: BaseException) -> bool:
    """Redis refused a command for memory (``maxmemory``, ``noeviction``): as redis-py raises
    it, or as a lane returns the error reply."""
    return isinstance(exc, OutOfMemoryError) or "used memory > 'maxmemory'" in str(exc)


def _raise_first(replies: Sequence[Any], function: BusFunction) -> None:
    """Raise the first error among a pipeline's ``replies`` (``function``'s errors translated)."""
    for reply in replies:
        if isinstance(reply, ResponseError):
            raise function.translate(reply)
        if isinstance(reply, Exception):
            raise reply
