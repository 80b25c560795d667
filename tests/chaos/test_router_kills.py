"""Scenario 8: routed delivery (decision 0011) under SIGKILL — routers, consumers and Redis.

One producer process publishes gauge readings (4 partitions, 8 subjects) to its intake
``simpul:intake:{chaos-producer}``; two router processes (tests/chaos/router.py) admit them onto
the partitions and forward each to the chaos group's inbox of its partition; two consumer
replicas read the inboxes (``SIMPUL_INBOXES=true``) with the transactional inbox of their
store. While the producer runs, every 0.3-0.8 s (drawn from a fixed seed) a router replica
holding a lease or a consumer replica at work is SIGKILLed and started again, and once
redis-server itself (AOF, ``appendfsync always``).

The checker then judges each inbox on its own — the events of its partition's subjects: none
that the producer saw acknowledged is lost, no effect happened twice, the inbox holds each event
once, the group has nothing pending or unread, and no subject's effects are out of order. The
department streams hold each event once, and the router has nothing left in the intake.

Bounded: at most :data:`MAX_FAULTS` faults, the producer gives up after 40 s, the final wait
after 40 s; about 30 s on an idle machine.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from bus import keys
from bus.connection import connect
from bus.local.redis import EmbeddedRedis, free_port
from tests.chaos import gauge
from tests.chaos.checker import Observed, observe
from tests.chaos.harness import Processes, Run, aim, wait_ready
from tests.chaos.router import INBOXES, INTAKE, PRODUCER
from tests.chaos.test_redis_kills import crash_and_restart

pytestmark = [pytest.mark.slow, pytest.mark.chaos]

SEED = 8_707
EVENTS = 300
ROUTERS = ("r1", "r2")
REPLICAS = ("c1", "c2")
MAX_FAULTS = 24
REDIS_CRASH_AT = 3  # redis-server is killed and restarted at this fault, or once a third of
# the events are admitted if that comes first
CONSUMER, PRODUCER_MODULE, ROUTER = (
    "tests.chaos.consumer",
    "tests.chaos.producer",
    "tests.chaos.router",
)
ROUTED = {"SIMPUL_INBOXES": "true"}


async def lease_holders(redis: Redis) -> list[str]:
    """The router replicas holding a lease on a source right now (intake or partition)."""
    found = set()
    for source in (INTAKE, *gauge.PARTITIONS):
        holder: Any = await redis.get(keys.router_lease(source))
        if holder is not None:
            found.add(holder.decode())
    return sorted(found & set(ROUTERS))


async def admitted_so_far(redis: Redis) -> int:
    """How many events the routers have admitted onto the partitions so far: the Redis crash
    must come while the producer still publishes, however slow the machine makes the faults."""
    return sum([await redis.xlen(partition) for partition in gauge.PARTITIONS])


async def router_settled(redis: Redis, *, timeout: float) -> tuple[Observed, Observed]:
    """The router group on the partitions and on the intake once it has nothing pending or
    unread, or after ``timeout`` seconds as it stands. The inboxes can be settled before the
    router acks what it wrote to them: a batch's ack goes with the read after its writes (one
    round trip a batch), and a replica killed between the two leaves the batch pending until
    the next holder reads it again."""
    deadline = time.monotonic() + timeout
    while True:
        admitted = await observe(redis, gauge.PARTITIONS, "router")
        intake = await observe(redis, [INTAKE], "router")
        settled = not (admitted.pending or admitted.lag or intake.pending or intake.lag)
        if settled or time.monotonic() > deadline:
            return admitted, intake
        await asyncio.sleep(0.1)


def in_partition(partition: int) -> Callable[[str], bool]:
    """Whether a subject's events go to ``partition`` (and so to its inbox)."""

    def accepts(subject: str) -> bool:
        return keys.partition_of(subject, len(gauge.PARTITIONS)) == partition

    return accepts


