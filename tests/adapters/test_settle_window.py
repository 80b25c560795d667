"""The settle window over a change column that holds whole seconds (a PHP app's DATETIME).

The promise (docs/adapters/mysql.md, docs/writing-an-adapter.md): a transaction that commits
within ``settle`` seconds of stamping its rows is never skipped. A DATETIME without fractional
seconds (``ON UPDATE CURRENT_TIMESTAMP``, PHP's ``date('Y-m-d H:i:s')``) stores a stamp up to
a second earlier than the moment it stands for, so a window measured from the stored value is
up to a second shorter than the one promised.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime

import pymysql
from pymysql.connections import Connection

from bus.adapter import MySqlDatabase, MySqlSource
from bus.adapter.records import Position
from tests.conftest import mysql_connect

SETTLE = 2.0


def stamp_now() -> datetime:
    """What the application writes: the wall clock, to the second (UTC here)."""
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)


async def sleep_until(moment: float) -> None:
    await asyncio.sleep(max(0.0, moment - time.time()))


async def read(source: MySqlSource, after: Position) -> tuple[list[str], Position]:
    keys: list[str] = []
    async for batch in source.batches(after, size=100):
        keys += [r.key for r in batch]
        after = batch[-1].position
    return keys, after


async def test_a_transaction_shorter_than_the_window_is_read_though_its_stamp_is_whole_seconds(
    mysql_url: str,
) -> None:
    with mysql_connect(mysql_url) as conn, conn.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE pencaker (id BIGINT AUTO_INCREMENT PRIMARY KEY, versi INT, "
            "tgl_update DATETIME NOT NULL, INDEX (tgl_update, id))"
        )
        cursor.execute("INSERT INTO pencaker (versi, tgl_update) VALUES (1, '2026-01-01')")
    source = MySqlSource.by_change_column(
        MySqlDatabase(mysql_url),
        table="pencaker",
        change_column="tgl_update",
        primary_key="id",
        version="versi",
        settle=SETTLE,
    )
    slow: Connection = mysql_connect(mysql_url, autocommit=False)  # type: ignore[type-arg]
    try:
        seen, after = await read(source, None)
        assert seen == ["1"]
        # Late in a second, so the stored stamp is ~0.7 s older than the moment it stands for.
        await sleep_until(time.time() + (0.7 - time.time() % 1) % 1)
        stamped = time.time()
        stamp = stamp_now()
        with slow.cursor() as cursor:  # A: stamps its row and stays open a moment
            cursor.execute("INSERT INTO pencaker (versi, tgl_update) VALUES (1, %s)", (stamp,))
        with mysql_connect(mysql_url) as fast, fast.cursor() as cursor:  # B: same second, commits
            cursor.execute("INSERT INTO pencaker (versi, tgl_update) VALUES (1, %s)", (stamp,))
        # A pass once the stored stamp is SETTLE old, but A's moment is not yet.
        await sleep_until(stamp.replace(tzinfo=UTC).timestamp() + SETTLE + 0.05)
        first, after = await read(source, after)
        slow.commit()
        committed_after = time.time() - stamped
        assert committed_after < SETTLE, "the machine was too slow to test anything"
        await asyncio.sleep(SETTLE + 1.2)
        later, after = await read(source, after)
    finally:
        with contextlib.suppress(pymysql.err.Error):
            slow.close()
        await source.db.close()
    assert sorted(first + later) == ["2", "3"], (
        f"A committed {committed_after:.1f} s after stamping, inside the {SETTLE} s window, "
        f"so it must be read: first pass {first}, later {later}"
    )
