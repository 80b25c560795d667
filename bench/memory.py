"""What retained events cost in Redis memory, and whether work grows with what is retained.

    .venv/bin/python -m bench.memory [--quick] [--sizes 1000 10000 ...] [--json out.json]

For each size N (10^3 to 10^6; ``--quick``: to 10^5), on a private EmbeddedRedis (AOF,
appendfsync everysec) flushed before: N events are published with ``Publisher.publish_many``
(100 per call, no retention, no signer), then measured:

- memory: INFO ``used_memory`` (and ``used_memory_rss``) after minus before, per event;
  ``MEMORY USAGE <stream> SAMPLES 0`` per event; the producer dedupe markers (``:seen:`` keys,
  one per event, counted with DBSIZE, sized by MEMORY USAGE of 1,000 of them); all against the
  bytes of the wire fields and values of the stored entries;
- snapshot times (median): XINFO STREAM, XINFO GROUPS and XPENDING of a group created at 0,
  ``bus.admin.inspect.snapshot`` (what ``simpul status`` takes, SCAN discovery included) and an
  ``inspect.Inspector`` that discovered the streams before (what the exporter and the dashboard
  take between discoveries);
- publish: ``publish_many`` of min(N, 10,000) more events onto the retained N (then trimmed
  back to N); read: the group, recreated at 0, reads min(N, 10,000) entries from the oldest
  with XREADGROUP COUNT 100 and one XACK per batch. Median of 3 windows each; a window during
  which other processes used more than 25% of a core is measured again (at most twice), as
  in bench/run.py.

Memory is measured before the windows; ``--redis-arg NAME VALUE`` passes a setting to the
private redis-server (e.g. ``stream-node-max-bytes 65536``) to compare stream encodings.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis

from bench.common import (
    BATCH,
    STREAM,
    Meter,
    Payloads,
    Target,
    _aof_idle,
    machine_facts,
    progress,
    write_json,
)
from bench.contract import SOURCE
from bench.private import private_target
from bench.run import DISTURBED_PCT, RETRIES, _quiet
from bus import Publisher, keys
from bus.admin import inspect
from bus.logging import configure

SIZES = (1_000, 10_000, 100_000, 1_000_000)
WINDOW = 10_000  # events per publish/read window at each size
WINDOWS = 3  # timed windows per size: the median is reported
GROUP = "bench"
MARKER_SAMPLE = 1_000


async def used_memory(redis: Redis) -> tuple[int, int]:
    info = await redis.info("memory")
    return int(info["used_memory"]), int(info["used_memory_rss"])


async def forks(redis: Redis) -> int:
    return int((await redis.info("stats"))["total_forks"])


async def publish(publisher: Publisher, payloads: Payloads, start: int, n: int) -> None:
    for first in range(start, start + n, BATCH):
        await publisher.publish_many(
            [payloads.model(i) for i in range(first, min(first + BATCH, start + n))]
        )


async def timed(call: Callable[[], Awaitable[object]], repeat: int) -> float:
    """Median wall milliseconds of ``repeat`` awaited calls."""
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        await call()
        times.append(1000 * (time.perf_counter() - began))
    return statistics.median(times)


async def marker_bytes(redis: Redis) -> float:
    """Mean MEMORY USAGE of up to MARKER_SAMPLE producer dedupe markers."""
    found: list[bytes] = []
    async for key in redis.scan_iter(match=keys.seen(STREAM, "*"), count=1_000):
        found.append(key)
        if len(found) >= MARKER_SAMPLE:
            break
    async with redis.pipeline(transaction=False) as pipe:
        for key in found:
            pipe.memory_usage(key, samples=0)
        sizes = await pipe.execute()
    return statistics.fmean(int(s) for s in sizes)


async def wire_bytes(redis: Redis) -> tuple[float, float]:
    """Mean bytes of field names and values, and of ``data``, of up to 1,000 stored entries."""
    entries: list[tuple[bytes, dict[bytes, bytes]]] = await redis.xrange(STREAM, count=1_000)  # type: ignore[assignment]
    total = [sum(len(k) + len(v) for k, v in fields.items()) for _, fields in entries]
    data = [len(fields[b"data"]) for _, fields in entries]
    return statistics.fmean(total), statistics.fmean(data)


async def read_window(redis: Redis, n: int) -> dict[str, float]:
    """The group reads ``n`` entries from the oldest: XREADGROUP COUNT 100, one XACK per batch."""
    async with Meter(redis, n) as meter:
        done = 0
        while done < n:
            reply: Any = await redis.xreadgroup(
                GROUP, "reader", {STREAM: ">"}, count=min(BATCH, n - done)
            )
            ids = [entry_id for _, entries in reply for entry_id, _ in entries]
            await redis.xack(STREAM, GROUP, *ids)
            done += len(ids)
    return meter.result


async def undisturbed(work: Callable[[], Awaitable[dict[str, float]]]) -> dict[str, Any]:
    """The median of WINDOWS timed windows; a window during which other processes were busy
    is measured again (at most RETRIES times, as bench/run.py does)."""
    runs, discarded = [], 0
    for _ in range(WINDOWS):
        for attempt in range(RETRIES + 1):
            result = await work()
            if result["others_pct"] <= DISTURBED_PCT or attempt == RETRIES:
                break
            discarded += 1
            await asyncio.sleep(2)
        runs.append(result)
    keys_ = ("rate", "client_us", "redis_us", "others_pct")
    return {k: statistics.median(r[k] for r in runs) for k in keys_} | {
        "runs": runs,
        "discarded": discarded,
    }


async def measure_size(target: Target, payloads: Payloads, n: int) -> dict[str, Any]:
    await target.reset()
    redis = target.client()
    publisher = Publisher(redis, source=SOURCE, signer=None)
    try:
        await publisher.publish_many([payloads.model(0)])  # loads the script: not counted
        await target.reset()
        mem0, rss0 = await used_memory(redis)
        forks0 = await forks(redis)
        async with Meter(redis, n) as fill:
            await publish(publisher, payloads, 0, n)
        fill.result["forks"] = await forks(redis) - forks0
        await _aof_idle(redis)
        mem1, rss1 = await used_memory(redis)
        stream = int(await redis.memory_usage(STREAM, samples=0) or 0)
        markers = await redis.dbsize() - 1
        marker = await marker_bytes(redis)
        wire, data = await wire_bytes(redis)
        await redis.xgroup_create(STREAM, GROUP, id="0")
        inspector = inspect.Inspector(redis, rediscover_s=3_600)
        await inspector.take()  # discovers once: later takes measure the known streams only
        snap = {
            "xinfo_stream_ms": await timed(lambda: redis.xinfo_stream(STREAM), 21),
            "xinfo_groups_ms": await timed(lambda: redis.xinfo_groups(STREAM), 21),
            "xpending_ms": await timed(lambda: redis.xpending(STREAM, GROUP), 21),
            "status_ms": await timed(lambda: inspect.snapshot(redis), 3),
            "inspector_ms": await timed(inspector.take, 5),
        }
        window = min(n, WINDOW)
        published = n

        async def more() -> dict[str, float]:
            nonlocal published
            async with Meter(redis, window) as meter:
                await publish(publisher, payloads, published, window)
            published += window
            await redis.xtrim(STREAM, maxlen=n)  # back to N entries (the markers stay)
            await _aof_idle(redis)
            return meter.result

        async def read() -> dict[str, float]:
            await redis.xgroup_destroy(STREAM, GROUP)  # again from the oldest entry
            await redis.xgroup_create(STREAM, GROUP, id="0")
            return await read_window(redis, window)

        publish_at_size = await undisturbed(more)
        read_at_size = await undisturbed(read)
    finally:
        await redis.aclose()
    result: dict[str, Any] = {
        "n": n,
        "used_memory": mem1 - mem0,
        "rss": rss1 - rss0,
        "stream": stream,
        "markers": markers,
        "marker_bytes": marker,
        "wire_bytes": wire,
        "data_bytes": data,
        "fill": fill.result,
        "publish": publish_at_size,
        "read": read_at_size,
        **snap,
    }
    progress(
        f"{n:>9,}: {result['used_memory'] / n:6.0f} B/event used_memory, stream "
        f"{stream / n:5.0f} B, markers {markers:,} x {marker:.0f} B, wire {wire:.0f} B; "
        f"publish {publish_at_size['rate']:,.0f}/s, read {read_at_size['rate']:,.0f}/s, "
        f"status {snap['status_ms']:.1f} ms"
    )
    return result


async def run(args: argparse.Namespace) -> dict[str, Any]:
    sizes = args.sizes or [s for s in SIZES if not args.quick or s <= 100_000]
    began = time.perf_counter()
    out: dict[str, Any] = {
        "command": " ".join([".venv/bin/python -m bench.memory", *sys.argv[1:]]),
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_facts(),
    }
    out["others_at_start_pct"] = await _quiet(patience_s=0 if args.no_wait else 60)
    extra = [f"--{name}" if i % 2 == 0 else name for i, name in enumerate(args.redis_arg)]
    out["redis_args"] = extra
    with private_target(extra) as target:
        out["redis"] = await target.facts()
        client = target.client()
        payloads = Payloads(client)
        out["sizes"] = [await measure_size(target, payloads, n) for n in sizes]
        await client.aclose()
    out["duration_s"] = time.perf_counter() - began
    return out


# -- the report ---------------------------------------------------------------------------------


def table(out: dict[str, Any]) -> str:
    sizes = out["sizes"]
    lines = [
        "Memory per retained event (bytes; the wire size is the entry's field names and values):",
        "",
        "| retained events | used_memory / event | RSS / event | stream (MEMORY USAGE) / event "
        "| dedupe markers / event | markers' share | wire bytes / event | used_memory / wire |",
        "|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for s in sizes:
        n = s["n"]
        markers = s["markers"] * s["marker_bytes"]
        lines.append(
            f"| {n:,} | {s['used_memory'] / n:,.0f} | {s['rss'] / n:,.0f} | "
            f"{s['stream'] / n:,.0f} | {markers / n:,.0f} ({s['markers']:,} keys) | "
            f"{markers / s['used_memory']:.0%} | {s['wire_bytes']:,.0f} | "
            f"{s['used_memory'] / n / s['wire_bytes']:.2f}x |"
        )
    lines += [
        "",
        "Work at each retained size (publish and read: median of 3 windows of min(N, 10,000) "
        "events; snapshot times: median wall ms):",
        "",
        "| retained events | fill: publish_many events/s | publish at size events/s | "
        "publish Redis µs/event | read events/s | read Redis µs/event | XINFO STREAM ms | "
        "XINFO GROUPS ms | XPENDING ms | `simpul status` snapshot ms | "
        "same, streams already discovered ms |",
        "|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for s in sizes:
        fill, pub, read = s["fill"], s["publish"], s["read"]
        forks = fill.get("forks", 0)
        forks_note = f" ({forks} AOF rewrite{'s' if forks > 1 else ''})" if forks else ""
        lines.append(
            f"| {s['n']:,} | {fill['rate']:,.0f}{forks_note} | {pub['rate']:,.0f} | "
            f"{pub['redis_us']:.1f} | {read['rate']:,.0f} | {read['redis_us']:.1f} | "
            f"{s['xinfo_stream_ms']:.2f} | {s['xinfo_groups_ms']:.2f} | "
            f"{s['xpending_ms']:.2f} | {s['status_ms']:.1f} | {s['inspector_ms']:.1f} |"
        )
    others = [s[k]["others_pct"] for s in sizes for k in ("fill", "publish", "read")]
    lines += [
        "",
        f"Other processes on the machine: {out['others_at_start_pct']:.0f}% of a core at the "
        f"start, {min(others):.0f}-{max(others):.0f}% during the timed windows.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.memory", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="sizes up to 10^5")
    parser.add_argument(
        "--no-wait", action="store_true", help="start at once, however busy the machine is"
    )
    parser.add_argument("--sizes", type=int, nargs="+", help="retained sizes to measure")
    parser.add_argument(
        "--redis-arg",
        nargs=2,
        action="extend",
        default=[],
        metavar=("NAME", "VALUE"),
        help="a redis-server setting, e.g. stream-node-max-bytes 65536 (repeatable)",
    )
    parser.add_argument("--json", metavar="PATH", help="write every measurement as JSON")
    args = parser.parse_args(argv)
    configure(level="warning", fmt="json")
    out = asyncio.run(run(args))
    print(table(out))
    write_json(args.json, out)
    progress(f"done in {out['duration_s']:.0f} s")


if __name__ == "__main__":
    main()
