"""What the parts of an adapter exchange: records and problems, the protocols of sources,
mappers and checkpoint stores, and the mapping of one record to its envelope.

The runner (:mod:`bus.adapter.runner`), the quarantine, the report and every source import these
from here, so none of them imports another to learn a type.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any, Literal, Protocol, TypeAlias
from uuid import UUID

from bus.contracts import Contract
from bus.envelope import Envelope
from bus.errors import ContractViolation, SimpulError
from bus.privacy import mask_quoted
from bus.publisher import Publisher, event_id

__all__ = [
    "Change",
    "CheckpointStore",
    "Mapper",
    "Position",
    "Problem",
    "Progress",
    "ProgressHook",
    "Record",
    "Rejected",
    "Source",
    "SourceLag",
    "jsonable",
    "map_to_envelope",
    "record_event_id",
]

Position: TypeAlias = Any
"""Where a source resumes: any JSON-serialisable value (``None`` = from the beginning)."""

Change: TypeAlias = Literal["insert", "update", "delete"]
"""What happened to a row, where the source knows it (change-data-capture sources)."""


@dataclass(frozen=True, slots=True)
class Record:
    """One legacy record as read from a source.

    ``key`` identifies the record in its source and ``version`` the state of it (a version
    column, an updated-at stamp); together they name one fact, hence one event id.
    ``position`` is where the source resumes *after* this record. ``data`` holds the raw
    columns, ``time`` when the source recorded the fact (the event's ``time``) if known.
    ``change`` says what happened to the row where the source can tell (change-data-capture:
    ``insert``, ``update``, ``delete``; a delete's ``data`` is the row as it was); polling
    sources cannot, and leave it ``None``.
    """

    key: str
    version: str
    position: Position
    data: Mapping[str, Any]
    time: datetime | None = None
    change: Change | None = None


@dataclass(frozen=True, slots=True)
class Problem:
    """Why a record was not published: the field (or ``(record)``) and what is wrong with it."""

    field: str
    problem: str


@dataclass(frozen=True, slots=True)
class Rejected:
    """A record that did not map, on its way to the quarantine."""

    source: str
    event_id: str
    record: Record
    problems: Sequence[Problem]


class Source(Protocol):
    """Legacy records in a stable, total order, resumable after any record's position."""

    @property
    def name(self) -> str:
        """Names the record set inside the source system (e.g. a table); part of event ids."""
        ...

    def batches(self, after: Position, *, size: int) -> AsyncIterator[Sequence[Record]]:
        """Records after ``after`` (``None``: from the start), at most ``size`` per batch,
        until the source has nothing more right now. Never loads the whole set."""
        ...

    async def remaining(self, after: Position) -> int | None:
        """How many records follow ``after`` (for a progress bar), or None if unknown."""
        ...


@dataclass(frozen=True, slots=True)
class SourceLag:
    """How far a change-data-capture source is behind its database, for operators.

    ``position`` is the source's own notation (a binlog file and offset, a GTID set, an LSN).
    ``behind_bytes`` is log not yet published, ``behind_seconds`` the age of the oldest change
    not yet published (0 when caught up), ``retained_bytes`` the log the database keeps for
    this reader (a replication slot's retained WAL); None where the source cannot tell.
    """

    position: str
    behind_bytes: int | None = None
    behind_seconds: float | None = None
    retained_bytes: int | None = None


class CheckpointStore(Protocol):
    """Remembers, per adapter, the position after the last batch known to be published."""

    async def load(self, adapter: str) -> Position: ...

    async def save(self, adapter: str, position: Position) -> None: ...


class Mapper(Protocol):
    """Legacy record -> contract instance. Raise (ValueError, ContractViolation, ...) to
    quarantine the record; the message goes to the operator's queue, never to the logs.
    Return None for a record that is no event (e.g. a delete the department does not
    publish): it is counted as skipped and passed."""

    def __call__(self, record: Record) -> Contract | None: ...


def jsonable(value: Any) -> Any:
    """JSON stand-in for a column value that json cannot encode (``json.dumps(default=)``):
    dates and times as ISO 8601, decimals and UUIDs as text, bytes as UTF-8 (else hex)."""
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Decimal | UUID):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
        try:
            return data.decode()
        except UnicodeDecodeError:
            return data.hex()
    raise TypeError(f"a {type(value).__name__} column value cannot be written as JSON")


def record_event_id(source_urn: str, source_name: str, record: Record) -> str:
    """The event id of a record: the same record in the same version always yields it."""
    return event_id(source_urn, source_name, record.key, record.version)


def map_to_envelope(
    publisher: Publisher, mapper: Mapper, source_name: str, record: Record
) -> Envelope | list[Problem] | None:
    """Map and validate one record: its envelope, the problems that keep it out of the bus, or
    None when the mapper says the record is no event."""
    if not record.key or not record.version:
        return [_NO_IDENTITY]
    try:
        event = mapper(record)
    except ContractViolation as exc:
        return [Problem(f, p) for f, p in exc.problems]
    except SimpulError:
        raise  # a configuration or connection problem: not the record's fault
    except Exception as exc:  # the mapper is department code: any failure is the record's
        return [_unmapped(exc, record)]
    if event is None:
        return None
    id = record_event_id(publisher.source, source_name, record)
    try:
        return publisher.envelope(event, id=id, time=record.time)
    except ContractViolation as exc:
        return [Problem(f, p) for f, p in exc.problems]


def _unmapped(exc: Exception, record: Record) -> Problem:
    """The problem of a mapper that raised: its message with every value of the record masked
    where it quotes one. Department code words its errors as it likes ("unknown jenis_pajak
    'BUDI SANTOSO'" after a shifted column); the quarantine list, a retry's output and a
    webhook's answer show the problem, and a raw record's values have no known meaning."""
    return Problem("(record)", mask_quoted(f"{type(exc).__name__}: {exc}", dict(record.data)))


@dataclass(frozen=True, slots=True)
class Progress:
    """Counts since the runner was created, and the position of the last saved checkpoint."""

    read: int = 0
    published: int = 0
    duplicates: int = 0
    quarantined: int = 0
    skipped: int = 0  # records the mapper said are no event
    total: int | None = None  # records expected in the current pass, when the source can tell
    position: Position = None


ProgressHook: TypeAlias = Callable[[Progress], None]


_NO_IDENTITY = Problem(
    "(record)",
    "has no key or no version (NULL in the source), so it cannot get a stable event id: "
    "fill them in the source, then retry this entry",
)
