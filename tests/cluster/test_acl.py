"""The city's least-privilege users on a Redis Cluster: the rendered ACL loaded on every master,
an adapter publishing and a service consuming as their own principals through the cluster
client, and a forbidden write still refused (its own 3-master cluster: the shared one keeps its
default user)."""

from __future__ import annotations

from pathlib import Path

import pytest
from redis import Redis as SyncRedis
from redis.exceptions import NoPermissionError

from bus import EventContext, Publisher, Service, keys
from bus.access import acl
from bus.access.topology import contracts, load_topology
from bus.connection import connect
from bus.local.cluster import EmbeddedCluster
from bus.testing import quick_settings, wait_until
from schemas.dukcapil import CitizenDied
from tests.cluster.helpers import example

ROOT = Path(__file__).resolve().parents[2]
SOURCE = "urn:malangkota:dukcapil:siak"


async def test_the_city_users_run_the_bus_on_a_cluster_and_nothing_more(tmp_path: Path) -> None:
    topology = load_topology(ROOT / "deploy/topology.yaml", registry=contracts())
    principals = [
        p.principal for p in (*topology.operators, *topology.producers, *topology.services)
    ]
    passwords = {p: f"cluster-test-{p}-password" for p in principals}
    users = acl.acl_users(topology, passwords)
    with EmbeddedCluster(tmp_path / "cluster", masters=3) as cluster:
        for node in cluster.nodes:  # a cluster has no shared ACL: every master gets the render
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
                await acl.apply(admin, users)
            finally:
                await admin.aclose()
        first = cluster.nodes[0]

        def url(principal: str) -> str:
            return f"redis://{principal}:{passwords[principal]}@{first.host}:{first.port}/0"

        for node in cluster.nodes:  # the default user is off on every master
            with SyncRedis(
                node.host, node.port, username="operator", password=passwords["operator"]
            ) as operator:
                assert "off" in operator.acl_getuser("default")["flags"]

        seen: list[str] = []
        settings = quick_settings(url("svc-dinsos"), redis_cluster=True)
        service = Service("dinsos", settings=settings)

        @service.on(CitizenDied)
        async def record(event: CitizenDied, ctx: EventContext) -> None:
            seen.append(ctx.event_id)

        adapter = connect(url("adapter-dukcapil"), cluster=True)
        try:
            async with service.running():
                publisher = Publisher(adapter, source=SOURCE, signer=None)
                published = [
                    (await publisher.publish(example(CitizenDied, n))).event_id for n in range(5)
                ]
                await wait_until(lambda: len(seen) >= 5, timeout=15)
            with pytest.raises(NoPermissionError):  # another department's stream
                await adapter.xadd(keys.stream("bapenda.payment"), {"type": "forged"})
        finally:
            await adapter.aclose()
    assert sorted(seen) == sorted(published)
