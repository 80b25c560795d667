"""Replicas of one service share its group: a dead replica's entries are finished by a live one,
and a live (if slow) replica's entries are not taken from it."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from bus import EventContext, Publisher, Service
from bus.testing import quick_settings, wait_until
from schemas.dukcapil import CitizenDied
from tests.bus.delivery.helpers import STREAM, Calls, died, pending, wait_pending
from tests.bus.delivery.replica import EFFECTS, GROUP, build_service, inside_key

ROOT = Path(__file__).resolve().parents[3]


@contextlib.contextmanager
def replica_process(
    url: str, consumer: str, log: Path, *, hang: bool
) -> Iterator[subprocess.Popen[bytes]]:
    """Run tests/bus/delivery/replica.py; whatever happens, it does not outlive the test."""
    command = [
        sys.executable,
        "-m",
        "tests.bus.delivery.replica",
        "--url",
        url,
        "--consumer",
        consumer,
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*command, *(["--hang"] if hang else [])],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()  # this process only, by its pid
            proc.wait(10)


async def effects(redis: Redis) -> list[str]:
    return [e.decode() for e in await redis.lrange(EFFECTS, 0, -1)]


IDS = [f"kill-{i:02d}" for i in range(10)] + ["marker-1"] + [f"kill-{i:02d}" for i in range(10, 20)]


async def _kill_r1_inside_the_marker(
    redis: Redis, redis_url: str, publisher: Publisher, log: Path
) -> None:
    """Replica r1 (a process) takes the events and is SIGKILLed inside the marker's handler."""
    with replica_process(redis_url, "r1", log, hang=True) as proc:
        await publisher.publish_many([publisher.envelope(died(), id=i) for i in IDS])
        try:
            await wait_until(lambda: redis.exists(inside_key("r1")), timeout=60)
        except AssertionError:
            output = await asyncio.to_thread(log.read_text)
            pytest.fail(f"replica r1 never reached the marker; its output:\n{output}")
        held = await redis.xpending_range(STREAM, GROUP, "-", "+", 100, consumername="r1")
        assert (await redis.get(inside_key("r1"))) in [row["message_id"] for row in held]
        proc.kill()  # SIGKILL, mid-handler
        assert proc.wait(10) == -signal.SIGKILL
    assert await pending(redis, group=GROUP) >= 1  # the marker is still r1's


async def _finish_with(
    redis: Redis, redis_url: str, consumer: str, *, claim_idle_ms: int
) -> list[str]:
    async def finished() -> bool:
        return set(IDS) <= set(await effects(redis)) and await pending(redis, group=GROUP) == 0

    async with build_service(redis_url, consumer, redis, claim_idle_ms=claim_idle_ms).running():
        await wait_until(finished, timeout=30)
    consumers = await redis.xinfo_consumers(STREAM, GROUP)
    assert all(c["pending"] == 0 for c in consumers)
    return await effects(redis)


@pytest.mark.slow
async def test_entries_of_a_replica_killed_mid_handler_are_finished_by_another(
    redis: Redis, redis_url: str, publisher: Publisher, tmp_path: Path
) -> None:
    await _kill_r1_inside_the_marker(redis, redis_url, publisher, tmp_path / "r1.log")
    done = await _finish_with(redis, redis_url, "r2", claim_idle_ms=1_000)
    assert set(done) == set(IDS)  # nothing lost
    assert done.count("marker-1") == 2  # begun by r1, finished by r2 after claim_idle


@pytest.mark.slow
async def test_a_replica_restarted_under_its_name_finishes_its_own_entries_at_once(
    redis: Redis, redis_url: str, publisher: Publisher, tmp_path: Path
) -> None:
    """claim_idle is a minute here: only r1's own drain at start-up can finish the marker."""
    await _kill_r1_inside_the_marker(redis, redis_url, publisher, tmp_path / "r1.log")
    done = await _finish_with(redis, redis_url, "r1", claim_idle_ms=60_000)
    assert set(done) == set(IDS)
    assert done.count("marker-1") == 2


async def _slow_replicas_handle(
    redis: Redis, redis_url: str, publisher: Publisher, *, batch_size: int, events: int = 8
) -> Calls:
    """Two replicas whose handler takes 0.3 s (well under claim_idle = 1 s) share ``events``."""
    calls = Calls()

    def replica(name: str) -> Service:
        settings = quick_settings(
            redis_url, consumer=name, batch_size=batch_size, claim_idle_ms=1_000
        )
        service = Service("slow", settings=settings)

        @service.on(CitizenDied)
        async def slow(event: CitizenDied, ctx: EventContext) -> None:
            await asyncio.sleep(0.3)
            calls.record(ctx)

        return service

    ids = [f"slow-{i}" for i in range(events)]
    await publisher.publish_many([publisher.envelope(died(), id=i) for i in ids])

    async def all_handled() -> bool:
        return set(ids) <= set(calls.ids()) and await pending(redis, group="slow") == 0

    async with replica("s1").running(), replica("s2").running():
        await wait_until(all_handled, timeout=30)
        await wait_pending(redis, 0, group="slow")
    return calls


async def test_slow_handlers_one_entry_per_read_are_not_stolen(
    redis: Redis, redis_url: str, publisher: Publisher
) -> None:
    calls = await _slow_replicas_handle(redis, redis_url, publisher, batch_size=1)
    assert sorted(calls.ids()) == sorted(set(calls.ids())), f"handled twice: {calls.seen}"
    assert {delivery for _, delivery, _ in calls.seen} == {1}


async def test_entries_waiting_in_a_batch_are_not_stolen_from_a_live_consumer(
    redis: Redis, redis_url: str, publisher: Publisher
) -> None:
    """Each handler takes 0.3 s, under claim_idle (1 s) as the settings ask; but one replica
    reads the 8 events in one batch (2.4 s of work), which is acked only at its end: its
    entries, handled or waiting, age past claim_idle and the other replica claims them from a
    consumer that is alive and working, so events are handled twice."""
    calls = await _slow_replicas_handle(redis, redis_url, publisher, batch_size=100)
    assert sorted(calls.ids()) == sorted(set(calls.ids())), f"handled twice: {calls.seen}"
