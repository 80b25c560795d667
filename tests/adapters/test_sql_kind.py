"""The source-kind contract for SQL polling, through the SIAK adapter over SQLite.

A replay in SQL terms is the adapter reading rows it has published already: the checkpoint is
lost or reset and the next pass re-reads the table. Feeding records that are already in the
table does exactly that (re-inserting them would instead be new rows with the same id and
version, which the publisher also drops: both are idempotent).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from adapters import dukcapil
from adapters.dukcapil.fixtures import as_params, create_sqlite, rows
from adapters.dukcapil.schema import insert_sql
from bus.adapter.checkpoint import RedisCheckpoints
from tests.adapters.contract import check_kind
from tests.adapters.test_dukcapil import KEY


@dataclass
class SqlKind:
    """Feeding inserts rows (or resets the checkpoint for rows already there); settling is one
    polling pass."""

    db: Path
    redis: Redis
    name: str = "sql"
    adapter: str = dukcapil.NAME
    streams: tuple[str, ...] = ("dukcapil.citizen",)
    inserted: set[tuple[Any, Any]] = field(default_factory=set)
    clock: datetime = datetime(2026, 6, 1, 8, 0)

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
        # The legacy app stamps what it writes with its clock: later writes, later updated_at.
        stamped = [{**r, "updated_at": self._now()} for r in new]
        with sqlite3.connect(self.db) as conn:
            conn.executemany(insert_sql("sqlite"), [as_params(r, "sqlite") for r in stamped])
        conn.close()
        self.inserted |= {(r["id_peristiwa"], r["versi"]) for r in new}

    def _now(self) -> datetime:
        self.clock += timedelta(seconds=1)
        return self.clock

    async def settle(self) -> None:
        await dukcapil.adapter(self.redis, self.db, pseudonym_key=KEY).run_once()


async def test_sql_polling_honours_the_source_contract(tmp_path: Path, redis: Redis) -> None:
    create_sqlite(tmp_path / "siak.db")
    await check_kind(SqlKind(tmp_path / "siak.db", redis), redis)
