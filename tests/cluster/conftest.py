"""A private 3-master Redis Cluster per test session, emptied before each test.

The cluster's masters are ``redis-server --cluster-enabled yes`` processes on free loopback
ports (bus.local.cluster), stopped by pid at the end of the session. Each test gets
``SIMPUL_REDIS_URL`` (the first master) and ``SIMPUL_REDIS_CLUSTER=1``, as an operator would
set them, so services, adapters and CLI commands find the cluster as in production.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from redis import Redis as SyncRedis
from redis.asyncio import Redis

from bus.connection import connect
from bus.local.cluster import EmbeddedCluster

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedCluster]:
    with EmbeddedCluster(tmp_path_factory.mktemp("cluster"), masters=3) as started:
        yield started


@pytest.fixture
def cluster_url(cluster: EmbeddedCluster, monkeypatch: pytest.MonkeyPatch) -> str:
    """The cluster's URL, every master emptied (keys and scripts) and the environment set."""
    for node in cluster.nodes:
        with SyncRedis(node.host, node.port) as master:
            master.flushall()
            master.script_flush()
    monkeypatch.setenv("SIMPUL_REDIS_URL", cluster.url)
    monkeypatch.setenv("SIMPUL_REDIS_CLUSTER", "1")
    return cluster.url


@pytest.fixture
async def cluster_redis(cluster_url: str) -> AsyncIterator[Redis]:
    client = connect(cluster_url)
    yield client
    await client.aclose()
