"""Scenario 1: consumer replicas SIGKILLed and restarted at random while events flow.

Three replicas (stable consumer names, as docs/delivery.md recommends) consume what one producer
process publishes over eight subjects; every 0.2-0.6 s (drawn from a fixed seed) one replica is
killed and started again. Afterwards: nothing acked is lost, no effect happened twice (the
transactional inbox), the group has nothing pending. Redeliveries are expected and reported.

Kills are aimed, so that they test something however loaded the machine is. The producer
starts only once every replica is ready (``/readyz``); each kill goes to a replica holding
entries delivered to it moments ago (a live replica inside its work), drawn from the seed, and
only when none does within a bounded wait to any replica. Drawn blindly, kills missed on a
loaded machine: a replica needs seconds to start there, more than the 0.2-0.9 s between kills,
so the replicas were killed again while still starting and never got to work until the
producer was done (measured with a load of 5 on 2 cores: 21 kills, none of a replica holding
entries), and the coverage check failed.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from pathlib import Path

import pytest
from redis.asyncio import Redis

from bus import Publisher, event_id
from bus.local.redis import free_port
from tests.chaos import gauge, history
from tests.chaos.harness import Processes, Run, aim, wait_ready
from tests.chaos.history import OK, History
from tests.chaos.producer import SOURCE, died, subject

pytestmark = [pytest.mark.slow, pytest.mark.chaos]

SEED = 8_101
EVENTS = 600
REPLICAS = ("c1", "c2", "c3")
CONSUMER, PRODUCER = "tests.chaos.consumer", "tests.chaos.producer"
MAX_KILLS = 40  # bounds the loop if the producer hangs
MIN_KILLS = 3  # made even if the producer is done sooner (a fast machine)
PARTITIONED_EVENTS = 400


async def test_consumers_killed_at_random_lose_nothing_and_repeat_no_effect(
    tmp_path: Path, redis_url: str, redis: Redis
) -> None:
    rng = random.Random(SEED)
    run = Run(tmp_path, redis_url)
    http = {name: f"127.0.0.1:{free_port()}" for name in REPLICAS}
    streams = ("simpul:{dukcapil.citizen}",)
    kills = holding = 0
    with Processes(tmp_path / "logs") as procs:
        for name in REPLICAS:
            procs.start(name, CONSUMER, *run.consumer_args(name, http=http[name], work_ms=5))
        await wait_ready(procs, http)
        procs.start("producer", PRODUCER, *run.producer_args("s1", events=EVENTS, seed=SEED))
        while (procs.running("producer") or kills < MIN_KILLS) and kills < MAX_KILLS:
            await asyncio.sleep(rng.uniform(0.2, 0.6))
            victim, held = await aim(redis, streams, REPLICAS, rng)
            holding += held
            procs.kill(victim)
            kills += 1
            await asyncio.sleep(rng.uniform(0.0, 0.3))
            procs.start(victim, CONSUMER, *run.consumer_args(victim, http=http[victim], work_ms=5))
        assert procs.wait("producer", timeout=60) == 0, procs.log_tail("producer")
        report = await run.settled(redis, timeout=30)
        procs.assert_alive(*REPLICAS)
    print(json.dumps({"kills": kills, "kills_holding_entries": holding}))
    print(json.dumps(report.to_json(), indent=2))
    assert report.violations() == []
    assert (report.published_ok, report.consumed) == (EVENTS, EVENTS)
    assert report.dead_letters == {}
    assert holding >= 1, f"none of the {kills} kills hit a replica holding entries"


async def test_on_partitions_kills_keep_every_subject_in_order(
    tmp_path: Path, redis_url: str, redis: Redis
) -> None:
    """Scenario 1 on a partitioned aggregate: the same kills, and not one order inversion."""
    rng = random.Random(SEED + 1)
    run = Run(tmp_path, redis_url)
    http = {name: f"127.0.0.1:{free_port()}" for name in REPLICAS}
    kills = holding = 0
    with Processes(tmp_path / "logs") as procs:
        for name in REPLICAS:
            args = run.consumer_args(name, http=http[name], work_ms=5, partitioned=True)
            procs.start(name, CONSUMER, *args)
        await wait_ready(procs, http)
        producer = run.producer_args("p1", events=PARTITIONED_EVENTS, seed=SEED, partitioned=True)
        procs.start("producer", PRODUCER, *producer)
        while (procs.running("producer") or kills < MIN_KILLS) and kills < MAX_KILLS:
            await asyncio.sleep(rng.uniform(0.3, 0.8))
            victim, held = await aim(redis, gauge.PARTITIONS, REPLICAS, rng)
            holding += held
            procs.kill(victim)
            kills += 1
            await asyncio.sleep(rng.uniform(0.0, 0.3))
            args = run.consumer_args(victim, http=http[victim], work_ms=5, partitioned=True)
            procs.start(victim, CONSUMER, *args)
        assert procs.wait("producer", timeout=60) == 0, procs.log_tail("producer")
        report = await run.settled(redis, timeout=45, streams=gauge.PARTITIONS)
        procs.assert_alive(*REPLICAS)
    print(json.dumps({"kills": kills, "kills_holding_entries": holding}))
    print(json.dumps(report.to_json(), indent=2))
    assert report.violations(ordered=True) == []
    assert report.inversions == 0
    assert (report.published_ok, report.consumed) == (PARTITIONED_EVENTS, PARTITIONED_EVENTS)
    assert report.dead_letters == {}
    assert kills >= 3
    assert holding >= 1, f"none of the {kills} kills hit a replica holding entries"


# --- a replica in a crash loop ---------------------------------------------------------------

LOOP_EVENTS = 20
MAX_DELIVERIES = 5  # quick_settings keeps the default


async def publish_recorded(run: Run, redis: Redis, count: int) -> list[str]:
    publisher = Publisher(redis, source=SOURCE, signer=None)
    ids = [event_id(SOURCE, "crash-loop", n) for n in range(count)]
    with History(run.history("publisher"), process="publisher") as recorder:
        for n, eid in enumerate(ids):
            recorder.invoke(eid, subject=subject(0), seq=n + 1)
            published = await publisher.publish(died(n), id=eid, subject=subject(0))
            recorder.outcome(eid, OK, entry=published.entry_id)
    return ids


async def wait_for_handler(run: Run, name: str, handled_before: int) -> int:
    """Return once replica ``name`` has entered one more handler than ``handled_before``."""
    deadline = time.monotonic() + 30
    while True:
        path = run.history(name)
        handled = len(history.read([path])) if path.exists() else 0
        if handled > handled_before:
            return handled
        if time.monotonic() > deadline:
            pytest.fail(f"{name} entered no handler")  # a broken setup
        await asyncio.sleep(0.02)


async def test_a_replica_killed_in_one_handler_again_and_again_dead_letters_only_that_event(
    tmp_path: Path, redis_url: str, redis: Redis
) -> None:
    run = Run(tmp_path, redis_url)
    ids = await publish_recorded(run, redis, LOOP_EVENTS)
    handled = 0
    with Processes(tmp_path / "logs") as procs:
        for _ in range(MAX_DELIVERIES):  # each time inside the handler of the first event
            procs.start("c1", CONSUMER, *run.consumer_args("c1", work_ms=60_000))
            handled = await wait_for_handler(run, "c1", handled)
            procs.kill("c1")
        entered = {r["id"] for r in history.read([run.history("c1")])}
        if entered != {ids[0]}:
            pytest.fail(f"the kills must all land in the first event's handler, not {entered}")
        procs.start("c1", CONSUMER, *run.consumer_args("c1", work_ms=0))
        report = await run.settled(redis, timeout=20)
        procs.assert_alive("c1")
    print(json.dumps(report.to_json(), indent=2))
    assert report.dead_letters == {"max_deliveries_exceeded": 1}
    assert report.lost == 1 and report.examples["lost"] == [ids[0]]
    assert report.consumed == LOOP_EVENTS - 1
