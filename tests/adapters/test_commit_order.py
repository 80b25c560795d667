"""Transactions that commit out of order against their ids and stamps, on a real PostgreSQL
(and, for a stamp the application takes before it writes, on SQLite).

Polling by a high-water mark skips a row whose transaction commits after a later row was read;
these tests show the hole with one deterministic interleaving, then show change-data-capture,
the txid outbox and the settle window delivering the same interleaving, and CDC and the txid
outbox delivering 8 concurrent writers' row versions exactly once, the latest version last.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from redis.asyncio import Redis

from adapters import dukcapil
from adapters.dukcapil.fixtures import as_params, create_sqlite, rows
from adapters.dukcapil.schema import insert_sql
from bus.adapter import Adapter
from bus.adapter.sources.sql import PostgresDatabase, SqliteDatabase, SqlSource
from bus.testing import capture_logs
from tests.adapters import siak_cdc
from tests.adapters.test_dukcapil import load_postgres
from tests.adapters.writers import (
    assert_each_version_once_latest_last,
    now_wib,
    published,
    write_concurrently,
)

COMMON: dict[str, Any] = {
    "version": "versi",
    "time_column": "updated_at",
    "naive_timezone": dukcapil.WIB,
}


@pytest.fixture
def siak(postgres_url: str) -> str:
    load_postgres(postgres_url, [])
    return postgres_url


@pytest.fixture
def slot(postgres_url: str) -> Iterator[str]:
    yield from siak_cdc.slot_fixture(postgres_url)


def change_column(url: str, settle: float | None) -> SqlSource:
    return SqlSource.by_change_column(
        PostgresDatabase(url),
        table="peristiwa",
        change_column="updated_at",
        primary_key="no_urut",
        key="id_peristiwa",
        settle=settle,
        **COMMON,
    )


def outbox(url: str, txid_column: str | None) -> SqlSource:
    return SqlSource.by_outbox(
        PostgresDatabase(url),
        outbox_table="peristiwa_outbox",
        outbox_id="no_outbox",
        key="id_peristiwa",
        name="peristiwa",
        txid_column=txid_column,
        **COMMON,
    )


async def interleave(
    url: str, runner: Adapter, *, hold: float = 0.0, wait: float = 0.0
) -> list[int]:
    """A inserts row 1 and stays open; B inserts row 2 (later stamp, later ids) and commits;
    (``hold`` seconds;) a pass; A commits; (``wait`` seconds;) a pass. The ids published, in
    order."""
    first, second = rows(2, seed=5, first_id=1)
    a = await psycopg.AsyncConnection.connect(url)
    b = await psycopg.AsyncConnection.connect(url, autocommit=True)
    try:
        stamp = now_wib()
        row = as_params({**first, "updated_at": stamp}, "postgresql")
        await a.execute(insert_sql("postgresql"), row)  # type: ignore[arg-type]
        later = {**second, "updated_at": stamp + timedelta(milliseconds=1)}
        await b.execute(insert_sql("postgresql"), as_params(later, "postgresql"))  # type: ignore[arg-type]
        await asyncio.sleep(hold)
        await runner.run_once()
        await a.commit()
        await asyncio.sleep(wait)
        await runner.run_once()
    finally:  # an open transaction would block dropping the test's schema
        await a.close()
        await b.close()
    stream = await published(runner.publisher.redis, [(1, 1), (2, 1)])
    return [key for key, _ in stream]


async def test_plain_change_column_polling_skips_a_row_that_commits_late(
    siak: str, redis: Redis
) -> None:
    assert await interleave(siak, siak_cdc.over(redis, change_column(siak, settle=0))) == [2]


async def test_plain_outbox_polling_skips_a_row_that_commits_late(siak: str, redis: Redis) -> None:
    assert await interleave(siak, siak_cdc.over(redis, outbox(siak, txid_column=None))) == [2]


async def test_the_txid_outbox_reads_both_rows_in_commit_safe_order(
    siak: str, redis: Redis
) -> None:
    assert await interleave(siak, siak_cdc.over(redis, outbox(siak, txid_column="txid"))) == [1, 2]


async def test_the_settle_window_reads_both_rows_once_they_are_older_than_it(
    siak: str, redis: Redis
) -> None:
    runner = siak_cdc.over(redis, change_column(siak, settle=1.0))
    assert await interleave(siak, runner, wait=1.2) == [1, 2]


async def test_change_data_capture_reads_both_rows_in_commit_order(
    siak: str, slot: str, redis: Redis
) -> None:
    runner = siak_cdc.adapter(redis, siak, slot)
    await runner.run_once()  # the (empty) snapshot: the slot exists before the writers start
    assert await interleave(siak, runner) == [2, 1]
    await runner.source.close()  # type: ignore[attr-defined]


async def test_a_transaction_longer_than_the_settle_window_is_logged_as_committed_late(
    siak: str, redis: Redis
) -> None:
    runner = siak_cdc.over(redis, change_column(siak, settle=0.3))
    with capture_logs() as logs:
        await runner.run_once()
        published_ids = await interleave(siak, runner, hold=0.5)
        await runner.run_once()
    late = [e for e in logs if e["event"] == "source_row_committed_late"]
    assert published_ids == [2], "row 1 committed after the window passed it"
    assert [e["rows"] for e in late] == [1]


async def concurrently(runner: Adapter, url: str, *, seed: int) -> None:
    stop = asyncio.Event()
    polling = asyncio.create_task(runner.run(poll_interval=0.05, stop=stop))
    committed = await write_concurrently(url, writers=8, transactions=100, seed=seed)
    await asyncio.sleep(0.2)
    stop.set()
    await polling
    await runner.run_once()  # whatever the last pass started too early to see
    stream = await published(runner.publisher.redis, committed)
    assert len(committed) > 1_000
    assert_each_version_once_latest_last(stream, committed)


async def test_eight_concurrent_writers_reach_the_bus_exactly_once_through_cdc(
    siak: str, slot: str, redis: Redis
) -> None:
    runner = siak_cdc.adapter(redis, siak, slot, idle_wait=0.2)
    await runner.run_once()
    await concurrently(runner, siak, seed=1)
    await runner.source.close()  # type: ignore[attr-defined]


async def test_eight_concurrent_writers_reach_the_bus_exactly_once_through_the_txid_outbox(
    siak: str, redis: Redis
) -> None:
    await concurrently(siak_cdc.over(redis, outbox(siak, txid_column="txid")), siak, seed=2)


def test_the_safe_modes_are_the_defaults_on_postgresql_and_sqlite_needs_none(
    postgres_url: str, tmp_path: Path
) -> None:
    by_change = change_column(postgres_url, settle=None)
    assert by_change.settle == 5.0
    by_outbox = SqlSource.by_outbox(
        PostgresDatabase(postgres_url),
        outbox_table="o",
        outbox_id="no",
        key="k",
        version="v",
        name="t",
    )
    assert by_outbox.order_by == ("txid", "no") and by_outbox.committed_txid == "txid"
    single_writer = SqliteDatabase(tmp_path / "app.db")
    assert (
        SqlSource.by_change_column(
            single_writer, table="t", change_column="c", primary_key="id", version="v"
        ).settle
        == 0
    )
    assert SqlSource.by_outbox(
        single_writer, outbox_table="o", outbox_id="no", key="k", version="v", name="t"
    ).order_by == ("no",)


async def test_on_sqlite_a_stamp_taken_before_another_writer_commits_is_behind_the_mark(
    tmp_path: Path,
) -> None:
    """SQLite has one writer at a time, so ids (the outbox's) are taken in commit order; but a
    stamp the application takes before its write (a PHP request's ``$now``) is not: a writer
    that stamps, then loses the race for the write lock, commits a row behind the mark."""
    path = tmp_path / "siak.db"
    create_sqlite(path)
    sources = {
        "change column": dukcapil.source(SqliteDatabase(path)),
        "outbox": dukcapil.source(SqliteDatabase(path), outbox=True),
    }
    read: dict[str, list[str]] = {name: [] for name in sources}
    after: dict[str, Any] = dict.fromkeys(sources)

    async def poll() -> None:
        for name, source in sources.items():
            async for batch in source.batches(after[name], size=100):
                read[name] += [r.key for r in batch]
                after[name] = batch[-1].position

    first, second = rows(2, seed=5, first_id=1)
    a, b = sqlite3.connect(path), sqlite3.connect(path)
    try:
        stamp = now_wib()  # A's request takes its clock, then does other work
        later = {**second, "updated_at": stamp + timedelta(milliseconds=1)}
        b.execute(insert_sql("sqlite"), as_params(later, "sqlite"))  # B writes and commits
        b.commit()
        await poll()
        a.execute(insert_sql("sqlite"), as_params({**first, "updated_at": stamp}, "sqlite"))
        a.commit()
        await poll()
    finally:
        a.close()
        b.close()
        for source in sources.values():
            await source.db.close()
    assert read == {"change column": ["2"], "outbox": ["2", "1"]}
