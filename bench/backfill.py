"""Backfill: every polling source's adapter against a raw loop of its own, one harness.

    .venv/bin/python -m bench.backfill [--quick] [--sources postgresql,sqlite,...] [--runs 3]
                                       [--json out.json]

**postgresql** (the SIAK table, 1M rows; also a memory check at 100k): PostgreSQL is
``SIMPUL_POSTGRES_URL`` if set (the benchmark works in a schema of its own and drops it), else
a private server from ``bus.local.postgres``. Redis as in bench/run.py. The table is
``adapters.dukcapil``'s ``peristiwa`` (outbox trigger dropped), filled by COPY with rows of
``adapters.synthetic.siak_rows``.

* **raw**: one server-side cursor (``ORDER BY updated_at, no_urut``), rows fetched 500 at a
  time, each XADDed as JSON with the CloudEvents fields, 500 per pipeline; no mapping, no
  validation, no dedupe, no checkpoint.
* **adapter**: ``adapters.dukcapil.adapter(...).run_once()`` as `simpul adapter run --once`
  runs it: keyset batches of 500, mapping, contract validation, the publish script (dedupe),
  a checkpoint per batch.

Both run in a child process of their own, which reports its wall time, its CPU time and its
peak resident memory (``VmHWM`` of /proc/self/status). The adapter runs at two table sizes, so
flat memory shows as the same peak. CPU of Redis and (a private) PostgreSQL is measured too; a
run during which other processes took more than a quarter of a core is repeated once.
``BENCH_BACKFILL_BATCH`` changes the batch size of both sides (default 500, the adapter's).

The other sources (SQLite, MariaDB polling, the CSV drop folder, the CDC sources' initial
snapshots: bench/backfill_sources.py says how each is filled and read) run raw and adapter
alternately, ``--runs`` times each on a table of ``--rows``, and report the median ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from bench import backfill_sources
from bench.common import Target, machine_busy_s, progress, redis_cpu_s, write_json
from bus import keys

FULL = (100_000, 1_000_000)  # (small table for the memory check, full backfill)
QUICK = (10_000, 50_000)
OTHER_ROWS = {"full": 50_000, "quick": 10_000}  # per source besides PostgreSQL
OTHER_RUNS = {"full": 3, "quick": 1}
SOURCES = ("postgresql", *backfill_sources.NAMES)
BATCH = int(os.environ.get("BENCH_BACKFILL_BATCH", "500"))  # the adapter's default; raw: the same
STREAM = keys.stream("dukcapil.citizen")
PSEUDONYM_KEY = "bench-pseudonym-key-0123456789abcdef"
TARGET_RATIO = 0.70  # issue 13: every source's backfill >= 70% of its raw loop
DISTURBED_PCT = 25.0  # as in bench/run.py


# -- the database -------------------------------------------------------------------------------


@dataclass
class Database:
    """The benchmark's PostgreSQL: a URL into a schema of its own, and the server's pid when
    it is our private server (so its CPU can be told apart from other processes')."""

    url: str
    pid: int | None

    def cpu_s(self) -> float:
        """CPU seconds of the server and its backends so far (0 for a server not ours)."""
        return 0.0 if self.pid is None else _tree_cpu_s(self.pid)


@contextlib.contextmanager
def database() -> Iterator[Database]:
    """A fresh schema on SIMPUL_POSTGRES_URL, else on a private server stopped at the end."""
    from bus.local.postgres import EmbeddedPostgres  # noqa: PLC0415

    shared = os.environ.get("SIMPUL_POSTGRES_URL")
    if shared:
        with _schema(shared) as url:
            yield Database(url, None)
        return
    with EmbeddedPostgres() as server, _schema(server.url) as url:
        yield Database(url, server.pid)


@contextlib.contextmanager
def _schema(server: str) -> Iterator[str]:
    import psycopg  # noqa: PLC0415 - optional dependency

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")  # type: ignore[arg-type]
    separator = "&" if "?" in server else "?"
    try:
        yield f"{server}{separator}options={quote(f'-csearch_path={schema}')}"
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")  # type: ignore[arg-type]


def _tree_cpu_s(pid: int) -> float:
    """utime + stime of ``pid`` and its live children, + what it reaped (cutime + cstime)."""
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rpartition(")")[2].split()
            if stat.parent.name == str(pid):
                ticks += sum(int(v) for v in fields[11:15])
            elif int(fields[1]) == pid:
                ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def create_table(url: str) -> None:
    import psycopg  # noqa: PLC0415

    from adapters.dukcapil.schema import ddl  # noqa: PLC0415

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(ddl("postgresql"))  # type: ignore[arg-type]
        # The backfill reads the change column; a trigger copying every row would double COPY.
        conn.execute("DROP TRIGGER peristiwa_outbox ON peristiwa")


def load(url: str, count: int, *, first_id: int) -> float:
    """COPY ``count`` synthetic rows into peristiwa; seconds taken."""
    import psycopg  # noqa: PLC0415

    from adapters import synthetic  # noqa: PLC0415
    from adapters.dukcapil.schema import COLUMNS  # noqa: PLC0415

    began = time.perf_counter()
    # One seed per slice, so the rows do not repeat the earlier slice's people.
    rows = synthetic.siak_rows(count, seed=first_id, first_id=first_id)
    with psycopg.connect(url) as conn:
        with conn.cursor() as cur:
            copy_sql = f"COPY peristiwa ({', '.join(COLUMNS)}) FROM STDIN"
            with cur.copy(copy_sql) as copy:  # type: ignore[arg-type]
                for row in rows:
                    copy.write_row([row[c] for c in COLUMNS])
        conn.commit()
        conn.execute("ANALYZE peristiwa")
        conn.commit()
    return time.perf_counter() - began


# -- the two children ---------------------------------------------------------------------------


def _peak_rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


async def _raw(db_url: str, redis_url: str) -> int:
    import psycopg  # noqa: PLC0415
    from psycopg.rows import dict_row  # noqa: PLC0415
    from redis.asyncio import Redis  # noqa: PLC0415

    from bus.adapter import jsonable  # noqa: PLC0415

    redis = Redis.from_url(redis_url)
    count = 0
    try:
        async with (
            await psycopg.AsyncConnection.connect(db_url, row_factory=dict_row) as conn,
            conn.cursor(name="backfill") as cursor,
        ):
            await cursor.execute("SELECT * FROM peristiwa ORDER BY updated_at, no_urut")
            while rows := await cursor.fetchmany(BATCH):
                async with redis.pipeline(transaction=False) as pipe:
                    for row in rows:
                        pipe.xadd(
                            STREAM,
                            {
                                "specversion": "1.0",
                                "id": f"{row['id_peristiwa']}:{row['versi']}",
                                "source": "urn:malangkota:dukcapil:siak",
                                "type": "dukcapil.citizen.recorded.v1",
                                "time": row["updated_at"].isoformat(),
                                "datacontenttype": "application/json",
                                "data": json.dumps(row, default=jsonable),
                            },
                        )
                    await pipe.execute()
                count += len(rows)
    finally:
        await redis.aclose()
    return count


async def _adapter(db_url: str, redis_url: str) -> int:
    from adapters import dukcapil  # noqa: PLC0415
    from bus.connection import connect  # noqa: PLC0415

    redis = connect(redis_url)
    key = PSEUDONYM_KEY.encode()
    runner = dukcapil.adapter(redis, db_url, pseudonym_key=key, batch_size=BATCH)
    try:
        progress = await runner.run_once()
    finally:
        await redis.aclose()
        await runner.source.db.close()  # type: ignore[attr-defined]
    if progress.quarantined or progress.published != progress.read:
        raise SystemExit(f"adapter did not publish every row: {progress}")
    return progress.published


def child(kind: str, db_url: str, redis_url: str) -> None:
    """Run one backfill in this process and print its figures as JSON."""
    from bus.logging import configure  # noqa: PLC0415

    configure(level="warning", fmt="json")
    backfill_sources.load_modules("postgresql")  # before the clock: see load_modules
    cpu0, wall0 = time.process_time(), time.perf_counter()
    work = _raw if kind == "raw" else _adapter
    rows = asyncio.run(work(db_url, redis_url))
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    usage = resource.getrusage(resource.RUSAGE_SELF)  # with start-up and imports
    print(
        json.dumps(
            {
                "kind": kind,
                "rows": rows,
                "wall_s": wall,
                "cpu_s": cpu,
                "process_cpu_s": usage.ru_utime + usage.ru_stime,
                "rate": rows / wall,
                "peak_rss_mib": _peak_rss_mib(),
            }
        )
    )


def _spawn(kind: str, db_url: str, redis_url: str) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.backfill", "--child", kind, db_url, redis_url]
    done = subprocess.run(
        command, capture_output=True, text=True, check=False, cwd=Path(__file__).parents[1]
    )
    if done.returncode != 0:
        raise RuntimeError(f"the {kind} backfill failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# -- the measurement ----------------------------------------------------------------------------


async def _measure(kind: str, target: Target, db: Database, expected: int) -> dict[str, Any]:
    """One backfill in a child; again (once) if other processes took more than a quarter of a
    core meanwhile, as bench/run.py does for its workloads."""
    discarded = []
    for attempt in range(2):
        result = await _once(kind, target, db, expected)
        if result["others_pct"] <= DISTURBED_PCT or attempt == 1:
            break
        progress("  other processes were busy: measuring again")
        discarded.append(result)
    result["discarded"] = discarded
    return result


async def _once(kind: str, target: Target, db: Database, expected: int) -> dict[str, Any]:
    await target.reset()
    redis = target.client()
    try:
        busy0, redis0, pg0 = machine_busy_s(), await redis_cpu_s(redis), db.cpu_s()
        result = await asyncio.to_thread(_spawn, kind, db.url, target.url)
        busy, pg = machine_busy_s() - busy0, db.cpu_s() - pg0
        server = await redis_cpu_s(redis) - redis0
        length = await redis.xlen(STREAM)
    finally:
        await redis.aclose()
    if result["rows"] != expected or length != expected:
        raise RuntimeError(
            f"{kind}: {result['rows']} rows read, {length} in the stream, expected {expected}"
        )
    others = busy - result["process_cpu_s"] - server - pg
    result.update(
        redis_cpu_s=server, postgres_cpu_s=pg, others_pct=max(0.0, 100 * others / result["wall_s"])
    )
    per_row = {
        k: f"{1e6 * v / expected:4.1f}"
        for k, v in (("cpu", result["cpu_s"]), ("redis", server), ("postgres", pg))
    }
    progress(
        f"backfill {kind:<8} {expected:>9,} rows {result['rate']:>9,.0f} rows/s µs/row: "
        + " ".join(f"{k} {v}" for k, v in per_row.items())
        + f" peak RSS {result['peak_rss_mib']:.0f} MiB others {result['others_pct']:3.0f}%"
    )
    return result


async def run(
    target: Target,
    *,
    quick: bool,
    sources: tuple[str, ...] = SOURCES,
    runs: int | None = None,
    rows: int | None = None,
) -> dict[str, Any]:
    """PostgreSQL (both sizes, raw and adapter at the large one; the figures of bench/run.py's
    section), then every other source in ``sources`` (``out["sources"]``)."""
    mode = "quick" if quick else "full"
    out: dict[str, Any] = {"batch": BATCH, "sources": {}}
    if "postgresql" in sources:
        out.update(await _postgresql(target, quick=quick))
        out["sources"]["postgresql"] = {
            "rows": out["sizes"][1],
            "runs": 1,
            "ratio": out["ratio"],
            "met": out["met"],
            "raw": [out["raw"]],
            "adapter": [out["adapter"]],
        }
    for name in sources:
        if name != "postgresql":
            out["sources"][name] = await _other(
                target, name, rows or OTHER_ROWS[mode], runs or OTHER_RUNS[mode]
            )
    out["all_met"] = all(r["met"] for r in out["sources"].values())
    return out


async def _postgresql(target: Target, *, quick: bool) -> dict[str, Any]:
    small, large = QUICK if quick else FULL
    out: dict[str, Any] = {"sizes": [small, large]}
    with database() as db:
        create_table(db.url)
        out["load_s"] = load(db.url, small, first_id=1)
        progress(f"loaded {small:,} rows by COPY in {out['load_s']:.1f} s")
        memory_small = await _measure("adapter", target, db, small)
        seconds = load(db.url, large - small, first_id=small + 1)
        out["load_s"] += seconds
        progress(f"loaded {large - small:,} more rows by COPY in {seconds:.1f} s")
        raw = await _measure("raw", target, db, large)
        adapter = await _measure("adapter", target, db, large)
    await target.reset()
    out.update(
        {
            "raw": raw,
            "adapter": adapter,
            "adapter_small": memory_small,
            "ratio": adapter["rate"] / raw["rate"],
            "memory_growth": adapter["peak_rss_mib"] / memory_small["peak_rss_mib"],
        }
    )
    out["met"] = out["ratio"] >= TARGET_RATIO
    return out


async def _other(target: Target, name: str, rows: int, runs: int) -> dict[str, Any]:
    """Raw and adapter alternately, ``runs`` times each; the median ratio of the runs."""
    out: dict[str, Any] = {"rows": rows, "runs": runs, "raw": [], "adapter": [], "ratios": []}
    with tempfile.TemporaryDirectory(prefix="simpul-bench-backfill-") as tmp:
        work = Path(tmp)
        began = time.perf_counter()
        with backfill_sources.prepared(name, rows, work) as source:
            progress(f"{name}: {rows:,} rows ready in {time.perf_counter() - began:.1f} s")
            for number in range(runs):
                one = {}
                for kind in ("raw", "adapter") if number % 2 == 0 else ("adapter", "raw"):
                    one[kind] = await _source_once(kind, target, source, work)
                    out[kind].append(one[kind])
                out["ratios"].append(one["adapter"]["rate"] / one["raw"]["rate"])
    await target.reset()
    out["ratio"] = statistics.median(out["ratios"])
    out["met"] = out["ratio"] >= TARGET_RATIO
    progress(
        f"{name}: adapter / raw = {out['ratio']:.0%} (runs "
        + ", ".join(f"{r:.0%}" for r in out["ratios"])
        + ")"
    )
    return out


async def _source_once(
    kind: str, target: Target, source: backfill_sources.Prepared, work: Path
) -> dict[str, Any]:
    await target.reset()
    stream = backfill_sources.stream_of(source.name)
    location = backfill_sources.fresh_copy(source, work) if kind == "adapter" else source.location
    redis = target.client()
    try:
        busy0, redis0 = machine_busy_s(), await redis_cpu_s(redis)
        db0 = _tree_cpu_s(source.pid) if source.pid else 0.0
        command = [
            sys.executable,
            "-m",
            "bench.backfill",
            "--source-child",
            kind,
            source.name,
            location,
            target.url,
            str(source.rows),
        ]
        result = await asyncio.to_thread(_run_child, command, f"{source.name} {kind}")
        busy = machine_busy_s() - busy0
        db = (_tree_cpu_s(source.pid) if source.pid else 0.0) - db0
        server = await redis_cpu_s(redis) - redis0
        length = await redis.xlen(stream)
        entries: Any = await redis.xrevrange(stream, count=1)
        last: bytes = entries[0][0] if entries else b"0-0"
    finally:
        await redis.aclose()
        backfill_sources.discard_copy(source, location)
    if result["rows"] != source.rows or length != source.rows:
        raise RuntimeError(
            f"{source.name} {kind}: {result['rows']} rows read, {length} in the "
            f"stream, expected {source.rows}"
        )
    # To the last event's entry id: a CDC pass's idle wait on the log at the end is left out.
    seconds = int(last.split(b"-")[0]) / 1000 - result["began"]
    others = busy - result["process_cpu_s"] - server - db
    result.update(
        seconds=seconds,
        rate=source.rows / seconds,
        redis_cpu_s=server,
        db_cpu_s=db,
        others_pct=max(0.0, 100 * others / result["wall_s"]),
    )
    n = source.rows
    progress(
        f"backfill {source.name:<19} {kind:<8} {n:>8,} rows {result['rate']:>8,.0f} rows/s "
        f"µs/row: cpu {1e6 * result['cpu_s'] / n:5.1f} redis {1e6 * server / n:4.1f} "
        f"db {1e6 * db / n:4.1f} others {result['others_pct']:3.0f}%"
    )
    return result


def source_child(kind: str, name: str, location: str, redis_url: str, expected: str) -> None:
    """Run one raw loop or adapter over a source other than PostgreSQL; print its figures."""
    from bus.logging import configure  # noqa: PLC0415

    configure(level="warning", fmt="json")
    backfill_sources.load_modules(name)  # before the clock: see load_modules
    began, cpu0, wall0 = time.time(), time.process_time(), time.perf_counter()
    if kind == "raw":
        work = backfill_sources.raw(name, location, redis_url, BATCH)
    else:
        work = backfill_sources.adapter(name, location, redis_url, BATCH, int(expected))
    rows = asyncio.run(work)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(
        json.dumps(
            {
                "kind": kind,
                "rows": rows,
                "began": began,
                "wall_s": wall,
                "cpu_s": cpu,
                "process_cpu_s": usage.ru_utime + usage.ru_stime,
                "peak_rss_mib": _peak_rss_mib(),
            }
        )
    )


def _run_child(command: list[str], what: str) -> dict[str, Any]:
    done = subprocess.run(
        command, capture_output=True, text=True, check=False, cwd=Path(__file__).parents[1]
    )
    if done.returncode != 0:
        raise RuntimeError(f"the {what} backfill failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# -- report -------------------------------------------------------------------------------------


def table(b: dict[str, Any]) -> list[str]:
    """The PostgreSQL backfill figures as a Markdown table (used by bench/run.py)."""
    raw = b["raw"]["rate"]
    rows = [
        ("raw loop (server-side cursor, pipelined XADD, no checkpoint)", b["raw"]),
        ("**Simpul** SQL adapter (`adapters.dukcapil`, keyset batches)", b["adapter"]),
        ("**Simpul** SQL adapter, smaller table (memory check)", b["adapter_small"]),
    ]
    lines = [
        "| backfill | rows | rows/s | vs raw | client CPU µs/row | Redis CPU µs/row "
        "| PostgreSQL CPU µs/row | peak RSS MiB | others |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, r in rows:
        n = r["rows"]
        lines.append(
            f"| {label} | {n:,} | {r['rate']:,.0f} | {r['rate'] / raw:.0%} | "
            f"{1e6 * r['cpu_s'] / n:.1f} | {1e6 * r.get('redis_cpu_s', 0) / n:.1f} | "
            f"{1e6 * r.get('postgres_cpu_s', 0) / n:.1f} | {r['peak_rss_mib']:.0f} | "
            f"{r.get('others_pct', 0):.0f}% |"
        )
    return lines


def sources_table(b: dict[str, Any]) -> list[str]:
    """Every source's adapter against its raw loop (medians of the runs), as Markdown."""
    lines = [
        "| source | rows | runs | raw rows/s | adapter rows/s | adapter / raw (runs) "
        "| client CPU µs/row raw → adapter | Redis CPU µs/row raw → adapter | target |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, r in b.get("sources", {}).items():
        n = r["rows"]

        def med(kind: str, key: str, r: dict[str, Any] = r, n: int = n) -> float:
            value = float(statistics.median(x.get(key, 0.0) for x in r[kind]))
            return value * (1e6 / n if key != "rate" else 1)

        runs = ", ".join(f"{x:.0%}" for x in r.get("ratios", [r["ratio"]]))
        lines.append(
            f"| {backfill_sources.LABELS[name]} | {n:,} | {r['runs']} | {med('raw', 'rate'):,.0f} "
            f"| {med('adapter', 'rate'):,.0f} | **{r['ratio']:.0%}** ({runs}) "
            f"| {med('raw', 'cpu_s'):.1f} → {med('adapter', 'cpu_s'):.1f} "
            f"| {med('raw', 'redis_cpu_s'):.1f} → {med('adapter', 'redis_cpu_s'):.1f} "
            f"| {'met' if r['met'] else '**missed**'} |"
        )
    return lines


def main(argv: list[str] | None = None) -> None:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(*sys.argv[2:5])
        return
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--source-child":
        source_child(*sys.argv[2:7])
        return
    parser = argparse.ArgumentParser(prog="python -m bench.backfill", description=__doc__)
    parser.add_argument("--quick", action="store_true", help=f"{QUICK[1]:,} rows, not 1M")
    parser.add_argument(
        "--sources", default=",".join(SOURCES), help=f"comma-separated, of {', '.join(SOURCES)}"
    )
    parser.add_argument("--runs", type=int, help="runs per source besides PostgreSQL")
    parser.add_argument("--rows", type=int, help="rows per source besides PostgreSQL")
    parser.add_argument("--json", metavar="PATH", help="write the figures as JSON")
    args = parser.parse_args(argv)
    sources = tuple(s.strip() for s in args.sources.split(",") if s.strip())
    unknown = sorted(set(sources) - set(SOURCES))
    if unknown:
        parser.error(f"unknown source(s) {', '.join(unknown)}: choose of {', '.join(SOURCES)}")

    async def measure() -> dict[str, Any]:
        with Target.open() as target:
            return await run(
                target, quick=args.quick, sources=sources, runs=args.runs, rows=args.rows
            )

    began = time.perf_counter()
    out = asyncio.run(measure())
    out["duration_s"] = time.perf_counter() - began
    if "raw" in out:
        print("\n".join(table(out)))
        large, small = out["adapter"], out["adapter_small"]
        print(
            f"\npeak RSS {large['peak_rss_mib']:.0f} MiB at {out['sizes'][1]:,} rows "
            f"vs {small['peak_rss_mib']:.0f} MiB at {out['sizes'][0]:,}\n"
        )
    print("\n".join(sources_table(out)))
    print(
        f"\ntarget: every source's adapter >= {TARGET_RATIO:.0%} of its raw loop: "
        f"{'met' if out['all_met'] else 'MISSED'}"
    )
    write_json(args.json, out)
    progress(f"done in {out['duration_s']:.0f} s")


if __name__ == "__main__":
    main()
