"""A private 3-master Redis Cluster per test session, emptied before each test.

The cluster's masters are ``redis-server --cluster-enabled yes`` processes on free loopback
ports (bus.local.cluster), stopped by pid at the end of the session. Each test gets
``SIMPUL_REDIS_URL`` (the first master) and ``SIMPUL_REDIS_CLUSTER=1``, as an operator would
set them, so services, adapters and CLI commands find the cluster as in production.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from redis import Redis as SyncRedis
from redis.asyncio import Redis

from bus.access import acl, acl_server
from bus.access.topology import Topology, contracts, load_topology
from bus.connection import connect
from bus.functions import load_sync
from bus.local.cluster import EmbeddedCluster

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


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


@dataclass
class AclCluster:
    """A 3-master cluster of its own with the ACL rendered from deploy/topology.yaml (routed
    delivery) on every master, and each principal's test password."""

    cluster: EmbeddedCluster
    topology: Topology
    passwords: dict[str, str]

    def url(self, principal: str) -> str:
        first = self.cluster.nodes[0]
        password = self.passwords[principal]
        return f"redis://{principal}:{password}@{first.host}:{first.port}/0"

    def admin(self, node: int = 0) -> SyncRedis:
        found = self.cluster.nodes[node]
        return SyncRedis(
            found.host, found.port, username="operator", password=self.passwords["operator"]
        )


@pytest.fixture
async def acl_cluster(tmp_path: Path) -> AsyncIterator[AclCluster]:
    """Its own cluster (the shared one keeps its default user): a cluster has no shared ACL,
    so every master gets the render, as `simpul acl apply` does master by master, and the
    bus's functions library, loaded by the admin (decision 0013)."""
    topology = load_topology(ROOT / "deploy/topology.yaml", registry=contracts())
    principals = [*([topology.router.principal] if topology.router else []), *topology.principals()]
    passwords = {p: f"cluster-test-{p}-password" for p in principals}
    users = acl.acl_users(topology, passwords)
    with EmbeddedCluster(tmp_path / "cluster", masters=3) as cluster:
        for node in cluster.nodes:
            with SyncRedis(node.host, node.port) as bootstrap:
                bootstrap.acl_setuser(
                    "operator",
                    enabled=True,
                    passwords=[f"+{passwords['operator']}"],
                    keys=["*"],
                    channels=["*"],
                    commands=["+@all"],
                )
            admin = connect(
                f"redis://operator:{passwords['operator']}@{node.host}:{node.port}/0",
                cluster=False,
            )
            try:
                await acl_server.apply(admin, users)
            finally:
                await admin.aclose()
        found = AclCluster(cluster, topology, passwords)
        for index in range(len(cluster.nodes)):
            with found.admin(index) as admin_sync:
                load_sync(admin_sync)
        yield found
