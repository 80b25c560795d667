"""Change-data-capture from MariaDB (row binlog) and PostgreSQL (logical decoding), in one run.

    .venv/bin/python -m bench.cdc [--quick] [--rows N] [--runs 3] [--rate 200] [--seconds 20]
                                  [--memory 100000 1000000] [--json out.json]

Private servers (MariaDB with a row binlog, PostgreSQL with wal_level=logical, Redis), the SIAK
table ``peristiwa`` in each. Three measurements per database:

* **throughput**: ``--rows`` rows committed (500 a transaction) *before* either reader starts,
  then read from the log by each contender in a child process of its own, median of
  ``--runs``. **raw**: a reader of the same log that XADDs each row as JSON, 500 per pipeline,
  with no mapping, validation, dedupe or checkpoint (MariaDB: mysql-replication's
  ``BinLogStreamReader`` from the binlog position before the rows; PostgreSQL: a slot of its own,
  ``pg_logical_slot_get_binary_changes`` with ``pgoutput``, decoded by bus/'s own decoder).
  **adapter**: the SIAK adapter on ``dukcapil.cdc_source`` (bus/adapter/sources/binlog.py,
  bus/adapter/sources/logical.py) through the real ``Adapter`` runner, resuming from its
  checkpoint (a stream position: two primer rows went through the snapshot and the stream
  first). Rows/s is counted from the child's start to the stream entry id of its last event, so
  a pass's idle wait at the end of the log does not count.
* **latency**: after 3 s with nothing committed (the idle adapter's CPU), one row per
  transaction at a steady ``--rate`` commits/s for ``--seconds``, the adapter following
  (``run()``) in this process; each event's Redis entry id (ms) minus the time its COMMIT
  returned (whole ms: reads ~0.5 ms low, so a p50 may show 0). For comparison the polling
  source (by the change column, with its defaults) at a 1 s poll interval.
* **memory** (``--memory``): the adapter child's peak resident memory (``VmHWM``) reading
  that many committed rows from the log; flat means it streams.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from adapters import dukcapil
from adapters.dukcapil.fixtures import as_params, rows
from adapters.dukcapil.schema import ddl, insert_sql
from bench.common import Target, own_cpu_s, percentile, progress, write_json
from bus import keys
from bus.adapter import Adapter
from bus.adapter.checkpoint import RedisCheckpoints
from bus.adapter.quarantine import Quarantine
from bus.publisher import Publisher, event_id

STREAM = keys.stream("dukcapil.citizen")
KEY = b"bench-pseudonym-key-0123456789"
PER_TXN = 500
TARGET_RATIO = 0.50  # adapter >= 50% of the raw reader of the same log
TARGET_P99_MS = 100.0  # commit-to-bus p99 at 200 commits/s
RAW_SLOT = "bench_raw"  # the PostgreSQL raw reader's own slot and publication
IDLE_S = 3.0
MEMORY_IDS = 2 * 10**8  # first id of the memory check's rows
QUANTILES = (("p50", 50), ("p90", 90), ("p99", 99), ("max", 100))
DATABASES = ("mariadb", "postgresql")


# -- the databases ------------------------------------------------------------------------------


@dataclass
class Database:
    kind: str  # mariadb | postgresql
    url: str
    pid: int | None

    @property
    def dialect(self) -> str:
        return "mysql" if self.kind == "mariadb" else "postgresql"


@contextmanager
def server(kind: str) -> Iterator[Database]:
    """A private server with the SIAK table, stopped at the end."""
    if kind == "mariadb":
        import pymysql  # noqa: PLC0415

        from bus.local.mariadb import EmbeddedMariaDB  # noqa: PLC0415

        with EmbeddedMariaDB() as db:
            conn = pymysql.connect(
                host=db.host,
                port=db.port,
                user="simpul",
                autocommit=True,
                client_flag=pymysql.constants.CLIENT.MULTI_STATEMENTS,
            )
            with conn.cursor() as cursor:
                cursor.execute("CREATE DATABASE siak")
                cursor.execute("USE siak")
                cursor.execute(ddl("mysql"))
            conn.close()
            yield Database(kind, db.url_for("siak"), db.pid)
        return
    import psycopg  # noqa: PLC0415

    from bus.local.postgres import EmbeddedPostgres  # noqa: PLC0415

    with EmbeddedPostgres(durable=True) as pg:
        with psycopg.connect(pg.url, autocommit=True) as conn:
            conn.execute(ddl("postgresql"))  # type: ignore[arg-type]
            # The polling comparison reads the change column; the outbox trigger is not needed.
            conn.execute("DROP TRIGGER IF EXISTS peristiwa_outbox ON peristiwa")
        yield Database(kind, pg.url, pg.pid)


def _mysql(url: str) -> Any:
    import pymysql  # noqa: PLC0415

    address = urlsplit(url)
    return pymysql.connect(
        host=address.hostname,
        port=address.port,
        user=address.username,
        password=address.password or "",
        database=address.path.lstrip("/"),
        autocommit=False,
    )


def connect(db: Database) -> AbstractContextManager[Any]:
    """A plain DB-API connection (not autocommit) to the benchmark database."""
    if db.kind == "mariadb":
        return _closing(_mysql(db.url))
    import psycopg  # noqa: PLC0415

    return psycopg.connect(db.url)


@contextmanager
def _closing(conn: Any) -> Iterator[Any]:
    try:
        yield conn
    finally:
        conn.close()


def insert(db: Database, data: Iterator[dict[str, Any]], per_txn: int = PER_TXN) -> int:
    """Commit ``data``, ``per_txn`` rows a transaction; rows committed."""
    count = 0
    sql = insert_sql(db.dialect)  # type: ignore[arg-type]
    with connect(db) as conn:
        while batch := list(islice(data, per_txn)):
            cursor = conn.cursor()
            cursor.executemany(sql, [as_params(r, db.dialect) for r in batch])  # type: ignore[arg-type]
            conn.commit()
            count += len(batch)
    return count


def runner(redis: Any, url: str, **source_options: Any) -> Adapter:
    """The SIAK adapter on the database's log, as ``dukcapil.adapter(cdc=True)`` wires it, with
    the source's options (idle waits) set for a benchmark."""
    return Adapter(
        dukcapil.NAME,
        source=dukcapil.cdc_source(url, **source_options),
        mapper=dukcapil.SiakMapper(KEY),
        publisher=Publisher(redis, source=dukcapil.SOURCE, signer=None),
        checkpoints=RedisCheckpoints(redis),
        quarantine=Quarantine(redis, dukcapil.NAME),
    )


