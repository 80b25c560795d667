"""Publishing events: validate against the contract, encode, and add idempotently to the stream."""

from __future__ import annotations

import functools
import hashlib
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from time import time as _now
from typing import Any, Literal

from pydantic import Field, ValidationError
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from bus import keys
from bus.contracts import Contract, ContractInfo, violation
from bus.durability import Durability, ReplicaWait, Waits
from bus.envelope import MAX_ID, Envelope, format_time
from bus.errors import ConfigurationError, DecodeError
from bus.functions import BusFunction
from bus.logging import get_logger
from bus.settings import ComponentSettings
from bus.signing import Signer

_CHUNK = 100  # events per script call: bounds how long one call holds Redis
_NAMESPACE = uuid.UUID("5a1b0c2e-3d4f-5a6b-8c7d-9e0f1a2b3c4d")  # Simpul's UUIDv5 namespace
_NAMESPACE_BYTES = _NAMESPACE.bytes
_log = get_logger("bus.publisher")


def event_id(source: str, *key: object) -> str:
    """A deterministic event id: the same source record always yields the same id (UUIDv5).

    Pass what identifies the fact in the source system, e.g. ``(table, primary key, version)``,
    so that re-publishing after a crash or a replay is a no-op.
    """
    # str(uuid.uuid5(_NAMESPACE, name)) without the UUID object, from a copy of the hash of
    # the namespace and the source: ~2.5 µs instead of 4.3, and adapters derive one id per
    # row (tests/bus/test_publisher.py compares the two).
    sha = _source_hash(source).copy()
    if key:
        sha.update(("\x1f" + "\x1f".join([str(part) for part in key])).encode())
    digest = bytearray(sha.digest()[:16])
    digest[6] = digest[6] & 0x0F | 0x50  # version 5
    digest[8] = digest[8] & 0x3F | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@functools.lru_cache(maxsize=256)
def _source_hash(source: str) -> Any:
    """SHA-1 of the UUIDv5 namespace and ``source``: what every id of that source starts with."""
    return hashlib.sha1(_NAMESPACE_BYTES + source.encode())


@dataclass(frozen=True, slots=True)
class Published:
    """Outcome of one publish: where the event is, and whether it was there already."""

    event_id: str
    stream: str
    entry_id: str
    duplicate: bool


class Retention:
    """How long entries stay in each stream (trimmed by age with MINID on every publish)."""

    def __init__(
        self, default: timedelta | None = None, per_aggregate: Mapping[str, timedelta] | None = None
    ) -> None:
        self.default = default
        self.per_aggregate = dict(per_aggregate or {})
        for name, age in [("default", default), *self.per_aggregate.items()]:
            if age is not None and age <= timedelta(0):
                raise ConfigurationError(f"retention of {name} must be positive, got {age}")

    def minid(self, aggregate: str, now_ms: int) -> str:
        age = self.per_aggregate.get(aggregate, self.default)
        return "" if age is None else f"{now_ms - int(age.total_seconds() * 1000)}-0"


class PublisherSettings(ComponentSettings):
    """``SIMPUL_INTAKE``: the principal whose intake a publisher built with
    ``intake="environment"`` writes to (empty: unset, the department streams)."""

    intake: str | None = Field(default=None, validation_alias="SIMPUL_INTAKE")


