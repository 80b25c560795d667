"""Sentinel and durability settings: parsed strictly, errors name the variable (no servers)."""

from __future__ import annotations

import pytest

from bus.connection import connect
from bus.durability import Durability
from bus.errors import ConfigurationError
from bus.sentinel import RedisSentinels, is_sentinel
from bus.settings import Settings


def test_sentinel_addresses_are_parsed_with_ipv6_and_spaces() -> None:
    parsed = RedisSentinels.parse(" 10.0.0.1:26379, [::1]:26380 ,s3:26381", master="city")
    assert parsed.addresses == (("10.0.0.1", 26379), ("::1", 26380), ("s3", 26381))
    assert parsed.master == "city" and parsed.configured


@pytest.mark.parametrize("bad", ["10.0.0.1", "host:port", ":26379", "h:0", "h:70000"])
def test_a_sentinel_address_without_a_valid_port_is_refused_by_name(bad: str) -> None:
    with pytest.raises(ConfigurationError, match=r"SIMPUL_REDIS_SENTINELS.*HOST:PORT"):
        RedisSentinels.parse(f"s1:26379,{bad}")


def test_the_sentinel_password_is_never_shown() -> None:
    sentinels = RedisSentinels.from_env(
        {"SIMPUL_REDIS_SENTINELS": "s1:26379", "SIMPUL_REDIS_SENTINEL_PASSWORD": "rahasia-1"}
    )
    assert sentinels.password == "rahasia-1"
    assert "rahasia-1" not in repr(sentinels)


def test_unset_or_empty_sentinels_mean_a_single_server() -> None:
    assert not RedisSentinels.from_env({"SIMPUL_REDIS_SENTINELS": ""}).configured
    client = connect("redis://127.0.0.1:1/0", sentinels=RedisSentinels(), cluster=False)
    assert not is_sentinel(client)


async def test_connect_follows_sentinels_and_refuses_them_with_a_cluster() -> None:
    sentinels = RedisSentinels.parse("127.0.0.1:1")
    client = connect("redis://user:pw@127.0.0.1:1/2", sentinels=sentinels, cluster=False)
    assert is_sentinel(client)
    await client.aclose()
    with pytest.raises(ConfigurationError, match="SIMPUL_REDIS_CLUSTER and SIMPUL_REDIS_SENTI"):
        connect("redis://127.0.0.1:1/0", sentinels=sentinels, cluster=True)
    with pytest.raises(ConfigurationError, match="unix"):
        connect("unix:///tmp/redis.sock", sentinels=sentinels, cluster=False)


def test_durability_reads_its_variables_and_refuses_nonsense() -> None:
    assert Durability.from_env({}) == Durability(None, 2_000)
    read = Durability.from_env(
        {"SIMPUL_REDIS_WAIT_REPLICAS": "2", "SIMPUL_REDIS_WAIT_TIMEOUT_MS": "500"}
    )
    assert read == Durability(2, 500)
    with pytest.raises(ConfigurationError, match=r"SIMPUL_REDIS_WAIT_REPLICAS: .*integer"):
        Durability.from_env({"SIMPUL_REDIS_WAIT_REPLICAS": "one"})
    with pytest.raises(ConfigurationError, match="SIMPUL_REDIS_WAIT_TIMEOUT_MS=0"):
        Durability(1, 0)


def test_settings_know_the_new_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIMPUL_REDIS_SENTINELS", "s1:26379,s2:26379")
    monkeypatch.setenv("SIMPUL_REDIS_WAIT_REPLICAS", "")
    settings = Settings.load()
    assert settings.redis_sentinels == "s1:26379,s2:26379"
    assert settings.redis_wait_replicas is None and settings.redis_wait_timeout_ms == 2_000
    monkeypatch.setenv("SIMPUL_REDIS_WAIT_REPLICAS", "17")
    with pytest.raises(ConfigurationError, match="SIMPUL_REDIS_WAIT_REPLICAS"):
        Settings.load()
