"""The quarantine: legacy records an adapter could not map, kept for an operator to fix.

Each adapter has one stream, ``simpul:quarantine:{<adapter>}``, whose entries keep the raw record
(JSON text) and the problems (JSON list of ``{field, problem}``). The raw record holds personal
data by necessity — it is the operator's work queue, to be protected by ACLs — so it is never
logged. An index hash maps each rejected (event id, raw record) to its entry, so a batch replayed
after a crash does not quarantine the same record twice; a script keeps the two in step.

:meth:`Quarantine.retry` maps a quarantined record again with the current mapper; if it maps now,
it is published (idempotently, under the event id it always had) and then removed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis

from bus import keys
from bus.adapter.records import Mapper, Problem, Record, Rejected, jsonable, map_to_envelope
from bus.connection import is_cluster
from bus.decoding import text as _text
from bus.decoding import texts
from bus.envelope import Envelope, format_time
from bus.errors import ConfigurationError
from bus.functions import BusFunction
from bus.logging import get_logger
from bus.publisher import Publisher

__all__ = ["Quarantine", "QuarantineEntry", "RetryOutcome"]

_log = get_logger("bus.adapter.quarantine")


@dataclass(frozen=True, slots=True)
class QuarantineEntry:
    """One quarantined record as stored, with the stream entry id operators refer to."""

    entry_id: str
    adapter: str
    source: str
    record_key: str
    record_version: str
    event_id: str
    raw: str
    problems: tuple[Problem, ...]
    time: str
    record_time: str | None

    def record(self) -> Record:
        """The record as the mapper saw it (values JSON-typed: dates come back as text)."""
        when = datetime.fromisoformat(self.record_time) if self.record_time else None
        return Record(self.record_key, self.record_version, None, json.loads(self.raw), when)

    @classmethod
    def from_fields(cls, entry_id: str, fields: dict[str, str]) -> QuarantineEntry:
        problems = tuple(Problem(p["field"], p["problem"]) for p in json.loads(fields["errors"]))
        return cls(
            entry_id=entry_id,
            adapter=fields["adapter"],
            source=fields["source"],
            record_key=fields["record_key"],
            record_version=fields["record_version"],
            event_id=fields["event_id"],
            raw=fields["raw"],
            problems=problems,
            time=fields["time"],
            record_time=fields.get("record_time") or None,
        )


@dataclass(frozen=True, slots=True)
class RetryOutcome:
    """What a retry did: published (or found already published) and removed, skipped (the
    mapper now says the record is no event) and removed, or still bad."""

    entry_id: str
    published: bool
    duplicate: bool = False
    problems: tuple[Problem, ...] = ()
    skipped: bool = False


class Quarantine:
    """The quarantine stream of one adapter."""

    def __init__(self, redis: Redis, adapter: str) -> None:
        self.redis = redis
        self.adapter = adapter
        self.key = keys.quarantine(adapter)
        self.index = keys.quarantine_index(adapter)
        self._add = BusFunction(redis, "quarantine_add")
        self._remove = BusFunction(redis, "quarantine_remove")

    async def add(self, rejected: Sequence[Rejected]) -> int:
        """Quarantine records; one already there (same event id and raw record) is not added
        again. Returns how many were new."""
        calls = [self._fields(item) for item in rejected]
        replies: list[Any]
        if is_cluster(self.redis):  # a cluster pipeline cannot carry scripts: one call each
            replies = [
                await self._add(keys=[self.key, self.index], args=[field, *pairs])
                for field, pairs in calls
            ]
        else:
            async with self.redis.pipeline(transaction=False) as pipe:
                for field, pairs in calls:
                    await self._add(keys=[self.key, self.index], args=[field, *pairs], client=pipe)
                replies = await pipe.execute()
        return sum(int(added) for added, _ in replies)

    async def count(self) -> int:
        return int(await self.redis.xlen(self.key))

    async def entries(self, *, after: str = "-", limit: int = 100) -> list[QuarantineEntry]:
        """Oldest first; pass the last entry id seen as ``after`` for the next page."""
        start = after if after == "-" else f"({after}"
        page: Any = await self.redis.xrange(self.key, min=start, count=limit)
        return [QuarantineEntry.from_fields(_text(eid), texts(f)) for eid, f in page]

    async def show(self, entry_id: str) -> QuarantineEntry | None:
        found: Any = await self.redis.xrange(self.key, min=entry_id, max=entry_id)
        if not found:
            return None
        eid, fields = found[0]
        return QuarantineEntry.from_fields(_text(eid), texts(fields))

    async def retry(
        self, entry: QuarantineEntry, *, mapper: Mapper, publisher: Publisher
    ) -> RetryOutcome:
        """Map the record again; publish it if it maps now, then remove it (both idempotent:
        a crash in between leaves the entry, and retrying it again publishes nothing twice)."""
        outcome = map_to_envelope(publisher, mapper, entry.source, entry.record())
        if outcome is None:
            await self._remove(
                keys=[self.key, self.index], args=[entry.entry_id, _index_field(entry)]
            )
            _log.info("quarantine_skipped", adapter=self.adapter, entry_id=entry.entry_id)
            return RetryOutcome(entry.entry_id, published=False, skipped=True)
        if not isinstance(outcome, Envelope):
            return RetryOutcome(entry.entry_id, published=False, problems=tuple(outcome))
        if outcome.id != entry.event_id:
            raise ConfigurationError(
                f"retrying entry {entry.entry_id} would publish it as {outcome.id}, not as "
                f"{entry.event_id}: retry with the adapter's own publisher source "
                f"(this one is {publisher.source!r})"
            )
        published = await publisher.publish(outcome)
        await self._remove(keys=[self.key, self.index], args=[entry.entry_id, _index_field(entry)])
        _log.info(
            "quarantine_retried",
            adapter=self.adapter,
            entry_id=entry.entry_id,
            event_id=published.event_id,
            duplicate=published.duplicate,
        )
        return RetryOutcome(entry.entry_id, published=True, duplicate=published.duplicate)

    async def retry_all(self, *, mapper: Mapper, publisher: Publisher) -> list[RetryOutcome]:
        """Retry every entry, a page at a time; the ones that still fail stay."""
        outcomes: list[RetryOutcome] = []
        after = "-"
        while page := await self.entries(after=after):
            for entry in page:
                outcomes.append(await self.retry(entry, mapper=mapper, publisher=publisher))
            after = page[-1].entry_id
        return outcomes

    async def discard(self, entry: QuarantineEntry) -> bool:
        """Drop an entry an operator decided not to publish."""
        removed = await self._remove(
            keys=[self.key, self.index], args=[entry.entry_id, _index_field(entry)]
        )
        return bool(removed)

    def _fields(self, item: Rejected) -> tuple[str, list[str]]:
        record = item.record
        raw = raw_json(record.data)
        fields = {
            "adapter": self.adapter,
            "source": item.source,
            "record_key": record.key,
            "record_version": record.version,
            "event_id": item.event_id,
            "raw": raw,
            "errors": json.dumps([{"field": p.field, "problem": p.problem} for p in item.problems]),
            "time": format_time(datetime.now(UTC)),
            "record_time": record.time.isoformat() if record.time else "",
        }
        pairs = [part for pair in fields.items() for part in pair]
        return _field_of(item.event_id, raw), pairs


def raw_json(data: Any) -> str:
    """A record's columns as canonical JSON text (sorted keys), dates as ISO 8601."""
    return json.dumps(data, sort_keys=True, ensure_ascii=False, default=jsonable)


def _field_of(event_id: str, raw: str) -> str:
    # The raw record is part of the index: two conflicting copies of one record both stay.
    return f"{event_id}:{hashlib.sha256(raw.encode()).hexdigest()[:16]}"


def _index_field(entry: QuarantineEntry) -> str:
    return _field_of(entry.event_id, entry.raw)
