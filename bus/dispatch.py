"""From one stream entry to one handler call: decode, resolve, validate, run.

The outcome of an entry is one of: handled (ack), skipped (ack: a type this service does not
subscribe to), a :class:`Verdict` (dead letter: poison or out of attempts), or a retry.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import traceback
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any

from pydantic import ValidationError

from bus import keys
from bus.connection import TRANSIENT
from bus.context import EventContext
from bus.contracts import Contract, Registry, violation
from bus.deadletter import Reason, Verdict
from bus.dedupe import Claim, Dedupe
from bus.envelope import Envelope
from bus.errors import ConfigurationError, DecodeError, NotDurable
from bus.logging import get_logger
from bus.metrics import ServiceMetrics, TypeMetrics
from bus.outcomes import GiveUp, Retry
from bus.privacy import contract_of, error_text, mask_error, mask_text
from bus.signing import KeyRing

HandlerFunc = Callable[..., Awaitable[None]]
EnvelopeFunc = Callable[[Envelope, EventContext], Awaitable[None]]
_HOMES_MAX = 1024
_UNMARKED_MAX = 100_000  # effects remembered across one outage (~200 bytes each)
_log = get_logger("bus.dispatch")
# A once marker's write may not have happened (Redis away) or not reached a replica.
_UNSURE = (*TRANSIENT, NotDurable)


@dataclass(frozen=True, slots=True)
class Handler:
    """A registered handler: the contract it takes, the function, and its dedupe choice."""

    model: type[Contract]
    func: HandlerFunc
    wants_context: bool
    once: bool

    @staticmethod
    def check_model(model: object) -> None:
        if not (isinstance(model, type) and issubclass(model, Contract)) or not hasattr(
            model, "__contract__"
        ):
            raise ConfigurationError(
                f"{getattr(model, '__qualname__', model)!r} is not a declared contract "
                "(a Contract subclass with an event_type)"
            )

    @classmethod
    def build(cls, model: type[Contract], func: HandlerFunc, *, once: bool) -> Handler:
        cls.check_model(model)
        if not inspect.iscoroutinefunction(func):
            raise ConfigurationError(f"handler {func.__qualname__} must be an async def function")
        arity = len(inspect.signature(func).parameters)
        if arity not in (1, 2):
            raise ConfigurationError(
                f"handler {func.__qualname__} must take (event) or (event, ctx), "
                f"not {arity} parameters"
            )
        return cls(model, func, arity == 2, once)

    @property
    def name(self) -> str:
        return self.func.__qualname__


class Failed(Exception):
    """The handler (or a Redis call around it) failed: the cause decides between a retry and a
    dead letter (bus.consumer). ``error`` and ``trace`` are what may be shown of it: masked."""

    def __init__(self, cause: BaseException) -> None:
        self.cause = cause
        # The handler's own words when it said Retry or GiveUp; else the error and its type.
        told = isinstance(cause, GiveUp | Retry)
        said = error_text(cause)
        super().__init__(said if told else f"{type(cause).__name__}: {said}")
        self.error = mask_text(str(self))
        self.trace: str | None = None

    def mask(self, envelope: Envelope, *, trace: bool) -> None:
        """Mask the message (and the traceback, if wanted) with the event's personal values:
        a handler's message may quote its event (an address, a name), not only a NIK."""
        try:
            data: Any = json.loads(envelope.data)
        except ValueError:
            data = envelope.data
        contract = contract_of(envelope.type)
        self.error = mask_error(str(self), contract, data, envelope.subject)
        if trace:
            self.trace = mask_error(_traceback(self.cause), contract, data, envelope.subject)


def _traceback(cause: BaseException) -> str:
    """The traceback of ``cause``, each ValidationError in its chain told by :func:`error_text`
    (its own text, which quotes the input, is what a traceback prints)."""
    text = "".join(traceback.format_exception(cause))
    seen: set[int] = set()
    current: BaseException | None = cause
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ValidationError):
            text = text.replace(str(current), error_text(current))
        current = current.__cause__ or current.__context__
    return text


