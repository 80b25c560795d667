"""What every benchmark shares: the Redis under test, key cleanup, the prepared entries, stats."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from bench.contract import EVENT_TYPE, SOURCE, CitizenRecorded, make_events
from bus import Publisher, keys
from bus.local.redis import EmbeddedRedis

STREAM = keys.stream_of(EVENT_TYPE)  # simpul:{bench.citizen}: raw and Simpul use the same key
FS_STREAM = "bench:faststream"
# Everything the benchmarks create on a shared Redis (streams, dedupe markers, dead letters).
KEY_PATTERNS = (f"{STREAM}*", "bench:*")
BATCH = 100
DISTINCT_PAYLOADS = 2_000  # cycled through: realistic variety without building 50k models


@dataclass
class Target:
    """One Redis for the whole run: SIMPUL_REDIS_URL, or a private embedded server."""

    url: str
    embedded: EmbeddedRedis | None

    @classmethod
    @contextlib.contextmanager
    def open(cls) -> Iterator[Target]:
        url = os.environ.get("SIMPUL_REDIS_URL")
        if url:
            yield cls(url, None)
            return
        with tempfile.TemporaryDirectory(prefix="simpul-bench-") as data_dir:
            server = EmbeddedRedis(data_dir, appendfsync="everysec")
            server.start()
            try:
                yield cls(server.url, server)
            finally:
                server.stop()

    def client(self) -> Redis:
        return Redis.from_url(self.url, decode_responses=False)

    async def reset(self) -> None:
        """FLUSHDB on our own server; on a shared one, delete only the benchmark's keys."""
        redis = self.client()
        try:
            if self.embedded is not None:
                # Compact the AOF too: otherwise an automatic rewrite (a fork) triggered by the
                # previous workload's writes lands in the middle of the next measurement.
                await _aof_idle(redis)
                await redis.flushdb()
                await redis.bgrewriteaof()
                await _aof_idle(redis)
                return
            for pattern in KEY_PATTERNS:
                batch: list[bytes] = []
                async for key in redis.scan_iter(match=pattern, count=1_000):
                    batch.append(key)
                    if len(batch) >= 1_000:
                        await redis.unlink(*batch)
                        batch.clear()
                if batch:
                    await redis.unlink(*batch)
        finally:
            await redis.aclose()

    async def facts(self) -> dict[str, Any]:
        redis = self.client()
        try:
            info = await redis.info("server")
            try:
                config: Any = await redis.config_get("append*")
                text = {_text(k): _text(v) for k, v in config.items()}
                fsync, aof = text.get("appendfsync", "?"), text.get("appendonly", "?")
            except Exception:
                fsync = aof = "unknown"
        finally:
            await redis.aclose()
        return {
            "redis_version": info.get("redis_version"),
            "redis": "embedded (bus.local.redis.EmbeddedRedis)"
            if self.embedded
            else "SIMPUL_REDIS_URL",
            "appendonly": aof,
            "appendfsync": fsync,
        }


async def _aof_idle(redis: Redis, timeout_s: float = 60.0) -> None:
    """Wait until no AOF rewrite is running or scheduled."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        info = await redis.info("persistence")
        if not info.get("aof_rewrite_in_progress") and not info.get("aof_rewrite_scheduled"):
            return
        await asyncio.sleep(0.01)


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def progress(message: str) -> None:
    """A timestamped line on stderr: what a long benchmark is doing (stdout is its report)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def write_json(path: str | None, out: dict[str, Any]) -> None:
    """Every measurement of a run, as JSON, when ``--json PATH`` asked for it."""
    if path:
        Path(path).write_text(json.dumps(out, indent=2, default=str) + "\n")


def report(out: dict[str, Any], table: Callable[[dict[str, Any]], str], path: str | None) -> None:
    """A standalone benchmark's ending: its table on stdout, its figures as JSON if asked."""
    print(table(out))
    write_json(path, out)


def machine_facts() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
        **{
            pkg: version(pkg)
            for pkg in ("redis", "hiredis", "pydantic", "pydantic_core", "faststream")
        },
    }


class Payloads:
    """The same events for every workload: models, their JSON, and v1 wire fields."""

    def __init__(self, redis: Redis) -> None:
        self.models: list[CitizenRecorded] = make_events(DISTINCT_PAYLOADS)
        self.publisher = Publisher(redis, source=SOURCE)
        self.envelopes = [self.publisher.envelope(m) for m in self.models]

    def model(self, i: int) -> CitizenRecorded:
        return self.models[i % len(self.models)]

    def fields(self, i: int) -> dict[str, str]:
        """Wire-format v1 fields of event ``i``: a fresh id, the payload cycled."""
        envelope = self.envelopes[i % len(self.envelopes)]
        return envelope.with_attributes(id=f"{envelope.id[:-8]}{i:08x}").to_fields()

    def entry_bytes(self) -> float:
        sizes = [
            sum(len(k) + len(v.encode()) for k, v in e.to_fields().items()) for e in self.envelopes
        ]
        return statistics.fmean(sizes)


async def preload(redis: Redis, stream: str, payloads: Payloads, n: int) -> None:
    """Fill ``stream`` with ``n`` v1 entries (pipelined XADD, not part of any measurement)."""
    for start in range(0, n, 1_000):
        async with redis.pipeline(transaction=False) as pipe:
            for i in range(start, min(start + 1_000, n)):
                pipe.xadd(stream, payloads.fields(i))  # type: ignore[arg-type]
            await pipe.execute()


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted sequence."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), math.ceil(q / 100 * len(sorted_values))))
    return sorted_values[rank - 1]


async def redis_cpu_s(redis: Redis) -> float:
    """CPU time of the Redis server process so far (all its threads), from INFO cpu."""
    info = await redis.info("cpu")
    return sum(
        float(info.get(k, 0))
        for k in (
            "used_cpu_user",
            "used_cpu_sys",
            "used_cpu_user_children",
            "used_cpu_sys_children",
        )
    )


def machine_busy_s() -> float:
    """CPU seconds all processes on the machine have used so far (from /proc/stat)."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(v) for v in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return float("nan")
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_cpu_s() -> float:
    """CPU seconds of this process and its waited-for children (the latency consumers)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class Meter:
    """Times one workload: wall clock, this process's CPU and the Redis server's CPU.

    The client side of every throughput workload runs in this process, so ``client_us`` is
    its CPU per event; ``redis_us`` is the server's (on a shared Redis it includes others).
    """

    def __init__(self, redis: Redis, n: int) -> None:
        self.redis = redis
        self.n = n
        self.result: dict[str, float] = {}

    async def __aenter__(self) -> Meter:
        self._redis0 = await redis_cpu_s(self.redis)
        self._busy0 = machine_busy_s()
        self._cpu0 = time.process_time()
        self._wall0 = time.perf_counter()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        wall = time.perf_counter() - self._wall0
        cpu = time.process_time() - self._cpu0
        busy = machine_busy_s() - self._busy0
        server = await redis_cpu_s(self.redis) - self._redis0
        self.result = {
            "rate": self.n / wall,
            "wall_s": wall,
            "client_us": 1e6 * cpu / self.n,
            "redis_us": 1e6 * server / self.n,
            # CPU that neither we nor Redis used: other processes disturbing the measurement.
            "others_pct": max(0.0, 100 * (busy - cpu - server) / wall),
        }
