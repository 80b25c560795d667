"""The bus's Redis Functions library in a Redis Cluster: `simpul functions load` loads every
master, and publishing to streams on every shard works through it."""

from __future__ import annotations

import asyncio

from redis import Redis as SyncRedis
from redis.asyncio import Redis
from typer.testing import CliRunner

from bus import Publisher, functions
from bus.cli.app import app
from bus.local.cluster import EmbeddedCluster
from schemas.dukcapil import CitizenDied
from tests.chaos.gauge import GaugeRead

SOURCE = "urn:malangkota:dukcapil:siak"


def _libraries(node_host: str, port: int) -> list[bytes]:
    with SyncRedis(node_host, port) as node:
        return [
            dict(zip(lib[::2], lib[1::2], strict=True))[b"library_name"]
            for lib in node.function_list()
        ]


async def test_functions_load_reaches_every_master_and_publishing_uses_it(
    cluster: EmbeddedCluster, cluster_url: str, cluster_redis: Redis
) -> None:
    for node in cluster.masters():
        with SyncRedis(node.host, node.port) as master:
            master.function_flush()
    try:
        await _flushed_then_loaded(cluster, cluster_url, cluster_redis)
    finally:  # the session's cluster keeps its library whatever happened above
        for node in cluster.masters():
            with SyncRedis(node.host, node.port) as master:
                functions.load_sync(master)


async def _flushed_then_loaded(
    cluster: EmbeddedCluster, cluster_url: str, cluster_redis: Redis
) -> None:
    publisher = Publisher(cluster_redis, source=SOURCE, signer=None)
    try:
        await publisher.publish(
            CitizenDied(nik="3573014506900001", date_of_death="2026-11-01", kecamatan="35.73.01")
        )
    except functions.FunctionsNotLoaded as exc:
        assert "simpul functions load" in str(exc)
    else:
        raise AssertionError("published without the library")

    runner = CliRunner()  # in a thread: the command runs its own event loop
    done = await asyncio.to_thread(
        runner.invoke, app, ["functions", "load", "--redis-url", cluster_url]
    )
    assert done.exit_code == 0, done.output
    for node in cluster.masters():
        assert _libraries(node.host, node.port) == [functions.LIBRARY.encode()]
    fresh = Publisher(cluster_redis, source=SOURCE, signer=None)
    readings = [
        fresh.envelope(GaugeRead(gauge=f"g-{k}", seq=1), subject=f"g-{k}") for k in range(16)
    ]
    published = await fresh.publish_many(readings)  # partitions on every shard
    assert len({p.stream for p in published}) > 1
    assert not any(p.duplicate for p in published)
