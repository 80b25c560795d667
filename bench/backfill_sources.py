"""The sources bench/backfill.py measures besides PostgreSQL polling: each with its table (or
files) filled, a raw loop and the adapter, as child-process functions.

* **sqlite**: the SIAK table in a SQLite file; raw: one cursor ``ORDER BY updated_at, no_urut``.
* **mysql**: the SIAK table in a private MariaDB (``bus.local.mariadb``); the adapter polls it
  by the change column (``MySqlSource``, asyncmy, legacy-value decoding); raw: one unbuffered
  asyncmy cursor (``SSDictCursor``) in the same order.
* **csv**: Bapenda's drop folder (``adapters.bapenda``: three ``;``-separated exports); raw:
  ``csv.DictReader`` over the same files. The adapter moves the files it finished to ``done/``,
  so each adapter run gets a fresh copy of the folder (copied before the child starts).
* **mysql-snapshot**, **postgresql-snapshot**: the change-data-capture sources' initial
  snapshot (``dukcapil.cdc_source``: MariaDB ``START TRANSACTION WITH CONSISTENT SNAPSHOT``,
  PostgreSQL a new slot's exported snapshot), read until every row is published; raw: a cursor
  over the same table in primary-key order. The pass ends after a 0.2 s idle wait on the log,
  which the rate leaves out (it is counted to the stream entry id of the last event).

Every raw loop XADDs each row as JSON with the CloudEvents fields, 500 per pipeline, with no
mapping, no validation, no dedupe and no checkpoint.
"""

from __future__ import annotations

import contextlib
import csv
import json
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bus import keys

SIAK_STREAM = keys.stream("dukcapil.citizen")
PSEUDONYM_KEY = b"bench-pseudonym-key-0123456789abcdef"
NAMES = ("sqlite", "mysql", "csv", "mysql-snapshot", "postgresql-snapshot")
LABELS = {
    "postgresql": "PostgreSQL polling (change column)",
    "sqlite": "SQLite polling (change column)",
    "mysql": "MariaDB polling (change column, asyncmy)",
    "csv": "CSV drop folder (Bapenda exports)",
    "mysql-snapshot": "MariaDB CDC initial snapshot",
    "postgresql-snapshot": "PostgreSQL CDC initial snapshot",
}


def csv_stream() -> str:
    from schemas.bapenda import PaymentReceived  # noqa: PLC0415

    return keys.stream_of(PaymentReceived.__contract__.event_type)


def stream_of(name: str) -> str:
    return csv_stream() if name == "csv" else SIAK_STREAM


@dataclass
class Prepared:
    """A filled source: what the children get as their database argument, and the server's
    pid when it is ours (its CPU is measured)."""

    name: str
    location: str
    rows: int
    pid: int | None = None


@contextlib.contextmanager
def prepared(name: str, rows: int, workdir: Path) -> Iterator[Prepared]:
    """``rows`` synthetic rows in the source ``name``, removed at the end."""
    if name == "sqlite":
        from adapters.dukcapil.fixtures import create_sqlite  # noqa: PLC0415
        from adapters.synthetic import siak_rows  # noqa: PLC0415

        path = workdir / "siak.db"
        create_sqlite(path, siak_rows(rows, seed=1))
        yield Prepared(name, str(path), rows)
        return
    if name == "csv":
        from adapters.bapenda.fixtures import write_drop  # noqa: PLC0415

        folder = workdir / "drop"
        write_drop(folder, rows, files=3, seed=1)
        yield Prepared(name, str(folder), rows)
        return
    from adapters.synthetic import siak_rows  # noqa: PLC0415
    from bench import cdc  # noqa: PLC0415

    kind = "mariadb" if name.startswith("mysql") else "postgresql"
    with cdc.server(kind) as db:
        cdc.insert(db, siak_rows(rows, seed=1), per_txn=5_000)
        yield Prepared(name, db.url, rows, db.pid)


def fresh_copy(prepared: Prepared, workdir: Path) -> str:
    """What one adapter run reads: the CSV folder copied anew (the adapter empties
    ``incoming/``); the source itself otherwise."""
    if prepared.name != "csv":
        return prepared.location
    target = workdir / f"drop-{uuid.uuid4().hex[:8]}"
    shutil.copytree(prepared.location, target)
    return str(target)


