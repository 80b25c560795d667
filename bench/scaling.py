"""Consume throughput with 1, 2 and 4 consumer processes, on one stream and on partitions.

    .venv/bin/python -m bench.scaling [--quick] [--n 100000] [--partitions 1 4] [--json out.json]

For each layout (``1``: the aggregate's one stream ``simpul:{bench.citizen}``; ``k > 1``: the
bench contract declared with ``partitions=k`` as ``bench.citizen<k>.recorded.v1``, k partition
streams ``simpul:{bench.citizen<k>.p<p>}``, each event on the partition bus/ picks for its
subject), each replica count (1, 2, 4) and each consumer (the raw redis-py loop of
bench/throughput.py, one Simpul Service): a private EmbeddedRedis is flushed, ``n`` events are
preloaded with raw XADD, the group ``bench`` is created at 0, and that many replica processes
(bench/scaling_worker.py, one per process as ``simpul run`` starts them) are started and
imported. The clock runs from the moment they are told to go until the group's lag and
pending are 0 on every stream (polled every 5 ms). Median of 3 interleaved runs (``--quick``:
1 run of 20,000 events).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from redis.asyncio import Redis

from bench.common import (
    Payloads,
    Target,
    machine_busy_s,
    machine_facts,
    progress,
    redis_cpu_s,
    write_json,
)
from bench.private import private_target
from bench.run import _quiet, _repeat
from bench.scaling_worker import GROUP, citizen_contract
from bus import keys
from bus.contracts import ContractInfo
from bus.logging import configure

ROOT = Path(__file__).resolve().parents[1]
PROCS = (1, 2, 4)
MODES = ("raw", "simpul")
SUBJECTS = 4_096  # distinct subjects: enough to spread evenly over the partitions
POLL_S = 0.005
TIMEOUT_S = 120.0
# Leases spread within about a second of the replicas starting (heartbeats every second);
# a bound for the wait, not its expected length.
BALANCE_S = 60.0


@dataclass(frozen=True)
class Layout:
    """Where the bench events go: the aggregate's one stream, or ``partitions`` streams."""

    partitions: int

    @property
    def name(self) -> str:
        return "one stream" if self.partitions == 1 else f"{self.partitions} partitions"

    @property
    def info(self) -> ContractInfo:
        return citizen_contract(self.partitions).__contract__

    @property
    def streams(self) -> list[str]:
        return self.info.streams

    def pokes(self, payloads: Payloads) -> list[dict[str, str]]:
        """One more event per stream (a subject that lands there), to wake blocked readers."""
        found: dict[str, dict[str, str]] = {}
        i = 0
        while len(found) < len(self.streams):
            fields = self.fields(payloads, i) | {"subject": f"poke-{i}"}
            found.setdefault(self.info.stream_for(fields["subject"]), fields)
            i += 1
        return list(found.values())

    def fields(self, payloads: Payloads, i: int) -> dict[str, str]:
        """Event ``i`` of the preload, with a subject, as this layout's contract."""
        info = self.info
        return payloads.fields(i) | {
            "type": info.event_type,
            "dataschema": info.dataschema,
            "subject": f"s-{i % SUBJECTS:04x}",
        }


# -- one run ------------------------------------------------------------------------------------


async def preload(target: Target, payloads: Payloads, layout: Layout, n: int) -> dict[str, int]:
    """Reset Redis and add ``n`` entries (each with a subject) behind the group's back: the
    group is created at ``$``, so replicas find nothing until :func:`open_backlog`."""
    await target.reset()
    redis = target.client()
    counts = dict.fromkeys(layout.streams, 0)
    try:
        for start in range(0, n, 1_000):
            async with redis.pipeline(transaction=False) as pipe:
                for i in range(start, min(start + 1_000, n)):
                    fields = layout.fields(payloads, i)
                    stream = layout.info.stream_for(fields["subject"])  # as bus/ routes it
                    counts[stream] += 1
                    pipe.xadd(stream, fields)  # type: ignore[arg-type]
                await pipe.execute()
        for stream in layout.streams:
            await redis.xgroup_create(stream, GROUP, id="$", mkstream=True)
    finally:
        await redis.aclose()
    return counts


async def open_backlog(redis: Redis, payloads: Payloads, layout: Layout) -> None:
    """Move the group back to 0 on every stream, then add one entry to each: the XADD wakes
    the replicas blocked in XREADGROUP (moving the group does not), and they drain it all."""
    async with redis.pipeline(transaction=False) as pipe:
        for stream in layout.streams:
            pipe.xgroup_setid(stream, GROUP, "0", entries_read=0)
        for fields in layout.pokes(payloads):
            pipe.xadd(layout.info.stream_for(fields["subject"]), fields)  # type: ignore[arg-type]
        await pipe.execute()


