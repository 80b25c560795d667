"""A partitioned aggregate on the 3-master cluster: its partitions spread over the masters (one
hash tag each), and two replicas keep every subject in order across them."""

from __future__ import annotations

from redis.asyncio import Redis

from bus import keys
from bus.local.cluster import EmbeddedCluster
from bus.testing import quick_settings, wait_until
from tests.bus.delivery.test_ordered_partitions import (
    GROUP,
    PARTITIONS,
    Seen,
    in_order,
    owners,
    publish,
    replica,
)
from tests.cluster.helpers import master_of


async def test_partitions_spread_over_masters_and_keep_subjects_in_order(
    cluster: EmbeddedCluster, cluster_url: str, cluster_redis: Redis
) -> None:
    assert quick_settings(cluster_url).redis_cluster  # SIMPUL_REDIS_CLUSTER=1, as deployed
    seen = Seen()
    a, b = replica(cluster_url, "a", seen), replica(cluster_url, "b", seen)
    async with a.running(), b.running():

        async def split() -> bool:
            return sorted((await owners(cluster_redis)).values()) == ["a", "a", "b", "b"]

        await wait_until(split, timeout=15)
        total = await publish(cluster_redis, subjects=12, per_subject=20)
        await wait_until(lambda: len(seen.calls) >= total, timeout=30)
    assert len(seen.calls) == total
    assert in_order(seen) == {}
    assert seen.consumers() == {"a", "b"}
    masters = {master_of(cluster, p) for p in PARTITIONS}
    assert len(masters) >= 2, "4 hash tags landed on one master"
    for partition in PARTITIONS:  # each lease beside its partition, on the same master
        assert master_of(cluster, keys.lease(partition, GROUP)) == master_of(cluster, partition)
