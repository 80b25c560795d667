"""Scenario 9: a Redis master dies with the router's latest writes on it only (decision 0011).

The producer's publishes to its intake returned only once a replica held them (WAIT), so the
docs promise they survive the loss of the master. The router then admits them onto the
department stream, forwards them to the inbox, and acks and trims the intake. If those writes
reach the master only (its replicas a moment behind) and it dies, the promoted replica lacks
them: the router must not have settled the batch anywhere a failover keeps. On a cluster the
intake and the department stream are different shards, so the intake's ack and trim survived
the loss of the stream's master, and the batch was gone (4 of 8 acknowledged events lost,
every run) until the router waited for a replica (WAIT) before settling a batch. On Sentinel,
one master's replication order already kept the ack behind the writes; the scenarios there
check that the router, refused a confirmation while the replicas are away, settles nothing
and writes the batch again on the new master (the old one SIGKILLed, or frozen past the
client's socket timeout).

To make the replicas miss exactly the router's writes, they are frozen and cut off (as in
test_sentinel_once.py) after the producer's publishes were confirmed and before the router
starts; the master goes once the admissions are on it (and the intake trimmed, when the router
settles without a replica). The test keeps its own record: the ids whose publish returned, and
each effect of the consumer (``once=True``) appended to a file, fsynced per effect. Every
acknowledged id must have exactly one effect.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis as SyncRedis
from redis.asyncio import Redis

from bus import EventContext, Publisher, RedisUnavailable, Service, keys
from bus.connection import TRANSIENT, connect
from bus.functions import load_sync
from bus.local.cluster import EmbeddedCluster
from bus.local.redis import EmbeddedRedis
from bus.local.sentinel import EmbeddedSentinelGroup
from bus.router import Router, RouterConfig
from bus.testing import quick_settings, wait_until
from tests.chaos import gauge
from tests.chaos.consumer import GROUP
from tests.chaos.router import INTAKE, PRODUCER, TOPOLOGY
from tests.chaos.test_sentinel_once import cut_replicas_off
from tests.cluster.helpers import master_of

pytestmark = [pytest.mark.slow, pytest.mark.chaos]

SOURCE = "urn:malangkota:chaos:gauges"
EVENTS = 8
ADMITTED = 4  # published before the replicas are cut off
STREAM = gauge.PARTITIONS[0]
SUBJECTS = [s for s in (f"g{n}" for n in range(64)) if keys.partition_of(s, 4) == 0]
FROZEN_S = 9.0  # longer than connect()'s socket timeout (7 s)


@pytest.fixture
def group(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[EmbeddedSentinelGroup]:
    # min-replicas-to-write 0: the master stands for one whose replicas lag by less than
    # min-replicas-max-lag when it dies, so it takes the router's writes (test_sentinel_once).
    with EmbeddedSentinelGroup(tmp_path / "group", min_replicas_to_write=0) as started:
        for name, value in started.environment().items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("SIMPUL_REDIS_WAIT_TIMEOUT_MS", "300")
        yield started


async def publish_acked(
    publisher: Publisher, ids: list[str], acked: Path, subjects: list[str] = SUBJECTS
) -> None:
    """Publish each event until its publish returns; log each id once it did (fsynced)."""
    with acked.open("a") as log:
        for n, eid in enumerate(ids):
            for attempt in range(60):
                try:
                    event = gauge.GaugeRead(gauge=subjects[n % len(subjects)], seq=n)
                    await publisher.publish(event, id=eid, subject=event.gauge)
                    break
                except (*TRANSIENT, RedisUnavailable):  # an outage: retried, idempotent
                    assert attempt < 59, f"{eid}: no publish returned for 60 tries"
                    await asyncio.sleep(0.5)
            log.write(eid + "\n")
            log.flush()
            os.fsync(log.fileno())


def consumer(url: str, effects: Path) -> Service:
    """The group's consumer on its inboxes; each effect one fsynced line of ``effects``."""
    service = Service(
        GROUP,
        settings=quick_settings(url, consumer="c1", inboxes=True),
        registry=gauge.REGISTRY,
    )

    @service.on(gauge.GaugeRead, once=True)
    async def take_effect(event: gauge.GaugeRead, ctx: EventContext) -> None:
        with effects.open("a") as log:
            log.write(ctx.event_id + "\n")
            log.flush()
            os.fsync(log.fileno())

    return service


