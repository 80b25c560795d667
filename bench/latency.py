"""End-to-end latency and consumer CPU at a steady rate, the consumer in its own process.

The parent publishes at a fixed rate, stamping ``time.monotonic_ns()`` (one clock for every
process on the host) into a ``sentns`` field: a CloudEvents extension attribute for Simpul, a
plain stream field for the raw loop. The child consumes, records the delay when the event
reaches its handler (after validation), and reports its own CPU time over the window the
parent marks with ``start`` / ``stop`` on its stdin:

    child -> "ready"            group exists, first poll done
    parent -> "start"           child notes CPU time and clock, forgets earlier latencies
    child -> "started"          (only then does the parent send events)
    parent -> "stop <n>"        child notes CPU time and clock, waits for <n> events, reports
    child -> {json}             cpu_s, wall_s, received, latencies (p50/p90/p99/max in ms)
    parent -> "quit"

Run as ``python -m bench.latency child raw|simpul <redis-url>`` by :func:`measure`.
"""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import gc
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from bench.common import BATCH, STREAM, Payloads, Target, machine_busy_s, percentile, redis_cpu_s
from bench.contract import CitizenRecorded
from bus import EventContext, Publisher, Service, Settings
from bus.logging import configure
from bus.testing import wait_until

_ROOT = Path(__file__).resolve().parent.parent
SENT = "sentns"
GROUP_RAW = "bench-lat-raw"
GROUP_SIMPUL = "bench-lat"
BLOCK_MS = 2_000  # Simpul's default block_ms, used for the raw loop too


# -- child side ---------------------------------------------------------------------------------


class _Window:
    def __init__(self) -> None:
        self.latencies: list[int] = []
        self.received = 0
        self.arrived = asyncio.Event()
        self.gc_pauses: list[tuple[int, int]] = []  # (generation, ns) of collections in the window
        self._gc_started = 0
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter_ns()
        else:
            self.gc_pauses.append((info["generation"], time.perf_counter_ns() - self._gc_started))

    def reset(self) -> None:
        self.latencies.clear()
        self.received = 0
        self.gc_pauses.clear()

    def record(self, sent_ns: int) -> None:
        self.latencies.append(time.monotonic_ns() - sent_ns)
        self.received += 1
        self.arrived.set()


def _cpu_s() -> float:
    """User + system CPU of this process (all threads), nanosecond clock."""
    return time.process_time()


async def _control(window: _Window, ready: Callable[[], Awaitable[None]], mode: str) -> None:
    await ready()
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    cpu0 = wall0 = 0.0
    # BENCH_PROFILE_DIR=<dir>: cProfile each window, written to <dir>/<mode>-<pid>-<n>.prof
    profile_dir = os.environ.get("BENCH_PROFILE_DIR")
    profiler, windows = None, 0
    while True:
        line = (await loop.run_in_executor(None, sys.stdin.readline)).split()
        if not line or line[0] == "quit":
            return
        if line[0] == "start":
            window.reset()
            cpu0, wall0 = _cpu_s(), time.monotonic()
            if profile_dir:
                profiler = cProfile.Profile()
                profiler.enable()
            print("started", flush=True)
        elif line[0] == "stop":
            cpu1, wall1 = _cpu_s(), time.monotonic()
            if profiler is not None:
                profiler.disable()
                windows += 1
                profiler.dump_stats(
                    Path(profile_dir or ".") / f"{mode}-{os.getpid()}-{windows}.prof"
                )
            expected = int(line[1])
            deadline = time.monotonic() + 10
            while window.received < expected and time.monotonic() < deadline:
                window.arrived.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(window.arrived.wait(), 0.5)
            ms = sorted(v / 1e6 for v in window.latencies)
            pauses = list(window.gc_pauses)
            print(
                json.dumps(
                    {
                        "cpu_s": cpu1 - cpu0,
                        "wall_s": wall1 - wall0,
                        "received": window.received,
                        "p50_ms": percentile(ms, 50),
                        "p90_ms": percentile(ms, 90),
                        "p99_ms": percentile(ms, 99),
                        "max_ms": ms[-1] if ms else float("nan"),
                        "samples_us": [round(v / 1e3) for v in window.latencies],
                        "gc": {
                            f"gen{g}": [
                                sum(1 for p in pauses if p[0] == g),
                                round(max((p[1] for p in pauses if p[0] == g), default=0) / 1e6, 3),
                            ]
                            for g in range(3)
                        },  # collections, longest pause ms
                    }
                ),
                flush=True,
            )


async def _child_raw(url: str) -> None:
    """The hand-written loop of the consume baseline, blocking on XREADGROUP."""
    target = Target(url, None)
    redis = target.client()
    window = _Window()
    await redis.xgroup_create(STREAM, GROUP_RAW, id="0", mkstream=True)

    async def loop() -> None:
        model = CitizenRecorded
        while True:
            reply: Any = await redis.xreadgroup(
                GROUP_RAW, "raw-1", {STREAM: ">"}, count=BATCH, block=BLOCK_MS
            )
            for stream, entries in reply:
                ids = []
                for entry_id, fields in entries:
                    model.model_validate_json(fields[b"data"])
                    window.record(int(fields[b"sentns"]))
                    ids.append(entry_id)
                await redis.xack(stream, GROUP_RAW, *ids)

    async def ready() -> None:
        await redis.ping()

    task = asyncio.create_task(loop())
    task.add_done_callback(_report_crash)
    await _control(window, ready, "raw")
    task.cancel()


def _report_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        print(f"raw consumer loop died: {task.exception()!r}", file=sys.stderr, flush=True)


