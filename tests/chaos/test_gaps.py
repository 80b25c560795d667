"""Scenario 6: the stream trimmed (and the consumer group deleted) while the consumer is down.

A replica consumes a first run of events and is stopped; a second run is published while it is
down; then the stream is trimmed past part of the second run — with the group kept, and with the
group deleted too (an operator's mistake). When the replica starts again, what was trimmed
before anyone read it is detected and reported: an ``entries_lost_unread`` error in its log with
the exact count, and ``simpul_entries_lost_total`` on its /metrics. Never silent: the checker's
lost events are exactly the trimmed ones, and everything still in the stream is handled.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from bus import Publisher, event_id
from bus.local.redis import free_port
from tests.chaos.checker import Report
from tests.chaos.consumer import GROUP
from tests.chaos.harness import Processes, Run
from tests.chaos.history import OK, History
from tests.chaos.producer import SOURCE, died, subject

pytestmark = [pytest.mark.slow, pytest.mark.chaos]

STREAM = "simpul:{dukcapil.citizen}"
CONSUMER = "tests.chaos.consumer"
BEFORE, WHILE_DOWN, TRIMMED = 120, 80, 30  # events; the first TRIMMED of WHILE_DOWN are trimmed


async def publish(run: Run, redis: Redis, label: str, count: int, first: int) -> list[str]:
    """``count`` recorded publishes over four subjects (numbered from ``first``); returns
    their entry ids."""
    publisher = Publisher(redis, source=SOURCE, signer=None)
    entries = []
    with History(run.history(f"publisher-{label}"), process=f"publisher-{label}") as recorder:
        for n in range(count):
            eid, about = event_id(SOURCE, label, n), subject(first + n % 4)
            recorder.invoke(eid, subject=about, seq=n // 4 + 1)
            published = await publisher.publish(died(n), id=eid, subject=about)
            recorder.outcome(eid, OK, entry=published.entry_id)
            entries.append(published.entry_id)
    return entries


def lost_reports(procs: Processes, name: str) -> list[dict[str, object]]:
    found = []
    for line in (procs.logs / f"{name}.log").read_text().splitlines():
        if '"entries_lost_unread"' in line:
            found.append(json.loads(line))
    return found


async def metric(base: str, name: str) -> float:
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"{base}/metrics", timeout=5)).text
    values = [float(line.split()[-1]) for line in text.splitlines() if line.startswith(name)]
    return sum(values)


async def settled(run: Run, redis: Redis, procs: Processes, consumed: int) -> Report:
    """The report once ``consumed`` events were handled and the loss was reported (Redis'
    lag of the group keeps counting the trimmed entries: they were never read)."""
    deadline = time.monotonic() + 30
    while True:
        report = await run.report(redis)
        done = report.consumed >= consumed and report.final_pending == 0
        if (done and lost_reports(procs, "c1")) or time.monotonic() > deadline:
            return report
        await asyncio.sleep(0.1)


@pytest.mark.parametrize("group_deleted", [False, True], ids=["group-kept", "group-deleted"])
async def test_what_was_trimmed_before_anyone_read_it_is_reported_never_silent(
    tmp_path: Path, redis_url: str, redis: Redis, group_deleted: bool
) -> None:
    run = Run(tmp_path, redis_url)
    port = free_port()
    args = run.consumer_args("c1", http=f"127.0.0.1:{port}", work_ms=0)
    with Processes(tmp_path / "logs") as procs:
        procs.start("c1", CONSUMER, *args)
        await publish(run, redis, "before", BEFORE, first=0)
        report = await run.settled(redis, timeout=30)
        assert report.consumed == BEFORE
        assert procs.stop("c1") == 0

        down = await publish(run, redis, "while-down", WHILE_DOWN, first=4)
        if group_deleted:
            await redis.xgroup_destroy(STREAM, GROUP)
        # Retention (MINID) or an operator's trim, ignoring the group (Redis < 8.2).
        await redis.xtrim(STREAM, minid=down[TRIMMED], approximate=False)

        procs.start("c1", CONSUMER, *args)
        report = await settled(run, redis, procs, BEFORE + WHILE_DOWN - TRIMMED)
        procs.assert_alive("c1")
        counted = await metric(f"http://127.0.0.1:{port}", "simpul_entries_lost_total")
    print(json.dumps(report.to_json(), indent=2))
    [logged] = lost_reports(procs, "c1")
    assert logged["lost"] == TRIMMED and logged["stream"] == STREAM and logged["level"] == "error"
    assert logged["before"] == down[TRIMMED]
    assert counted == TRIMMED
    # The checker agrees: exactly the trimmed events were never consumed, the rest were, once.
    assert report.lost == TRIMMED and report.lost_to_dead_letters == 0
    assert report.consumed == BEFORE + WHILE_DOWN - TRIMMED
    assert report.duplicate_effects == 0 and report.final_pending == 0
    assert report.inversions == 0  # one replica, nothing retried
    if not group_deleted:  # Redis' lag of the group keeps counting what it never read
        assert report.lag == TRIMMED
