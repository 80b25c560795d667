"""Backfill: a new service gets the archived events already trimmed from its streams, once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from bus import EventContext, Service, keys
from bus.errors import ConfigurationError
from bus.settings import Settings
from bus.testing import wait_until
from schemas.dpmptsp import PermitIssued
from schemas.dukcapil import CitizenBorn, CitizenDied
from services.audit import Audit
from services.audit.backfill import CONSUMER, NOT_BACKFILLABLE
from tests.services.test_audit_common import (
    archived,
    archiving,
    audit_for,
    example,
    publisher,
    settings_for,
)

CITIZEN = keys.stream("dukcapil.citizen")
NAME = "newcomer"


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'audit.db'}"


class Newcomer:
    """A service started after the streams were trimmed: records what its handlers saw."""

    def __init__(self, settings: Settings, *, failing: frozenset[str] = frozenset()) -> None:
        self.seen: list[str] = []
        self.failing = failing
        self.attempts: dict[str, int] = {}
        self.hooks: list[str] = []
        self.on_first: Any = None
        self.service = Service(NAME, settings=settings, source="urn:malangkota:test:newcomer")
        self.service.on(CitizenDied, once=True)(self.died)
        self.service.on(CitizenBorn)(self.born)
        self.service.on_startup(self.start)
        self.service.on_shutdown(self.stop)

    async def start(self) -> None:
        self.hooks.append("startup")

    async def stop(self) -> None:
        self.hooks.append("shutdown")

    async def died(self, event: CitizenDied, ctx: EventContext) -> None:
        self.attempts[ctx.event_id] = ctx.delivery
        if self.on_first is not None:
            hook, self.on_first = self.on_first, None
            await hook()
        if ctx.event_id in self.failing:
            raise RuntimeError("the department's database refused the row")
        self.seen.append(ctx.event_id)

    async def born(self, event: CitizenBorn, ctx: EventContext) -> None:
        self.seen.append(ctx.event_id)


async def _publish_died(redis: Redis, *ids: str) -> dict[str, str]:
    """Publish CitizenDied events; return event id -> entry id."""
    pub = publisher(redis)
    return {
        i: (await pub.publish(example(CitizenDied, n), id=i)).entry_id for n, i in enumerate(ids)
    }


async def _trim(redis: Redis, stream: str, minid: str) -> None:
    await redis.xtrim(stream, minid=minid, approximate=False)


async def _group_done(redis: Redis, stream: str, group: str) -> bool:
    """The group read the whole stream and has nothing pending."""
    groups = {g["name"].decode(): g for g in await redis.xinfo_groups(stream)}
    last = await redis.xrevrange(stream, count=1)
    info = groups.get(group)
    return bool(info and info["pending"] == 0 and last and info["last-delivered-id"] == last[0][0])


async def test_backfill_delivers_trimmed_events_once_then_the_group_takes_the_rest(
    store_url: str, redis_url: str, redis: Redis
) -> None:
    audit = audit_for(store_url, redis_url)
    settings = settings_for(redis_url, consumer="newcomer-1")
    newcomer = Newcomer(settings)
    async with archiving(audit):
        pub = publisher(redis)
        entries = await _publish_died(redis, "d0", "d1")
        await pub.publish(example(CitizenBorn), id="b0")  # specific: no data archived
        entries |= await _publish_died(redis, "d2", "d3")
        await pub.publish(example(PermitIssued), id="p0")  # a stream the newcomer ignores
        entries |= await _publish_died(redis, "d4", "d5")
        await archived(audit, 8)
        await _trim(redis, CITIZEN, entries["d4"])  # d0..d3 and b0 are gone from the stream
        assert await redis.xlen(CITIZEN) == 2

        dry = await audit.backfill(newcomer.service, dry_run=True)
        assert (dry.events, dry.not_backfillable, dry.delivered) == (5, 1, 0)
        assert newcomer.seen == []

        report = await audit.backfill(newcomer.service)
        assert newcomer.seen == ["d0", "d1", "d2", "d3"]
        assert newcomer.hooks == ["startup", "shutdown"]
        (plan,) = report.streams
        assert plan.stream == CITIZEN
        assert plan.oldest == entries["d4"]
        assert plan.types == ("dukcapil.citizen.born.v1", "dukcapil.citizen.died.v1")
        assert (report.delivered, report.not_backfillable, report.dead_lettered) == (4, 1, 0)
        assert report.ok and report.passes == 1
        assert report.to_json()["not_backfillable_reason"] == NOT_BACKFILLABLE
        assert NAME not in {g["name"].decode() for g in await redis.xinfo_groups(CITIZEN)}

        async with newcomer.service.running():  # the group starts at 0: what is still there
            await wait_until(lambda: _group_done(redis, CITIZEN, NAME))
        assert newcomer.seen == ["d0", "d1", "d2", "d3", "d4", "d5"]

        # Once the group exists the stream is left to it; forced, once=True still holds.
        again = await audit.backfill(newcomer.service)
        assert again.streams[0].skipped is not None and again.delivered == 0
        forced = await audit.backfill(newcomer.service, force=True)
        assert forced.delivered == 4
        assert newcomer.seen == ["d0", "d1", "d2", "d3", "d4", "d5"]


async def test_backfill_dead_letters_what_fails_with_its_reason(
    sqlite_url: str, redis_url: str, redis: Redis
) -> None:
    audit = audit_for(sqlite_url, redis_url)
    newcomer = Newcomer(settings_for(redis_url), failing=frozenset({"d1"}))
    bad = example(CitizenDied).model_dump(mode="json") | {"kecamatan": "99.99.99"}
    async with archiving(audit):
        entries = await _publish_died(redis, "d0", "d1")
        envelope = publisher(redis).envelope(example(CitizenDied), id="bad")
        violating = envelope.with_attributes(data=json.dumps(bad))
        bad_entry = await redis.xadd(CITIZEN, violating.to_fields())  # type: ignore[arg-type]
        entries |= await _publish_died(redis, "d9")
        await archived(audit, 4)  # the archive keeps the violating event as it travelled
        await _trim(redis, CITIZEN, entries["d9"])
        report = await audit.backfill(newcomer.service, attempts=2)
        dead = await redis.xrange(keys.dead_letters(CITIZEN, NAME))

    assert newcomer.seen == ["d0"]
    assert newcomer.attempts["d1"] == 2
    assert (report.delivered, report.dead_lettered, report.ok) == (1, 2, False)
    assert [(f.event_id, f.reason) for f in report.failures] == [
        ("d1", "handler_failed"),
        ("bad", "contract_violation"),
    ]
    letters = {fields[b"id"]: fields for _, fields in dead}
    failed, violated = letters[b"d1"], letters[b"bad"]
    assert failed[b"dlq.reason"] == b"handler_failed"
    assert failed[b"dlq.attempts"] == b"2"
    assert failed[b"dlq.entry"] == entries["d1"].encode()
    assert failed[b"dlq.group"] == NAME.encode()
    assert failed[b"dlq.consumer"] == CONSUMER.encode()
    assert b"refused the row" in failed[b"dlq.error"]
    assert violated[b"dlq.reason"] == b"contract_violation"
    assert violated[b"dlq.entry"] == bad_entry
    assert violated[b"type"] == b"dukcapil.citizen.died.v1"
    assert b"kecamatan" in violated[b"dlq.error"]


async def test_entries_trimmed_during_the_backfill_get_another_pass(
    sqlite_url: str, redis_url: str, redis: Redis
) -> None:
    audit = audit_for(sqlite_url, redis_url)
    newcomer = Newcomer(settings_for(redis_url))
    async with archiving(audit):
        entries = await _publish_died(redis, *(f"d{i}" for i in range(7)))
        await archived(audit, 7)
        await _trim(redis, CITIZEN, entries["d3"])

        async def retention_strikes() -> None:  # while d0 is handled, d3 and d4 age out
            await _trim(redis, CITIZEN, entries["d5"])

        newcomer.on_first = retention_strikes
        report = await audit.backfill(newcomer.service)
        assert newcomer.seen == ["d0", "d1", "d2", "d3", "d4"]
        assert (report.passes, report.delivered, report.events) == (2, 5, 5)
        async with newcomer.service.running():
            await wait_until(lambda: _group_done(redis, CITIZEN, NAME))
    assert newcomer.seen == [f"d{i}" for i in range(7)]


async def test_an_empty_stream_is_backfilled_whole(
    sqlite_url: str, redis_url: str, redis: Redis
) -> None:
    audit = audit_for(sqlite_url, redis_url)
    newcomer = Newcomer(settings_for(redis_url))
    async with archiving(audit):
        entries = await _publish_died(redis, "d0", "d1")
        await archived(audit, 2)
        await redis.xdel(CITIZEN, *entries.values())
        report = await audit.backfill(newcomer.service)
    assert report.streams[0].oldest is None
    assert newcomer.seen == ["d0", "d1"]


async def test_backfill_refuses_the_audit_itself(sqlite_url: str, redis_url: str) -> None:
    audit = audit_for(sqlite_url, redis_url)
    other = Audit(audit.store, settings=settings_for(redis_url))
    try:
        with pytest.raises(ConfigurationError, match="own archive"):
            await audit.backfill(other.service)
    finally:
        await audit.close()


async def test_dispatching_runs_hooks_and_creates_no_group(redis_url: str, redis: Redis) -> None:
    newcomer = Newcomer(settings_for(redis_url))
    entry = (await _publish_died(redis, "d0"))["d0"]
    raw = dict((await redis.xrange(CITIZEN))[0][1])
    async with newcomer.service.dispatching() as dispatcher:
        assert newcomer.hooks == ["startup"]
        assert await dispatcher.dispatch(CITIZEN, entry, raw, 1) is None
        assert await dispatcher.dispatch(CITIZEN, entry, raw, 2) is None  # once: not again
    assert newcomer.hooks == ["startup", "shutdown"]
    assert newcomer.seen == ["d0"]
    assert await redis.xinfo_groups(CITIZEN) == []
