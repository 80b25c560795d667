"""The source-kind contract for the commit-safe outbox on PostgreSQL (txid order), and the
outbox DDL a DBA installs.

A replay is the checkpoint reset: the next pass reads the outbox again from the start.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psycopg
from redis.asyncio import Redis

from adapters import dukcapil
from adapters.dukcapil.fixtures import as_params, rows
from adapters.dukcapil.schema import insert_sql
from bus.adapter.checkpoint import RedisCheckpoints
from bus.adapter.sources.sql import PostgresDatabase, SqlSource, outbox_ddl
from tests.adapters import siak_cdc
from tests.adapters.contract import check_kind
from tests.adapters.test_commit_order import outbox
from tests.adapters.test_dukcapil import load_postgres


@dataclass
class TxidOutboxKind:
    url: str
    redis: Redis
    name: str = "postgresql txid outbox"
    adapter: str = dukcapil.NAME
    streams: tuple[str, ...] = ("dukcapil.citizen",)
    inserted: set[tuple[Any, Any]] = field(default_factory=set)

    def good(self, count: int, *, seed: int) -> list[Any]:
        return list(rows(count, seed=seed, first_id=seed * 1_000))

    def bad(self) -> Any:
        row = next(rows(1, seed=99, first_id=99_000))
        return {**row, "nik": row["nik"][:15]}

    def corrected(self, record: Any) -> Any:
        return {**record, "versi": record["versi"] + 1, "alamat": "Jl. Ijen No. 1, Malang"}

    async def feed(self, records: list[Any]) -> None:
        new = [r for r in records if (r["id_peristiwa"], r["versi"]) not in self.inserted]
        if len(new) < len(records):
            await RedisCheckpoints(self.redis).reset(self.adapter)
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.cursor().executemany(
                insert_sql("postgresql"),  # type: ignore[arg-type]
                [as_params(r, "postgresql") for r in new],
            )
        self.inserted |= {(r["id_peristiwa"], r["versi"]) for r in new}

    async def settle(self) -> None:
        await siak_cdc.over(self.redis, outbox(self.url, txid_column="txid")).run_once()


async def test_the_txid_outbox_honours_the_source_contract(postgres_url: str, redis: Redis) -> None:
    load_postgres(postgres_url, [])
    await check_kind(TxidOutboxKind(postgres_url, redis), redis)


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