@dataclass(slots=True)
class Dispatcher:
    """Runs one entry through the checks and its handler. Raises Failed or returns the outcome."""

    handlers: Mapping[str, Handler]
    registry: Registry
    group: str
    consumer: str
    max_deliveries: int
    dedupe: Dedupe | None = None
    publisher: Any = None
    every: EnvelopeFunc | None = None  # Service.on_every: gets each entry's envelope, any type
    every_streams: tuple[str, ...] = ()
    metrics: ServiceMetrics | None = None  # handler durations and failures, by type
    keyring: KeyRing | None = None  # set: signatures are checked before any handler runs
    tracebacks: bool = False  # a failed handler's traceback is kept (masked) for the log
    # Routed delivery (docs/decisions/0011): read this group's inboxes, not the department
    # streams; every "stream" below is then an inbox key.
    inboxes: bool = False
    _homes: dict[str, str] = field(default_factory=dict)  # event type -> its stream
    # (stream, event id) -> entry id of once-handlers that returned while their ``done`` marker
    # could not be written (Redis was down): this replica knows they ran, and must never run
    # them again — it writes the marker when Redis returns (:meth:`mark_finished`).
    _unmarked: dict[tuple[str, str], str] = field(default_factory=dict)

    async def dispatch(
        self,
        stream: str,
        entry_id: str,
        raw: Mapping[bytes, bytes],
        delivery: int,
        handled: list[TypeMetrics] | None = None,
    ) -> Verdict | None:
        """Return None when the entry may be acked, a Verdict to dead-letter it; raise Failed.

        With :attr:`metrics`, an event whose handler ran and returned appends its type's
        metrics to ``handled`` (if given), for the caller to count once the ack is written.
        """
        if delivery > self.max_deliveries:
            return Verdict(
                Reason.MAX_DELIVERIES,
                f"delivered {delivery} times without an outcome "
                "(its consumers died or timed out while handling it)",
                delivery,
            )
        try:
            envelope = Envelope.from_fields(raw)
        except DecodeError as exc:
            return Verdict(Reason.UNDECODABLE, str(exc), delivery)
        home = self._home(envelope.type, envelope.subject)
        if home != stream:  # a forged or misrouted type (or partition): never handled
            reason = f"type {envelope.type} belongs to stream {home}, not {stream}"
            return Verdict(Reason.WRONG_STREAM, reason, delivery)
        handler = self.handlers.get(envelope.type)
        # Signatures before anything reads data (contract, handler, on_every); entries no
        # handler takes are skipped or dead-lettered below without costing a verification.
        if self.keyring is not None and (handler is not None or stream in self.every_streams):
            rejected = self.keyring.check(envelope, raw, entry_id)
            if rejected is not None:
                return Verdict(rejected.reason, rejected.error, delivery)
        try:
            return await self._handle(
                handler,
                envelope,
                stream=stream,
                entry_id=entry_id,
                delivery=delivery,
                handled=handled,
            )
        except Failed as failed:
            failed.mask(envelope, trace=self.tracebacks)
            raise

    async def _handle(
        self,
        handler: Handler | None,
        envelope: Envelope,
        *,
        stream: str,
        entry_id: str,
        delivery: int,
        handled: list[TypeMetrics] | None,
    ) -> Verdict | None:
        if handler is None:
            return await self._unhandled(envelope, stream, entry_id, delivery, handled)
        try:
            # Tolerant: fields added by a newer minor version of the contract are ignored.
            event = handler.model.model_validate_json(envelope.data, extra="ignore")
        except ValidationError as exc:
            return Verdict(Reason.CONTRACT_VIOLATION, str(violation(envelope.type, exc)), delivery)
        ctx = EventContext(
            envelope, stream, entry_id, self.group, self.consumer, delivery, self.publisher
        )
        if handler.once:
            await self._once(handler, event, ctx, handled)
        else:
            await self._measured(_call(handler, event, ctx), envelope.type, handled)
        return None

    def streams(self) -> list[str]:
        """The streams this dispatcher's handlers subscribe to."""
        own = {s for h in self.handlers.values() for s in h.model.__contract__.streams}
        if self.inboxes:
            own = {keys.inbox(s, self.group) for s in own}
        return sorted(own | set(self.every_streams))

    def _home(self, event_type: str, subject: str | None) -> str:
        home = self._homes.get(event_type)
        if home is None:
            aggregate = keys.aggregate_of(event_type)
            if keys.partitions(aggregate) > 1:  # a partition: where its subject hashes to
                if not subject:
                    return f"a partition of {aggregate} chosen by a subject (it has none)"
                home = keys.stream_of(event_type, subject)
                return keys.inbox(home, self.group) if self.inboxes else home
            home = keys.stream(aggregate)
            if self.inboxes:
                home = keys.inbox(home, self.group)
            if len(self._homes) < _HOMES_MAX:  # bounded: junk entries can invent many types
                self._homes[event_type] = home
        return home

    async def _unhandled(
        self,
        envelope: Envelope,
        stream: str,
        entry_id: str,
        delivery: int,
        handled: list[TypeMetrics] | None,
    ) -> Verdict | None:
        if self.every is not None and stream in self.every_streams:
            ctx = EventContext(
                envelope, stream, entry_id, self.group, self.consumer, delivery, self.publisher
            )
            await self._measured(_call_every(self.every, envelope, ctx), envelope.type, handled)
            return None
        if envelope.type not in self.registry:
            return Verdict(
                Reason.UNKNOWN_TYPE, f"no contract is registered for type {envelope.type}", delivery
            )
        return None  # a known type this service does not subscribe to: nothing to do

    async def _measured(
        self,
        call: Coroutine[Any, Any, None],
        event_type: str,
        handled: list[TypeMetrics] | None,
    ) -> None:
        """Await a handler call, timing it and counting its failure by type."""
        metrics = self.metrics
        if metrics is None:
            await call
            return
        kind = metrics.kind(event_type)  # "unknown" for a type outside the registry
        start = perf_counter()
        try:
            await call
        except Failed:
            kind.failed += 1
            raise
        kind.observe(perf_counter() - start)
        if handled is not None:
            handled.append(kind)

    async def _once(
        self,
        handler: Handler,
        event: Contract,
        ctx: EventContext,
        handled: list[TypeMetrics] | None,
    ) -> None:
        assert self.dedupe is not None
        if (ctx.stream, ctx.event_id) in self._unmarked:  # it ran here: settle, never rerun
            try:
                await self._mark(ctx.stream, ctx.event_id)
            except _UNSURE as exc:
                raise Failed(exc) from exc
            return
        try:
            claim = await self.dedupe.begin(ctx.stream, ctx.event_id, ctx.entry_id)
        except _UNSURE as exc:  # cannot know whether it ran before, or no replica has the
            raise Failed(exc) from exc  # lease yet (NotDurable): try again later
        if claim is Claim.DONE:
            return
        if claim is Claim.BUSY:
            raise Failed(RuntimeError("another consumer is handling this event right now"))
        try:
            await self._measured(_call(handler, event, ctx), ctx.envelope.type, handled)
        except Failed:
            with contextlib.suppress(*TRANSIENT):  # else the lease simply expires
                await self.dedupe.abandon(ctx.stream, ctx.event_id, ctx.entry_id)
            raise
        try:
            await self.dedupe.finish(ctx.stream, ctx.event_id, ctx.entry_id)
        except _UNSURE as exc:
            # The effect happened, and the marker is not written or not on a replica (a
            # failover could forget it): ack, and remember the event until the marker is
            # confirmed: a redelivery to this replica settles without running it. Only a
            # process that dies before then leaves the gap bus/dedupe.py documents.
            if len(self._unmarked) < _UNMARKED_MAX:
                self._unmarked[(ctx.stream, ctx.event_id)] = ctx.entry_id
            _log.warning(
                "dedupe_mark_failed", stream=ctx.stream, entry_id=ctx.entry_id, error=str(exc)
            )

    async def mark_finished(self) -> None:
        """Write the ``done`` markers an outage (or a replica short, NotDurable) kept this
        replica from writing or confirming (raises the connection error if Redis is still
        away; the rest stay remembered)."""
        for stream, event_id in list(self._unmarked):
            try:
                await self._mark(stream, event_id)
            except NotDurable:  # no replica in sync yet: the next sweep tries again
                return

    async def _mark(self, stream: str, event_id: str) -> None:
        assert self.dedupe is not None
        entry_id = self._unmarked[(stream, event_id)]
        await self.dedupe.finish(stream, event_id, entry_id)
        del self._unmarked[(stream, event_id)]


async def _call(handler: Handler, event: Contract, ctx: EventContext) -> None:
    try:
        if handler.wants_context:
            await handler.func(event, ctx)
        else:
            await handler.func(event)
    except Exception as exc:  # a handler's failure is data for the retry policy, not a crash
        raise Failed(exc) from exc


async def _call_every(func: EnvelopeFunc, envelope: Envelope, ctx: EventContext) -> None:
    try:
        await func(envelope, ctx)
    except Exception as exc:
        raise Failed(exc) from exc
