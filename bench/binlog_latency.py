"""Commit-to-bus latency of the binlog source: p50/p99 from a MariaDB commit to the stream entry.

``python -m bench.binlog_latency [--commits N]`` starts a private MariaDB and Redis, runs the SIAK
adapter on the binlog (``run(poll_interval=...)``) and commits single-row transactions one at a
time, each timed from the COMMIT's return to the entry's appearance in the stream (XREAD BLOCK).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import pymysql
from redis.asyncio import Redis

from adapters import dukcapil
from adapters.dukcapil.fixtures import as_params, rows
from adapters.dukcapil.schema import ddl, insert_sql
from bus import keys
from bus.connection import connect
from bus.embedded import EmbeddedRedis
from bus.mariadb import EmbeddedMariaDB


async def measure(db_url: str, redis: Redis, commits: int, poll: float) -> list[float]:
    adapter = dukcapil.adapter(redis, db_url, pseudonym_key=b"k" * 32, binlog=True)
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


async def main(commits: int, poll: float) -> None:
    with EmbeddedMariaDB() as db, EmbeddedRedis(Path(tempfile.mkdtemp())) as server:
        conn = pymysql.connect(host=db.host, port=db.port, user="simpul", autocommit=True,
                               client_flag=pymysql.constants.CLIENT.MULTI_STATEMENTS)  # fmt: skip
        with conn.cursor() as cursor:
            cursor.execute("CREATE DATABASE siak")
            cursor.execute("USE siak")
            cursor.execute(ddl("mysql"))
        redis = connect(server.url)
        took = await measure(db.url_for("siak"), redis, commits, poll)
        await redis.aclose()
    ms = sorted(t * 1000 for t in took)
    p99 = ms[int(len(ms) * 0.99) - 1]
    print(f"{commits} commits, poll {poll}s: p50 {statistics.median(ms):.1f} ms, "
          f"p99 {p99:.1f} ms, max {ms[-1]:.1f} ms")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--commits", type=int, default=500)
    parser.add_argument("--poll", type=float, default=0.0)
    args = parser.parse_args()
    asyncio.run(main(args.commits, args.poll))