async def balanced(redis: Redis, layout: Layout, procs: int) -> bool:
    """Every partition is leased, to as many distinct replicas as can share them (bus/
    partitions.py; replicas that just joined get their share at the others' next rebalance).
    True at once where there are no leases: a plain stream, or the raw loop."""
    owners = await redis.mget([keys.lease(s, GROUP) for s in layout.streams])
    if not any(owners):
        return True
    return all(owners) and len(set(owners)) == min(procs, len(layout.streams))


async def _start(target: Target, mode: str, k: int, layout: Layout, log: IO[bytes]) -> Any:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.scaling_worker",
        "--url",
        target.url,
        "--mode",
        mode,
        "--consumer",
        f"{mode}-{k}",
        "--partitions",
        str(layout.partitions),
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=log,
    )
    return proc


async def _ready(proc: Any) -> None:
    line = await asyncio.wait_for(proc.stdout.readline(), 60)
    if line.strip() != b"ready":
        raise RuntimeError(f"a replica did not start (said {line!r}): see its log")


async def drained(redis: Redis, streams: list[str]) -> bool:
    """The group's lag and pending are 0 on every stream."""
    async with redis.pipeline(transaction=False) as pipe:
        for stream in streams:
            pipe.xinfo_groups(stream)
            pipe.xpending(stream, GROUP)
        replies = await pipe.execute()
    for groups, pending in zip(replies[::2], replies[1::2], strict=True):
        (group,) = [g for g in groups if g["name"] in (GROUP, GROUP.encode())]
        if group["lag"] != 0 or pending["pending"] != 0:
            return False
    return True


async def drain(
    target: Target, payloads: Payloads, layout: Layout, *, mode: str, procs: int, n: int
) -> dict[str, float]:
    """Preload, start ``procs`` replicas and let them settle (leases balanced), then time them
    draining the group's backlog; stop them."""
    await preload(target, payloads, layout, n - len(layout.streams))
    redis = target.client()
    with _workerprogress() as log:
        workers = [await _start(target, mode, k, layout, log) for k in range(procs)]
        try:
            await asyncio.gather(*(_ready(w) for w in workers))
            await _wait(lambda: balanced(redis, layout, procs), BALANCE_S, "leases to balance")
            redis0, busy0, own0 = await redis_cpu_s(redis), machine_busy_s(), time.process_time()
            for w in workers:
                w.stdin.write(b"go\n")
            await asyncio.gather(*(w.stdin.drain() for w in workers))
            wall0 = time.perf_counter()
            await open_backlog(redis, payloads, layout)
            await _wait(lambda: drained(redis, layout.streams), TIMEOUT_S, f"{n} events")
            wall = time.perf_counter() - wall0
            busy, own = machine_busy_s() - busy0, time.process_time() - own0
            server = await redis_cpu_s(redis) - redis0
            for w in workers:  # all at once: each takes up to a blocked read (2 s) to stop
                w.stdin.close()
            reports = [await _stop(w) for w in workers]
        finally:
            for w in workers:
                if w.returncode is None:
                    w.kill()
                    await w.wait()
            await redis.aclose()
    handled = sum(int(r["handled"]) for r in reports)
    if handled != n:
        raise AssertionError(f"{mode} x{procs} handled {handled} of {n} events")
    replicas_cpu = sum(r["cpu_s"] for r in reports)
    return {
        "rate": n / wall,
        "wall_s": wall,
        "client_us": 1e6 * replicas_cpu / n,  # all replicas together
        "redis_us": 1e6 * server / n,
        "others_pct": max(0.0, 100 * (busy - replicas_cpu - server - own) / wall),
        "handled_min": min(int(r["handled"]) for r in reports),
        "handled_max": max(int(r["handled"]) for r in reports),
    }


async def _wait(done: Callable[[], Awaitable[bool]], timeout_s: float, what: str) -> None:
    deadline = time.perf_counter() + timeout_s
    while not await done():
        if time.perf_counter() > deadline:
            raise TimeoutError(f"waited {timeout_s:.0f} s for {what}")
        await asyncio.sleep(POLL_S)


async def _stop(worker: Any) -> dict[str, float]:
    line = await asyncio.wait_for(worker.stdout.readline(), 30)
    await asyncio.wait_for(worker.wait(), 30)
    if worker.returncode != 0 or not line:
        raise RuntimeError(f"a replica failed (exit {worker.returncode}): see its log")
    report: dict[str, float] = json.loads(line)
    return report


@contextlib.contextmanager
def _workerprogress() -> Any:
    """Replicas' stderr (warnings only) goes to a file, shown if something went wrong."""
    path = Path(f"/tmp/simpul-bench-scaling-{time.time_ns()}.log")
    with path.open("w+b") as log:
        try:
            yield log
        except BaseException:
            log.seek(0)
            sys.stderr.write(log.read().decode(errors="replace")[-4_000:])
            raise
    path.unlink()