def _quick_pass(db: Database) -> dict[str, Any]:
    # A pass ends soon after the log is drained: not the 1 s / 5 s a daemon waits by default.
    return {"wait": 0.2} if db.kind == "mariadb" else {"idle_wait": 0.2}


async def close(adapter: Adapter) -> None:
    source: Any = adapter.source  # a log source closes itself; a polling source its database
    await (source.close() if hasattr(source, "close") else source.db.close())


# -- the children -------------------------------------------------------------------------------


def _peak_rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


async def _adapter_child(kind: str, url: str, redis_url: str, expected: int) -> int:
    from bus.connection import connect as redis_connect  # noqa: PLC0415

    redis = redis_connect(redis_url)
    db = Database(kind, url, None)
    adapter = runner(redis, url, **_quick_pass(db))
    deadline = time.monotonic() + 3600
    try:
        while adapter.progress.read < expected and time.monotonic() < deadline:
            await adapter.run_once()
    finally:
        await close(adapter)
        await redis.aclose()
    p = adapter.progress
    if p.quarantined or p.published != expected:
        raise SystemExit(f"adapter did not publish every row: {p}")
    return p.published


def _xadd_fields(row: dict[str, Any]) -> dict[str, Any]:
    from bus.adapter import jsonable  # noqa: PLC0415

    return {
        "specversion": "1.0",
        "id": f"{row['id_peristiwa']}:{row['versi']}",
        "source": "urn:malangkota:dukcapil:siak",
        "type": "dukcapil.citizen.recorded.v1",
        "datacontenttype": "application/json",
        "data": json.dumps(row, default=jsonable),
    }


