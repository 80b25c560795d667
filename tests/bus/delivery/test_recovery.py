"""The loop recovers by itself from lost groups, and gives up on entries that keep crashing it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from redis import Redis as SyncRedis
from redis.asyncio import Redis

from bus import EventContext, Publisher, Service
from bus.connection import connect
from bus.deadletter import Reason
from bus.local.redis import EmbeddedRedis
from bus.settings import Settings
from bus.testing import capture_logs, quick_settings, wait_until
from schemas import regions
from schemas.dukcapil import CitizenDied
from tests.bus.delivery.helpers import (
    GROUP,
    SOURCE,
    STREAM,
    Calls,
    barrier,
    died,
    fields_of,
    pending,
    recording_service,
    surviving,
    text,
    wait_dead_letters,
    wait_pending,
)


async def _publish_and_wait(
    publisher: Publisher, service: Service, calls: Calls, ids: list[str]
) -> None:
    for event_id in ids:
        await publisher.publish(died(), id=event_id)

    def done_or_dead() -> bool:
        return set(ids) <= set(calls.ids()) or not service.health.running

    await wait_until(done_or_dead, timeout=20)
    assert service.health.running, f"the consumer loop died: {service.health.snapshot()}"
    assert set(ids) <= set(calls.ids())


async def _blocked_in_read(redis: Redis) -> bool:
    clients = await redis.client_list()
    return any(c.get("cmd") == "xreadgroup" and "b" in c.get("flags", "") for c in clients)


LOSSES = {
    "destroy_group": lambda redis: redis.xgroup_destroy(STREAM, GROUP),
    "delete_stream": lambda redis: redis.delete(STREAM),
}


@pytest.mark.parametrize("loss", list(LOSSES))
async def test_consumption_resumes_after_the_group_is_lost(
    loss: str, redis: Redis, redis_url: str, publisher: Publisher
) -> None:
    """The group (or its whole stream) goes away while the consumer is blocked in XREADGROUP.

    block_ms is long here so the loss surely lands during a blocked read: Redis then answers
    the blocked read with an error at once (NOGROUP for a destroyed group, UNBLOCKED for a
    deleted stream on Redis 7) rather than at the next poll."""
    calls = Calls()
    service = recording_service(quick_settings(redis_url, consumer="lost-1", block_ms=2_000), calls)
    async with surviving(service):
        await barrier(publisher, calls, "before-loss")
        await wait_until(lambda: _blocked_in_read(redis), timeout=15)
        assert await LOSSES[loss](redis) == 1
        await _publish_and_wait(publisher, service, calls, [f"after-loss-{i}" for i in range(5)])
        await wait_pending(redis, 0)
    groups = [g["name"].decode() for g in await redis.xinfo_groups(STREAM)]
    assert groups == [GROUP]


async def test_group_destroyed_while_a_handler_fails_does_not_kill_the_consumer(
    redis: Redis, settings: Settings, publisher: Publisher
) -> None:
    """The failed entry's retry is scheduled with XCLAIM, which answers NOGROUP once the group
    is gone; the loop must recreate the group as it does for XREADGROUP, not die."""
    calls, started, release = Calls(), asyncio.Event(), asyncio.Event()
    service = Service(GROUP, settings=settings)

    @service.on(CitizenDied)
    async def handle(event: CitizenDied, ctx: EventContext) -> None:
        calls.record(ctx)
        if ctx.event_id == "fails-during-destroy" and ctx.delivery == 1:
            started.set()
            await release.wait()
            raise RuntimeError("the registry API is down")

    async with surviving(service):
        await publisher.publish(died(), id="fails-during-destroy")
        await asyncio.wait_for(started.wait(), 15)
        await redis.xgroup_destroy(STREAM, GROUP)
        release.set()
        await _publish_and_wait(publisher, service, calls, [f"after-destroy-{i}" for i in range(3)])
        await wait_pending(redis, 0)


async def test_entry_delivered_too_often_is_dead_lettered_without_a_handler_call(
    redis: Redis, redis_url: str, publisher: Publisher
) -> None:
    """An entry whose consumers keep dying while handling it (crash loop) is given up on."""
    published = await publisher.publish(died(), id="crash-loop")
    await redis.xgroup_create(STREAM, GROUP, id="0")
    await redis.xreadgroup(GROUP, "ghost", {STREAM: ">"})  # delivery 1, then the ghost "dies"
    for _ in range(3):  # three more consumers claimed it and died: deliveries 2, 3, 4
        await redis.xclaim(STREAM, GROUP, "ghost", 0, [published.entry_id])
    calls = Calls()
    settings = quick_settings(redis_url, consumer="survivor", max_deliveries=3)
    async with recording_service(settings, calls).running():
        [dead] = await wait_dead_letters(redis, 1, timeout=20)
        await wait_pending(redis, 0)
        await barrier(publisher, calls, "after-crash-loop")
    assert "crash-loop" not in calls.ids()
    assert text(dead, "dlq.reason") == Reason.MAX_DELIVERIES
    assert text(dead, "dlq.attempts") == "5"
    assert text(dead, "dlq.consumer") == "survivor"
    assert text(dead, "dlq.entry") == published.entry_id
    assert await pending(redis) == 0


async def test_an_entry_whose_handler_failed_before_its_consumers_died_keeps_the_error(
    redis: Redis, redis_url: str, publisher: Publisher
) -> None:
    """Its handler fails once; then its consumers die while handling it until it has no
    deliveries left: the dead letter says max_deliveries_exceeded, and what the handler said."""
    calls = Calls()
    # First a backoff the test outlives, so the only handler call is the first.
    slow = {"claim_idle_ms": 30_000, "retry_backoff_ms": 20_000, "retry_backoff_max_ms": 20_000}
    service = Service(GROUP, settings=quick_settings(redis_url, max_deliveries=3, **slow))

    @service.on(CitizenDied)
    async def refuse(event: CitizenDied, ctx: EventContext) -> None:
        calls.record(ctx)
        raise LookupError("the grant register has no row for this kecamatan")

    published = await publisher.publish(died(), id="failed-then-crashed")
    async with service.running():
        await wait_until(lambda: calls.of("failed-then-crashed") == [1], timeout=20)
    for _ in range(2):  # two consumers claimed it and died: deliveries 2 and 3
        await redis.xclaim(STREAM, GROUP, "ghost", 0, [published.entry_id])
    service.settings = quick_settings(redis_url, consumer="survivor", max_deliveries=3)
    async with service.running():
        [dead] = await wait_dead_letters(redis, 1, timeout=20)
    assert calls.of("failed-then-crashed") == [1]
    assert text(dead, "dlq.reason") == Reason.MAX_DELIVERIES
    error = text(dead, "dlq.error")
    assert "its consumers died or timed out" in error
    assert "the handler's last error: LookupError: the grant register has no row" in error


async def test_an_unreadable_local_file_is_reported_as_what_it_is_not_as_redis(
    redis: Redis, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A department project whose own ``schemas/`` folder shadows the package: the contracts'
    region codes (schemas/data/regions.json) cannot be read while an event is validated."""
    entry = fields_of(died(), "needs-regions")  # validated here, while the file is found
    regions.regions.cache_clear()
    monkeypatch.setattr(regions, "files", lambda _: tmp_path / "shadowing-schemas")
    service = recording_service(quick_settings(redis_url), Calls())
    with capture_logs() as logs, pytest.raises(FileNotFoundError):
        async with service.running():
            await redis.xadd(STREAM, entry)  # type: ignore[arg-type]
            await wait_until(lambda: not service.health.running, timeout=20)
    regions.regions.cache_clear()
    names = [log["event"] for log in logs]
    assert "redis_unavailable" not in names, names
    [crash] = [log for log in logs if log["event"] == "consumer_crashed"]
    assert crash["error_type"] == "FileNotFoundError"


