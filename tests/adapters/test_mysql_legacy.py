"""The charset and type traps of legacy PHP/MySQL apps, read the same by polling and binlog.

A PHP app of the 2000s talks to MySQL over a latin1 connection and sends UTF-8: the bytes land
unchanged in latin1 columns. It stores "no date" as 0000-00-00, zero-pads its ids (ZEROFILL) and
spells booleans TINYINT(1). Both sources must hand the mapper what the application meant.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bus.adapter import Position, Record
from bus.adapter.sources.binlog import BinlogSource
from bus.adapter.sources.mysql import MySqlDatabase, MySqlSource
from tests.conftest import mysql_connect

TABLE = """
CREATE TABLE penduduk (
    id      INT(6) ZEROFILL PRIMARY KEY,
    nama    VARCHAR(60) CHARACTER SET latin1,
    aktif   TINYINT(1),
    tgl     DATE,
    versi   INT,
    catatan BLOB
) ENGINE=InnoDB DEFAULT CHARSET=latin1
"""

# What the PHP app meant, and what it stored: UTF-8 bytes through a latin1 connection, except
# for a row written by a latin1-clean client ("Café" as the single byte E9).
MEANT = [
    {"id": "000042", "nama": "Désa Ngijo Ájí", "aktif": True, "tgl": None, "versi": 1},
    {"id": "000043", "nama": "Café", "aktif": False, "tgl": None, "versi": 1},
    {"id": "000044", "nama": "Siti Aminah", "aktif": True, "tgl": "2026-02-03", "versi": 1},
]


def write_like_php(url: str, first_id: int) -> None:
    """Rows ``first_id``.. as the app writes them: the bytes of its text reach the latin1 column
    unconverted (a hex literal stores exactly those bytes, as PHP's latin1 connection does)."""
    rows = [
        (first_id, "Désa Ngijo Ájí".encode(), 1, "0000-00-00"),
        (first_id + 1, "Café".encode("latin1"), 0, "0000-00-00"),
        (first_id + 2, b"Siti Aminah", 1, "2026-02-03"),
    ]
    with mysql_connect(url) as conn, conn.cursor() as cursor:
        for id, name, active, day in rows:
            cursor.execute(
                "INSERT INTO penduduk (id, nama, aktif, tgl, versi, catatan) "
                f"VALUES (%s, x'{name.hex()}', %s, %s, 1, x'00ff')",
                (id, active, day),
            )


def meant(first_id: int) -> list[dict[str, Any]]:
    return [{**m, "id": f"{first_id + i:06d}"} for i, m in enumerate(MEANT)]


def shown(records: Sequence[Record]) -> list[dict[str, Any]]:
    keys = ("id", "nama", "aktif", "tgl", "versi")
    return [
        {
            k: (v.isoformat() if hasattr(v, "isoformat") else v)
            for k, v in r.data.items()
            if k in keys
        }
        for r in records
    ]


async def read_all(source: Any, after: Position) -> list[Record]:
    records: list[Record] = []
    async for batch in source.batches(after, size=2):
        records += batch
    return records


def create(url: str) -> None:
    with mysql_connect(url) as conn, conn.cursor() as cursor:
        cursor.execute(TABLE)


async def test_polling_reads_latin1_utf8_zero_dates_zerofill_and_tinyint_as_meant(
    mysql_url: str,
) -> None:
    create(mysql_url)
    write_like_php(mysql_url, 42)
    source = MySqlSource.by_change_column(
        MySqlDatabase(mysql_url),
        table="penduduk",
        change_column="id",
        primary_key="id",
        version="versi",
        settle=0,  # an id, not a time: this test is about decoding values
    )
    try:
        records = await read_all(source, None)
    finally:
        await source.close()
    assert shown(records) == meant(42)
    assert [r.key for r in records] == ["000042", "000043", "000044"]
    assert records[0].data["catatan"] == b"\x00\xff", "binary columns stay bytes"


async def test_the_binlog_source_reads_the_same_values_in_its_snapshot_and_its_stream(
    mysql_url: str,
) -> None:
    create(mysql_url)
    write_like_php(mysql_url, 42)  # before the source starts: read by the snapshot
    source = BinlogSource(mysql_url, table="penduduk", key="id", version="versi", wait=0.2)
    try:
        snapshot = await read_all(source, None)
        write_like_php(mysql_url, 100)  # afterwards: read from the binlog
        streamed = await read_all(source, snapshot[-1].position)
    finally:
        await source.close()
    assert shown(snapshot) == meant(42)
    assert [r.change for r in snapshot] == [None, None, None], "a snapshot cannot tell"
    assert shown(streamed) == meant(100)
    assert [r.change for r in streamed] == ["insert", "insert", "insert"]
    assert streamed[0].data["catatan"] == b"\x00\xff"
