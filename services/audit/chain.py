"""The hash chain of the archive: the row layout, its canonical encoding, and its verification.

Row ``n`` carries ``prev_hash`` = the ``hash`` of row ``n - 1`` (:data:`GENESIS` for row 1) and
``hash = sha256(prev_hash + "\\n" + canonical(every other column))``, where ``canonical`` is
JSON with sorted keys, no spaces, UTF-8, integers as numbers and NULL as ``null``. Changing any
column of a row breaks its hash; replacing a row with a re-hashed one breaks the next row's link;
removing rows leaves a gap in ``seq``; removing the tail is caught by the head kept outside the
database (in Redis) — see :class:`Verifier`.

Pure code: no database, no Redis. Messages name seq numbers, never data.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

GENESIS = "0" * 64  # prev_hash of row 1
MAX_PROBLEMS = 100  # a badly damaged archive is not listed row by row

# Every column of ``audit_log``, in table order. ``hash`` covers all but itself and prev_hash,
# which is chained in front.
COLUMNS = (
    "seq",
    "stream",
    "entry_id",
    "entry_ms",
    "entry_seq",
    "event_id",
    "type",
    "source",
    "time",
    "time_utc",
    "subject",
    "correlationid",
    "causationid",
    "traceparent",
    "dataschema",
    "signature",
    "signer",
    "extensions",
    "classification",
    "data",
    "data_digest",
    "archived_at",
    "prev_hash",
    "hash",
)
HASHED = tuple(c for c in COLUMNS if c not in ("prev_hash", "hash"))

ProblemKind = Literal["altered", "removed", "relinked", "truncated", "replaced_head"]


def digest(text: str) -> str:
    """sha256 hex of UTF-8 text (the ``data_digest`` of an event's data)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def canonical(row: Mapping[str, Any]) -> bytes:
    """The hashed columns of ``row`` as canonical JSON bytes."""
    return json.dumps(
        {name: row[name] for name in HASHED},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode("utf-8")


def row_hash(prev_hash: str, row: Mapping[str, Any]) -> str:
    """The hash of ``row`` chained to ``prev_hash``."""
    return hashlib.sha256(prev_hash.encode("ascii") + b"\n" + canonical(row)).hexdigest()


@dataclass(frozen=True, slots=True)
class Head:
    """The last (seq, hash) of the chain, as kept outside the database."""

    seq: int
    hash: str


@dataclass(frozen=True, slots=True)
class Problem:
    """One place where the chain does not hold."""

    seq: int
    kind: ProblemKind
    message: str


@dataclass(slots=True)
class Report:
    """The outcome of walking the chain. ``ok`` unless a problem was found."""

    rows: int = 0
    last: Head | None = None
    head: Head | None = None
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    more_problems: bool = False  # more than MAX_PROBLEMS were found

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first(self) -> Problem | None:
        return self.problems[0] if self.problems else None

    def to_json(self) -> dict[str, Any]:
        def head(value: Head | None) -> dict[str, Any] | None:
            return None if value is None else {"seq": value.seq, "hash": value.hash}

        return {
            "ok": self.ok,
            "rows": self.rows,
            "last": head(self.last),
            "head": head(self.head),
            "first_problem": None if self.first is None else _problem(self.first),
            "problems": [_problem(p) for p in self.problems],
            "more_problems": self.more_problems,
            "warnings": list(self.warnings),
        }


def _problem(problem: Problem) -> dict[str, Any]:
    return {"seq": problem.seq, "kind": problem.kind, "message": problem.message}


class Verifier:
    """Walks rows in seq order (fed page by page) and collects problems.

    Each row is checked against what came before it: its seq follows the previous one (else rows
    were removed), its prev_hash is the previous row's hash (else the previous row was replaced
    by a re-hashed one), and its hash matches its content (else it was altered). After a problem
    the walk goes on from the row as it is, so later, independent damage is reported too.
    """

    def __init__(self, head: Head | None) -> None:
        self.report = Report(head=head)
        self._expected = 1
        self._prev = GENESIS
        self._hash_at_head: str | None = None

    def feed(self, rows: Iterable[Mapping[str, Any]]) -> None:
        for row in rows:
            self._check(row)

    def _check(self, row: Mapping[str, Any]) -> None:
        seq = int(row["seq"])
        self.report.rows += 1
        linked = True
        if seq != self._expected:
            missing = (
                f"seq {self._expected}"
                if seq == self._expected + 1
                else (f"seq {self._expected} to {seq - 1}")
            )
            before = f"seq {self._expected - 1}" if self._expected > 1 else "the start"
            self._add(
                Problem(
                    self._expected,
                    "removed",
                    f"{missing} removed: {before} is followed by seq {seq}",
                )
            )
            linked = False  # the link cannot hold across a gap; not a second problem
        computed = row_hash(str(row["prev_hash"]), row)
        if computed != row["hash"]:
            self._add(
                Problem(seq, "altered", f"seq {seq} altered: its content does not match its hash")
            )
        elif linked and row["prev_hash"] != self._prev:
            self._add(
                Problem(
                    seq,
                    "relinked",
                    f"seq {seq} does not link to seq {seq - 1}: seq {seq - 1} was replaced "
                    f"(re-hashed) or seq {seq} re-chained",
                )
            )
        if self.report.head is not None and seq == self.report.head.seq:
            self._hash_at_head = str(row["hash"])
        self._prev, self._expected = str(row["hash"]), seq + 1
        self.report.last = Head(seq, str(row["hash"]))

    def finish(self) -> Report:
        """Compare the end of the walk with the head kept outside the database."""
        report, head = self.report, self.report.head
        last_seq = report.last.seq if report.last else 0
        if head is None:
            if report.rows:
                report.warnings.append(
                    "no head is kept in Redis for this archive: removal of the newest rows "
                    "(truncation) cannot be detected"
                )
        elif head.seq > last_seq:
            removed = f"seq {last_seq + 1}" + (f" to {head.seq}" if head.seq > last_seq + 1 else "")
            self._add(
                Problem(
                    last_seq + 1,
                    "truncated",
                    f"{removed} removed from the tail: the archive ends at seq {last_seq} but the "
                    f"head kept in Redis is seq {head.seq}",
                )
            )
        elif self._hash_at_head is not None and self._hash_at_head != head.hash:
            self._add(
                Problem(
                    head.seq,
                    "replaced_head",
                    f"seq {head.seq} was replaced: its hash differs from the head kept in Redis",
                )
            )
        return report

    def _add(self, problem: Problem) -> None:
        if len(self.report.problems) < MAX_PROBLEMS:
            self.report.problems.append(problem)
        else:
            self.report.more_problems = True
