"""The checker of the fault tests: histories + effects + Redis state -> a report.

    report = check(history.read(paths), effects.read(db), await observe(redis, streams, GROUP))
    print(json.dumps(report.to_json(), indent=2))
    assert report.violations() == []

What counts (per event id; a retried publish is several attempts of one event):

* an event is **ok** if any attempt returned ``ok``; else **unknown** if any attempt timed out,
  lost its connection or never returned (its process was killed): it may have landed; else
  **failed** (every attempt was refused).
* **lost**: ok, but no effect (``lost_to_dead_letters`` of them were dead-lettered: the bus
  gave up on them, nothing will handle them later). **unexpected**: an effect of an event
  nobody published, or of a failed one (an unknown one that landed is fine:
  ``unknown_landed``).
* **duplicate effects**: effect rows beyond the first per event id (must be 0: the inbox).
  **duplicate entries**: stream entries beyond the first per published event id (must be 0:
  the publisher's dedupe, under retries too).
* **redeliveries**: handler invocations beyond the first per event id (at-least-once allows
  them; reported, never a violation).
* **order inversions** per subject: effects committed after an effect of a higher sequence
  number of the same subject. A violation only when asked (``violations(ordered=True)``):
  concurrent replicas of a plain stream do not promise per-subject order; partitioned streams
  will.
* **final pending** and **lag** of the group, **dead letters** by reason, and for injected
  bad entries (``inject`` records) which are missing from the dead letters or carry a reason
  they should not (``poison_missing``, ``poison_misfiled``).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, cast

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from bus import keys
from tests.chaos.effects import Effect
from tests.chaos.history import FAIL, HANDLE, INJECT, INVOKE, OK, PUBLISH, UNKNOWN

__all__ = ["DeadLetter", "Observed", "Report", "check", "observe"]

_EXAMPLES = 5  # event ids shown per violated property


@dataclass(frozen=True, slots=True)
class DeadLetter:
    entry: str  # the id of the original entry in its stream (dlq.entry)
    event_id: str | None
    reason: str


@dataclass(frozen=True)
class Observed:
    """The Redis side at the end of a run."""

    entries: Mapping[str, int]  # event id -> how many stream entries carry it
    pending: int
    lag: int | None  # None: the server does not report it (Redis < 7) or it is unknown
    dead_letters: Sequence[DeadLetter] = ()


@dataclass
class Report:
    published_ok: int = 0
    published_unknown: int = 0
    unknown_landed: int = 0
    failed: int = 0
    attempts: dict[str, int] = field(default_factory=dict)
    consumed: int = 0
    lost: int = 0
    lost_to_dead_letters: int = 0  # of the lost: dead-lettered (no longer pending anywhere)
    unexpected: int = 0
    duplicate_effects: int = 0
    duplicate_entries: int = 0
    handler_invocations: int = 0
    redeliveries: int = 0
    order_inversions: dict[str, int] = field(default_factory=dict)
    final_pending: int = 0
    lag: int | None = None
    dead_letters: dict[str, int] = field(default_factory=dict)
    poison_injected: int = 0
    poison_missing: int = 0
    poison_misfiled: int = 0
    examples: dict[str, list[str]] = field(default_factory=dict)

    @property
    def inversions(self) -> int:
        return sum(self.order_inversions.values())

    def violations(self, *, ordered: bool = False) -> list[str]:
        """What went wrong, one line per broken property (empty: the run is clean).

        ``ordered``: per-subject order is promised too (partitioned streams)."""
        counts = {
            "lost": self.lost,
            "unexpected": self.unexpected,
            "duplicate_effects": self.duplicate_effects,
            "duplicate_entries": self.duplicate_entries,
            "final_pending": self.final_pending,
            "lag": self.lag or 0,
            "poison_missing": self.poison_missing,
            "poison_misfiled": self.poison_misfiled,
        }
        if ordered:
            counts["order_inversions"] = self.inversions
        return [
            f"{name} = {count}{_shown(self.examples.get(name))}"
            for name, count in counts.items()
            if count
        ]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _shown(examples: list[str] | None) -> str:
    return f" (e.g. {examples})" if examples else ""


def check(
    records: Iterable[Mapping[str, Any]], effects: Sequence[Effect], observed: Observed
) -> Report:
    history = _History.of(records)
    report = Report(attempts=dict(sorted(history.attempts.items())))
    status = history.status()
    effected = Counter(e.event_id for e in effects)
    lost = _publishes(report, status, effected)
    dead_ids = {d.event_id for d in observed.dead_letters}
    report.lost_to_dead_letters = sum(1 for i in lost if i in dead_ids)
    report.consumed = len(effected)
    report.duplicate_effects = sum(n - 1 for n in effected.values())
    _example(report, "duplicate_effects", (i for i, n in effected.items() if n > 1))
    copies = {i: observed.entries.get(i, 0) for i in status}
    report.duplicate_entries = sum(max(n - 1, 0) for n in copies.values())
    _example(report, "duplicate_entries", (i for i, n in copies.items() if n > 1))
    handled = Counter(r["id"] for r in history.handled)
    report.handler_invocations = sum(handled.values())
    report.redeliveries = sum(n - 1 for n in handled.values())
    report.order_inversions = _inversions(effects, history.seq)
    report.final_pending, report.lag = observed.pending, observed.lag
    report.dead_letters = dict(sorted(Counter(d.reason for d in observed.dead_letters).items()))
    _poison(report, history.injected, observed.dead_letters)
    return report


@dataclass
class _History:
    attempts: Counter[str] = field(default_factory=Counter)
    outcomes: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    unanswered: Counter[str] = field(default_factory=Counter)  # attempts without outcome
    seq: dict[str, tuple[str, int]] = field(default_factory=dict)  # id -> (subject, seq)
    handled: list[Mapping[str, Any]] = field(default_factory=list)
    injected: list[Mapping[str, Any]] = field(default_factory=list)

    @classmethod
    def of(cls, records: Iterable[Mapping[str, Any]]) -> _History:
        history = cls()
        for record in records:
            history.add(record)
        return history

    def add(self, record: Mapping[str, Any]) -> None:
        op = record.get("op")
        if op == HANDLE:
            self.handled.append(record)
        elif op == INJECT:
            self.injected.append(record)
        elif op == PUBLISH:
            self._publish(record)

    def _publish(self, record: Mapping[str, Any]) -> None:
        event_id, phase = record["id"], record["phase"]
        if phase == INVOKE:
            self.outcomes.setdefault(event_id, set())
            self.unanswered[event_id] += 1
            if record.get("subject") is not None and record.get("seq") is not None:
                self.seq[event_id] = (record["subject"], int(record["seq"]))
            return
        self.attempts[phase] += 1
        self.outcomes[event_id].add(phase)
        self.unanswered[event_id] -= 1

    def status(self) -> dict[str, str]:
        """ok / unknown / failed per event id. An invoke without an outcome (its process was
        killed waiting for the reply) is unknown."""
        status = {}
        for event_id, seen in self.outcomes.items():
            outcomes = seen | {UNKNOWN} if self.unanswered[event_id] > 0 else seen
            status[event_id] = OK if OK in outcomes else FAIL if outcomes == {FAIL} else UNKNOWN
        return status


def _publishes(report: Report, status: Mapping[str, str], effected: Mapping[str, int]) -> list[str]:
    """Counts by outcome, lost and unexpected; returns the ids of the lost events."""
    by_status: dict[str, list[str]] = defaultdict(list)
    for event_id, state in status.items():
        by_status[state].append(event_id)
    report.published_ok = len(by_status[OK])
    report.published_unknown = len(by_status[UNKNOWN])
    report.failed = len(by_status[FAIL])
    report.unknown_landed = sum(1 for i in by_status[UNKNOWN] if i in effected)
    lost = [i for i in by_status[OK] if i not in effected]
    unexpected = [i for i in effected if status.get(i, FAIL) == FAIL]
    report.lost, report.unexpected = len(lost), len(unexpected)
    _example(report, "lost", lost)
    _example(report, "unexpected", unexpected)
    return lost


def _inversions(effects: Sequence[Effect], seq: Mapping[str, tuple[str, int]]) -> dict[str, int]:
    """Per subject: effects that became visible after one with a higher sequence number."""
    highest: dict[str, int] = {}
    inversions: Counter[str] = Counter()
    for effect in sorted(effects, key=lambda e: e.order):
        known = seq.get(effect.event_id)
        if known is None:
            continue
        subject, number = known
        inversions[subject] += 0  # every subject seen is listed, inverted or not
        if number < highest.get(subject, 0):
            inversions[subject] += 1
        highest[subject] = max(highest.get(subject, 0), number)
    return dict(sorted(inversions.items()))


def _poison(
    report: Report, injected: Sequence[Mapping[str, Any]], dead: Sequence[DeadLetter]
) -> None:
    reasons = {d.entry: d.reason for d in dead}
    missing = [r["entry"] for r in injected if r["entry"] not in reasons]
    filed = [r for r in injected if r["entry"] in reasons]
    misfiled = [r["entry"] for r in filed if reasons[r["entry"]] not in r["reasons"]]
    report.poison_injected = len(injected)
    report.poison_missing, report.poison_misfiled = len(missing), len(misfiled)
    _example(report, "poison_missing", missing)
    _example(report, "poison_misfiled", misfiled)


def _example(report: Report, name: str, ids: Iterable[str]) -> None:
    shown = sorted(ids)[:_EXAMPLES]
    if shown:
        report.examples[name] = shown


async def observe(redis: Redis, streams: Sequence[str], group: str) -> Observed:
    """Entries per event id, pending, lag and dead letters of ``group`` on ``streams``.

    Reads whole streams: the scenarios keep them to a few thousand entries."""
    entries: Counter[str] = Counter()
    pending, lag, dead = 0, cast(int | None, 0), []
    for stream in streams:
        for _, fields in await _entries(redis, stream):
            event_id = fields.get(b"id")
            if event_id is not None:
                entries[event_id.decode(errors="replace")] += 1
        try:
            groups = {g["name"].decode(): g for g in await redis.xinfo_groups(stream)}
        except ResponseError:  # no such stream: nothing was published or consumed there
            continue
        if group in groups:
            pending += int(groups[group]["pending"])
            stream_lag = groups[group].get("lag")
        else:  # no replica has created the group yet: nothing was delivered
            stream_lag = await redis.xlen(stream)
        lag = None if lag is None or stream_lag is None else lag + int(stream_lag)
        dead += [
            _dead_letter(f) for _, f in await _entries(redis, keys.dead_letters(stream, group))
        ]
    return Observed(entries=dict(entries), pending=pending, lag=lag, dead_letters=dead)


async def _entries(redis: Redis, stream: str) -> list[tuple[bytes, dict[bytes, bytes]]]:
    return cast(list[tuple[bytes, dict[bytes, bytes]]], await redis.xrange(stream))


def _dead_letter(fields: Mapping[bytes, bytes]) -> DeadLetter:
    event_id = fields.get(b"id")
    return DeadLetter(
        entry=fields[b"dlq.entry"].decode(),
        event_id=None if event_id is None else event_id.decode(errors="replace"),
        reason=fields[b"dlq.reason"].decode(),
    )