def discard_copy(prepared: Prepared, location: str) -> None:
    if prepared.name == "csv" and location != prepared.location:
        shutil.rmtree(location, ignore_errors=True)


# -- the raw loops (children) -------------------------------------------------------------------


def load_modules(name: str) -> None:
    """Import what either side of source ``name`` runs, before its clock starts: the rate is
    the backfill's, not the interpreter's loading of modules (the adapter's contracts and
    pydantic schemas take ~0.2-0.4 s of CPU, a tenth of a 20,000-row run). Both sides import
    the same modules."""
    import importlib  # noqa: PLC0415

    modules = ["redis.asyncio", "bus.connection", "bus.adapter.records", "bus.publisher"]
    if name == "csv":
        modules += ["csv", "adapters.bapenda", "bus.adapter.sources.csvdrop"]
    elif name == "sqlite":
        modules += ["sqlite3", "adapters.dukcapil", "bus.adapter.sources.sql"]
    elif name.startswith("mysql"):
        modules += ["asyncmy", "adapters.dukcapil", "bus.adapter.sources.mysql", "bench.cdc"]
        modules += ["bus.adapter.sources.binlog"] if name.endswith("snapshot") else []
    else:
        modules += ["psycopg", "adapters.dukcapil", "bus.adapter.sources.sql", "bench.cdc"]
        modules += ["bus.adapter.sources.logical"] if name.endswith("snapshot") else []
    for module in modules:
        importlib.import_module(module)


def _fields(row: dict[str, Any], *, source: str, type_: str, id_: str, time: Any) -> dict[str, Any]:
    from bus.adapter import jsonable  # noqa: PLC0415

    return {
        "specversion": "1.0",
        "id": id_,
        "source": source,
        "type": type_,
        "time": time if isinstance(time, str) else jsonable(time),
        "datacontenttype": "application/json",
        "data": json.dumps(row, default=jsonable),
    }


def _siak(row: dict[str, Any]) -> dict[str, Any]:
    return _fields(
        row,
        source="urn:malangkota:dukcapil:siak",
        type_="dukcapil.citizen.recorded.v1",
        id_=f"{row['id_peristiwa']}:{row['versi']}",
        time=row["updated_at"],
    )


async def raw(name: str, location: str, redis_url: str, batch: int) -> int:
    from redis.asyncio import Redis  # noqa: PLC0415

    redis = Redis.from_url(redis_url)
    count = 0
    try:
        async for rows, to_fields in _raw_rows(name, location, batch):
            async with redis.pipeline(transaction=False) as pipe:
                for row in rows:
                    pipe.xadd(stream_of(name), to_fields(row))
                await pipe.execute()
            count += len(rows)
    finally:
        await redis.aclose()
    return count


async def _raw_rows(name: str, location: str, batch: int) -> Any:
    order = "id_peristiwa" if name.endswith("snapshot") else "updated_at, no_urut"
    if name == "sqlite":
        rows = _sqlite_rows(location, order, batch)
    elif name == "csv":
        rows = _csv_rows(location, batch)
    elif name.startswith("mysql"):
        rows = _mysql_rows(location, order, batch)
    else:
        rows = _postgresql_rows(location, order, batch)
    to_fields = _csv_fields() if name == "csv" else _siak
    async for chunk in rows:
        yield chunk, to_fields


async def _sqlite_rows(location: str, order: str, batch: int) -> Any:
    import sqlite3  # noqa: PLC0415

    conn = sqlite3.connect(location)
    conn.row_factory = sqlite3.Row
    try:
        cursor = conn.execute(f"SELECT * FROM peristiwa ORDER BY {order}")
        while rows := cursor.fetchmany(batch):
            yield [dict(r) for r in rows]
    finally:
        conn.close()