async def test_routers_consumers_and_redis_killed_lose_and_repeat_nothing_per_inbox(
    tmp_path: Path, private_redis: EmbeddedRedis
) -> None:
    rng = random.Random(SEED)
    url = private_redis.url
    run = Run(tmp_path, url)
    http = {name: f"127.0.0.1:{free_port()}" for name in REPLICAS}
    started = time.monotonic()
    faults: Counter[str] = Counter()

    def start_router(name: str) -> None:
        procs.start(name, ROUTER, "--url", url, "--replica", name)

    def start_consumer(name: str) -> None:
        args = run.consumer_args(name, http=http[name], work_ms=5, partitioned=True)
        procs.start(name, CONSUMER, *args, env=ROUTED)

    with Processes(tmp_path / "logs") as procs:
        for name in ROUTERS:
            start_router(name)
        for name in REPLICAS:
            start_consumer(name)
        await wait_ready(procs, http)
        producer = run.producer_args(
            "rk", events=EVENTS, seed=SEED, partitioned=True, interval_ms=10
        )
        procs.start(
            "producer",
            PRODUCER_MODULE,
            *producer,
            "--deadline",
            "40",
            env={"SIMPUL_INTAKE": PRODUCER},
        )
        redis = connect(url)
        try:
            turn = 0
            while procs.running("producer") and sum(faults.values()) < MAX_FAULTS:
                await asyncio.sleep(rng.uniform(0.3, 0.8))
                if not faults["redis"] and (
                    sum(faults.values()) >= REDIS_CRASH_AT
                    or await admitted_so_far(redis) >= EVENTS // 3
                ):
                    await asyncio.to_thread(crash_and_restart, private_redis, rng.uniform(0.1, 0.4))
                    faults["redis"] += 1
                    continue
                try:
                    # Router and consumer in turn, not by coin: the producer is often done
                    # within six or seven faults, and the seeded coin's first six said "router".
                    turn += 1
                    if turn % 2:
                        holding = await lease_holders(redis)
                        victim = rng.choice(holding or list(ROUTERS))
                        faults["router_holding_lease" if holding else "router"] += 1
                        procs.kill(victim)
                        await asyncio.sleep(rng.uniform(0.0, 0.3))
                        start_router(victim)
                    else:
                        victim, held = await aim(redis, INBOXES, REPLICAS, rng)
                        faults["consumer_holding_entries" if held else "consumer"] += 1
                        procs.kill(victim)
                        await asyncio.sleep(rng.uniform(0.0, 0.3))
                        start_consumer(victim)
                except OSError:  # Redis still coming back from its crash: try the next turn
                    continue
            status = await asyncio.to_thread(procs.wait, "producer", 45)
            assert status == 0, procs.log_tail("producer")
            total = await run.settled(redis, timeout=40, streams=INBOXES)
            reports = {
                inbox: await run.report(redis, [inbox], subjects=in_partition(n))
                for n, inbox in enumerate(INBOXES)
            }
            admitted, intake = await router_settled(redis, timeout=20)
            procs.assert_alive(*ROUTERS, *REPLICAS)
        finally:
            await redis.aclose()
    print(json.dumps({"faults": faults, "seconds": round(time.monotonic() - started, 1)}))
    print(json.dumps(total.to_json(), indent=2))
    assert total.violations(ordered=True) == []
    assert (total.published_ok, total.consumed) == (EVENTS, EVENTS)
    for inbox, report in reports.items():
        assert report.violations(ordered=True) == [], inbox
        assert report.lost == report.duplicate_effects == report.duplicate_entries == 0, inbox
        assert report.consumed == report.published_ok > 0, inbox
        assert report.inversions == 0, inbox
    assert sum(r.consumed for r in reports.values()) == EVENTS
    assert set(admitted.entries.values()) == {1} and len(admitted.entries) == EVENTS
    assert (admitted.pending, admitted.lag) == (0, 0)  # the router forwarded everything
    assert (intake.pending, intake.lag) == (0, 0)  # and admitted everything
    assert faults["redis"] == 1
    outages = total.attempts.get("unknown", 0) + total.attempts.get("fail", 0)
    assert outages > 0, "no publish met the Redis crash: it came too late"
    assert faults["router_holding_lease"] >= 1 and faults["consumer_holding_entries"] >= 1, faults