def _raw_mariadb(url: str, redis_url: str, expected: int, start: str) -> int:
    from pymysqlreplication import BinLogStreamReader  # noqa: PLC0415
    from pymysqlreplication.row_event import WriteRowsEvent  # noqa: PLC0415
    from redis import Redis  # noqa: PLC0415

    file, pos = start.split(":")
    address = urlsplit(url)
    reader = BinLogStreamReader(
        connection_settings={
            "host": address.hostname,
            "port": address.port,
            "user": address.username,
            "passwd": address.password or "",
        },
        server_id=random.randrange(1_000_000_000, 2**32 - 1),
        log_file=file,
        log_pos=int(pos),
        resume_stream=True,
        blocking=False,
        only_events=[WriteRowsEvent],
        only_schemas=[address.path.lstrip("/")],
        only_tables=["peristiwa"],
    )
    redis = Redis.from_url(redis_url)
    count = 0
    pipe = redis.pipeline(transaction=False)
    try:
        for event in reader:
            for row in event.rows:
                pipe.xadd(STREAM, _xadd_fields(row["values"]))
                count += 1
                if count % PER_TXN == 0:
                    pipe.execute()
            if count >= expected:
                break
        pipe.execute()
    finally:
        reader.close()
        redis.close()
    return count


def _raw_postgresql(url: str, redis_url: str, expected: int, _start: str) -> int:
    import psycopg  # noqa: PLC0415
    from psycopg.adapt import Transformer  # noqa: PLC0415
    from redis import Redis  # noqa: PLC0415

    from bus.adapter.sources._pgoutput import Decoder, RowChange  # noqa: PLC0415

    redis = Redis.from_url(redis_url)
    count = 0
    query = (
        f"SELECT data FROM pg_logical_slot_get_binary_changes('{RAW_SLOT}', NULL, 10000, "
        f"'proto_version', '1', 'publication_names', '{RAW_SLOT}')"
    )
    with psycopg.connect(url, autocommit=True) as conn:
        decoder = Decoder(Transformer(conn))
        while count < expected:
            changes = conn.execute(query).fetchall()  # type: ignore[arg-type]
            if not changes:
                break
            pipe = redis.pipeline(transaction=False)
            for (data,) in changes:
                message = decoder.decode(bytes(data))
                if isinstance(message, RowChange):
                    pipe.xadd(STREAM, _xadd_fields(message.row))
                    count += 1
                    if count % PER_TXN == 0:
                        pipe.execute()
            pipe.execute()
    redis.close()
    return count


def child(*args: str) -> None:
    """Run one reader in this process and print its figures as JSON: database kind,
    contender (raw or adapter), database URL, Redis URL, rows expected, raw start position."""
    kind, contender, url, redis_url, expected, start = args
    from bus.logging import configure  # noqa: PLC0415

    configure(level="warning", fmt="json")
    began, cpu0 = time.time(), time.process_time()
    if contender == "adapter":
        count = asyncio.run(_adapter_child(kind, url, redis_url, int(expected)))
    else:
        raw = _raw_mariadb if kind == "mariadb" else _raw_postgresql
        count = raw(url, redis_url, int(expected), start)
    print(
        json.dumps(
            {
                "rows": count,
                "began": began,
                "cpu_s": time.process_time() - cpu0,
                "peak_rss_mib": _peak_rss_mib(),
            }
        )
    )


