"""Resharding under load: the slot of a stream moves between masters (``CLUSTER SETSLOT`` and
``MIGRATE``, what ``redis-cli --cluster reshard`` does) while a producer publishes and two
consumers consume, and no acknowledged publish is lost.

While a slot migrates, the stream and its markers (one hash tag, one slot) are on the source
or already on the target: clients are sent on with ``ASK`` (one command) or ``TRYAGAIN`` (a
script whose keys are split for a moment), and with ``MOVED`` once the slot has its new owner.
The publisher retries what fails (publishing is idempotent), the consumers recover and go on;
the checker holds the run to the usual promises (every publish that returned consumed, lost 0,
no effect twice, nothing pending). 3 masters + 3 replicas, every node stopped by pid.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis as SyncRedis

from bus.connection import connect
from bus.local.cluster import EmbeddedCluster
from bus.local.redis import EmbeddedRedis
from schemas.dukcapil import CitizenDied
from tests.chaos.harness import Processes, Run, wait_for_entries

pytestmark = pytest.mark.slow
DEATHS = CitizenDied.__contract__.stream
EVENTS = 500
MOVES = 3


@pytest.fixture
def replicated(tmp_path: Path) -> Iterator[EmbeddedCluster]:
    with EmbeddedCluster(tmp_path / "cluster", masters=3, replicas=1) as cluster:
        yield cluster


def slot_of(node: EmbeddedRedis, key: str) -> int:
    with SyncRedis(node.host, node.port) as client:
        return int(client.execute_command("CLUSTER", "KEYSLOT", key))


def owner(cluster: EmbeddedCluster, slot: int) -> EmbeddedRedis:
    """The master serving ``slot``, as the first master's slot map says."""
    with SyncRedis(cluster.masters()[0].host, cluster.masters()[0].port) as client:
        for start, end, master, *_ in client.execute_command("CLUSTER", "SLOTS"):
            if start <= slot <= end:
                return cluster.node_at(int(master[1]))
    raise AssertionError(f"no master serves slot {slot}")


def move_slot(cluster: EmbeddedCluster, slot: int, target: EmbeddedRedis) -> int:
    """Move ``slot`` from its master to ``target`` the way redis-cli's reshard does; returns
    how many keys were migrated."""
    source = owner(cluster, slot)
    masters = cluster.masters()
    with SyncRedis(source.host, source.port) as src, SyncRedis(target.host, target.port) as dst:
        source_id = src.execute_command("CLUSTER", "MYID").decode()
        target_id = dst.execute_command("CLUSTER", "MYID").decode()
        dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
        src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
        moved = 0
        while keys := src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 10):
            src.execute_command("MIGRATE", target.host, target.port, "", 0, 5_000, "KEYS", *keys)
            moved += len(keys)
        # The target first, then the source, then the rest (the order redis-cli uses).
        for node in sorted(masters, key=lambda n: (n is not target, n is not source)):
            with SyncRedis(node.host, node.port) as client:
                client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
    cluster.wait_ok()
    return moved


async def test_a_stream_resharded_under_load_loses_no_acknowledged_publish(
    tmp_path: Path, replicated: EmbeddedCluster
) -> None:
    run = Run(tmp_path, replicated.url)
    env = {"SIMPUL_REDIS_CLUSTER": "1", "SIMPUL_REDIS_WAIT_TIMEOUT_MS": "500"}
    redis = connect(replicated.url, cluster=True)
    slot = slot_of(replicated.masters()[0], DEATHS)
    moves: list[tuple[int, int, int]] = []  # (from port, to port, keys)
    with Processes(tmp_path / "logs") as procs:
        for name in ("c1", "c2"):
            procs.start(name, "tests.chaos.consumer", *run.consumer_args(name), env=env)
        procs.start(
            "producer",
            "tests.chaos.producer",
            *run.producer_args("cr", events=EVENTS, seed=8_808, interval_ms=8),
            "--deadline",
            "120",
            env=env,
        )
        try:
            await wait_for_entries(redis, 50, procs)
            for _ in range(MOVES):
                source = owner(replicated, slot)
                target = next(m for m in replicated.masters() if m is not source)
                keys = await asyncio.to_thread(move_slot, replicated, slot, target)
                moves.append((source.port, target.port, keys))
                assert owner(replicated, slot) is target
                await asyncio.sleep(0.3)
            assert procs.running("producer"), "the moves came after the producer finished"
            status = await asyncio.to_thread(procs.wait, "producer", 120)
            assert status == 0, procs.log_tail("producer")
            report = await run.settled(redis, timeout=60)
        finally:
            await redis.aclose()
        procs.assert_alive("c1", "c2")
    print(json.dumps({"moves": moves, "report": report.to_json()}, indent=2))
    assert all(keys > 0 for _, _, keys in moves)  # the stream moved each time, not an empty slot
    assert report.violations() == []
    assert (report.published_ok, report.consumed) == (EVENTS, EVENTS)
