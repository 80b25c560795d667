"""A handler's dependency down (its database...) is an outage, not a poison event: the event
waits, pending, for as long as it takes, the service reports not ready, and nothing reaches the
dead letters — however many more attempts than max_deliveries the outage lasts."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from bus import EventContext, Publisher, Service, keys
from bus.errors import DependencyUnavailable
from bus.store import Store, Tx
from bus.testing import quick_settings, wait_until
from schemas.dukcapil import CitizenDied

STREAM = keys.stream("dukcapil.citizen")


def _died(n: int) -> CitizenDied:
    return CitizenDied(
        nik=f"35730541079001{n:02d}", date_of_death=date(2026, 11, 2), kecamatan="35.73.05"
    )


async def test_an_outage_longer_than_max_deliveries_dead_letters_nothing(
    redis_url: str, redis: Redis
) -> None:
    service = Service("outage-probe", settings=quick_settings(redis_url, max_deliveries=2))
    attempts: list[int] = []
    handled: list[str] = []
    readiness: list[bool] = []
    down = True

    @service.on(CitizenDied)
    async def handle(event: CitizenDied, ctx: EventContext) -> None:
        attempts.append(ctx.delivery)
        if down:
            readiness.append(service.health.ready)
            raise DependencyUnavailable("the archive database is down")
        handled.append(event.nik)

    async with service.running():
        await Publisher(redis, source="urn:test").publish(_died(1))
        await wait_until(lambda: len(attempts) >= 6, timeout=15)  # 3x max_deliveries
        assert not service.health.ready  # /readyz: 503 while the dependency is down
        assert service.health.snapshot()["dependency_down"] == "DependencyUnavailable"
        down = False
        await wait_until(lambda: handled == [_died(1).nik], timeout=15)
        await wait_until(lambda: service.health.ready, timeout=5)
    assert await redis.xlen(keys.dead_letters(STREAM, "outage-probe")) == 0
    assert max(attempts) <= 2  # the outage spent no attempts: the count never passed the cap
    pending = await redis.xpending(STREAM, "outage-probe")
    assert pending["pending"] == 0


async def test_a_real_store_outage_waits_and_applies_each_event_once(
    redis_url: str, redis: Redis, tmp_path: Path
) -> None:
    """The store's folder is missing (a database that is not there yet): StoreUnavailable; once
    it exists, every event is applied, once, and none was dead-lettered."""
    folder = tmp_path / "not-yet"
    store = Store(f"sqlite:///{folder / 'effects.db'}", scope="outage-store")
    service = Service("outage-store", settings=quick_settings(redis_url, max_deliveries=2))

    @service.on(CitizenDied)
    async def record(event: CitizenDied, ctx: EventContext) -> None:
        def work(tx: Tx) -> None:
            tx.execute("INSERT INTO effects VALUES (?)", (ctx.event_id,))

        await store.migrate(["CREATE TABLE IF NOT EXISTS effects (event_id TEXT)"])
        await store.once(ctx.event_id, work)

    folder.write_text("a file where the database folder should be")  # unable to open
    failures = service.health.counters
    async with service.running():
        publisher = Publisher(redis, source="urn:test")
        for n in range(3):
            await publisher.publish(_died(n))
        await wait_until(lambda: failures.get("handler_failures", 0) >= 9, timeout=20)
        assert not service.health.ready
        folder.unlink()
        folder.mkdir()  # the database is back
        await wait_until(lambda: failures.get("acked", 0) >= 3, timeout=20)
        rows = await store.run(lambda tx: tx.all("SELECT event_id FROM effects"))
    await store.close()
    assert len(rows) == len({r["event_id"] for r in rows}) == 3
    assert await redis.xlen(keys.dead_letters(STREAM, "outage-store")) == 0


async def test_the_bus_redis_failing_under_a_handler_spends_no_attempts(
    redis_url: str, redis: Redis
) -> None:
    """A handler's ctx.publish while Redis fails over raises redis-py's ConnectionError: an
    outage like DependencyUnavailable, never a dead letter however long it lasts."""
    service = Service("redis-outage-probe", settings=quick_settings(redis_url, max_deliveries=2))
    attempts: list[int] = []
    handled: list[str] = []
    down = True

    @service.on(CitizenDied)
    async def handle(event: CitizenDied, ctx: EventContext) -> None:
        attempts.append(ctx.delivery)
        if down:
            raise RedisConnectionError(
                "Error 111 connecting to 127.0.0.1:6390. Connection refused."
            )
        handled.append(event.nik)

    async with service.running():
        await Publisher(redis, source="urn:test").publish(_died(1))
        await wait_until(lambda: len(attempts) >= 6, timeout=15)  # 3x max_deliveries
        assert service.health.snapshot()["dependency_down"] == "ConnectionError"
        down = False
        await wait_until(lambda: handled == [_died(1).nik], timeout=15)
    assert await redis.xlen(keys.dead_letters(STREAM, "redis-outage-probe")) == 0
    assert max(attempts) <= 2


async def test_a_handlers_own_connection_error_still_spends_attempts(
    redis_url: str, redis: Redis
) -> None:
    """Python's own ConnectionError (the handler's HTTP call, say) is the handler's to judge:
    it is counted, and the last attempt is dead-lettered."""
    service = Service("own-error-probe", settings=quick_settings(redis_url, max_deliveries=2))
    attempts: list[int] = []

    @service.on(CitizenDied)
    async def handle(event: CitizenDied, ctx: EventContext) -> None:
        attempts.append(ctx.delivery)
        raise ConnectionRefusedError("the archive's web service refused the connection")

    dead = keys.dead_letters(STREAM, "own-error-probe")
    async with service.running():
        await Publisher(redis, source="urn:test").publish(_died(2))
        await wait_until(lambda: redis.xlen(dead), timeout=15)
    assert attempts == [1, 2]
    entries = await redis.xrange(dead)
    assert len(entries) == 1
    assert entries[0][1][b"dlq.reason"] == b"handler_failed"
