"""Scenario 2: the Bapenda CSV adapter SIGKILLed during a backfill, again and again.

4,000 payment rows in three nightly exports; the adapter process (``python -m adapters.bapenda``)
is killed at points drawn from a fixed seed, each once the stream has grown since the last
kill, then run to completion. A consumer replica handles the stream meanwhile. Every source
record must be on the stream exactly once (the publisher's dedupe by event id, the checkpoint
never ahead of the stream) and handled exactly once.

The adapter is not instrumented: its history is written by the test from the source rows once
the final run has exited 0 — a completed pass promises every record published, which is the
property under test.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from pathlib import Path

import pytest
from redis.asyncio import Redis

from adapters import bapenda
from adapters.bapenda.fixtures import rows, write_drop
from bus import event_id, keys
from tests.chaos.harness import Processes, Run
from tests.chaos.history import OK, History

pytestmark = [pytest.mark.slow, pytest.mark.chaos]

SEED = 8_202
RECORDS = 4_000
KILLS = 5
STREAM = keys.stream("bapenda.payment")


def start_adapter(procs: Processes, folder: Path, redis_url: str) -> None:
    procs.start(
        "adapter",
        "adapters.bapenda",
        str(folder),
        "--batch-size",
        "200",
        "--settle-seconds",
        "0",
        env={"SIMPUL_REDIS_URL": redis_url},
    )


async def wait_for_growth(redis: Redis, procs: Processes, since: int) -> None:
    """Return once the stream grew past ``since``: the adapter is mid-backfill."""
    deadline = time.monotonic() + 30
    while await redis.xlen(STREAM) <= since:
        assert procs.running("adapter"), f"adapter exited early:\n{procs.log_tail('adapter')}"
        assert time.monotonic() < deadline, "the adapter made no progress"
        await asyncio.sleep(0.005)


def write_source_history(run: Run) -> int:
    """What the source holds, as publishes that returned: one per row."""
    with History(run.history("adapter"), process="adapter") as history:
        count = 0
        for row in rows(RECORDS, seed=SEED):
            eid = event_id(bapenda.SOURCE, bapenda.TABLE, row["no_sspd"], row["versi"])
            history.invoke(eid, subject=None, seq=None)
            history.outcome(eid, OK)
            count += 1
    return count


async def test_adapter_killed_during_backfill_publishes_every_record_once(
    tmp_path: Path, redis_url: str, redis: Redis
) -> None:
    rng = random.Random(SEED)
    drop = tmp_path / "drop"
    write_drop(drop, RECORDS, files=3, seed=SEED, encoding="cp1252")
    run = Run(tmp_path / "run", redis_url)
    kills = mid_backfill = 0
    with Processes(tmp_path / "logs") as procs:
        procs.start("c1", "tests.chaos.consumer", *run.consumer_args("c1", work_ms=0))
        for _ in range(KILLS):
            before = await redis.xlen(STREAM)
            if before >= RECORDS:  # a run reached the end before its kill: nothing to cut
                break
            start_adapter(procs, drop, redis_url)
            await wait_for_growth(redis, procs, before)
            await asyncio.sleep(rng.uniform(0.0, 0.03))
            procs.kill("adapter")
            kills += 1
            mid_backfill += await redis.xlen(STREAM) < RECORDS
        start_adapter(procs, drop, redis_url)
        status = await asyncio.to_thread(procs.wait, "adapter", 60)
        assert status == 0, procs.log_tail("adapter")
        assert write_source_history(run) == RECORDS
        report = await run.settled(redis, timeout=30)
        procs.assert_alive("c1")
        on_stream = await redis.xlen(STREAM)
    print(json.dumps({"kills": kills, "mid_backfill": mid_backfill, "on_stream": on_stream}))
    print(json.dumps(report.to_json(), indent=2))
    assert report.violations() == []
    assert on_stream == report.published_ok == report.consumed == RECORDS
    assert mid_backfill >= 3, "the kills came too late to test anything"