async def _csv_rows(location: str, batch: int) -> Any:
    pending: list[dict[str, Any]] = []
    for path in sorted((Path(location) / "incoming").glob("*.csv")):
        with path.open(encoding="utf-8", newline="") as handle:
            for row in csv.DictReader(handle, delimiter=";"):
                pending.append(row)
                if len(pending) == batch:
                    yield pending
                    pending = []
    if pending:
        yield pending


async def _mysql_rows(location: str, order: str, batch: int) -> Any:
    import asyncmy  # noqa: PLC0415
    from asyncmy.cursors import SSDictCursor  # noqa: PLC0415

    from bus.adapter.sources.mysql import connection_settings  # noqa: PLC0415

    conn = await asyncmy.connect(**connection_settings(location))
    try:
        async with conn.cursor(SSDictCursor) as cursor:
            await cursor.execute(f"SELECT * FROM peristiwa ORDER BY {order}")
            while rows := await cursor.fetchmany(batch):
                yield rows
    finally:
        conn.close()


async def _postgresql_rows(location: str, order: str, batch: int) -> Any:
    import psycopg  # noqa: PLC0415
    from psycopg.rows import dict_row  # noqa: PLC0415

    async with (
        await psycopg.AsyncConnection.connect(location, row_factory=dict_row) as pg,
        pg.cursor(name="backfill") as cursor,
    ):
        await cursor.execute(f"SELECT * FROM peristiwa ORDER BY {order}")  # type: ignore[arg-type]
        while rows := await cursor.fetchmany(batch):
            yield rows


def _csv_fields() -> Any:
    from adapters import bapenda  # noqa: PLC0415

    def fields(row: dict[str, Any]) -> dict[str, Any]:
        id_ = f"{row['no_sspd']}:{row['versi']}"
        return _fields(
            row,
            source=bapenda.SOURCE,
            type_="bapenda.payment.received.v1",
            id_=id_,
            time=row["tanggal_bayar"],
        )

    return fields


# -- the adapters (children) --------------------------------------------------------------------


async def adapter(name: str, location: str, redis_url: str, batch: int, expected: int) -> int:
    from bus.connection import connect  # noqa: PLC0415

    redis = connect(redis_url)
    try:
        if name.endswith("snapshot"):
            return await _snapshot(name, location, redis, expected)
        if name == "csv":
            from adapters import bapenda  # noqa: PLC0415

            runner = bapenda.adapter(
                redis, location, settle_seconds=0, batch_size=batch, signer=None
            )
        else:
            from adapters import dukcapil  # noqa: PLC0415

            db: Any = Path(location) if name == "sqlite" else location
            runner = dukcapil.adapter(
                redis, db, pseudonym_key=PSEUDONYM_KEY, batch_size=batch, signer=None
            )
        try:
            progress = await runner.run_once()
        finally:
            source: Any = runner.source
            with contextlib.suppress(AttributeError):
                await source.db.close()
    finally:
        await redis.aclose()
    if progress.quarantined or progress.published != progress.read:
        raise SystemExit(f"adapter did not publish every row: {progress}")
    return progress.published


async def _snapshot(name: str, location: str, redis: Any, expected: int) -> int:
    import time  # noqa: PLC0415

    from bench import cdc  # noqa: PLC0415

    slot = {} if name.startswith("mysql") else {"slot": f"bench_{uuid.uuid4().hex[:10]}"}
    wait = {"wait": 0.2} if name.startswith("mysql") else {"idle_wait": 0.2}
    runner = cdc.runner(redis, location, **wait, **slot)
    deadline = time.monotonic() + 3600
    try:
        while runner.progress.read < expected and time.monotonic() < deadline:
            await runner.run_once()
    finally:
        await cdc.close(runner)
        if slot:
            await _drop_slot(location, slot["slot"])
    p = runner.progress
    if p.quarantined or p.published != expected:
        raise SystemExit(f"adapter did not publish every row: {p}")
    return p.published


async def _drop_slot(url: str, slot: str) -> None:
    import psycopg  # noqa: PLC0415

    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(  # type: ignore[call-overload]
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
            "WHERE slot_name = %s",
            (slot,),
        )
        with contextlib.suppress(Exception):
            await conn.execute(f"DROP PUBLICATION IF EXISTS {slot}")  # type: ignore[arg-type]
