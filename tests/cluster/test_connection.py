"""``SIMPUL_REDIS_CLUSTER``: which client connect() makes, with which options, and refusals."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from bus.connection import cluster_from_env, connect, is_cluster
from bus.errors import ConfigurationError
from bus.local.cluster import EmbeddedCluster
from bus.settings import Settings

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    ("value", "expected"), [("1", True), ("yes", True), ("TRUE", True), ("0", False), ("", False)]
)
def test_the_variable_reads_as_settings_read_it(value: str, expected: bool) -> None:
    assert cluster_from_env({"SIMPUL_REDIS_CLUSTER": value}) is expected
    assert Settings.load(redis_cluster=value).redis_cluster is expected
    assert cluster_from_env({}) is False


def test_a_value_that_is_not_a_boolean_is_refused_with_the_variable_named() -> None:
    with pytest.raises(ConfigurationError, match="SIMPUL_REDIS_CLUSTER"):
        cluster_from_env({"SIMPUL_REDIS_CLUSTER": "sometimes"})


@pytest.mark.parametrize(
    ("url", "problem"),
    [("unix:///run/redis.sock", "unix://"), ("redis://127.0.0.1:7000/2", "database 2")],
)
def test_what_a_cluster_cannot_have_is_refused(url: str, problem: str) -> None:
    with pytest.raises(ConfigurationError, match=problem):
        connect(url, cluster=True)


async def test_the_environment_chooses_the_cluster_client_with_the_usual_options(
    cluster: EmbeddedCluster, cluster_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = connect(cluster_url, block_ms=3_000, client_name="simpul:test")
    try:
        assert isinstance(client, RedisCluster) and is_cluster(client)
        options = client.get_connection_kwargs()
        assert options["decode_responses"] is False
        assert options["socket_timeout"] == 8.0 and options["client_name"] == "simpul:test"
        await client.set("simpul:checkpoint:probe", "1")
        assert await client.get("simpul:checkpoint:probe") == b"1"  # bytes, on its master
        assert len(client.get_primaries()) == len(cluster.nodes)
    finally:
        await client.aclose()
    monkeypatch.setenv("SIMPUL_REDIS_CLUSTER", "0")
    single = connect(cluster_url)
    try:
        assert isinstance(single, Redis) and not is_cluster(single)
    finally:
        await single.aclose()
