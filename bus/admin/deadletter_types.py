"""The vocabulary of dead-letter administration: refs, summaries, details, replay outcomes and
reports, purge plans — what :class:`bus.admin.deadletters.DeadLetters` takes and answers, and
what the CLI and the monitor render (each ``as_dict`` is the ``--json`` and API shape).
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bus.admin.positions import _ENTRY_ID, _time_of
from bus.admin.streams import dead_letter_key, kind_of, source_key
from bus.errors import ConfigurationError, SimpulError

__all__ = [
    "DeadLetter",
    "DeadLetterDetail",
    "DeadLetterRef",
    "NotFound",
    "Outcome",
    "ProgressCallback",
    "PurgePlan",
    "PurgeStep",
    "Queue",
    "ReplayReport",
    "ReplayResult",
    "Target",
]


class NotFound(SimpulError):
    """No dead letter with that id (in the selected dead-letter streams)."""


# -- dead letters --------------------------------------------------------------------------------


class Target(enum.StrEnum):
    """Where a replayed dead letter goes."""

    GROUP = "group"  # the original entry, back to the group that gave up: nobody else sees it
    STREAM = "stream"  # a new entry with the same event: every group of the stream gets it


class Outcome(enum.StrEnum):
    """What replaying one dead letter did (or, in a dry run, would do)."""

    REPLAYED = "replayed"
    WOULD_REPLAY = "would_replay"  # dry run: it would be replayed
    GONE = "gone"  # no longer a dead letter (replayed or purged meanwhile): nothing to do
    REFUSED = "refused"  # cannot be replayed this way; ``detail`` says why and what to do
    FAILED = "failed"  # Redis failed; the step is atomic, so the dead letter is intact or moved


@dataclass(frozen=True, slots=True, order=True)
class DeadLetterRef:
    """One dead letter: the stream it came from, the group that gave up, its entry id in the
    group's dead-letter stream (``<stream>:dlq:<group>``)."""

    stream: str
    group: str
    entry_id: str

    @property
    def key(self) -> str:
        return dead_letter_key(self.stream, self.group)

    def __str__(self) -> str:
        return f"{self.key} {self.entry_id}"

    @staticmethod
    def source_of(name: str) -> str:
        """:func:`source_key` for callers importing only ``bus.admin`` (the monitor)."""
        return source_key(name)

    @staticmethod
    def queue_key(source: str, group: str) -> str:
        """:func:`dead_letter_key` for callers importing only ``bus.admin`` (the monitor)."""
        return dead_letter_key(source, group)

    @property
    def kind(self) -> str:
        """``stream``, ``inbox`` (routed delivery) or ``intake`` (the router's refusals)."""
        return kind_of(self.stream)

    def as_dict(self) -> dict[str, str]:
        return {"stream": self.stream, "group": self.group, "id": self.entry_id}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DeadLetterRef:
        """The ref back from :meth:`as_dict` (e.g. a dashboard's request body); the stream may
        be an aggregate name, or an inbox's short name, too. Raises ConfigurationError for
        anything else."""
        try:
            stream, group, entry_id = (str(data[name]) for name in ("stream", "group", "id"))
        except KeyError as exc:
            raise ConfigurationError(f"a dead-letter ref needs {exc}") from None
        if not _ENTRY_ID.match(entry_id) or not group:
            raise ConfigurationError(f"not a dead-letter ref: group {group!r}, id {entry_id!r}")
        return cls(source_key(stream), group, entry_id if "-" in entry_id else f"{entry_id}-0")


@dataclass(frozen=True, slots=True)
class Queue:
    """The dead-letter stream of one group."""

    stream: str
    group: str
    length: int
    first_id: str | None
    last_id: str | None
    stream_exists: bool

    @property
    def key(self) -> str:
        return dead_letter_key(self.stream, self.group)

    def as_dict(self) -> dict[str, Any]:
        return {
            "stream": self.stream,
            "kind": kind_of(self.stream),
            "group": self.group,
            "key": self.key,
            "length": self.length,
            "oldest": self.first_id and _time_of(self.first_id),
            "newest": self.last_id and _time_of(self.last_id),
            "stream_exists": self.stream_exists,
        }


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A dead letter's summary. ``error`` is masked (never personal data)."""

    ref: DeadLetterRef
    reason: str
    error: str
    attempts: int | None
    original_entry: str | None  # dlq.entry: its entry id in the stream
    consumer: str | None  # the consumer that gave up
    dead_lettered_at: str | None  # dlq.time
    event_id: str | None
    event_type: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.ref.as_dict(),
            "kind": self.ref.kind,
            "reason": self.reason,
            "error": self.error,
            "attempts": self.attempts,
            "original_entry": self.original_entry,
            "consumer": self.consumer,
            "time": self.dead_lettered_at,
            "event_id": self.event_id,
            "type": self.event_type,
        }


@dataclass(frozen=True, slots=True)
class DeadLetterDetail:
    """One dead letter decoded: its CloudEvents attributes and payload, masked unless revealed."""

    dead_letter: DeadLetter
    attributes: dict[str, str]  # every field but data and dlq.*
    data: Any  # the payload (parsed JSON; text if it is not JSON)
    revealed: bool
    decode_error: str | None  # why it is not a wire-format v1 event (masked); None if it is
    original_in_stream: bool  # the original entry is still there: replay to its group works
    stream_exists: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.dead_letter.as_dict(),
            "attributes": self.attributes,
            "data": self.data,
            "revealed": self.revealed,
            "decode_error": self.decode_error,
            "original_in_stream": self.original_in_stream,
            "stream_exists": self.stream_exists,
        }


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """What happened to one dead letter."""

    ref: DeadLetterRef
    outcome: Outcome
    target: Target
    entry_id: str | None  # the entry to be delivered: the new one (stream), the original (group)
    detail: str  # one sentence for people: what happened, or why not and what to do

    @property
    def ok(self) -> bool:
        return self.outcome in (Outcome.REPLAYED, Outcome.WOULD_REPLAY, Outcome.GONE)

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.ref.as_dict(),
            "outcome": self.outcome.value,
            "target": self.target.value,
            "entry_id": self.entry_id,
            "detail": self.detail,
        }


@dataclass(slots=True)
class ReplayReport:
    """The outcome of one replay call, one result per dead letter, in the order given."""

    target: Target
    dry_run: bool
    results: list[ReplayResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Every dead letter was replayed (or would be, or was gone already)."""
        return all(r.ok for r in self.results)

    def count(self, outcome: Outcome) -> int:
        return sum(r.outcome is outcome for r in self.results)

    def as_dict(self) -> dict[str, Any]:
        return {
            "target": self.target.value,
            "dry_run": self.dry_run,
            "counts": {o.value: self.count(o) for o in Outcome if self.count(o)},
            "results": [r.as_dict() for r in self.results],
        }


ProgressCallback = Callable[[ReplayResult, int, int], Awaitable[None] | None]


@dataclass(frozen=True, slots=True)
class PurgeStep:
    """Dead letters of one group to delete: below ``minid``, or the listed ``ids``."""

    stream: str
    group: str
    count: int
    minid: str | None = None
    ids: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return dead_letter_key(self.stream, self.group)


@dataclass(frozen=True, slots=True)
class PurgePlan:
    steps: tuple[PurgeStep, ...]

    @property
    def total(self) -> int:
        return sum(step.count for step in self.steps)

    def as_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "queues": [
                {"stream": s.stream, "group": s.group, "count": s.count} for s in self.steps
            ],
        }