class Publisher:
    """Publishes contract instances as wire-format v1 events, at most once per event id."""

    def __init__(
        self,
        redis: Redis,
        *,
        source: str,
        retention: Retention | None = None,
        dedupe_ttl: timedelta = timedelta(days=7),
        on_published: Callable[[str], None] | None = None,
        signer: Signer | Literal["environment"] | None = "environment",
        durability: Durability | None = None,
        intake: str | Literal["environment"] | None = "environment",
    ) -> None:
        """``on_published(event_type)`` is called for each event that was new on its stream
        (not for duplicates): a service counts its publishes with it (bus.metrics).

        ``signer``: with a :class:`~bus.signing.Signer`, every event published is signed
        (bus.signing); None: not signed; by default the key of ``SIMPUL_SIGNING_KEY_FILE``
        (and ``SIMPUL_SIGNER``) if set, else not signed. An envelope that already carries a
        signature is published as it is: its producer signed it.

        ``durability``: how many replicas must confirm each publish before it returns
        (bus.durability); by default ``SIMPUL_REDIS_WAIT_REPLICAS`` or, unset, 1 when the
        master has replicas. Too few in time raises :class:`~bus.errors.NotDurable`.

        ``intake``: the principal whose intake this publisher writes to (routed delivery,
        docs/decisions/0011): every event goes to ``simpul:intake:{<principal>}``, and the
        router admits it onto its department stream; None: straight to the department stream
        (a bus without a router); by default ``SIMPUL_INTAKE`` if set, else None."""
        if not source:
            raise ConfigurationError(
                "a publisher needs a source URN, e.g. urn:malangkota:dukcapil:siak"
            )
        self.redis = redis
        self.source = source
        self.retention = retention or Retention()
        self.dedupe_ttl = dedupe_ttl
        self._dedupe_ttl_ms = str(int(dedupe_ttl.total_seconds() * 1000))
        self._single = BusFunction(redis, "publish")
        self._batch = BusFunction(redis, "publish_batch")
        self.on_published = on_published
        self.signer = Signer.from_environment() if isinstance(signer, str) else signer
        self.replicas = ReplicaWait(redis, durability)
        if intake == "environment":
            intake = PublisherSettings.load().intake
        self.intake = keys.intake(intake) if intake else None

    def envelope(
        self,
        event: Contract,
        *,
        id: str | None = None,
        subject: str | None = None,
        time: datetime | None = None,
        correlationid: str | None = None,
        causationid: str | None = None,
    ) -> Envelope:
        """Validate ``event`` against its contract and wrap it; nothing touches Redis yet."""
        info = _contract_info(event)
        if id is not None and not 0 < len(id) <= MAX_ID:
            raise ConfigurationError(
                f"event id must be 1 to {MAX_ID} characters, got {len(id)}; derive it with "
                "event_id(source, *record_key)"
            )
        # The serializer itself: model_dump_json() with its defaults, ~1 µs less per event.
        data = event.__pydantic_serializer__.to_json(event).decode()
        # The bytes on the wire must satisfy the contract: validation built an instance that
        # dumps valid JSON; one from model_construct or model_copy is checked here.
        if not event.validated:
            try:
                type(event).model_validate_json(data)
            except ValidationError as exc:
                # from None: pydantic's error quotes the input, which may be personal data.
                raise violation(info.event_type, exc) from None
        return _Checked(
            id=id or str(uuid.uuid4()),
            source=self.source,
            type=info.event_type,
            time=format_time(time or datetime.now(UTC)),
            dataschema=info.dataschema,
            data=data,
            subject=subject,
            correlationid=correlationid,
            causationid=causationid,
        )

    async def publish(self, event: Contract | Envelope, **attributes: object) -> Published:
        """Publish one event. ``attributes`` are those of :meth:`envelope` (id, subject, ...)."""
        envelope = self._wrap(event, attributes)
        stream = self._target(envelope)
        head = [stream, keys.seen(stream, envelope.id), self._dedupe_ttl_ms, self._minid(envelope)]
        call = _Call(stream, 2, [text.encode() for text in head] + _wire(envelope))
        if await self.replicas.required():  # the script and its WAIT on one connection
            [(added, entry)] = await self._pipeline([call], self._single)
        else:
            added, entry = await self._single(keys=call.args[:2], args=call.args[2:])
        result = Published(envelope.id, stream, entry.decode(), duplicate=not added)
        if added and self.on_published is not None:
            self.on_published(envelope.type)
        _log.debug(
            "event_published",
            stream=stream,
            event_id=result.event_id,
            entry_id=result.entry_id,
            duplicate=result.duplicate,
        )
        return result

    async def publish_many(self, events: Iterable[Contract | Envelope]) -> list[Published]:
        """Publish many events: one script call per stream and chunk of 100, on one connection.

        Each event is still deduplicated on its own; results come back in input order.
        ``events`` is consumed as the calls go out: on a single server each call is sent as
        soon as its chunk is full, so Redis runs it while the iterable makes the next events
        (an adapter maps its records in it). Should the iterable raise, the calls sent before
        stay done, as after a crash there: publishing the same events again finds them.
        With replicas to wait for, or on a cluster, every event is made first and the calls
        go in one pipeline.
        """
        if self._streamable() and not await self.replicas.required():
            envelopes, chunks, replies = await self._publish_streamed(events)
        else:
            envelopes = [self._wrap(e, {}) for e in events]
            chunks = _chunks(envelopes, self._target)
            calls = [self._batch_call(stream, chunk) for stream, _, chunk in chunks]
            replies = await self._pipeline(calls, self._batch)
        results: list[Published | None] = [None] * len(envelopes)
        for (stream, positions, chunk), reply in zip(chunks, replies, strict=True):
            for k, (position, envelope) in enumerate(zip(positions, chunk, strict=True)):
                added, entry = reply[2 * k], reply[2 * k + 1]
                results[position] = Published(envelope.id, stream, entry.decode(), not added)
                if added and self.on_published is not None:
                    self.on_published(envelope.type)
        published = [r for r in results if r is not None]
        # One line per call, not per event: a filtered-out log call still costs ~1-2 us.
        _log.debug(
            "events_published",
            events=len(published),
            duplicates=sum(r.duplicate for r in published),
        )
        return published

    def _streamable(self) -> bool:
        """Whether publish_many may send each chunk's call as soon as it is full: on one
        connection of a single server's pool (a cluster routes by node, a single-connection
        client shares its one connection)."""
        redis: Any = self.redis
        return isinstance(redis, Redis) and getattr(redis, "connection", None) is None

    async def _publish_streamed(
        self, events: Iterable[Contract | Envelope]
    ) -> tuple[list[Envelope], list[tuple[str, list[int], list[Envelope]]], list[Any]]:
        """publish_many's calls, each sent as soon as its chunk is full, so that Redis runs
        one while ``events`` (a lazy iterable: an adapter maps its records in it) yields the
        next. All go on one connection, in the order _chunks gives them, and the replies are
        read once every call is sent. Should the connection fail or Redis answer an error,
        the connection is dropped and every call goes again through _pipeline: the dedupe
        markers make the events already added duplicates (as a retried pipeline does), and
        _pipeline raises or translates the error as for any publish."""
        envelopes: list[Envelope] = []
        chunks: list[tuple[str, list[int], list[Envelope]]] = []
        by_stream: dict[str, tuple[str, list[int], list[Envelope]]] = {}
        calls: list[_Call] = []
        sender = _Sender(self.redis, await self._batch.command_head())
        try:
            for event in events:
                envelope = self._wrap(event, {})
                stream = self._target(envelope)
                chunk = by_stream.get(stream)
                if chunk is None:
                    chunk = by_stream[stream] = (stream, [], [])
                chunk[1].append(len(envelopes))
                chunk[2].append(envelope)
                envelopes.append(envelope)
                if len(chunk[2]) == _CHUNK:
                    chunks.append(by_stream.pop(stream))
                    calls.append(self._batch_call(stream, chunk[2]))
                    await sender.send(calls[-1])
            for stream, positions, rest in by_stream.values():
                chunks.append((stream, positions, rest))
                calls.append(self._batch_call(stream, rest))
                await sender.send(calls[-1])
            replies = await sender.replies()
        finally:
            await sender.close()
        if replies is None:
            replies = await self._pipeline(calls, self._batch)
        return envelopes, chunks, replies

    def _wrap(self, event: Contract | Envelope, attributes: Mapping[str, object]) -> Envelope:
        envelope = self._checked(event, attributes)
        if self.signer is not None and not envelope.signature:
            return self.signer.sign(envelope)
        return envelope

    def _checked(self, event: Contract | Envelope, attributes: Mapping[str, object]) -> Envelope:
        if isinstance(event, _Checked):
            return event
        if isinstance(event, Envelope):  # built by hand: check it as a consumer will
            try:
                Envelope.from_fields(event.to_fields())
            except DecodeError as exc:
                raise ConfigurationError(
                    f"envelope {event.id[:80]!r} is not valid: {exc}"
                ) from None
            return event
        return self.envelope(event, **attributes)  # type: ignore[arg-type]

    def _target(self, envelope: Envelope) -> str:
        """Where an event is written: this publisher's intake, or its department stream."""
        return self.intake or envelope.stream

    def _minid(self, envelope: Envelope) -> str:
        if self.intake is not None:  # the router trims what it admitted (decision 0011)
            return ""
        return self.retention.minid(keys.aggregate_of(envelope.type), int(_now() * 1000))

    def _batch_call(self, stream: str, chunk: list[Envelope]) -> _Call:
        # Bytes: redis-py packs them as they are; ~5 µs less per event than its per-argument
        # type checks and encoding of str (bench/analysis.md).
        args = [stream.encode(), *(keys.seen(stream, e.id).encode() for e in chunk)]
        args += (self._dedupe_ttl_ms.encode(), self._minid(chunk[0]).encode())
        for envelope in chunk:
            wire = _wire(envelope)
            args.append(str(len(wire)).encode())
            args += wire
        return _Call(stream, len(chunk) + 1, args)

    async def _pipeline(self, calls: list[_Call], function: BusFunction) -> list[Any]:
        if not calls:
            return []
        required = await self.replicas.required()
        replies, waits = await self._send(function, calls, required)
        if waits is not None:
            streams = list(dict.fromkeys(call.stream for call in calls))
            more = " and others" if len(streams) > 3 else ""
            what = f"a publish to {', '.join(streams[:3])}{more}"
            self.replicas.confirm(waits, replies[len(calls) :], what)
        return replies[: len(calls)]

    async def _send(
        self, function: BusFunction, calls: list[_Call], required: int
    ) -> tuple[list[Any], Waits | None]:
        head = await function.command_head()  # FCALL <name> (EVAL <body> on Redis < 7)
        waits = None
        async with self.redis.pipeline(transaction=False) as pipe:
            for call in calls:
                # A cluster pipeline routes the command by its keys (every master has the
                # library: bus.functions).
                pipe.execute_command(*head, call.numkeys, *call.args)
            if required:  # behind the functions, on their connection (bus.durability)
                waits = self.replicas.add(pipe, [call.stream for call in calls])
            try:
                return await pipe.execute(), waits
            except ResponseError as exc:
                raise function.translate(exc) from None


