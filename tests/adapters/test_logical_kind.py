"""The source-kind contract for PostgreSQL change-data-capture, through the SIAK adapter.

Feeding inserts rows. A replay is the checkpoint lost or reset: the next run takes a new
snapshot of the table, whose rows map to the event ids they had (the publisher drops them).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest
from redis.asyncio import Redis

from adapters import dukcapil
from adapters.dukcapil.fixtures import as_params, rows
from adapters.dukcapil.schema import insert_sql
from bus.adapter.checkpoint import RedisCheckpoints
from tests.adapters import siak_cdc
from tests.adapters.contract import check_kind
from tests.adapters.test_dukcapil import load_postgres


@pytest.fixture
def slot(postgres_url: str) -> Iterator[str]:
    yield from siak_cdc.slot_fixture(postgres_url)


@dataclass
class LogicalKind:
    url: str
    slot: str
    redis: Redis
    name: str = "postgresql logical decoding"
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
        runner = siak_cdc.adapter(self.redis, self.url, self.slot)
        try:
            await runner.run_once()
        finally:
            await runner.source.close()  # type: ignore[attr-defined]


async def test_logical_decoding_honours_the_source_contract(
    postgres_url: str, slot: str, redis: Redis
) -> None:
    load_postgres(postgres_url, [])
    await check_kind(LogicalKind(postgres_url, slot, redis), redis)
