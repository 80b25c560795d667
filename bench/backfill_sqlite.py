"""Backfill of the SQL adapter from SQLite against a raw loop, as bench/backfill.py does for
PostgreSQL (not part of ``make bench`` yet).

    .venv/bin/python -m bench.backfill_sqlite [--rows 100000] [--runs 3] [--json out.json]

The SIAK table in a SQLite file of ``--rows`` synthetic rows; each contender in a child process
of its own, alternating, median of ``--runs``. **raw**: one cursor (``ORDER BY updated_at,
no_urut``), 500 rows per fetch, each XADDed as JSON with the CloudEvents fields, 500 per
pipeline. **adapter**: ``adapters.dukcapil.adapter(redis, Path(file)).run_once()``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.backfill import BATCH, PSEUDONYM_KEY, STREAM, TARGET_RATIO
from bench.common import Target, progress, write_json


async def _raw(path: str, redis_url: str) -> int:
    from redis.asyncio import Redis  # noqa: PLC0415

    from bus.adapter import jsonable  # noqa: PLC0415

    redis = Redis.from_url(redis_url)
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    count = 0
    try:
        cursor = conn.execute("SELECT * FROM peristiwa ORDER BY updated_at, no_urut")
        while rows := cursor.fetchmany(BATCH):
            async with redis.pipeline(transaction=False) as pipe:
                for row in map(dict, rows):
                    pipe.xadd(STREAM, {
                        "specversion": "1.0",
                        "id": f"{row['id_peristiwa']}:{row['versi']}",
                        "source": "urn:malangkota:dukcapil:siak",
                        "type": "dukcapil.citizen.recorded.v1",
                        "time": row["updated_at"],
                        "datacontenttype": "application/json",
                        "data": json.dumps(row, default=jsonable),
                    })  # fmt: skip
                await pipe.execute()
            count += len(rows)
    finally:
        conn.close()
        await redis.aclose()
    return count


async def _adapter(path: str, redis_url: str) -> int:
    from adapters import dukcapil  # noqa: PLC0415
    from bus.connection import connect  # noqa: PLC0415

    redis = connect(redis_url)
    runner = dukcapil.adapter(redis, Path(path), pseudonym_key=PSEUDONYM_KEY.encode(),
                              batch_size=BATCH, signer=None)  # fmt: skip
    try:
        progress_ = await runner.run_once()
    finally:
        await redis.aclose()
        await runner.source.db.close()  # type: ignore[attr-defined]
    if progress_.quarantined or progress_.published != progress_.read:
        raise SystemExit(f"adapter did not publish every row: {progress_}")
    return progress_.published


def child(kind: str, path: str, redis_url: str) -> None:
    from bus.logging import configure  # noqa: PLC0415

    configure(level="warning", fmt="json")
    cpu0, wall0 = time.process_time(), time.perf_counter()
    rows = asyncio.run((_raw if kind == "raw" else _adapter)(path, redis_url))
    wall = time.perf_counter() - wall0
    print(json.dumps({"kind": kind, "rows": rows, "wall_s": wall, "rate": rows / wall,
                      "cpu_s": time.process_time() - cpu0}))  # fmt: skip


async def run(target: Target, *, rows: int, runs: int) -> dict[str, Any]:
    from adapters.dukcapil.fixtures import create_sqlite  # noqa: PLC0415
    from adapters.synthetic import siak_rows  # noqa: PLC0415

    out: dict[str, Any] = {"rows": rows, "runs": []}
    with tempfile.TemporaryDirectory(prefix="simpul-bench-sqlite-") as tmp:
        path = str(Path(tmp) / "siak.db")
        create_sqlite(path, siak_rows(rows, seed=1))
        for number in range(runs):
            one: dict[str, Any] = {}
            for kind in ("raw", "adapter") if number % 2 == 0 else ("adapter", "raw"):
                await target.reset()
                command = [sys.executable, "-m", "bench.backfill_sqlite", "--child", kind, path,
                           target.url]  # fmt: skip
                done = await asyncio.to_thread(subprocess.run, command, capture_output=True,
                                               text=True, check=False,
                                               cwd=Path(__file__).parents[1])  # fmt: skip
                if done.returncode != 0:
                    raise RuntimeError(f"the {kind} backfill failed:\n{done.stderr[-3000:]}")
                one[kind] = json.loads(done.stdout.strip().splitlines()[-1])
                r = one[kind]
                progress(f"sqlite {kind:<8} {rows:,} rows {r['rate']:>9,.0f} rows/s "
                         f"cpu {1e6 * r['cpu_s'] / rows:.1f} µs/row")  # fmt: skip
            one["ratio"] = one["adapter"]["rate"] / one["raw"]["rate"]
            out["runs"].append(one)
    out["ratio"] = statistics.median(r["ratio"] for r in out["runs"])
    out["met"] = out["ratio"] >= TARGET_RATIO
    return out


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(*sys.argv[2:5])
        return
    parser = argparse.ArgumentParser(prog="python -m bench.backfill_sqlite", description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args()

    async def measure() -> dict[str, Any]:
        with Target.open() as target:
            return await run(target, rows=args.rows, runs=args.runs)

    out = asyncio.run(measure())
    per_run = ", ".join(f"{r['ratio']:.0%}" for r in out["runs"])
    print(f"SQLite backfill, {args.rows:,} rows: adapter / raw = {out['ratio']:.0%} "
          f"(median; runs {per_run}; target >= {TARGET_RATIO:.0%})")  # fmt: skip
    write_json(args.json, out)


if __name__ == "__main__":
    main()
