"""The adapter runner on a real Redis, with an in-memory source: checkpoint after publish,
quarantine without blocking, bounded batches, progress and logs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import date
from typing import Any

import pytest
from redis.asyncio import Redis

from bus.adapter import Adapter, Position, Progress, Record, record_event_id
from bus.adapter.checkpoint import RedisCheckpoints
from bus.adapter.quarantine import Quarantine
from bus.contracts import Contract
from bus.envelope import Envelope
from bus.errors import ConfigurationError, RedisUnavailable
from bus.publisher import Published, Publisher
from bus.testing import capture_logs
from schemas.dukcapil import CitizenDied

URN = "urn:malangkota:test:legacy"
STREAM = CitizenDied.__contract__.stream


class ListSource:
    """Records 0..n-1 in order; position = index of the record. Notes the checkpoint it saw
    each time it was asked for a next batch (the runner must have saved the previous one)."""

    name = "daftar"

    def __init__(self, rows: Sequence[dict[str, Any]], checkpoints: RedisCheckpoints) -> None:
        self.rows = list(rows)
        self.checkpoints = checkpoints
        self.seen_before_batch: list[Position] = []
        self.sizes: list[int] = []

    async def batches(self, after: Position, *, size: int) -> AsyncIterator[Sequence[Record]]:
        start = 0 if after is None else after + 1
        for offset in range(start, len(self.rows), size):
            self.seen_before_batch.append(await self.checkpoints.load("test"))
            chunk = self.rows[offset : offset + size]
            self.sizes.append(len(chunk))
            yield [self._record(offset + k, row) for k, row in enumerate(chunk)]

    async def remaining(self, after: Position) -> int | None:
        return len(self.rows) - (0 if after is None else after + 1)

    def _record(self, index: int, row: dict[str, Any]) -> Record:
        return Record(str(row["key"]), str(row.get("version", 1)), index, row)


def died(record: Record) -> Contract:
    if record.data.get("kind") == "boom":
        raise KeyError("jenis")
    return CitizenDied.parse(
        {"nik": record.data["nik"], "date_of_death": date(2026, 11, 1), "kecamatan": "35.73.02"}
    )


def table(count: int) -> list[dict[str, Any]]:
    return [{"key": i, "nik": f"3573014107{i + 1:06d}"} for i in range(count)]


def runner(redis: Redis, rows: Iterable[dict[str, Any]], **options: Any) -> Adapter:
    checkpoints = RedisCheckpoints(redis)
    return Adapter(
        "test",
        source=ListSource(list(rows), checkpoints),
        mapper=options.pop("mapper", died),
        publisher=options.pop("publisher", Publisher(redis, source=URN)),
        checkpoints=checkpoints,
        quarantine=Quarantine(redis, "test"),
        **options,
    )


class FailingPublisher(Publisher):
    """Redis goes away at the n-th batch: publish_many raises before anything is added."""

    def __init__(self, redis: Redis, fail_at: int) -> None:
        super().__init__(redis, source=URN)
        self.calls, self.fail_at = 0, fail_at

    async def publish_many(self, events: Iterable[Contract | Envelope]) -> list[Published]:
        self.calls += 1
        if self.calls == self.fail_at:
            raise RedisUnavailable("Redis is unreachable (simulated)")
        return await super().publish_many(events)


async def test_the_checkpoint_follows_the_publish_and_a_restart_adds_nothing_twice(
    redis: Redis,
) -> None:
    first = runner(redis, table(100), batch_size=30, publisher=FailingPublisher(redis, 3))
    with pytest.raises(RedisUnavailable):
        await first.run_once()

    assert await RedisCheckpoints(redis).load("test") == 59  # batches 1 and 2 only
    assert await redis.xlen(STREAM) == 60

    again = runner(redis, table(100), batch_size=30)
    progress = await again.run_once()
    assert (progress.read, progress.published, progress.total) == (40, 40, 40)
    ids = [f[b"id"].decode() for _, f in await redis.xrange(STREAM)]
    assert len(set(ids)) == len(ids) == 100
    record = Record("7", "1", 7, {})
    assert record_event_id(URN, "daftar", record) in ids


class FailingCheckpoints(RedisCheckpoints):
    """Redis goes away while the n-th checkpoint is saved (the batch was published)."""

    def __init__(self, redis: Redis, fail_at: int) -> None:
        super().__init__(redis)
        self.saves, self.fail_at = 0, fail_at

    async def save(self, adapter: str, position: Position) -> None:
        self.saves += 1
        if self.saves == self.fail_at:
            raise RedisUnavailable("Redis is unreachable (simulated)")
        await super().save(adapter, position)


async def test_a_checkpoint_that_fails_leaves_the_counts_at_the_last_saved_one(
    redis: Redis,
) -> None:
    # The checkpoint and the report are written together: when the save fails, the counts
    # (and the next report) go back to the checkpoint that was saved, not the batch after it.
    adapter = runner(redis, table(100), batch_size=30)
    adapter.checkpoints = FailingCheckpoints(redis, fail_at=2)
    with pytest.raises(RedisUnavailable):
        await adapter.run_once()

    assert await RedisCheckpoints(redis).load("test") == 29
    assert (adapter.progress.read, adapter.progress.published) == (30, 30)
    assert adapter.progress.position == 29
    await adapter.reporter.send(adapter)
    assert (await redis.hget(adapter.reporter.key, "published")) == b"30"

    again = runner(redis, table(100), batch_size=30)
    progress = await again.run_once()
    assert (progress.read, progress.published, progress.duplicates) == (70, 40, 30)  # replayed
    assert await redis.xlen(STREAM) == 100


async def test_batches_are_bounded_and_each_is_checkpointed_before_the_next(
    redis: Redis,
) -> None:
    adapter = runner(redis, table(25), batch_size=10)
    await adapter.run_once()

    source = adapter.source
    assert isinstance(source, ListSource)
    assert source.sizes == [10, 10, 5]
    assert source.seen_before_batch == [None, 9, 19]
    assert await RedisCheckpoints(redis).load("test") == 24


async def test_batches_larger_than_a_script_call_reach_the_stream_in_source_order(
    redis: Redis,
) -> None:
    # A batch of 250 is three publish_batch.lua calls (at most 100 events each): the stream
    # keeps the source's order, and each batch is checkpointed once.
    adapter = runner(redis, table(600), batch_size=250)
    progress = await adapter.run_once()

    assert (progress.read, progress.published) == (600, 600)
    ids = [f[b"id"].decode() for _, f in await redis.xrange(STREAM)]
    expected = [record_event_id(URN, "daftar", Record(str(i), "1", i, {})) for i in range(600)]
    assert ids == expected
    source = adapter.source
    assert isinstance(source, ListSource)
    assert source.seen_before_batch == [None, 249, 499]  # one checkpoint per batch


async def test_bad_records_are_quarantined_and_counted_without_blocking_the_rest(
    redis: Redis,
) -> None:
    rows = table(10)
    rows[2] = {**rows[2], "nik": "12345"}  # fails the contract
    rows[5] = {**rows[5], "kind": "boom"}  # the mapper raises
    rows.insert(7, dict(rows[6]))  # the same fact twice: published once
    rows.insert(8, {**rows[6], "nik": "3573014107999999"})  # same key, other payload
    seen: list[Progress] = []

    with capture_logs() as logs:
        progress = await runner(redis, rows, on_progress=seen.append).run_once()

    assert (progress.read, progress.published, progress.duplicates, progress.quarantined) == (
        12,
        8,
        1,
        3,
    )
    assert seen[-1] == progress
    entries = await Quarantine(redis, "test").entries()
    assert [(e.record_key, e.problems[0].field) for e in entries] == [
        ("2", "nik"),
        ("5", "(record)"),
        ("6", "(record)"),
    ]
    assert "KeyError" in entries[1].problems[0].problem
    batch_logs = [log for log in logs if log["event"] == "adapter_batch_published"]
    assert batch_logs[-1]["quarantined"] == 3 and batch_logs[-1]["published"] == 8
    assert not any("12345" in str(log) or "3573014107" in str(log) for log in logs)


async def test_a_configuration_error_in_the_mapper_stops_the_run_instead_of_quarantining(
    redis: Redis,
) -> None:
    def misconfigured(record: Record) -> Contract:
        raise ConfigurationError("the pseudonym key is missing")

    with pytest.raises(ConfigurationError):
        await runner(redis, table(3), mapper=misconfigured).run_once()
    assert await Quarantine(redis, "test").count() == 0
    assert await RedisCheckpoints(redis).load("test") is None


async def test_a_record_without_key_or_version_is_quarantined(redis: Redis) -> None:
    rows = [{"key": "", "nik": "3573014107000001"}, *table(2)]
    progress = await runner(redis, rows).run_once()
    assert (progress.published, progress.quarantined) == (2, 1)
    (entry,) = await Quarantine(redis, "test").entries()
    assert "stable event id" in entry.problems[0].problem


async def test_a_record_the_mapper_says_is_no_event_is_skipped_and_passed(redis: Redis) -> None:
    def no_deletes(record: Record) -> Contract | None:
        return None if record.data.get("deleted") else died(record)

    rows = table(4)
    rows[1] = {**rows[1], "deleted": True}
    progress = await runner(redis, rows, mapper=no_deletes).run_once()

    assert (progress.read, progress.published, progress.skipped, progress.quarantined) == (
        4,
        3,
        1,
        0,
    )
    assert await redis.xlen(STREAM) == 3
    assert await RedisCheckpoints(redis).load("test") == 3
