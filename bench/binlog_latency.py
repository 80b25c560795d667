"""Commit-to-bus latency of the binlog source: p50/p99 from a MariaDB commit to the stream entry.

``python -m bench.binlog_latency [--commits N]`` starts a private MariaDB and Redis, runs the SIAK
adapter on the binlog (``run(poll_interval=...)``) and commits single-row transactions one at a
time, each timed from the COMMIT's return to the entry's appearance in the stream (XREAD BLOCK).
Then throughput: ``--rows`` rows read by the initial snapshot, and as many again committed in
transactions of 500 rows and read from the binlog, each timed to the last entry published.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Iterable
from itertools import islice
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pymysql
from redis.asyncio import Redis

from adapters import dukcapil
from adapters.dukcapil.fixtures import as_params, rows
from adapters.dukcapil.schema import ddl, insert_sql
from bus import keys
from bus.connection import connect
from bus.local.mariadb import EmbeddedMariaDB
from bus.local.redis import EmbeddedRedis


async def measure(db_url: str, redis: Redis, commits: int, poll: float) -> list[float]:
    adapter = dukcapil.adapter(redis, db_url, pseudonym_key=b"k" * 32, cdc=True)
    stop = asyncio.Event()
    running = asyncio.create_task(adapter.run(poll_interval=poll, stop=stop))
    stream = keys.stream("dukcapil.citizen")
    address = urlsplit(db_url)
    conn = pymysql.connect(host=address.hostname, port=address.port, user="simpul",
                           database="siak", autocommit=True)  # fmt: skip
    last = "0"
    took: list[float] = []
    for row in rows(commits, seed=3):
        with conn.cursor() as cursor:
            cursor.execute(insert_sql("mysql"), as_params(row, "mysql"))
        start = time.perf_counter()
        entries = await redis.xread({stream: last}, block=5_000, count=1)
        took.append(time.perf_counter() - start)
        last = entries[0][1][0][0]
        await asyncio.sleep(0.01)
    stop.set()
    await running
    return took


async def throughput(db_url: str, redis: Redis, conn: Any, count: int) -> tuple[float, float]:
    """Rows per second through the snapshot, then through the binlog stream."""
    with conn.cursor() as cursor:
        cursor.execute("TRUNCATE peristiwa")
    _insert(conn, rows(count, seed=4, first_id=1_000_000))
    adapter = dukcapil.adapter(redis, db_url, pseudonym_key=b"k" * 32, cdc=True)
    start = time.perf_counter()
    await adapter.run_once()
    snapshot = count / (time.perf_counter() - start)
    _insert(conn, rows(count, seed=5, first_id=2_000_000))
    start = time.perf_counter()
    await adapter.run_once()
    stream = count / (time.perf_counter() - start)
    await adapter.source.close()  # type: ignore[attr-defined]
    assert adapter.progress.published == 2 * count
    return snapshot, stream


def _insert(conn: Any, data: Iterable[dict[str, Any]]) -> None:
    with conn.cursor() as cursor:
        while batch := list(islice(data, 500)):
            cursor.executemany(insert_sql("mysql"), [as_params(r, "mysql") for r in batch])


async def main(commits: int, poll: float, rows_: int) -> None:
    with EmbeddedMariaDB() as db, EmbeddedRedis(Path(tempfile.mkdtemp())) as server:
        conn = pymysql.connect(host=db.host, port=db.port, user="simpul", autocommit=True,
                               client_flag=pymysql.constants.CLIENT.MULTI_STATEMENTS)  # fmt: skip
        with conn.cursor() as cursor:
            cursor.execute("CREATE DATABASE siak")
            cursor.execute("USE siak")
            cursor.execute(ddl("mysql"))
        redis = connect(server.url)
        took = await measure(db.url_for("siak"), redis, commits, poll)
        await redis.flushdb()
        snapshot, stream = await throughput(db.url_for("siak"), redis, conn, rows_)
        await redis.aclose()
    ms = sorted(t * 1000 for t in took)
    p99 = ms[int(len(ms) * 0.99) - 1]
    print(f"{commits} commits, poll {poll}s: p50 {statistics.median(ms):.1f} ms, "
          f"p99 {p99:.1f} ms, max {ms[-1]:.1f} ms")  # fmt: skip
    print(f"{rows_} rows: snapshot {snapshot:,.0f} rows/s, binlog stream {stream:,.0f} rows/s "
          "(read, mapped, published)")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--commits", type=int, default=500)
    parser.add_argument("--poll", type=float, default=0.0)
    parser.add_argument("--rows", type=int, default=20_000)
    args = parser.parse_args()
    asyncio.run(main(args.commits, args.poll, args.rows))
