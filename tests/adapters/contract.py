"""One contract every kind of adapter source must honour (SQL polling, webhook, CSV drop folder).

Each kind provides a :class:`Kind` harness over its own reference adapter; ``check_kind`` runs
the same scenario against it on real Redis: good records become exactly one event each, a
replay adds nothing, a bad record lands in the quarantine with its reason while the rest
flows, and a record seen again in a new version is a new event.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

import psycopg
from pymysql.constants import CLIENT
from redis.asyncio import Redis

from adapters import dukcapil
from adapters.dukcapil.fixtures import as_params, rows
from adapters.dukcapil.schema import ddl, insert_sql
from bus import keys
from bus.adapter import Adapter
from bus.adapter.checkpoint import RedisCheckpoints
from tests.conftest import mysql_connect


class Kind(Protocol):
    """A source kind wired to its reference adapter, over one real Redis."""

    name: str  # "sqlite polling", "webhook", "csv", ...
    adapter: str  # the adapter's name: its quarantine and checkpoint
    streams: tuple[str, ...]  # the aggregate streams its events land on

    def good(self, count: int, *, seed: int) -> list[Any]:
        """``count`` legacy records that map, each with a distinct key (version 1)."""

    def bad(self) -> Any:
        """One legacy record that cannot map (e.g. a 15-digit NIK)."""

    def corrected(self, record: Any) -> Any:
        """The same record in its next version (a correction in the legacy app)."""

    async def feed(self, records: list[Any]) -> None:
        """Put records where the adapter reads them (rows, a CSV file, webhook POSTs)."""

    async def settle(self) -> None:
        """Let the adapter process everything fed so far (a pass, a folder scan, nothing)."""


async def _events(redis: Redis, kind: Kind) -> list[bytes]:
    ids = []
    for aggregate in kind.streams:
        ids += [fields[b"id"] for _, fields in await redis.xrange(keys.stream(aggregate))]
    return ids


async def check_kind(kind: Kind, redis: Redis) -> None:
    records = kind.good(20, seed=11)
    await kind.feed(records)
    await kind.settle()
    first = await _events(redis, kind)
    assert len(first) == len(set(first)) == 20, f"{kind.name}: one event per record"

    await kind.feed(records)  # the legacy app sends (or exports) the same records again
    await kind.settle()
    assert await _events(redis, kind) == first, f"{kind.name}: a replay publishes nothing"

    await kind.feed([kind.bad(), *kind.good(3, seed=12)])
    await kind.settle()
    assert len(await _events(redis, kind)) == 23, f"{kind.name}: the good ones flow past a bad one"
    assert await redis.xlen(keys.quarantine(kind.adapter)) == 1, f"{kind.name}: bad one quarantined"

    await kind.feed([kind.corrected(records[0])])
    await kind.settle()
    assert len(await _events(redis, kind)) == 24, f"{kind.name}: a new version is a new event"


# -- the SIAK kinds: one harness for every source over the SIAK table ----------------------------
#
# SQLite and MariaDB polling, the MariaDB row binlog, the PostgreSQL txid outbox and PostgreSQL
# logical decoding all read the SIAK ``peristiwa`` table through the dukcapil mapper; they differ
# only in where rows are written and which source a pass runs. A replay is the adapter reading
# again what it published: the checkpoint is reset, so a polling source re-reads the table, an
# outbox its rows, a CDC source takes a new snapshot; the ids are the same, nothing is added.


def create_mysql(url: str) -> None:
    """The SIAK tables on MySQL/MariaDB, as one script (the column comments hold semicolons)."""
    conn = mysql_connect(url, client_flag=CLIENT.MULTI_STATEMENTS)
    with conn, conn.cursor() as cursor:
        cursor.execute(ddl("mysql"))
        while cursor.nextset():
            pass


def insert_mysql(url: str, data: list[dict[str, Any]]) -> None:
    with mysql_connect(url) as conn, conn.cursor() as cursor:
        cursor.executemany(insert_sql("mysql"), [as_params(r, "mysql") for r in data])


def insert_postgres(url: str, data: list[dict[str, Any]]) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.cursor().executemany(
            insert_sql("postgresql"),  # type: ignore[arg-type]
            [as_params(r, "postgresql") for r in data],
        )


def insert_sqlite(path: str, data: list[dict[str, Any]]) -> None:
    with sqlite3.connect(path) as conn:
        conn.executemany(insert_sql("sqlite"), [as_params(r, "sqlite") for r in data])
    conn.close()


@dataclass
class SiakKind:
    """Feeding inserts rows (or resets the checkpoint for rows already there); settling is one
    pass of a freshly built adapter (``runner``), as a restarted process would run it.
    ``stamp``: the legacy app stamps what it writes with its clock (later writes, later
    ``updated_at``), which a change-column poller orders by."""

    name: str
    redis: Redis
    insert: Callable[[list[dict[str, Any]]], None]
    runner: Callable[[], Adapter]
    stamp: bool = False
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
        if self.stamp:
            new = [{**r, "updated_at": self._now()} for r in new]
        self.insert(new)
        self.inserted |= {(r["id_peristiwa"], r["versi"]) for r in new}

    def _now(self) -> datetime:
        self.clock += timedelta(seconds=1)
        return self.clock

    async def settle(self) -> None:
        runner = self.runner()
        try:
            await runner.run_once()
        finally:
            source: Any = runner.source  # a log source closes itself; a polling one its db
            await (source.close() if hasattr(source, "close") else source.db.close())