class _Checked(Envelope):
    """An envelope built by :meth:`Publisher.envelope`: validated, so not checked again."""

    __slots__ = ()


class _Sender:
    """Function calls sent one by one on one connection of a pool, their replies read at the
    end (Publisher._publish_streamed). Any failure drops the connection and makes
    :meth:`replies` None: the caller then sends every call again the usual way."""

    def __init__(self, redis: Redis, head: tuple[str, str]) -> None:
        self._pool = redis.connection_pool
        self._head = head
        self._connection: Any = None
        self._sent = 0
        self._read = 0
        self._failed = False

    async def send(self, call: _Call) -> None:
        if self._failed:
            return
        try:
            if self._connection is None:
                self._connection = await self._pool.get_connection()  # type: ignore[no-untyped-call]
            command = self._connection.pack_command(*self._head, call.numkeys, *call.args)
            await self._connection.send_packed_command(command, check_health=False)
            self._sent += 1
        except (TimeoutError, RedisError, OSError):
            await self._fail()

    async def replies(self) -> list[Any] | None:
        """Every call's reply in order; None if a call could not be sent or answered."""
        replies = []
        try:
            while not self._failed and self._read < self._sent:
                replies.append(await self._connection.read_response())
                self._read += 1
        except (TimeoutError, RedisError, OSError):
            await self._fail()
        return None if self._failed else replies

    async def close(self) -> None:
        """Give the connection back; one with replies still unread is dropped first (the
        iterable of events raised, or the task was cancelled)."""
        connection, self._connection = self._connection, None
        if connection is None:
            return
        if self._failed or self._read < self._sent:
            await connection.disconnect(nowait=True)
        await self._pool.release(connection)

    async def _fail(self) -> None:
        self._failed = True
        if self._connection is not None:
            await self._connection.disconnect(nowait=True)


