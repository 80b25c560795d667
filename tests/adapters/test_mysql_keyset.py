"""Polling MariaDB by a change column reads each batch from its position in the index, not from
the start of the table: a backfill's server work stays linear in the rows."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from bus.adapter.sources.mysql import MySqlDatabase, MySqlSource
from tests.conftest import mysql_connect

ROWS, SIZE = 600, 50


class Counting(MySqlDatabase):
    """Counts the index entries MariaDB reads for each batch query (its session's
    Handler_read_next, on the source's own connection)."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.reads: list[int] = []

    async def fetch(self, sql: str, params: Sequence[Any]) -> list[dict[str, Any]]:
        if not sql.startswith("SELECT * "):
            return await super().fetch(sql, params)
        before = await self._handler_reads()
        rows = await super().fetch(sql, params)
        self.reads.append(await self._handler_reads() - before)
        return rows

    async def _handler_reads(self) -> int:
        [row] = await super().fetch("SHOW SESSION STATUS LIKE 'Handler_read_next'", [])
        return int(row["Value"])


async def test_each_batch_reads_the_index_from_its_position(mysql_url: str) -> None:
    start = datetime(2026, 1, 5, 8, 0, 0)
    with mysql_connect(mysql_url) as conn, conn.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE peristiwa (no_urut INT PRIMARY KEY, updated_at DATETIME(6), "
            "versi INT, INDEX perubahan (updated_at, no_urut))"
        )
        cursor.executemany(
            "INSERT INTO peristiwa VALUES (%s, %s, 1)",
            # Two rows per stamp: the position's second column decides within a stamp.
            [(n, start + timedelta(seconds=n // 2)) for n in range(1, ROWS + 1)],
        )
    db = Counting(mysql_url)
    source = MySqlSource.by_change_column(
        db, table="peristiwa", change_column="updated_at", primary_key="no_urut", version="versi"
    )
    halfway = [(start + timedelta(seconds=150)).isoformat(), 301]  # after row 301
    try:
        keys = [r.key async for batch in source.batches(halfway, size=SIZE) for r in batch]
    finally:
        await source.close()
    assert keys == [str(n) for n in range(302, ROWS + 1)]
    # A batch reads its rows and one more; reading from the start of the index instead read
    # ~300 more for the first batch here (and the whole table by the end of a backfill).
    assert db.reads and max(db.reads) <= SIZE + 1, db.reads
