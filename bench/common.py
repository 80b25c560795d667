"""What every benchmark shares: the Redis under test, key cleanup, the prepared entries, stats."""

from __future__ import annotations

import contextlib
import math
import os
import platform
import statistics
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

from redis.asyncio import Redis

from bench.contract import EVENT_TYPE, SOURCE, CitizenRecorded, make_events
from bus import Publisher, keys
from bus.embedded import EmbeddedRedis

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
                await redis.flushdb()
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
                fsync = (await redis.config_get("appendfsync")).get(b"appendfsync", b"?").decode()
                aof = (await redis.config_get("appendonly")).get(b"appendonly", b"?").decode()
            except Exception:  # noqa: BLE001 - CONFIG may be denied on a managed Redis
                fsync = aof = "unknown"
        finally:
            await redis.aclose()
        return {
            "redis_version": info.get("redis_version"),
            "redis": "embedded (bus.embedded.EmbeddedRedis)" if self.embedded else "SIMPUL_REDIS_URL",
            "appendonly": aof,
            "appendfsync": fsync,
        }


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
        **{pkg: version(pkg) for pkg in ("redis", "hiredis", "pydantic", "pydantic_core", "faststream")},
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
        sizes = [sum(len(k) + len(v.encode()) for k, v in e.to_fields().items()) for e in self.envelopes]
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
