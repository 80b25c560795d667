"""``simpul status`` and the exporter show the replication topology of a real Sentinel group,
and report a master with no replica in sync and a lost Sentinel quorum."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from typer.testing import CliRunner

from bus.admin.exporter import BusCollector
from bus.admin.inspect import Inspector
from bus.cli.app import app
from bus.connection import connect
from bus.contracts import Registry
from bus.local.sentinel import EmbeddedSentinelGroup

pytestmark = pytest.mark.slow
runner = CliRunner()


def status() -> tuple[int, dict[str, Any]]:
    result = runner.invoke(app, ["status", "--json"])
    return result.exit_code, json.loads(result.stdout)


def test_status_for_people_names_the_master_and_lists_the_replication(
    group: EmbeddedSentinelGroup,
) -> None:
    result = runner.invoke(app, ["status"])
    assert result.exit_code == 0, result.output
    master = f"127.0.0.1:{group.master().port}"
    assert f"at {master} (the master the Sentinels name)" in " ".join(result.output.split())
    assert "Replication (sentinel)" in result.output
    assert result.output.count("quorum ok") == 3


def test_status_shows_master_replicas_and_sentinels_and_breaches_when_they_go(
    group: EmbeddedSentinelGroup,
) -> None:
    code, shown = status()
    topology = shown["topology"]
    assert (code, topology["shape"]) == (0, "sentinel")
    [shard] = topology["shards"]
    assert shard["master"] == f"127.0.0.1:{group.master().port}"
    assert sorted(r["address"] for r in shard["replicas"]) == sorted(
        f"127.0.0.1:{s.port}" for s in group.replicas()
    )
    assert all(r["state"] == "online" for r in shard["replicas"])
    assert [(s["quorum"], s["sentinels"], s["quorum_ok"]) for s in topology["sentinels"]] == [
        (2, 3, True)
    ] * 3

    for replica in group.replicas():
        replica.kill()
    for sentinel in group.sentinels[1:]:
        sentinel.kill()
    deadline = time.monotonic() + 10  # the last Sentinel counts the others down after 1 s
    while True:
        code, shown = status()
        kinds = [b["kind"] for b in shown["breaches"]]
        if code == 1 and kinds == ["replicas_out_of_sync", "sentinel_quorum"]:
            break
        assert time.monotonic() < deadline, kinds
        time.sleep(0.2)
    assert [s["reachable"] for s in shown["topology"]["sentinels"]] == [True, False, False]


async def test_the_exporter_exports_the_topology(group: EmbeddedSentinelGroup) -> None:
    redis = connect(group.url, block_ms=0)
    try:
        collector = BusCollector(Inspector(redis, registry=Registry()), interval_s=0)
        await collector.refresh()
        registry = CollectorRegistry(auto_describe=False)
        registry.register(collector)
        text = generate_latest(registry).decode()
    finally:
        await redis.aclose()
    master = f"127.0.0.1:{group.master().port}"
    assert f'simpul_redis_replicas_in_sync{{shape="sentinel",shard="{master}"}} 2.0' in text
    assert text.count("simpul_sentinel_quorum_ok{") == 3
    assert text.count("simpul_redis_replica_behind_bytes{") == 2
    assert "simpul_sentinel_config_epoch{" in text


async def test_the_exporter_follows_a_failover_without_a_restart(
    group: EmbeddedSentinelGroup,
) -> None:
    redis = connect(group.url, block_ms=0)
    try:
        collector = BusCollector(Inspector(redis, registry=Registry()), interval_s=0)
        await collector.refresh()
        assert collector.topology is not None
        assert {s.config_epoch for s in collector.topology.sentinels} == {0}
        new = await asyncio.to_thread(group.failover)
        deadline = time.monotonic() + 10
        while True:  # its connections to the old master fail once, then it asks the Sentinels
            await collector.refresh()
            topology = collector.topology
            if collector.up and topology and topology.shards[0].master.endswith(f":{new.port}"):
                break
            assert time.monotonic() < deadline, (collector.error, topology)
            await asyncio.sleep(0.2)
        assert topology.failovers == 1  # SimpulRedisFailover sees the epoch grow
    finally:
        await redis.aclose()