@dataclass(frozen=True, slots=True)
class _Call:
    """One function call: the stream it writes (for routing and messages), how many of its
    arguments are keys, and its arguments as bytes (keys first)."""

    stream: str
    numkeys: int
    args: list[bytes]


def _wire(envelope: Envelope) -> list[bytes]:
    """``to_fields()`` flattened and encoded (names, values, names, ...), in its order, without
    the dict: the names are constants and only the values are encoded, once per event."""
    if envelope.extensions:
        return [text.encode() for pair in envelope.to_fields().items() for text in pair]
    e = envelope
    wire = [
        b"specversion",
        e.specversion.encode(),
        b"id",
        e.id.encode(),
        b"source",
        e.source.encode(),
        b"type",
        e.type.encode(),
        b"time",
        e.time.encode(),
        b"datacontenttype",
        e.datacontenttype.encode(),
        b"dataschema",
        e.dataschema.encode(),
    ]
    for name, value in (
        (b"subject", e.subject),
        (b"correlationid", e.correlationid),
        (b"causationid", e.causationid),
        (b"traceparent", e.traceparent),
        (b"signature", e.signature),
        (b"signer", e.signer),
    ):
        if value is not None:
            wire += (name, value.encode())
    wire += (b"data", e.data.encode())
    return wire


def _chunks(
    envelopes: list[Envelope], target: Callable[[Envelope], str]
) -> list[tuple[str, list[int], list[Envelope]]]:
    """Group by stream (one script call touches one hash tag), at most _CHUNK per call, so no
    single script blocks Redis for long; keep each event's input position. Each chunk comes
    with its stream (worked out once per event: a partitioned type hashes its subject)."""
    by_stream: dict[str, tuple[str, list[int], list[Envelope]]] = {}
    chunks: list[tuple[str, list[int], list[Envelope]]] = []
    for position, envelope in enumerate(envelopes):
        stream = target(envelope)
        chunk = by_stream.get(stream)
        if chunk is None:
            chunk = by_stream[stream] = (stream, [], [])
        chunk[1].append(position)
        chunk[2].append(envelope)
        if len(chunk[2]) == _CHUNK:
            chunks.append(by_stream.pop(stream))
    return chunks + list(by_stream.values())


def _contract_info(event: object) -> ContractInfo:
    if not isinstance(event, Contract) or not hasattr(type(event), "__contract__"):
        raise ConfigurationError(
            f"can only publish instances of a declared contract (a Contract subclass with an "
            f"event_type), got {type(event).__qualname__}"
        )
    return type(event).__contract__
