"""Scenario 3: redis-server SIGKILLed and restarted (AOF, ``appendfsync always``) under load.

The test's own Redis (same port and data folder on every restart) is killed three times at
points drawn from a fixed seed while a producer process publishes and two replicas consume.
Publishes that time out or lose their connection are ``unknown``, refused ones ``fail``; the
producer retries each event until it returns ok. Afterwards every publish that returned ok has
been consumed, none twice, and the stream holds each event once (the dedupe key survives the
crash with its entry).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from pathlib import Path

import pytest

from bus.connection import connect
from bus.local.redis import EmbeddedRedis
from tests.chaos.harness import Processes, Run, wait_for_entries

pytestmark = [pytest.mark.slow, pytest.mark.chaos]

SEED = 8_303
EVENTS = 500
CRASHES = 3
REPLICAS = ("c1", "c2")
CONSUMER, PRODUCER = "tests.chaos.consumer", "tests.chaos.producer"


def crash_and_restart(server: EmbeddedRedis, down_s: float) -> None:
    server.kill()  # SIGKILL: only what appendfsync always wrote survives
    time.sleep(down_s)
    server.restart()


async def test_redis_killed_and_restarted_loses_no_publish_that_returned(
    tmp_path: Path, private_redis: EmbeddedRedis
) -> None:
    rng = random.Random(SEED)
    run = Run(tmp_path, private_redis.url)
    with Processes(tmp_path / "logs") as procs:
        for name in REPLICAS:
            procs.start(name, CONSUMER, *run.consumer_args(name))
        procs.start(
            "producer", PRODUCER, *run.producer_args("s3", events=EVENTS, seed=SEED, interval_ms=8)
        )
        redis = connect(private_redis.url)
        try:
            await wait_for_entries(redis, 50, procs)
        finally:
            await redis.aclose()  # its connection dies with the server anyway
        for _ in range(CRASHES):
            await asyncio.to_thread(crash_and_restart, private_redis, rng.uniform(0.1, 0.5))
            await asyncio.sleep(rng.uniform(0.5, 1.2))
        status = await asyncio.to_thread(procs.wait, "producer", 60)
        assert status == 0, procs.log_tail("producer")
        redis = connect(private_redis.url)
        try:
            report = await run.settled(redis, timeout=30)
        finally:
            await redis.aclose()
        procs.assert_alive(*REPLICAS)
    print(json.dumps(report.to_json(), indent=2))
    assert report.violations() == []
    assert (report.published_ok, report.consumed) == (EVENTS, EVENTS)
    outages = report.attempts.get("unknown", 0) + report.attempts.get("fail", 0)
    assert outages > 0, "no publish met a crash: the crashes came too late"
