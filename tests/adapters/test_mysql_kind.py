"""The source-kind contract for MySQL/MariaDB: polling, and the row binlog (change-data-capture).

Both run the SIAK adapter over the ``peristiwa`` table on the private MariaDB. A replay is the
adapter reading again what it published: the checkpoint is reset, so the polling source re-reads
the table and the binlog source takes a new snapshot; the ids are the same, nothing is added.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pymysql.constants import CLIENT
from redis.asyncio import Redis

from adapters import dukcapil
from adapters.dukcapil.fixtures import as_params, rows
from adapters.dukcapil.schema import ddl, insert_sql
from bus.adapter.checkpoint import RedisCheckpoints
from tests.adapters.contract import check_kind
from tests.adapters.test_dukcapil import KEY
from tests.conftest import mysql_connect


def create_mysql(url: str) -> None:
    """The SIAK tables, as one script (the column comments hold semicolons)."""
    conn = mysql_connect(url, client_flag=CLIENT.MULTI_STATEMENTS)
    with conn, conn.cursor() as cursor:
        cursor.execute(ddl("mysql"))
        while cursor.nextset():
            pass


def insert_mysql(url: str, data: list[dict[str, Any]]) -> None:
    with mysql_connect(url) as conn, conn.cursor() as cursor:
        cursor.executemany(insert_sql("mysql"), [as_params(r, "mysql") for r in data])


@dataclass
class MySqlKind:
    """Feeding inserts rows (or resets the checkpoint for rows already there); settling is one
    pass of a freshly built adapter, as a restarted process would run it."""

    url: str
    redis: Redis
    binlog: bool
    name: str = "mysql"
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
        stamped = [{**r, "updated_at": self._now()} for r in new]
        insert_mysql(self.url, stamped)
        self.inserted |= {(r["id_peristiwa"], r["versi"]) for r in new}

    def _now(self) -> datetime:
        self.clock += timedelta(seconds=1)
        return self.clock

    async def settle(self) -> None:
        runner = dukcapil.adapter(self.redis, self.url, pseudonym_key=KEY, cdc=self.binlog)
        try:
            await runner.run_once()
        finally:
            await runner.source.close()  # type: ignore[attr-defined]


async def test_mysql_polling_honours_the_source_contract(mysql_url: str, redis: Redis) -> None:
    create_mysql(mysql_url)
    await check_kind(MySqlKind(mysql_url, redis, binlog=False), redis)


async def test_the_mysql_binlog_source_honours_the_source_contract(
    mysql_url: str, redis: Redis
) -> None:
    create_mysql(mysql_url)
    await check_kind(MySqlKind(mysql_url, redis, binlog=True), redis)
