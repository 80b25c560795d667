"""Failover time under Sentinel: how long publishing and consuming stop when the master dies.

    .venv/bin/python -m bench.failover [--failovers 5] [--down-after-ms 1000] [--json out.json]

A private Sentinel group (bus.local.sentinel: a master, two replicas, three Sentinels, loopback,
stopped by pid). In one process, a publisher publishes one event every 10 ms (``WAIT 1``, the
default under Sentinel), retrying the same event on any outage error until it is taken (publish
is idempotent), and a service consumes them. The master is SIGKILLed ``--failovers`` times; each
killed server is restarted and rejoins as a replica before the next kill.

Per failover:
* **publish gap**: the last publish that returned before the kill to the first that returned
  after it (so it includes up to one publish interval);
* **consumer resume**: the kill to the consumption of the first event published after it (on
  the new master: what a department downstream waits for);
* **Sentinel switch**: the kill to every Sentinel naming the new master.
All three are dominated by ``down-after-milliseconds`` (1 s here, 5 s in deploy/redis/
sentinel.conf): a Sentinel waits that long before it calls the master down. Figures: median
and maximum. docs/performance.md, "Failover time", quotes a run.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import median, progress, report
from bench.contract import SOURCE
from bus import EventContext, Publisher, RedisUnavailable, Service
from bus.connection import TRANSIENT, connect
from bus.local.sentinel import EmbeddedSentinelGroup
from bus.logging import configure
from bus.testing import quick_settings
from schemas.dukcapil import CitizenDied
from tests.chaos.producer import died

INTERVAL_S = 0.01


class Run:
    def __init__(self) -> None:
        self.published: list[float] = []  # monotonic times of publishes that returned
        self.consumed: dict[int, float] = {}  # event number -> first consumed (monotonic)
        self.numbers: list[int] = []  # event number of each publish that returned
        self.stop = asyncio.Event()

    def resume(self, at: float) -> float:
        """The kill at ``at`` to the consumption of the first event published after it."""
        i = bisect.bisect_left(self.published, at)
        if i == len(self.published) or self.numbers[i] not in self.consumed:
            return float("nan")
        return self.consumed[self.numbers[i]] - at

    async def publish(self, publisher: Publisher) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            while not self.stop.is_set():
                try:
                    await publisher.publish(died(n), id=f"failover-{n}")
                    self.published.append(time.monotonic())
                    self.numbers.append(n)
                    break
                except (RedisUnavailable, *TRANSIENT):
                    await asyncio.sleep(INTERVAL_S)
            await asyncio.sleep(INTERVAL_S)


def gap(times: list[float], at: float) -> float:
    """From the last time before ``at`` to the first after it (NaN if none after)."""
    i = bisect.bisect_left(times, at)
    if i == 0 or i == len(times):
        return float("nan")
    return times[i] - times[i - 1]


def kill(group: EmbeddedSentinelGroup) -> tuple[float, float]:
    """SIGKILL the master; returns the kill time and the seconds until the Sentinels agreed on
    a new one. The killed server is restarted and back in sync before this returns."""
    old = group.master()
    killed = time.monotonic()
    old.kill()
    group.wait_new_master(old)
    switched = time.monotonic() - killed
    old.start()
    group.wait_replicas_online(2, time.monotonic() + 30)
    return killed, switched


async def measure(group: EmbeddedSentinelGroup, failovers: int) -> dict[str, Any]:
    run = Run()
    # Unsigned entries, verification off (bench/throughput.py's simpul_settings says why).
    settings = quick_settings(group.url, consumer="c1", signatures="off")
    service = Service("bench-failover", settings=settings)

    @service.on(CitizenDied)
    async def consumed(event: CitizenDied, ctx: EventContext) -> None:
        run.consumed.setdefault(int(ctx.event_id.rsplit("-", 1)[1]), time.monotonic())

    redis = connect(group.url)
    kills: list[tuple[float, float]] = []
    try:
        async with service.running():
            publishing = asyncio.create_task(run.publish(Publisher(redis, source=SOURCE)))
            await asyncio.sleep(2.0)
            for k in range(failovers):
                progress(f"failover {k + 1}/{failovers}")
                kills.append(await asyncio.to_thread(kill, group))
                await asyncio.sleep(2.0)
            run.stop.set()
            await publishing
            await asyncio.sleep(2.0)  # the last events consumed
    finally:
        await redis.aclose()
    rows = [
        {
            "publish_gap_s": gap(run.published, at),
            "consumer_resume_s": run.resume(at),
            "sentinel_switch_s": switched,
        }
        for at, switched in kills
    ]
    summary = {
        name: {"median": median([r[name] for r in rows]), "max": max(r[name] for r in rows)}
        for name in rows[0]
    }
    return {
        "failovers": rows,
        "summary": summary,
        "published": len(run.published),
        "consumed": len(run.consumed),
    }


def table(out: dict[str, Any]) -> str:
    names = {
        "sentinel_switch_s": "Sentinels name the new master (from the kill)",
        "publish_gap_s": "publishing stops (last ok publish to first ok publish)",
        "consumer_resume_s": "consumer resumes (kill to first event of the new master consumed)",
    }
    head = f"over {len(out['failovers'])} failovers (down-after {out['down_after_ms']} ms)"
    rows = [f"| {head} | median | max |", "|---|---:|---:|"]
    for name, label in names.items():
        figure = out["summary"][name]
        rows.append(f"| {label} | {figure['median']:.2f} s | {figure['max']:.2f} s |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--failovers", type=int, default=5)
    parser.add_argument("--down-after-ms", type=int, default=1_000)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    configure(level="error", fmt="console")
    with tempfile.TemporaryDirectory(prefix="simpul-bench-failover-") as folder:
        group = EmbeddedSentinelGroup(Path(folder), down_after_ms=args.down_after_ms)
        with group:
            os.environ.update(group.environment())
            out = asyncio.run(measure(group, args.failovers))
    out["down_after_ms"] = args.down_after_ms
    report(out, table, args.json)


if __name__ == "__main__":
    main()
