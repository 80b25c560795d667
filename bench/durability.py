"""What durable acknowledgement costs: publishing with ``WAIT 1`` against without, in one run.

    .venv/bin/python -m bench.durability [--events 3000] [--rounds 3] [--json out.json]

A private master and one replica (EmbeddedRedis, AOF ``appendfsync everysec`` as in bench.run,
loopback, free ports, stopped by pid). Each round measures, alternating the two modes so that
machine noise falls on both: ``publish()`` awaited one by one (throughput and p50/p99 of each
call), ``publish_many()`` in batches of 100 (throughput), and the ``once=True`` guard of a
consumer (bus.dedupe: ``begin`` before the handler, ``finish`` after it, each with its WAIT)
awaited event by event, without a handler: what the guard itself costs. Figures are medians of
the rounds. docs/performance.md, "Durable acknowledgement", quotes a run.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from bench.common import BATCH, STREAM, Payloads, median, percentile, progress, report
from bench.contract import SOURCE
from bus import Publisher
from bus.connection import connect
from bus.dedupe import Claim, Dedupe
from bus.durability import Durability
from bus.local.redis import EmbeddedRedis
from bus.logging import configure

MODES = {"no WAIT": Durability(0), "WAIT 1": Durability(1, timeout_ms=2_000)}


async def _one_by_one(
    publisher: Publisher, payloads: Payloads, start: int, n: int
) -> dict[str, float]:
    took: list[float] = []
    began = time.perf_counter()
    for i in range(start, start + n):
        t = time.perf_counter()
        await publisher.publish(payloads.model(i), id=f"bench-{i}")
        took.append(time.perf_counter() - t)
    elapsed = time.perf_counter() - began
    took.sort()
    return {
        "rate": n / elapsed,
        "p50_ms": percentile(took, 50) * 1e3,
        "p99_ms": percentile(took, 99) * 1e3,
    }


async def _batched(publisher: Publisher, payloads: Payloads, start: int, n: int) -> float:
    began = time.perf_counter()
    for first in range(start, start + n, BATCH):
        envelopes = [
            publisher.envelope(payloads.model(i), id=f"bench-{i}")
            for i in range(first, min(first + BATCH, start + n))
        ]
        await publisher.publish_many(envelopes)
    return n / (time.perf_counter() - began)


async def _once_guard(redis: Redis, durability: Durability, start: int, n: int) -> dict[str, float]:
    dedupe = Dedupe(
        redis, group="bench", consumer="c1", lease_ms=30_000, ttl_ms=600_000, durability=durability
    )
    took: list[float] = []
    began = time.perf_counter()
    for i in range(start, start + n):
        t = time.perf_counter()
        event_id, entry_id = f"bench-{i}", f"{i}-0"
        if await dedupe.begin(STREAM, event_id, entry_id) is not Claim.RUN:
            raise RuntimeError(f"the once guard refused a new event ({event_id})")
        await dedupe.finish(STREAM, event_id, entry_id)
        took.append(time.perf_counter() - t)
    elapsed = time.perf_counter() - began
    took.sort()
    return {"once_rate": n / elapsed, "once_p99_ms": percentile(took, 99) * 1e3}


async def _replica_online(redis: Redis, timeout_s: float = 30.0) -> None:
    """Until the replica finished its first sync (WAIT would time out before)."""
    for _ in range(int(timeout_s / 0.05)):
        if (await redis.info("replication")).get("slave0", {}).get("state") == "online":
            return
        await asyncio.sleep(0.05)
    raise RuntimeError("the benchmark's replica did not come online in time")


async def measure(url: str, events: int, rounds: int) -> dict[str, Any]:
    redis = connect(url, cluster=False)
    try:
        await _replica_online(redis)
        payloads = Payloads(redis)
        publishers = {
            mode: Publisher(redis, source=SOURCE, signer=None, durability=durability)
            for mode, durability in MODES.items()
        }
        results: dict[str, dict[str, list[float]]] = {m: {} for m in MODES}
        offset = 0
        for round_ in range(rounds):
            for mode, publisher in publishers.items():
                progress(f"round {round_ + 1}/{rounds}: {mode}")
                await redis.delete(STREAM)
                single = await _one_by_one(publisher, payloads, offset, events)
                offset += events
                batched = await _batched(publisher, payloads, offset, events * 5)
                offset += events * 5
                once = await _once_guard(redis, MODES[mode], offset, events)
                offset += events
                for name, value in (*single.items(), ("batched_rate", batched), *once.items()):
                    results[mode].setdefault(name, []).append(value)
    finally:
        await redis.aclose()
    return {
        mode: {name: median(v) for name, v in figures.items()} for mode, figures in results.items()
    }


def table(out: dict[str, Any]) -> str:
    rows = [
        "| mode | publish() one by one | p50 | p99 | publish_many (batches of 100) "
        "| once guard (begin + finish) | its p99 |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for mode, f in out["modes"].items():
        rows.append(
            f"| {mode} | {f['rate']:,.0f}/s | {f['p50_ms']:.2f} ms | "
            f"{f['p99_ms']:.2f} ms | {f['batched_rate']:,.0f}/s | "
            f"{f['once_rate']:,.0f}/s | {f['once_p99_ms']:.2f} ms |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=3_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    configure(level="warning", fmt="console")
    with tempfile.TemporaryDirectory(prefix="simpul-bench-ha-") as folder:
        master = EmbeddedRedis(Path(folder) / "master", appendfsync="everysec").start()
        follow = ("--replicaof", master.host, str(master.port))
        replica = EmbeddedRedis(Path(folder) / "replica", appendfsync="everysec", extra_args=follow)
        try:
            replica.start()
            out = {
                "events": args.events,
                "rounds": args.rounds,
                "modes": asyncio.run(measure(master.url, args.events, args.rounds)),
            }
        finally:
            replica.stop()
            master.stop()
    report(out, table, args.json)


if __name__ == "__main__":
    main()