async def _child_simpul(url: str) -> None:
    # Unsigned entries, verification off (bench/throughput.py's simpul_settings says why).
    settings = Settings.load(
        redis_url=url, batch_size=BATCH, consumer="lat-1", log_level="warning", signatures="off"
    )
    service = Service(GROUP_SIMPUL, settings=settings)
    window = _Window()

    @service.on(CitizenRecorded)
    async def handle(event: CitizenRecorded, ctx: EventContext) -> None:
        window.record(int(ctx.envelope.extensions[SENT]))  # type: ignore[index]

    async def ready() -> None:
        await wait_until(lambda: service.health.last_poll is not None, timeout=30)

    async with service.running():
        await _control(window, ready, "simpul")


def child_main(mode: str, url: str) -> None:
    configure(level="warning", fmt="json")
    asyncio.run(_child_raw(url) if mode == "raw" else _child_simpul(url))


# -- parent side --------------------------------------------------------------------------------


class _Child:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def spawn(cls, mode: str, url: str) -> _Child:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.latency",
            "child",
            mode,
            url,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            cwd=_ROOT,
        )
        child = cls(proc)
        line = await child.readline(30)
        if line != "ready":
            raise RuntimeError(f"latency child {mode} did not start: {line!r}")
        return child

    async def readline(self, timeout: float) -> str:
        assert self.proc.stdout is not None
        return (await asyncio.wait_for(self.proc.stdout.readline(), timeout)).decode().strip()

    async def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{line}\n".encode())
        await self.proc.stdin.drain()

    async def window(self, redis: Redis, body: Callable[[], Awaitable[int]]) -> dict[str, Any]:
        busy0, own0, server0 = machine_busy_s(), time.process_time(), await redis_cpu_s(redis)
        await self.send("start")
        if (line := await self.readline(30)) != "started":  # before the first event is sent
            raise RuntimeError(f"latency child did not start its window: {line!r}")
        sent = await body()
        await asyncio.sleep(0.1)  # the last events' latency is measured, not cut off
        await self.send(f"stop {sent}")
        result: dict[str, Any] = json.loads(await self.readline(30))
        busy, own = machine_busy_s() - busy0, time.process_time() - own0
        server = await redis_cpu_s(redis) - server0
        result["sent"] = sent
        result["cpu_pct"] = 100 * result["cpu_s"] / result["wall_s"]
        result["publisher_cpu_pct"] = 100 * own / result["wall_s"]
        result["redis_cpu_pct"] = 100 * server / result["wall_s"]
        # CPU used by neither the consumer, the publisher nor Redis: other processes.
        others = busy - own - server - result["cpu_s"]
        result["others_pct"] = max(0.0, 100 * others / result["wall_s"])
        return result

    async def close(self) -> None:
        await self.send("quit")
        try:
            await asyncio.wait_for(self.proc.wait(), 15)
        except TimeoutError:
            self.proc.kill()  # our own child, by its pid
            await self.proc.wait()


async def _paced(send: Callable[[int], Awaitable[None]], rate: float, duration_s: float) -> int:
    """Send at ``rate`` events/s for ``duration_s``; each event is stamped as it is sent."""
    interval = 1e9 / rate
    start = time.monotonic_ns()
    end = start + int(duration_s * 1e9)
    sent = 0
    while (now := time.monotonic_ns()) < end:
        due = int((now - start) / interval) + 1
        while sent < due:
            await send(sent)
            sent += 1
        delay = (start + sent * interval - time.monotonic_ns()) / 1e9
        if delay > 0:
            await asyncio.sleep(delay)
    return sent


async def measure(
    target: Target,
    payloads: Payloads,
    consumer: str,
    publisher: str,
    *,
    rate: float,
    duration_s: float,
    idle_s: float,
) -> dict[str, Any]:
    """An idle window (if ``idle_s``), then a paced one, with a ``consumer`` child process.

    ``publisher`` "raw" sends with one XADD per event (the payload dumped by pydantic);
    "simpul" with ``Publisher.publish`` (validate, encode, idempotent Lua). A raw-published
    entry is a valid v1 event with the extension attribute ``sentns``, so either consumer
    can read either publisher's entries.
    """
    await target.reset()
    redis = target.client()
    child = await _Child.spawn(consumer, target.url)
    result: dict[str, Any] = {"consumer": consumer, "publisher": publisher}
    try:
        if idle_s:
            result["idle"] = await child.window(redis, lambda: _idle(idle_s))
        send = _sender(redis, payloads, publisher)
        result["load"] = await child.window(redis, lambda: _paced(send, rate, duration_s))
    finally:
        await child.close()
        await redis.aclose()
    return result


def _sender(redis: Redis, payloads: Payloads, publisher: str) -> Callable[[int], Awaitable[None]]:
    if publisher == "raw":

        async def send_raw(i: int) -> None:
            fields = payloads.fields(i)
            fields[SENT] = str(time.monotonic_ns())
            fields["data"] = payloads.model(i).model_dump_json()
            await redis.xadd(STREAM, fields)  # type: ignore[arg-type]

        return send_raw
    simpul = Publisher(redis, source=payloads.publisher.source)

    async def send_simpul(i: int) -> None:
        sent = time.monotonic_ns()
        envelope = simpul.envelope(payloads.model(i))
        await simpul.publish(envelope.with_attributes(extensions={SENT: str(sent)}))

    return send_simpul


async def _idle(seconds: float) -> int:
    await asyncio.sleep(seconds)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "child":
        child_main(sys.argv[2], sys.argv[3])
    else:
        sys.exit("usage: python -m bench.latency child raw|simpul <redis-url>")
