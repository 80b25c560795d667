"""Scenario 4: redis-server frozen (SIGSTOP) for longer than every client timeout, then resumed.

Two replicas serve ``/readyz`` (``SIMPUL_HTTP``); a producer publishes with a 1 s timeout per
attempt. The server is stopped for 8 s — longer than the clients' socket timeout
(``block_ms`` + 5 s) and the health's staleness limit — then continued. Each replica's
readiness must go green, red while Redis is frozen, green again; afterwards nothing is lost or
pending and no replica is stuck. Publishes sent into the frozen server time out (``unknown``)
and may well land when it resumes: the retry of the same id is then a duplicate, not a copy.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from bus.connection import connect
from bus.local.redis import EmbeddedRedis, free_port
from tests.chaos.harness import Processes, Run, wait_for_entries

pytestmark = [pytest.mark.slow, pytest.mark.chaos]

PAUSE_S = 8.0
EVENTS = 400
REPLICAS = ("c1", "c2")
CONSUMER, PRODUCER = "tests.chaos.consumer", "tests.chaos.producer"


@dataclass
class Readiness:
    """``/readyz`` status codes of each replica, by phase (before, paused, after)."""

    addresses: dict[str, str]
    phase: str = "before"
    seen: dict[tuple[str, str], list[int]] = field(default_factory=dict)

    async def watch(self) -> None:
        async with httpx.AsyncClient(timeout=1.0) as client:
            while True:
                for name, address in self.addresses.items():
                    status = await _status(client, f"http://{address}/readyz")
                    self.seen.setdefault((name, self.phase), []).append(status)
                await asyncio.sleep(0.1)

    def of(self, name: str, phase: str) -> list[int]:
        return self.seen.get((name, phase), [])

    def all_green(self) -> bool:
        return all(self.of(name, self.phase)[-1:] == [200] for name in self.addresses)


async def _status(client: httpx.AsyncClient, url: str) -> int:
    """0 while nothing answers (the replica is starting)."""
    try:
        return (await client.get(url)).status_code
    except httpx.TransportError:
        return 0


async def wait_for(condition: object, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_redis_frozen_past_client_timeouts_turns_health_red_then_green_and_loses_nothing(
    tmp_path: Path, private_redis: EmbeddedRedis
) -> None:
    run = Run(tmp_path, private_redis.url)
    addresses = {name: f"127.0.0.1:{free_port()}" for name in REPLICAS}
    readiness = Readiness(addresses)
    redis: Redis = connect(private_redis.url)
    with Processes(tmp_path / "logs") as procs:
        for name in REPLICAS:
            procs.start(name, CONSUMER, *run.consumer_args(name, http=addresses[name]))
        watcher = asyncio.create_task(readiness.watch())
        try:
            await wait_for(readiness.all_green, "both replicas ready")
            producing = run.producer_args("s4", events=EVENTS, seed=8_404, interval_ms=10)
            procs.start("producer", PRODUCER, *producing)
            await wait_for_entries(redis, 50, procs)
            readiness.phase = "paused"
            private_redis.pause()
            await asyncio.sleep(PAUSE_S)
            private_redis.resume()
            readiness.phase = "after"
            status = await asyncio.to_thread(procs.wait, "producer", 60)
            assert status == 0, procs.log_tail("producer")
            report = await run.settled(redis, timeout=30)
            await wait_for(readiness.all_green, "both replicas ready again")
            procs.assert_alive(*REPLICAS)
        finally:
            watcher.cancel()
            await redis.aclose()
    print(json.dumps({f"{n}:{p}": runs(s) for (n, p), s in readiness.seen.items()}))
    print(json.dumps(report.to_json(), indent=2))
    assert report.violations() == []
    assert (report.published_ok, report.consumed) == (EVENTS, EVENTS)
    assert report.attempts.get("unknown", 0) > 0, "no publish met the frozen server"
    for name in REPLICAS:
        assert 200 in readiness.of(name, "before"), f"{name} was never green before the pause"
        assert 503 in readiness.of(name, "paused"), f"{name} stayed green on a frozen Redis"
        assert readiness.of(name, "after")[-1] == 200, f"{name} did not turn green again"


def runs(statuses: list[int]) -> list[str]:
    """``[0, 0, 200, 200, 200]`` -> ``["0x2", "200x3"]``: the readiness as it changed."""
    changes: list[list[int]] = []
    for status in statuses:
        if changes and changes[-1][0] == status:
            changes[-1][1] += 1
        else:
            changes.append([status, 1])
    return [f"{status}x{count}" for status, count in changes]
