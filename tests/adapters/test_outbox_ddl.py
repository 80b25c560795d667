"""The outbox DDL a DBA installs, read by the commit-safe outbox mode (txid order). The
source-kind contract of that mode runs with the other SIAK kinds (test_siak_kinds.py)."""

from __future__ import annotations

import psycopg

from bus.adapter.sources.sql import PostgresDatabase, SqlSource, outbox_ddl


async def test_the_printed_outbox_ddl_installs_an_outbox_the_safe_mode_reads(
    postgres_url: str,
) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE izin (id int PRIMARY KEY, versi int, nama text)")
        conn.execute(outbox_ddl("izin"))  # type: ignore[arg-type]
        conn.execute("INSERT INTO izin VALUES (1, 1, 'a'), (2, 1, 'b')")
        conn.execute("UPDATE izin SET versi = 2 WHERE id = 1")
    source = SqlSource.by_outbox(
        PostgresDatabase(postgres_url),
        outbox_table="izin_outbox",
        outbox_id="outbox_id",
        key="id",
        version="versi",
        name="izin",
    )
    records = [r async for batch in source.batches(None, size=10) for r in batch]
    assert [(r.key, r.version) for r in records] == [("1", "1"), ("2", "1"), ("1", "2")]
    assert records[0].position[0] < records[2].position[0], "positions are (txid, outbox_id)"
