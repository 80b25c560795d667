"""Partitioned streams: subject -> partition, contracts that declare them, and the leases that
share partitions among a group's replicas (real Redis)."""

from __future__ import annotations

import asyncio
import zlib

import pytest
from redis.asyncio import Redis

from bus import Contract, Publisher, keys
from bus.access import acl
from bus.access.topology import Topology
from bus.contracts import Registry
from bus.errors import ConfigurationError, ContractViolation
from bus.partitions import Leases


class MeterRead(Contract, event_type="test.meter.read.v1", partitions=4, register=False):
    """A partitioned test aggregate: test.meter in 4 partitions."""

    meter: str
    kwh: int


PARTITIONS = keys.streams("test.meter")


def test_the_partition_of_a_subject_is_crc32_of_its_utf8_bytes_mod_n() -> None:
    assert zlib.crc32(b"123456789") == 0xCBF43926  # the CRC-32 every language's library gives
    assert keys.partition_of("123456789", 1000) == 0xCBF43926 % 1000
    assert keys.partition_of("kk-3573010101010001", 4) == zlib.crc32(b"kk-3573010101010001") % 4
    spread = {keys.partition_of(f"subject-{i}", 4) for i in range(100)}
    assert spread == {0, 1, 2, 3}


def test_a_contract_declares_its_aggregates_partitions() -> None:
    info = MeterRead.__contract__
    assert info.partitions == 4
    assert info.streams == PARTITIONS == [f"simpul:{{test.meter.p{p}}}" for p in range(4)]
    assert keys.stream_of("test.meter.read.v1", "m-1") == PARTITIONS[keys.partition_of("m-1", 4)]
    assert keys.aggregate_of_stream(PARTITIONS[3]) == "test.meter"
    assert all(keys.is_stream(s) for s in PARTITIONS)
    with pytest.raises(ValueError, match="needs a subject"):
        keys.stream_of("test.meter.read.v1")


def test_every_type_of_an_aggregate_must_agree_on_its_partitions() -> None:
    with pytest.raises(ConfigurationError, match="declared with 4 partitions"):

        class Other(Contract, event_type="test.meter.reset.v1", partitions=2, register=False):
            meter: str

    with pytest.raises(ConfigurationError, match="from 1 to 1024"):

        class Zero(Contract, event_type="test.zero.read.v1", partitions=0, register=False):
            meter: str


async def test_events_go_to_their_subjects_partition_and_need_a_subject(redis: Redis) -> None:
    publisher = Publisher(redis, source="urn:malangkota:test:meter", signer=None)
    for meter in ("m-1", "m-2", "m-3", "m-4", "m-5"):
        await publisher.publish(MeterRead(meter=meter, kwh=1), subject=meter)
    for meter in ("m-1", "m-2", "m-3", "m-4", "m-5"):
        home = PARTITIONS[keys.partition_of(meter, 4)]
        subjects = [f[b"subject"].decode() for _, f in await redis.xrange(home)]
        assert meter in subjects
    assert sum([await redis.xlen(p) for p in PARTITIONS]) == 5
    with pytest.raises(ContractViolation, match=r"subject: required: test\.meter is partitioned"):
        await publisher.publish(MeterRead(meter="m-6", kwh=1))
    assert sum([await redis.xlen(p) for p in PARTITIONS]) == 5  # nothing half-published


def _leases(redis: Redis, consumer: str, lease_ms: int = 2_000) -> Leases:
    return Leases(
        redis, group="meters", consumer=consumer, partitions=PARTITIONS, lease_ms=lease_ms
    )


async def test_replicas_share_the_partitions_fairly_and_never_both_hold_one(
    redis: Redis,
) -> None:
    a, b, c = _leases(redis, "a"), _leases(redis, "b"), _leases(redis, "c")
    assert sorted((await a.rebalance()).acquired) == PARTITIONS  # alone: all four
    await b.rebalance()  # b joins: a's share drops to 2, but a has not released yet
    assert not b.owned
    released = (await a.rebalance()).released
    assert len(released) == 2 and len(a.owned) == 2
    assert sorted((await b.rebalance()).acquired) == sorted(released)
    await c.rebalance()  # three live: shares of 2 (ceil 4/3): nobody has a surplus, c waits
    for leases in (a, b, c):
        await leases.rebalance()
    held = [p for leases in (a, b, c) for p in leases.owned]
    assert sorted(held) == PARTITIONS  # each partition exactly once
    for partition in PARTITIONS:
        owner = await redis.get(keys.lease(partition, "meters"))
        assert owner is not None
        assert partition in {"a": a, "b": b, "c": c}[owner.decode()].owned


