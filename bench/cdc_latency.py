"""Commit-to-bus latency of the PostgreSQL change-data-capture source at a steady commit rate.

A thread commits one SIAK row per transaction at ``--rate`` commits per second into a private
PostgreSQL (synchronous commit on, as in production); the SIAK adapter follows the slot with
:class:`bus.adapter.sources.logical.LogicalSource`. The latency of a row is the time its stream
entry was added (the Redis entry id, whole ms, so figures read about 0.5 ms low) minus the time its
COMMIT returned to the writer, both on this host's clock. Also reports the CPU time of this
process (adapter and writer thread) per 1000 commits, of the idle adapter per second, and the
throughput of the initial snapshot and of the stream (``--rows`` rows, 100 per commit).

    python -m bench.cdc_latency --rate 200 --seconds 20 --rows 20000 [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import threading
import time
from typing import Any

import psycopg

from adapters import dukcapil
from adapters.dukcapil.fixtures import as_params, rows
from adapters.dukcapil.schema import ddl, insert_sql
from bench.common import Target, own_cpu_s, percentile, progress, write_json
from bus import Publisher, event_id
from bus.adapter import Adapter
from bus.adapter.checkpoint import RedisCheckpoints
from bus.adapter.quarantine import Quarantine
from bus.adapter.sources.logical import LogicalSource
from bus.keys import stream
from bus.local.postgres import EmbeddedPostgres
from bus.logging import configure
from bus.testing import wait_until

KEY = b"bench-pseudonym-key-0123456789"
QUANTILES = (("p50", 50), ("p90", 90), ("p99", 99), ("max", 100))


def write(url: str, rate: float, seconds: float, committed: dict[str, float]) -> None:
    """One row per transaction at a steady rate; the wall time each COMMIT returned."""
    count = int(rate * seconds)
    with psycopg.connect(url) as conn:
        start = time.monotonic()
        for i, row in enumerate(rows(count, seed=1)):
            time.sleep(max(0.0, start + i / rate - time.monotonic()))
            with conn.transaction():
                conn.execute(insert_sql("postgresql"), as_params(row, "postgresql"))  # type: ignore[arg-type]
            committed[event_id(dukcapil.SOURCE, dukcapil.TABLE, row["id_peristiwa"], 1)] = (
                time.time()
            )


def write_bulk(url: str, data: list[dict[str, Any]]) -> None:
    """As fast as one connection goes, 100 rows per transaction."""
    with psycopg.connect(url) as conn:
        for first in range(0, len(data), 100):
            with conn.transaction():
                conn.cursor().executemany(
                    insert_sql("postgresql"),  # type: ignore[arg-type]
                    [as_params(r, "postgresql") for r in data[first : first + 100]],
                )


async def until_length(redis: Any, length: int) -> None:
    async def reached() -> bool:
        return bool(await redis.xlen(stream("dukcapil.citizen")) >= length)

    await wait_until(reached, timeout=600, interval=0.01)


async def measure(rate: float, seconds: float, bulk: int) -> dict[str, Any]:
    with Target.open() as target, EmbeddedPostgres(durable=True) as server:
        with psycopg.connect(server.url, autocommit=True) as conn:
            conn.execute(ddl("postgresql"))  # type: ignore[arg-type]
        write_bulk(server.url, list(rows(bulk, seed=2, first_id=10_000_000)))
        redis = target.client()
        source = LogicalSource(server.url, table=dukcapil.TABLE, key="id_peristiwa",
                               version="versi", idle_wait=5.0)  # fmt: skip
        runner = Adapter(dukcapil.NAME, source=source, mapper=dukcapil.SiakMapper(KEY),
                         publisher=Publisher(redis, source=dukcapil.SOURCE, signer=None),
                         checkpoints=RedisCheckpoints(redis),
                         quarantine=Quarantine(redis, dukcapil.NAME))  # fmt: skip
        progress(f"snapshot of {bulk} rows")
        began = time.monotonic()
        await runner.run_once()  # the slot and its snapshot
        snapshot_s = time.monotonic() - began
        stop = asyncio.Event()
        following = asyncio.create_task(runner.run(poll_interval=source.poll_interval, stop=stop))
        await asyncio.sleep(1.0)
        idle_cpu = own_cpu_s()
        await asyncio.sleep(5.0)
        idle_cpu = own_cpu_s() - idle_cpu
        committed: dict[str, float] = {}
        progress(f"writing {rate:.0f} commits/s for {seconds:.0f} s")
        busy_cpu = own_cpu_s()
        writer = threading.Thread(target=write, args=(server.url, rate, seconds, committed))
        writer.start()
        await asyncio.to_thread(writer.join)
        await asyncio.sleep(1.0)
        busy_cpu = own_cpu_s() - busy_cpu
        progress(f"streaming {bulk} rows written as fast as one connection goes")
        before = await redis.xlen(stream("dukcapil.citizen"))
        began = time.monotonic()
        data = list(rows(bulk, seed=3, first_id=20_000_000))
        await asyncio.gather(asyncio.to_thread(write_bulk, server.url, data),
                             until_length(redis, before + bulk))  # fmt: skip
        stream_s = time.monotonic() - began
        stop.set()
        await following
        await source.close()
        added = {f[b"id"].decode(): int(i.split(b"-")[0]) / 1000
                 for i, f in await redis.xrange(stream("dukcapil.citizen"))}  # fmt: skip
        await redis.aclose()
    latencies = sorted((added[e] - t) * 1000 for e, t in committed.items() if e in added)
    return {
        "rate_per_s": rate,
        "commits": len(committed),
        "published": len(latencies),
        "latency_ms": {q: round(percentile(latencies, p), 1) for q, p in QUANTILES},
        "adapter_and_writer_cpu_s_per_1000_commits": round(busy_cpu / len(committed) * 1000, 3),
        "adapter_cpu_s_per_idle_s": round(idle_cpu / 5.0, 4),
        "snapshot_rows_per_s": round(bulk / snapshot_s),
        "stream_rows_per_s": round(bulk / stream_s),  # write and publish, 100 rows a commit
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.cdc_latency", description=__doc__)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rows", type=int, default=20_000, help="for the throughput figures")
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args()
    configure("warning", "console")  # a line per batch would be one per commit
    out = asyncio.run(measure(args.rate, args.seconds, args.rows))
    print(out)
    write_json(args.json, out)


if __name__ == "__main__":
    main()