def _spawn(*args: str) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.cdc", "--child", *args]
    done = subprocess.run(
        command, capture_output=True, text=True, check=False, cwd=Path(__file__).parents[1]
    )
    if done.returncode != 0:
        raise RuntimeError(f"the {args[:2]} reader failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# -- throughput and memory ----------------------------------------------------------------------


async def _raw_start(db: Database) -> str:
    """Where the raw reader starts: the log's end now, before the rows are committed."""
    if db.kind == "mariadb":
        with connect(db) as conn:
            cursor = conn.cursor()
            cursor.execute("SHOW MASTER STATUS")
            file, pos = cursor.fetchone()[:2]
        return f"{file}:{pos}"
    import psycopg  # noqa: PLC0415

    with psycopg.connect(db.url, autocommit=True) as conn:
        conn.execute(
            f"SELECT pg_drop_replication_slot('{RAW_SLOT}') FROM pg_replication_slots "  # type: ignore[arg-type]
            f"WHERE slot_name = '{RAW_SLOT}'"
        )
        if not conn.execute(
            f"SELECT 1 FROM pg_publication WHERE pubname = '{RAW_SLOT}'"
        ).fetchone():  # type: ignore[arg-type]
            conn.execute(f"CREATE PUBLICATION {RAW_SLOT} FOR TABLE peristiwa")  # type: ignore[arg-type]
        conn.execute(f"SELECT pg_create_logical_replication_slot('{RAW_SLOT}', 'pgoutput')")  # type: ignore[arg-type]
    return ""


async def _prime(db: Database, target: Target) -> None:
    """Two rows through the adapter: one by the snapshot, one by the stream, so its checkpoint
    is a stream position and every later pass reads the log."""
    redis = target.client()
    for first_id in (1, 2):
        insert(db, rows(1, seed=first_id, first_id=first_id))
        adapter = runner(redis, db.url, **_quick_pass(db))
        try:
            await adapter.run_once()
        finally:
            await close(adapter)
    await redis.aclose()


async def _read(db: Database, target: Target, contender: str, start: str, n: int) -> dict[str, Any]:
    """One reader in a child; rows/s from its start to the entry id of its last event."""
    url = target.url if contender == "adapter" else _database_url(target.url, 1)
    redis = target.client() if contender == "adapter" else _client(url)
    before = await redis.xlen(STREAM)
    result = await asyncio.to_thread(_spawn, db.kind, contender, db.url, url, str(n), start)
    length = await redis.xlen(STREAM)
    last = (await redis.xrevrange(STREAM, count=1))[0][0]
    await redis.aclose()
    if length - before != n or result["rows"] != n:
        raise RuntimeError(
            f"{db.kind} {contender}: {result['rows']} rows read, "
            f"{length - before} added to the stream, expected {n}"
        )
    seconds = int(last.split(b"-")[0]) / 1000 - result["began"]
    result.update(seconds=seconds, rate=n / seconds)
    progress(
        f"{db.kind:<10} {contender:<7} {n:>9,} rows {result['rate']:>8,.0f} rows/s "
        f"cpu {1e6 * result['cpu_s'] / n:5.1f} µs/row peak RSS "
        f"{result['peak_rss_mib']:.0f} MiB"
    )
    return result


def _database_url(url: str, number: int) -> str:
    return urlsplit(url)._replace(path=f"/{number}").geturl()


def _client(url: str) -> Any:
    from redis.asyncio import Redis  # noqa: PLC0415

    return Redis.from_url(url)


async def throughput(db: Database, target: Target, n: int, runs: int) -> dict[str, Any]:
    """Median of ``runs``: each run commits n new rows, then the raw reader and the adapter
    (alternating which goes first) read them from the log."""
    out: dict[str, Any] = {"rows": n, "runs": []}
    for run in range(runs):
        start = await _raw_start(db)
        await asyncio.to_thread(insert, db, rows(n, seed=100 + run, first_id=(run + 1) * 10**7))
        order = ("raw", "adapter") if run % 2 == 0 else ("adapter", "raw")
        one = {c: await _read(db, target, c, start, n) for c in order}
        one["ratio"] = one["adapter"]["rate"] / one["raw"]["rate"]
        out["runs"].append(one)
    for contender in ("raw", "adapter"):
        out[contender] = {
            "rate": statistics.median(r[contender]["rate"] for r in out["runs"]),
            "cpu_us_per_row": statistics.median(
                1e6 * r[contender]["cpu_s"] / n for r in out["runs"]
            ),
        }
    out["ratio"] = out["adapter"]["rate"] / out["raw"]["rate"]
    out["met"] = out["ratio"] >= TARGET_RATIO
    return out


async def memory(db: Database, target: Target, sizes: list[int]) -> dict[str, Any]:
    """The adapter's peak RSS reading each size of committed rows from the log."""
    out: dict[str, Any] = {}
    for number, size in enumerate(sizes):
        progress(f"{db.kind}: committing {size:,} rows for the memory check")
        # Ids of their own (the throughput runs use 10^7.., latency 5 * 10^8..): a row already
        # published would count as a duplicate, not as read.
        first_id = MEMORY_IDS + number * 2 * 10**7
        await asyncio.to_thread(insert, db, rows(size, seed=7, first_id=first_id))
        out[str(size)] = await _read(db, target, "adapter", "", size)
    peaks = [out[str(s)]["peak_rss_mib"] for s in sizes]
    out["growth"] = peaks[-1] / peaks[0]
    return out


# -- latency ------------------------------------------------------------------------------------


def write_steady(
    db: Database, rate: float, seconds: float, committed: dict[str, float], first_id: int
) -> None:
    """One row per transaction at a steady rate; the wall time each COMMIT returned."""
    sql = insert_sql(db.dialect)  # type: ignore[arg-type]
    count = int(rate * seconds)
    with connect(db) as conn:
        start = time.monotonic()
        for i, row in enumerate(rows(count, seed=first_id, first_id=first_id)):
            time.sleep(max(0.0, start + i / rate - time.monotonic()))
            conn.cursor().execute(sql, as_params(row, db.dialect))  # type: ignore[arg-type]
            conn.commit()
            committed[event_id(dukcapil.SOURCE, dukcapil.TABLE, row["id_peristiwa"], 1)] = (
                time.time()
            )


async def latency(
    db: Database, target: Target, rate: float, seconds: float, *, polling: bool, first_id: int
) -> dict[str, Any]:
    """Commit-to-bus latency with the adapter following in this process."""
    redis = target.client()
    if polling:  # the change column, with the source's defaults (settle window included)
        adapter = dukcapil.adapter(redis, db.url, pseudonym_key=KEY, signer=None)
        interval = 1.0
    else:
        adapter = runner(redis, db.url)  # the daemon's own idle waits
        interval = getattr(adapter.source, "poll_interval", 0.0)
    stop = asyncio.Event()
    following = asyncio.create_task(adapter.run(poll_interval=interval, stop=stop))
    await asyncio.sleep(2.0)  # the first pass: checkpoint, connections, reader thread
    idle_cpu = own_cpu_s()
    await asyncio.sleep(IDLE_S)  # nothing committed: the adapter must not spin
    idle_cpu = own_cpu_s() - idle_cpu
    committed: dict[str, float] = {}
    since = f"{int(time.time() * 1000)}-0"  # the stream may hold earlier runs' entries
    await asyncio.to_thread(write_steady, db, rate, seconds, committed, first_id)
    settle = 8.0 if polling else 2.0  # the polling source waits out its settle window
    await asyncio.sleep(settle)
    stop.set()
    await following
    await close(adapter)
    entries = await redis.xrange(STREAM, min=since)
    added = {f[b"id"].decode(): int(i.split(b"-")[0]) / 1000 for i, f in entries}
    await redis.aclose()
    ms = sorted((added[e] - t) * 1000 for e, t in committed.items() if e in added)
    return {
        "source": "polling" if polling else "cdc",
        "poll_interval_s": interval,
        "rate_per_s": rate,
        "commits": len(committed),
        "published": len(ms),
        "latency_ms": {q: round(percentile(ms, p), 1) for q, p in QUANTILES},
        "idle_cpu_pct": round(100 * idle_cpu / IDLE_S, 2),
    }


# -- the whole run ------------------------------------------------------------------------------


async def run(
    target: Target,
    *,
    rows_n: int,
    runs: int,
    rate: float,
    seconds: float,
    memory_sizes: list[int],
    databases: tuple[str, ...] = DATABASES,
    polling: bool = True,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "rows": rows_n,
        "runs": runs,
        "rate": rate,
        "seconds": seconds,
        "memory_sizes": memory_sizes,
    }
    for kind in databases:
        await target.reset()
        progress(f"{kind}: starting a private server")
        with server(kind) as db:
            await _prime(db, target)
            result: dict[str, Any] = {"throughput": await throughput(db, target, rows_n, runs)}
            if memory_sizes:
                result["memory"] = await memory(db, target, memory_sizes)
            result["latency"] = await latency(
                db, target, rate, seconds, polling=False, first_id=5 * 10**8
            )
            lat = result["latency"]["latency_ms"]
            progress(f"{kind}: {rate:.0f} commits/s, CDC p50 {lat['p50']} ms p99 {lat['p99']} ms")
            if polling and kind == "postgresql":
                with connect(db) as conn:  # the polling source starts after what CDC published
                    conn.cursor().execute("TRUNCATE peristiwa")
                    conn.commit()
                await target.reset()
                result["polling_latency"] = await latency(
                    db, target, rate, min(seconds, 10.0), polling=True, first_id=6 * 10**8
                )
                lat = result["polling_latency"]["latency_ms"]
                progress(f"{kind}: polling p50 {lat['p50']} ms p99 {lat['p99']} ms")
            out[kind] = result
        await target.reset()
    raw = _client(_database_url(target.url, 1))  # the raw readers' database
    await raw.flushdb()
    await raw.aclose()
    return out


# -- report -------------------------------------------------------------------------------------


LABELS = {"mariadb": "MariaDB row binlog", "postgresql": "PostgreSQL logical decoding"}


def throughput_table(out: dict[str, Any]) -> list[str]:
    lines = [
        "| log | rows | raw reader rows/s | **Simpul** adapter rows/s | adapter / raw "
        "(median, per run) | client CPU µs/row raw / adapter |",
        "|---|--:|--:|--:|--:|--:|",
    ]
    for kind in DATABASES:
        if kind not in out:
            continue
        t = out[kind]["throughput"]
        per_run = ", ".join(f"{r['ratio']:.0%}" for r in t["runs"])
        lines.append(
            f"| {LABELS[kind]} | {t['rows']:,} | {t['raw']['rate']:,.0f} | "
            f"{t['adapter']['rate']:,.0f} | **{t['ratio']:.0%}** ({per_run}) | "
            f"{t['raw']['cpu_us_per_row']:.1f} / "
            f"{t['adapter']['cpu_us_per_row']:.1f} |"
        )
    return lines


def latency_table(out: dict[str, Any]) -> list[str]:
    lines = [
        "| source | commits/s | published / committed | p50 ms | p90 ms | p99 ms | max ms "
        "| idle CPU (% of a core) |",
        "|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for kind in DATABASES:
        for key, label in (
            ("latency", "CDC: " + LABELS.get(kind, kind)),
            ("polling_latency", f"polling ({kind}, change column)"),
        ):
            m = out.get(kind, {}).get(key)
            if not m:
                continue
            if key == "polling_latency":
                label = f"{label}, every {m['poll_interval_s']:.0f} s"  # noqa: PLW2901
            q = m["latency_ms"]
            lines.append(
                f"| {label} | {m['rate_per_s']:.0f} | {m['published']:,} / "
                f"{m['commits']:,} | {q['p50']} | {q['p90']} | {q['p99']} | "
                f"{q['max']} | {m['idle_cpu_pct']:.2f}% |"
            )
    return lines


def memory_table(out: dict[str, Any]) -> list[str]:
    lines = [
        "| log | rows read from the log | adapter peak RSS MiB | rows/s |",
        "|---|--:|--:|--:|",
    ]
    for kind in DATABASES:
        m = out.get(kind, {}).get("memory")
        if not m:
            continue
        for size in out["memory_sizes"]:
            r = m[str(size)]
            lines.append(
                f"| {LABELS[kind]} | {size:,} | {r['peak_rss_mib']:.0f} | {r['rate']:,.0f} |"
            )
    return lines


def verdicts(out: dict[str, Any]) -> list[tuple[str, str, float, bool, str, str]]:
    """Rows for bench/run.py's targets table."""
    rows_: list[tuple[str, str, float, bool, str, str]] = []
    for kind in DATABASES:
        if kind not in out:
            continue
        t, lat = out[kind]["throughput"], out[kind]["latency"]["latency_ms"]
        rows_.append(
            (
                f"CDC throughput, {LABELS[kind]}",
                f"adapter / raw reader >= {TARGET_RATIO:.0%}",
                t["ratio"],
                t["met"],
                f"{t['ratio']:.0%}",
                f"short by {TARGET_RATIO - t['ratio']:.0%} of raw",
            )
        )
        rate = out["rate"]
        rows_.append(
            (
                f"CDC commit-to-bus p99, {LABELS[kind]}",
                f"< {TARGET_P99_MS:.0f} ms at {rate:.0f} commits/s",
                lat["p99"],
                lat["p99"] < TARGET_P99_MS,
                f"{lat['p99']} ms (p50 {lat['p50']} ms)",
                f"{lat['p99'] - TARGET_P99_MS:.0f} ms too slow",
            )
        )
        m = out[kind].get("memory")
        if m:
            sizes = out["memory_sizes"]
            rows_.append(
                (
                    f"CDC peak memory, {LABELS[kind]}",
                    f"flat: {sizes[-1]:,} rows <= 1.25x {sizes[0]:,}",
                    m["growth"],
                    m["growth"] <= 1.25,
                    f"{m['growth']:.2f}x",
                    "grows with the rows",
                )
            )
    return rows_


def main(argv: list[str] | None = None) -> None:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(*sys.argv[2:8])
        return
    parser = argparse.ArgumentParser(prog="python -m bench.cdc", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="5,000 rows, 1 run, 5 s latency")
    parser.add_argument("--rows", type=int, help="rows per throughput run (default 20,000)")
    parser.add_argument("--runs", type=int, help="throughput runs (default 3)")
    parser.add_argument("--rate", type=float, default=200.0, help="commits/s for latency")
    parser.add_argument("--seconds", type=float, help="latency window (default 20 s)")
    parser.add_argument(
        "--memory",
        type=int,
        nargs="*",
        default=[],
        metavar="N",
        help="peak RSS reading N rows from the log, e.g. 100000 1000000",
    )
    parser.add_argument("--only", choices=DATABASES, help="one database")
    parser.add_argument("--no-polling", action="store_true", help="leave out polling latency")
    parser.add_argument("--json", metavar="PATH", help="write the figures as JSON")
    args = parser.parse_args(argv)
    from bus.logging import configure  # noqa: PLC0415

    configure(level="warning", fmt="json")

    async def measure() -> dict[str, Any]:
        with Target.open() as target:
            return await run(
                target,
                rows_n=args.rows or (5_000 if args.quick else 20_000),
                runs=args.runs or (1 if args.quick else 3),
                rate=args.rate,
                seconds=args.seconds or (5.0 if args.quick else 20.0),
                memory_sizes=args.memory,
                databases=(args.only,) if args.only else DATABASES,
                polling=not args.no_polling,
            )

    began = time.perf_counter()
    out = asyncio.run(measure())
    out["duration_s"] = time.perf_counter() - began
    print("\n".join([*throughput_table(out), "", *latency_table(out), "", *memory_table(out)]))
    write_json(args.json, out)
    progress(f"done in {out['duration_s']:.0f} s")


if __name__ == "__main__":
    main()
