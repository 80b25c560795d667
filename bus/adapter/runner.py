"""The adapter SDK: a legacy source, a mapping function, and a runner that publishes exactly once.

An adapter is three small parts behind Protocols, and the :class:`Adapter` runner around them:

* a :class:`Source` yields legacy :class:`Record` s in batches, in a stable order, each with a
  key, a version and a JSON-serialisable position to resume after it (SQL, later webhook, CSV);
* a :class:`Mapper` turns one record into a contract instance — the only code a department
  writes;
* a :class:`CheckpointStore` remembers the position after the last published batch.

The runner derives each event id from (source URN, source name, record key, record version), so a
record replayed after a crash maps to the same id and the publisher drops it. It saves the
checkpoint only once ``publish_many`` has returned: the checkpoint may lag behind the stream,
never run ahead of it, so kill -9 at any point and a restart leave one entry per record.

The runner also tells operators how it is doing (bus.adapter.report): after each batch and every
few seconds between passes it writes its counts, its position and, for a change-data-capture
source (one with ``async def lag() -> SourceLag``), how far behind its database it is.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace

from redis.exceptions import RedisClusterException, RedisError

from bus.adapter.quarantine import Quarantine
from bus.adapter.records import (
    CheckpointStore,
    Mapper,
    Problem,
    Progress,
    ProgressHook,
    Record,
    Rejected,
    Source,
    map_to_envelope,
    record_event_id,
)
from bus.adapter.report import Reporter
from bus.connection import TRANSIENT, translate
from bus.envelope import Envelope
from bus.errors import RedisUnavailable, SimpulError, SourceError
from bus.logging import get_logger
from bus.privacy import mask_text
from bus.publisher import Publisher

__all__ = ["Adapter", "SourceError"]

_log = get_logger("bus.adapter.runner")


@dataclass(slots=True)
class _Batch:
    rejected: list[Rejected] = field(default_factory=list)
    repeated: int = 0  # the same fact twice in one batch: published once
    skipped: int = 0  # the mapper said: no event


class Adapter:
    """Runs one source through one mapper onto the bus, exactly once per record version."""

    def __init__(
        self,
        name: str,
        *,
        source: Source,
        mapper: Mapper,
        publisher: Publisher,
        checkpoints: CheckpointStore,
        quarantine: Quarantine,
        batch_size: int = 500,
        on_progress: ProgressHook | None = None,
        reporter: Reporter | None = None,
    ) -> None:
        """``reporter`` writes what operators see in ``simpul status`` (bus.adapter.report);
        by default one on the publisher's Redis."""
        if not 1 <= batch_size <= 10_000:
            raise ValueError(f"batch_size must be 1 to 10000, got {batch_size}")
        self.name = name
        self.source = source
        self.mapper = mapper
        self.publisher = publisher
        self.checkpoints = checkpoints
        self.quarantine = quarantine
        self.batch_size = batch_size
        self.on_progress = on_progress
        self.progress = Progress()
        self.reporter = reporter or Reporter(publisher.redis, name)
        self.last_error: str | None = None  # why the last pass failed, for the report
        self._read_before_pass = 0

    async def run_once(self) -> Progress:
        """Publish everything the source has after the checkpoint, batch by batch, then return.

        A backfill is one call; a poller calls it again and again (see :meth:`run`).
        """
        position = await self.checkpoints.load(self.name)
        total = await self.source.remaining(position)
        self.progress = replace(self.progress, total=total, position=position)
        self._read_before_pass = self.progress.read
        self._report()
        async for records in self.source.batches(position, size=self.batch_size):
            if records:
                await self._process(records)
        _log.info("adapter_pass_finished", adapter=self.name, **self._counts())
        self.last_error = None
        await self.reporter.send(self)
        return self.progress

    async def run(self, *, poll_interval: float = 5.0, stop: asyncio.Event | None = None) -> None:
        """Poll until ``stop`` is set, riding out Redis and source outages with a backoff."""
        stop = stop or asyncio.Event()
        delay = poll_interval
        self.reporter.state = "running"
        while not stop.is_set():
            try:
                await self.run_once()
                delay = poll_interval
            except (RedisUnavailable, SourceError, *TRANSIENT) as exc:
                # A real outage reaches here as redis-py's ConnectionError or TimeoutError (or
                # a socket's), from the publisher, the quarantine or the checkpoints: redis-py's
                # named as translate() names a Redis outage, a builtin one (a socket's, maybe
                # the source's) by its type; neither quotes a reply that is not RESP. Nothing
                # read since the last checkpoint is lost: the next pass reads it again.
                if isinstance(exc, SimpulError):
                    problem = str(exc)
                elif isinstance(exc, RedisError | RedisClusterException):
                    problem = str(translate(exc))
                else:
                    problem = f"{type(exc).__name__}: {str(exc) or 'no detail given'}"
                _log.warning(
                    "adapter_pass_failed",
                    adapter=self.name,
                    error_type=type(exc).__name__,
                    error=problem,
                )
                self.last_error = problem
                await self.reporter.send(self)
                delay = min(max(delay * 2, 1.0), 60.0)  # from 1 s when passes run back to back
            except SimpulError as exc:  # e.g. a configuration error: it stops; status says why
                self.last_error = str(exc)
                await self.reporter.send(self)
                raise
            await self.reporter.wait(self, stop, delay)
        self.reporter.state = "stopped"
        await self.reporter.send(self)

    def behind_rows(self) -> int | None:
        """Records the source said this pass would bring that are not read yet (None: the
        source cannot tell)."""
        if self.progress.total is None:
            return None
        return max(0, self.progress.total - (self.progress.read - self._read_before_pass))

    async def _process(self, records: Sequence[Record]) -> None:
        batch = _Batch()
        # Mapped as the publisher takes them: it sends each chunk's call once the chunk is
        # full, so Redis runs it while the next chunk is mapped (Publisher.publish_many).
        results = await self.publisher.publish_many(self._map(records, batch))
        if batch.rejected:  # quarantine_add is idempotent, as the publish is: a crash
            await self.quarantine.add(batch.rejected)  # before the checkpoint repeats both
        # Only now is every record of the batch durable in Redis, published or quarantined.
        position = records[-1].position
        known = sum(r.duplicate for r in results)
        p = self.progress
        self.progress = replace(
            p,
            read=p.read + len(records),
            published=p.published + len(results) - known,
            duplicates=p.duplicates + known + batch.repeated,
            quarantined=p.quarantined + len(batch.rejected),
            skipped=p.skipped + batch.skipped,
            position=position,
        )
        # The checkpoint and the operators' report in one wait, not two (a round trip costs
        # the most on a busy machine); the report never raises. Should the checkpoint fail,
        # the counts go back to the last saved one, and the failed pass reports again.
        try:
            await asyncio.gather(
                self.checkpoints.save(self.name, position), self.reporter.send(self)
            )
        except BaseException:
            self.progress = p
            raise
        _log.info(
            "adapter_batch_published", adapter=self.name, batch=len(records), **self._counts()
        )
        self._report()

    def _map(self, records: Sequence[Record], batch: _Batch) -> Iterator[Envelope]:
        """The envelopes of ``records``, one by one; what is not published goes into
        ``batch`` (rejected, repeated, skipped)."""
        payloads: dict[str, str] = {}  # event id -> payload, to spot one fact read twice
        for record in records:
            outcome = map_to_envelope(self.publisher, self.mapper, self.source.name, record)
            if outcome is None:
                batch.skipped += 1
                continue
            if isinstance(outcome, Envelope):
                earlier = payloads.get(outcome.id)
                if earlier is None:
                    payloads[outcome.id] = outcome.data
                    yield outcome
                    continue
                if earlier == outcome.data:
                    batch.repeated += 1
                    continue
                outcome = [_CONFLICT]
            batch.rejected.append(self._reject(record, outcome))

    def _reject(self, record: Record, problems: list[Problem]) -> Rejected:
        # Field names only: a problem's text may quote a value of the record.
        _log.info(
            "record_quarantined",
            adapter=self.name,
            record_key=mask_text(record.key),  # a legacy key may be a NIK
            record_version=record.version,
            fields=[p.field for p in problems],
        )
        id = record_event_id(self.publisher.source, self.source.name, record)
        return Rejected(source=self.source.name, event_id=id, record=record, problems=problems)

    def _counts(self) -> dict[str, int]:
        p = self.progress
        return {
            "read": p.read,
            "published": p.published,
            "duplicates": p.duplicates,
            "quarantined": p.quarantined,
            "skipped": p.skipped,
        }

    def _report(self) -> None:
        if self.on_progress is not None:
            self.on_progress(self.progress)


_CONFLICT = Problem(
    "(record)",
    "another record in the same batch has the same key and version but maps to a different "
    "payload: remove the duplicate in the source, then retry this entry",
)