def trimmed(server: EmbeddedRedis) -> bool:
    """The router settled the intake on ``server``: acked and trimmed to nothing."""
    with SyncRedis(server.host, server.port) as client:
        return bool(client.exists(INTAKE) and client.xlen(INTAKE) == 0)


def admitted(server: EmbeddedRedis, stream: str) -> bool:
    """The router admitted the first events onto ``stream`` on ``server``."""
    with SyncRedis(server.host, server.port) as client:
        return bool(client.xlen(stream) >= ADMITTED)


async def settled_or_not(doomed: EmbeddedRedis, intake: EmbeddedRedis, stream: str) -> None:
    """Once the admissions are on ``doomed``: until the router settled the intake (it must
    not while no replica confirms them), or for a few of its WAIT timeouts."""
    await wait_until(lambda: admitted(doomed, stream), timeout=10)
    with contextlib.suppress(AssertionError):
        await wait_until(lambda: trimmed(intake), timeout=2)


async def consume_all(url: str, effects: Path) -> None:
    """Run the consumer until every event has an effect (raising AssertionError after 20 s),
    and a second longer: a duplicate would come within the reclaim's time."""
    service = consumer(url, effects)
    async with service.running():
        await wait_until(lambda: len(effects.read_text().split()) >= EVENTS, timeout=20)
        await asyncio.sleep(1.0)


def router_and_producer(redis: Redis) -> tuple[Router, Publisher]:
    """One router replica and the producer, on one client. block_ms long: the router waits in
    the pipeline that carried the intake's trim, so its writes, ack and trim are all sent."""
    router = Router(
        redis,
        TOPOLOGY,
        gauge.REGISTRY,
        keyring=None,
        config=RouterConfig(block_ms=1_500, lease_ms=6_000, trim_every_s=0.5),
        replica="r1",
    )
    return router, Publisher(redis, source=SOURCE, signer=None, intake=PRODUCER)


@pytest.mark.parametrize("fault", ["kill", "freeze"])
async def test_master_lost_with_the_routers_writes_on_it_only_loses_nothing(
    group: EmbeddedSentinelGroup, tmp_path: Path, fault: str
) -> None:
    acked, effects = tmp_path / "acked.log", tmp_path / "effects.log"
    effects.touch()
    old = group.master()
    frozen: list[EmbeddedRedis] = []
    redis = connect(group.url)
    router, publisher = router_and_producer(redis)
    ids = [f"e-{n}" for n in range(EVENTS)]
    routing: asyncio.Task[None] | None = None
    try:
        await publish_acked(publisher, ids[:ADMITTED], acked)  # on the replicas (WAIT)
        await asyncio.to_thread(cut_replicas_off, group, frozen)
        routing = asyncio.create_task(router.run())
        await settled_or_not(old, old, STREAM)
        # the router's writes, ack and trim are on the old master only
        lost_at = time.monotonic()
        old.kill() if fault == "kill" else old.pause()
        for replica in frozen:
            replica.resume()
        await asyncio.to_thread(group.wait_new_master, old)
        if fault == "freeze":  # past the client's socket timeout, then back as a replica
            await asyncio.sleep(max(0.0, lost_at + FROZEN_S - time.monotonic()))
            old.resume()
        await publish_acked(publisher, ids[ADMITTED:], acked)  # and the bus goes on
        await consume_all(group.url, effects)
    except AssertionError:
        pass  # judged below, from the records
    finally:
        router.stop()
        if routing is not None:
            await asyncio.wait_for(routing, 10)
        for server in (*frozen, old):
            if server.pid is not None:
                server.resume()
        await redis.aclose()
    judge(acked, effects)


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[EmbeddedCluster]:
    with EmbeddedCluster(
        tmp_path / "cluster", masters=3, replicas=1, node_timeout_ms=1_000
    ) as started:
        for node in started.masters():
            with SyncRedis(node.host, node.port) as client:
                load_sync(client)
        started.wait_replicas_synced(time.monotonic() + 10)
        monkeypatch.setenv("SIMPUL_REDIS_URL", started.url)
        monkeypatch.setenv("SIMPUL_REDIS_CLUSTER", "1")
        monkeypatch.setenv("SIMPUL_REDIS_WAIT_TIMEOUT_MS", "300")
        yield started