async def test_an_acl_without_the_failure_notes_still_retries_and_dead_letters(
    private_redis: EmbeddedRedis,
) -> None:
    """A service user rendered before failure notes existed may not write them: the consumer
    says so once and settles as before."""
    prefix = STREAM  # the stream and every key of it but the notes
    allowed = [f"~{prefix}{rest}" for rest in ("", ":dlq:*", ":done:*", ":cursor:*", ":seen:*")]
    with SyncRedis.from_url(private_redis.url) as admin:
        admin.execute_command("ACL", "SETUSER", "old", "on", ">pw", *allowed, "+@all")
    url = private_redis.url.replace("redis://", "redis://old:pw@", 1)
    calls = Calls()
    service = Service(GROUP, settings=quick_settings(url, max_deliveries=3))

    @service.on(CitizenDied)
    async def refuse(event: CitizenDied, ctx: EventContext) -> None:
        calls.record(ctx)
        raise LookupError("no row")

    redis = connect(url)
    try:
        with capture_logs() as logs:
            async with service.running():
                await Publisher(redis, source=SOURCE).publish(died(), id="old-acl")
                [dead] = await wait_dead_letters(redis, 1, timeout=20)
    finally:
        await redis.aclose()
    assert calls.of("old-acl") == [1, 2, 3]
    assert text(dead, "dlq.reason") == Reason.HANDLER_FAILED
    assert [log["event"] for log in logs].count("failure_note_not_permitted") == 1