async def test_a_dead_replicas_partitions_are_taken_over_after_its_lease(redis: Redis) -> None:
    a, b = _leases(redis, "a", lease_ms=300), _leases(redis, "b", lease_ms=300)
    await a.rebalance()
    await b.rebalance()
    await a.rebalance()
    await b.rebalance()
    assert len(a.owned) == len(b.owned) == 2
    # a dies: no more renewals. Within one lease b counts one member and takes everything.
    taken: set[str] = set()
    for _ in range(40):
        await asyncio.sleep(0.05)
        taken |= set((await b.rebalance()).acquired)
        if len(b.owned) == 4:
            break
    assert sorted(b.owned) == PARTITIONS and taken == a.owned
    assert sorted(await a.renew()) == sorted(taken)  # a wakes up: its leases are gone
    assert not a.owned


async def test_a_clean_stop_hands_partitions_over_at_once(redis: Redis) -> None:
    a, b = _leases(redis, "a", lease_ms=60_000), _leases(redis, "b", lease_ms=60_000)
    await a.rebalance()
    await b.rebalance()
    await a.release_all()
    assert sorted((await b.rebalance()).acquired) == PARTITIONS  # no wait for 60 s
    assert b.live == 1


async def test_renew_reports_a_lease_another_consumer_took(redis: Redis) -> None:
    a = _leases(redis, "a")
    await a.rebalance()
    stolen = PARTITIONS[0]
    await redis.set(keys.lease(stolen, "meters"), "intruder")
    assert await a.renew() == [stolen]
    assert stolen not in a.owned and len(a.owned) == 3
    assert await redis.get(keys.lease(stolen, "meters")) == b"intruder"  # not extended by a


def test_a_service_reading_partitions_may_hold_their_leases_and_nothing_else() -> None:
    registry = Registry()
    registry.register(MeterRead)
    topology = Topology.parse(
        {
            "version": 1,
            "departments": [{"code": "test", "name": "Test"}],
            "producers": [
                {
                    "principal": "adapter-meter",
                    "department": "test",
                    "adapter": "meter",
                    "publishes": ["test.meter.read.v1"],
                }
            ],
            "services": [
                {
                    "principal": "svc-meters",
                    "department": "test",
                    "group": "meters",
                    "subscriptions": [{"type": "test.meter.read.v1", "approved_by": "test"}],
                }
            ],
            "operators": [{"principal": "operator", "role": "admin"}],
        },
        registry=registry,
    )
    users = {
        u.name: u
        for u in acl.acl_users(
            topology,
            dict.fromkeys(("operator", "adapter-meter", "svc-meters"), "a-long-enough-password"),
        )
    }
    service = users["svc-meters"].line()
    for partition in PARTITIONS:
        assert f"~{partition}" in service  # it reads every partition
        assert f"~{keys.lease(partition, 'meters')}" in service
    assert f"~{keys.members('meters')}" in service
    producer = users["adapter-meter"].line()
    assert all(f"~{p}" in producer for p in PARTITIONS)
    assert ":lease:" not in producer and "members" not in producer


def test_operators_name_a_partition_by_its_aggregate_and_number() -> None:
    assert keys.stream_named("test.meter.p3") == PARTITIONS[3]
    assert keys.stream_named(PARTITIONS[2]) == PARTITIONS[2]
    assert keys.stream_named("dukcapil.citizen") == "simpul:{dukcapil.citizen}"
    assert keys.stream_named("simpul:{dukcapil.citizen}") == "simpul:{dukcapil.citizen}"
    for wrong in ("test.meter.p", "test.meter.p01", "test.meter.x3", "meter", "simpul:{a}"):
        assert keys.stream_named(wrong) is None, wrong