def on_another_master(cluster: EmbeddedCluster) -> str:
    """A partition whose stream and chaos inbox share a master other than the intake's: its
    admission and fan-out writes on one shard, the intake's ack and trim on another."""
    intake = master_of(cluster, INTAKE)
    for stream in gauge.PARTITIONS:
        here = master_of(cluster, stream)
        if here != intake and master_of(cluster, keys.inbox(stream, GROUP)) == here:
            return stream
    raise AssertionError("no partition whose stream and inbox share a master apart the intake")


async def test_cluster_master_lost_with_the_routers_writes_on_it_only_loses_nothing(
    cluster: EmbeddedCluster, tmp_path: Path
) -> None:
    """On a cluster the intake and the department stream are different shards: replication
    order on one master does not cover the other. The router's admission writes reach the
    stream's master only (its replica frozen and cut off), the intake's ack and trim reach the
    intake's master and its replica; then the stream's master is SIGKILLed."""
    acked, effects = tmp_path / "acked.log", tmp_path / "effects.log"
    effects.touch()
    stream = on_another_master(cluster)
    partition = gauge.PARTITIONS.index(stream)
    subjects = [s for s in (f"g{n}" for n in range(64)) if keys.partition_of(s, 4) == partition]
    assert len(subjects) > 1
    doomed = cluster.node_at(int(master_of(cluster, stream).rpartition(":")[2]))
    [replica] = cluster.replicas_of(doomed)
    intake_master = cluster.node_at(int(master_of(cluster, INTAKE).rpartition(":")[2]))
    redis = connect(cluster.url)
    router, publisher = router_and_producer(redis)
    ids = [f"e-{n}" for n in range(EVENTS)]
    routing: asyncio.Task[None] | None = None
    try:
        await publish_acked(publisher, ids[:ADMITTED], acked, subjects)  # on the replicas (WAIT)
        replica.pause()
        with SyncRedis(doomed.host, doomed.port) as client:
            client.client_kill_filter(_type="replica")
        routing = asyncio.create_task(router.run())
        await settled_or_not(doomed, intake_master, stream)
        doomed.kill()  # the admissions are on it only; the intake's trim is on its replica
        replica.resume()
        await wait_until(lambda: replica in cluster.masters(), timeout=30)  # promoted
        await asyncio.to_thread(cluster.wait_ok, 30)
        # back as the new master's replica: the once markers of its shard wait for one
        await asyncio.to_thread(doomed.restart)
        await asyncio.to_thread(cluster.wait_replicas_synced, time.monotonic() + 30)
        await publish_acked(publisher, ids[ADMITTED:], acked, subjects)
        await consume_all(cluster.url, effects)
    except AssertionError:
        pass  # judged below, from the records
    finally:
        router.stop()
        if routing is not None:
            await asyncio.wait_for(routing, 10)
        if replica.pid is not None:
            replica.resume()
        await redis.aclose()
    judge(acked, effects)


def judge(acked: Path, effects: Path) -> None:
    """Every acknowledged id has exactly one effect."""
    published = acked.read_text().split()
    seen = Counter(effects.read_text().split())
    lost = sorted(set(published) - set(seen))
    twice = sorted(e for e, n in seen.items() if n > 1)
    assert (len(published), lost, twice) == (EVENTS, [], [])