# -- the run ------------------------------------------------------------------------------------


def workload_name(mode: str, layout: Layout, procs: int) -> str:
    return f"{mode} p{layout.partitions} x{procs}"


async def run(args: argparse.Namespace) -> dict[str, Any]:
    runs = 1 if args.quick else 3
    n = args.n or (20_000 if args.quick else 100_000)
    layouts = [Layout(p) for p in args.partitions]
    began = time.perf_counter()
    out: dict[str, Any] = {
        "command": " ".join([".venv/bin/python -m bench.scaling", *sys.argv[1:]]),
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_facts(),
        "runs": runs,
        "n": n,
        "procs": list(args.procs),
        "partitions": [layout.partitions for layout in layouts],
    }
    out["others_at_start_pct"] = await _quiet(patience_s=0 if args.no_wait else 60)
    with private_target() as target:
        out["redis"] = await target.facts()
        client = target.client()
        payloads = Payloads(client)
        out["entry_bytes"] = payloads.entry_bytes()
        out["spread"] = {  # the preload of each layout (one entry per stream comes later)
            layout.name: await preload(target, payloads, layout, n - len(layout.streams))
            for layout in layouts
        }
        results: dict[str, Any] = {}
        await _repeat(
            results,
            {
                workload_name(mode, layout, procs): (
                    n,
                    lambda k, mode=mode, layout=layout, procs=procs: drain(  # type: ignore[misc]
                        target, payloads, layout, mode=mode, procs=procs, n=k
                    ),
                )
                for layout in layouts
                for procs in args.procs
                for mode in MODES
            },
            runs,
        )
        out["drain"] = results
        await client.aclose()
    out["duration_s"] = time.perf_counter() - began
    return out


# -- the report ---------------------------------------------------------------------------------


def table(out: dict[str, Any]) -> str:
    d = out["drain"]

    def spread(entry: dict[str, Any]) -> str:
        rates = [r["rate"] for r in entry["runs"]]
        return f"{min(rates):,.0f}-{max(rates):,.0f}" if len(rates) > 1 else "-"

    lines = [
        f"Drain {out['n']:,} preloaded events, median of {out['runs']} run(s); the machine has "
        f"{out['machine']['nproc']} cores, shared by Redis, the replicas and this process:",
        "",
        "| layout | replicas | raw events/s | range | **Simpul** events/s | range | "
        "Simpul / raw | Simpul vs 1 replica | replicas' CPU µs/event (raw / Simpul) | "
        "Redis CPU µs/event (raw / Simpul) |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for partitions in out["partitions"]:
        layout = Layout(partitions)
        one = d.get(workload_name("simpul", layout, 1), {}).get("rate")
        for procs in out["procs"]:
            raw = d[workload_name("raw", layout, procs)]
            sim = d[workload_name("simpul", layout, procs)]
            sim_rate = sim["rate"]
            note = " (more than the cores)" if procs > out["machine"]["nproc"] else ""
            lines.append(
                f"| {layout.name} | {procs}{note} | {raw['rate']:,.0f} | {spread(raw)} | "
                f"{sim['rate']:,.0f} | {spread(sim)} | {sim['rate'] / raw['rate']:.0%} | "
                f"{f'{sim_rate / one:.2f}x' if one else '-'} | "
                f"{raw['client_us']:.1f} / {sim['client_us']:.1f} | "
                f"{raw['redis_us']:.1f} / {sim['redis_us']:.1f} |"
            )
    others = [e["others_pct"] for e in d.values()]
    lines += [
        "",
        f"Other processes on the machine: {out['others_at_start_pct']:.0f}% of a core at the "
        f"start, {min(others):.0f}-{max(others):.0f}% during the runs (median per workload).",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scaling", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="one run of 20,000 events")
    parser.add_argument("--n", type=int, default=0, help="events per run")
    parser.add_argument(
        "--partitions",
        type=int,
        nargs="+",
        default=[1, 4],
        help="layouts: 1 = the aggregate's one stream, k > 1 = k partition streams",
    )
    parser.add_argument(
        "--no-wait", action="store_true", help="start at once, however busy the machine is"
    )
    parser.add_argument("--procs", type=int, nargs="+", default=list(PROCS), help="replicas")
    parser.add_argument("--json", metavar="PATH", help="write every measurement as JSON")
    args = parser.parse_args(argv)
    configure(level="warning", fmt="json")
    out = asyncio.run(run(args))
    print(table(out))
    write_json(args.json, out)
    progress(f"done in {out['duration_s']:.0f} s")


if __name__ == "__main__":
    main()
