"""A service that stops (gracefully, or by SIGKILL) while events keep coming catches up on
restart: every event's effect is there, exactly once."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from adapters import dukcapil
from bus import Publisher, keys
from bus.connection import connect
from bus.testing import wait_until
from schemas.identity import AccountLinked, Verification
from services.notifier.mail import message_id
from tests.e2e.conftest import (
    DAY,
    IDENTITY_SOURCE,
    PSEUDONYM_KEY,
    City,
    elsewhere,
    inbox_keys,
    is_settled,
    permit_body,
    residents,
)

ROOT = Path(__file__).resolve().parents[2]
REGISTERED = "bapenda.taxpayer.registered.v1"
RESTARTED = ("bapenda", "notifier", "audit")


async def _settled_but(city: City, groups: set[str]) -> None:
    """Every other group has caught up."""

    async def others_done() -> bool:
        return await is_settled(city.redis, ignore=groups)

    await wait_until(others_done, timeout=10)


async def test_services_restarted_mid_scenario_catch_up_once(city: City) -> None:
    people = residents(6, seed=505)
    await city.link(*people)
    decided = DAY - timedelta(days=3)
    permits = [permit_body(r, 7300 + i, decided=decided, seed=505) for i, r in enumerate(people)]
    event_ids: dict[str, str] = {}

    async def post(i: int) -> None:
        answer = await city.post(permits[i])
        assert answer.status_code == 201, answer.text
        event_ids[permits[i]["nomor_izin"]] = answer.json()["event_id"]

    for i in (0, 1):
        await post(i)
    await city.settled()
    assert len(city.mail.messages) == 2

    for name in RESTARTED:  # like processes stopped for a deployment
        await city.stop(name)
    for i in (2, 3):
        await post(i)
    move = city.registry.move(
        people[0],
        to=elsewhere(people[0].kecamatan),
        on=DAY - timedelta(days=1),
        alamat="Jl. Sulfat No. 8, RT 002/RW 003, Malang",
    )
    dead_one = people[1]
    death = city.registry.death(dead_one, on=DAY - timedelta(days=2))
    assert await city.siak([move, death]) == 2
    await _settled_but(city, set(RESTARTED))
    stream = keys.stream("dpmptsp.permit")
    groups = {g["name"].decode(): g for g in await city.redis.xinfo_groups(stream)}
    last = (await city.redis.xinfo_stream(stream))["last-generated-id"]
    for name in RESTARTED:  # none of them has seen the newest permits
        assert groups[name]["last-delivered-id"] != last, name
    assert len(city.mail.messages) == 2

    for name in RESTARTED:  # new processes over the same stores
        await city.start(name)
    for i in (4, 5):  # events keep coming while they catch up
        await post(i)
    await city.settled()

    # bapenda: every permit registered its holder once, and was announced once
    npwpds = set()
    for person, body in zip(people, permits, strict=True):
        [taxpayer] = await city.bapenda.taxpayers_by("nik", person.nik)
        assert taxpayer.permits == (body["nomor_izin"],)
        npwpds.add(taxpayer.npwpd)
        view = await city.profile.person(person.nik)
        assert view is not None
        assert [t["npwpd"] for t in view["sections"]["tax"]["npwpd"]] == [taxpayer.npwpd]
    announced = [
        json.loads(f["data"])
        for _, f in await city.entries("bapenda.taxpayer")
        if f["type"] == REGISTERED
    ]
    assert sorted(a["permit_no"] for a in announced) == sorted(p["nomor_izin"] for p in permits)
    assert {a["npwpd"] for a in announced} == npwpds
    # ... and the move and the death that came while it was down took effect, once
    [mover] = await city.bapenda.taxpayers_by("nik", people[0].nik)
    assert mover.billing.street == move["alamat"]
    assert mover.billing.as_of == move["tgl_peristiwa"]
    [dead] = await city.bapenda.taxpayers_by("nik", people[1].nik)
    assert [(r.npwpd, r.reason) for r in await city.bapenda.open_reviews()] == [
        (dead.npwpd, "death")
    ]
    siak_ids = [dukcapil.map_record(row, pseudonym_key=PSEUDONYM_KEY)[1] for row in (move, death)]
    assert await inbox_keys(city.store("bapenda")) == sorted(
        [f"bapenda/{e}:register" for e in event_ids.values()]  # the store's scope, then the key
        + [f"bapenda/{siak_ids[0]}:move", f"bapenda/{siak_ids[1]}:death"]
    )

    # notifier: one e-mail per permit, each to its holder, none twice
    sent = {(m["To"], m["Message-ID"]) for m in city.mail.messages}
    assert len(city.mail.messages) == len(sent) == 6
    assert sent == {
        (r.email, message_id(event_ids[p["nomor_izin"]], r.account_id))
        for r, p in zip(people, permits, strict=True)
    }

    # audit: every entry of every stream archived once, the chain intact across the restart
    assert await city.audit.count() == sum((await city.stream_lengths()).values())
    report = await city.audit.verify()
    assert report.ok, report.problems
    assert await city.dead_letters() == {}


# -- SIGKILL: the profile as a process of its own ----------------------------------------------


def _start_profile(db: Path, redis_url: str, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIMPUL_")}
    env.update(
        {
            "SIMPUL_REDIS_URL": redis_url,
            "SIMPUL_PROFILE_DB": f"sqlite:///{db}",
            "SIMPUL_PSEUDONYM_KEY": PSEUDONYM_KEY.decode(),
            "SIMPUL_BLOCK_MS": "100",
            "SIMPUL_CLAIM_IDLE_MS": "1000",
            "SIMPUL_RECLAIM_INTERVAL_MS": "50",
            "SIMPUL_RETRY_BACKOFF_MS": "50",
            "SIMPUL_RETRY_BACKOFF_MAX_MS": "200",
            "SIMPUL_LOG_LEVEL": "warning",
            "SIMPUL_LOG_FORMAT": "json",
            "SIMPUL_SIGNATURES": "off",  # this scenario publishes unsigned events
        }
    )
    with log.open("ab") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "bus.cli.app", "run", "services.profile:create"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )


@contextlib.contextmanager
def _reaped(proc: subprocess.Popen[bytes]) -> Iterator[subprocess.Popen[bytes]]:
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)


def _links(first: int, count: int) -> list[AccountLinked]:
    at = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    return [
        AccountLinked(
            account_id=str(uuid.UUID(int=i + 1, version=4)),
            nik=f"357301{(i % 28) + 1:02d}0190{i + 1:04d}",
            verification=Verification.DUKCAPIL_FACE_MATCH,
            linked_at=at + timedelta(seconds=i),
        )
        for i in range(first, first + count)
    ]


def _count(db: Path, sql: str) -> int:
    try:
        with contextlib.closing(sqlite3.connect(db, timeout=5)) as conn:
            return int(conn.execute(sql).fetchone()[0])
    except sqlite3.OperationalError:  # not created yet
        return 0


def _rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(db, timeout=5)) as conn:
        return list(conn.execute(sql).fetchall())


@pytest.mark.slow
async def test_profile_killed_mid_stream_loses_nothing_and_applies_each_event_once(
    redis_url: str, tmp_path: Path
) -> None:
    db, log = tmp_path / "profile.db", tmp_path / "profile.log"
    redis = connect(redis_url)
    publisher = Publisher(redis, source=IDENTITY_SOURCE)
    stream = keys.stream("identity.account")
    published: list[str] = []

    async def publish(first: int, count: int) -> None:
        done = await publisher.publish_many(publisher.envelope(e) for e in _links(first, count))
        published.extend(p.event_id for p in done)

    async def has_group(proc: subprocess.Popen[bytes]) -> bool:
        assert proc.poll() is None, log.read_text()
        return await redis.exists(stream) == 1 and any(
            g["name"] == b"profile" for g in await redis.xinfo_groups(stream)
        )

    try:
        with _reaped(_start_profile(db, redis_url, log)) as first:
            await publish(0, 1)  # the stream exists: the profile creates its group on it
            await wait_until(lambda: has_group(first), timeout=10)
            await publish(1, 299)

            def some_applied() -> bool:
                assert first.poll() is None, log.read_text()
                return _count(db, "SELECT COUNT(*) FROM profile_account_fact") >= 25

            await wait_until(some_applied, timeout=10, interval=0.005)
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=10)
        at_kill = _count(db, "SELECT COUNT(*) FROM profile_account_fact")
        assert at_kill < 300, "the kill came too late to test anything"

        await publish(300, 50)  # while it is down
        with _reaped(_start_profile(db, redis_url, log)) as second:
            await publish(350, 50)  # while it catches up (and reclaims the killed one's entries)

            async def caught_up() -> bool:
                assert second.poll() is None, log.read_text()
                return await is_settled(redis)

            await wait_until(caught_up, timeout=12)
            second.send_signal(signal.SIGTERM)
            assert second.wait(timeout=10) == 0, log.read_text()

        assert len(published) == 400
        facts = _rows(db, "SELECT event_id FROM profile_account_fact")
        assert sorted(e for (e,) in facts) == sorted(published)
        keys_done = _rows(db, "SELECT key FROM simpul_inbox")
        assert sorted(k for (k,) in keys_done) == sorted(f"profile/{e}:profile" for e in published)
        holders = _rows(
            db, "SELECT COUNT(DISTINCT nik), COUNT(DISTINCT account_id) FROM profile_account_fact"
        )
        assert holders == [(400, 400)]
        assert [k async for k in redis.scan_iter(match=f"{stream}:dlq:*")] == []
    finally:
        await redis.aclose()
