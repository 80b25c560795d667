"""``Adapter.run`` rides out a real Redis outage: Redis SIGKILLed and restarted on the same
port while an adapter polls a SQLite table that keeps growing. redis-py's own errors, not a
simulated RedisUnavailable: the runner must keep polling, say why its passes failed, and
publish every row once."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from datetime import date
from pathlib import Path

import pytest

from bus import Publisher
from bus.adapter import Adapter, Record, record_event_id
from bus.adapter.checkpoint import RedisCheckpoints
from bus.adapter.quarantine import Quarantine
from bus.adapter.sources.sql import SqliteDatabase, SqlSource
from bus.connection import connect
from bus.contracts import Contract
from bus.local.redis import EmbeddedRedis
from bus.testing import capture_logs, wait_until
from schemas.dukcapil import CitizenDied

pytestmark = pytest.mark.slow

URN = "urn:malangkota:test:legacy"
STREAM = CitizenDied.__contract__.stream
ROWS = 240


def died(record: Record) -> Contract:
    return CitizenDied.parse(
        {"nik": record.data["nik"], "date_of_death": date(2026, 11, 1), "kecamatan": "35.73.02"}
    )


def event_id(n: int) -> str:
    return record_event_id(URN, "daftar", Record(str(n), "1", [n], {}))


def add_rows(path: Path, first: int, count: int) -> None:
    with sqlite3.connect(path) as conn:
        conn.executemany(
            "INSERT INTO daftar (no, nik, versi) VALUES (?, ?, 1)",
            [(n, f"3573014107{n:06d}") for n in range(first, first + count)],
        )
    conn.close()


async def test_the_adapter_rides_out_redis_killed_and_restarted_and_publishes_every_row_once(
    private_redis: EmbeddedRedis, tmp_path: Path
) -> None:
    # The private Redis keeps an AOF with appendfsync always, as docs/ha.md asks of a
    # production Redis: the stream and the checkpoint survive the SIGKILL together.
    path = tmp_path / "legacy.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE daftar (no INTEGER PRIMARY KEY, nik TEXT, versi INTEGER)")
    conn.close()
    redis = connect(private_redis.url)
    checkpoints = RedisCheckpoints(redis)
    db = SqliteDatabase(path)
    adapter = Adapter(
        "kematian",
        source=SqlSource(db, table="daftar", key="no", version="versi", order_by=["no"]),
        mapper=died,
        publisher=Publisher(redis, source=URN),
        checkpoints=checkpoints,
        quarantine=Quarantine(redis, "kematian"),
        batch_size=20,
    )
    errors: list[str] = []

    async def legacy_app() -> None:  # the department keeps writing through the outage
        for first in range(1, ROWS + 1, 8):
            await asyncio.to_thread(add_rows, path, first, 8)
            await asyncio.sleep(0.05)

    async def watch() -> None:
        while True:
            if adapter.last_error:
                errors.append(adapter.last_error)
            await asyncio.sleep(0.01)

    stop = asyncio.Event()
    with capture_logs() as logs:
        running = asyncio.create_task(adapter.run(poll_interval=0.05, stop=stop))
        watcher = asyncio.create_task(watch())
        writing = asyncio.create_task(legacy_app())
        try:
            await wait_until(lambda: adapter.progress.published >= 60, timeout=30)
            private_redis.kill()  # SIGKILL
            killed_at = time.monotonic()
            # Down long enough for passes to fail (one every 50 ms while Redis answered).
            await wait_until(lambda: bool(errors) or running.done(), timeout=10)
            await asyncio.sleep(0.5)
            await asyncio.to_thread(private_redis.restart)
            down_s = time.monotonic() - killed_at
            # What survived the SIGKILL: a checkpoint never ahead of the stream (read first,
            # the adapter only adds entries meanwhile).
            saved = await checkpoints.load("kematian")
            survived = {fields[b"id"].decode() for _, fields in await redis.xrange(STREAM)}
            assert saved is not None and saved[0] >= 40  # batches of 20 at most
            assert {event_id(n) for n in range(1, saved[0] + 1)} <= survived
            await asyncio.wait_for(writing, 60)
            await wait_until(
                lambda: adapter.progress.position == [ROWS] or running.done(), timeout=60
            )
            assert not running.done(), f"the adapter stopped: {running.exception()!r}"
        finally:
            stop.set()
            watcher.cancel()
            await asyncio.wait_for(asyncio.gather(running, writing, return_exceptions=True), 30)
            await db.close()
    try:
        ids = [fields[b"id"].decode() for _, fields in await redis.xrange(STREAM)]
        assert len(ids) == len(set(ids)), f"{len(ids) - len(set(ids))} rows published twice"
        expected = {event_id(n) for n in range(1, ROWS + 1)}
        assert set(ids) == expected, f"{len(expected - set(ids))} rows missing"
        assert await checkpoints.load("kematian") == [ROWS]
    finally:
        await redis.aclose()
    print(f"Redis down for {down_s:.2f} s; passes failed with: {errors[0]}")
    assert errors, "no pass failed while Redis was down"
    assert all(e.startswith("Redis is unreachable") for e in errors), set(errors)
    failed = [log for log in logs if log["event"] == "adapter_pass_failed"]
    assert failed and all(log["error"].startswith("Redis is unreachable") for log in failed)
    assert not any("3573014107" in str(log) for log in logs)
