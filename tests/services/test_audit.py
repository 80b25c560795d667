"""The audit archive: every entry of every stream once, in a hash chain that shows tampering."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from bus import Classification, Contract, Registry, keys
from bus.envelope import Envelope, format_time
from bus.store import Store
from bus.testing import wait_until
from schemas.bapenda import TaxpayerRegistered
from schemas.dpmptsp import PermitIssued
from schemas.dukcapil import CitizenBorn, CitizenDied, CitizenMoved
from services.audit import Audit, Head, head_key
from services.audit.chain import GENESIS, row_hash
from tests.services.test_audit_common import (
    UNKNOWN_TYPE,
    archived,
    archiving,
    audit_for,
    example,
    publisher,
    unknown_envelope,
)

CITIZEN = keys.stream("dukcapil.citizen")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'audit.db'}"


async def _sql(audit: Audit, sql: str, params: tuple[Any, ...] = ()) -> None:
    await audit.store.run(lambda tx: tx.execute(sql, params))


async def _rows(audit: Audit) -> list[dict[str, Any]]:
    return await audit.store.run(lambda tx: tx.all("SELECT * FROM audit_log ORDER BY seq"))


async def _archive_five(audit: Audit, redis: Redis) -> None:
    pub = publisher(redis)
    for i in range(5):
        await pub.publish(example(CitizenDied, i), id=f"died-{i}")
    await archived(audit, 5)


# -- archiving ----------------------------------------------------------------------------


async def test_archives_every_stream_unknown_types_and_classifications(
    store_url: str, redis_url: str, redis: Redis
) -> None:
    audit = audit_for(store_url, redis_url)
    pub = publisher(redis)
    async with archiving(audit):
        died = await pub.publish(example(CitizenDied), id="died-1", subject="pseudo-1")
        born = await pub.publish(example(CitizenBorn), id="born-1", correlationid="died-1")
        permit = await pub.publish(example(PermitIssued), id="permit-1")
        unknown = await pub.publish(unknown_envelope("odd-1"))
        await redis.xadd(CITIZEN, {"not": "an event"})  # undecodable: never reaches the archive
        await archived(audit, 4)
        dlq = keys.dead_letters(CITIZEN, "audit")
        await wait_until(lambda: _length(redis, dlq, 1))  # settled with the batch's acks
        rows = await _rows(audit)
        dead = await redis.xrange(dlq)
        report = await audit.verify()
        head = await audit.head()

    assert [r["seq"] for r in rows] == [1, 2, 3, 4]
    by_id = {r["event_id"]: r for r in rows}
    assert set(by_id) == {"died-1", "born-1", "permit-1", "odd-1"}
    for published in (died, born, permit, unknown):
        row = by_id[published.event_id]
        assert (row["stream"], row["entry_id"]) == (published.stream, published.entry_id)

    died_row = by_id["died-1"]
    assert died_row["classification"] == "personal"
    assert died_row["subject"] == "pseudo-1"
    assert json.loads(died_row["data"]) == example(CitizenDied).model_dump(mode="json")
    assert died_row["data_digest"] == hashlib.sha256(died_row["data"].encode()).hexdigest()
    assert by_id["born-1"]["correlationid"] == "died-1"
    assert by_id["permit-1"]["stream"] == keys.stream("dpmptsp.permit")
    assert by_id["permit-1"]["data"] is not None
    # Specific data, and a type without a contract, are kept as metadata and digest only.
    for thin, payload in [
        ("born-1", example(CitizenBorn).model_dump_json()),
        ("odd-1", '{"where": "mars"}'),
    ]:
        assert by_id[thin]["classification"] == "specific"
        assert by_id[thin]["data"] is None
        assert by_id[thin]["data_digest"] == hashlib.sha256(payload.encode()).hexdigest()
    assert by_id["odd-1"]["type"] == UNKNOWN_TYPE

    # The bus dead-letters the undecodable entry before on_every: it is not an event.
    assert len(dead) == 1
    assert dead[0][1][b"dlq.reason"] == b"undecodable"

    # The chain: row 1 hangs on the genesis hash, each next row on the one before.
    assert rows[0]["prev_hash"] == GENESIS
    for before, after in itertools.pairwise(rows):
        assert after["prev_hash"] == before["hash"]
    assert all(row_hash(r["prev_hash"], r) == r["hash"] for r in rows)
    assert report.ok, report.problems
    assert report.rows == 4
    assert head == Head(4, rows[-1]["hash"])


async def test_a_copy_of_specific_data_is_proven_by_the_digest(
    sqlite_url: str, redis_url: str, redis: Redis
) -> None:
    audit = audit_for(sqlite_url, redis_url)
    born = example(CitizenBorn)
    async with archiving(audit):
        await publisher(redis).publish(born, id="born-2")
        await archived(audit, 1)
        (row,) = await _rows(audit)
    assert row["data"] is None
    copy = born.model_dump_json()  # what SIAK still holds
    assert hashlib.sha256(copy.encode()).hexdigest() == row["data_digest"]
    forged = copy.replace('"nik":"', '"nik":"9')
    assert hashlib.sha256(forged.encode()).hexdigest() != row["data_digest"]


class _Tally(
    Contract,
    event_type="testaudit.tally.counted.v1",
    classification=Classification.INTERNAL,
    register=False,
):
    """A count was taken (a contract of this test only)."""

    total: int


async def test_data_is_kept_for_every_class_but_specific(sqlite_url: str, redis_url: str) -> None:
    registry = Registry()
    registry.register(_Tally)
    for model in (CitizenDied, CitizenBorn):
        registry.register(model)
    audit = Audit(Store(sqlite_url), registry=registry, streams=[CITIZEN])
    try:
        cases = [
            (_Tally, '{"total":3}', "internal"),
            (CitizenDied, example(CitizenDied).model_dump_json(), "personal"),
            (CitizenBorn, example(CitizenBorn).model_dump_json(), "specific"),
        ]
        for n, (model, data, _) in enumerate(cases, start=1):
            info = model.__contract__
            envelope = Envelope(
                id=f"e{n}",
                source="urn:test",
                type=info.event_type,
                time=format_time(datetime.now(UTC)),
                dataschema=info.dataschema,
                data=data,
            )
            await audit.append(envelope, stream=info.stream, entry_id=f"1-{n}")
        rows = await _rows(audit)
    finally:
        await audit.close()
    for row, (_, data, classification) in zip(rows, cases, strict=True):
        assert row["classification"] == classification
        assert row["data"] == (None if classification == "specific" else data)


async def test_a_redelivered_entry_is_archived_once(
    sqlite_url: str, redis_url: str, redis: Redis
) -> None:
    audit = audit_for(sqlite_url, redis_url)
    real_move_head = audit._move_head
    calls: list[int] = []

    async def failing_once(appended: Any) -> None:
        calls.append(appended.seq)
        if len(calls) == 1:
            raise ConnectionError("Redis went away after the commit")
        await real_move_head(appended)

    audit._move_head = failing_once  # type: ignore[method-assign]
    async with archiving(audit):
        await publisher(redis).publish(example(CitizenDied), id="died-r")
        await wait_until(lambda: len(calls) >= 2)  # the failure made the bus deliver it again
        await wait_until(audit.head)
        assert await audit.count() == 1
        assert calls == [1, 1]
        (row,) = await _rows(audit)
        # Appending the same entry again by hand changes nothing either.
        envelope = Envelope(
            id="died-r",
            source="urn:test",
            type="dukcapil.citizen.died.v1",
            time=row["time"],
            dataschema=row["dataschema"],
            data=row["data"],
        )
        again = await audit.append(envelope, stream=row["stream"], entry_id=row["entry_id"])
        assert (again.seq, again.hash, again.new) == (1, row["hash"], False)
        assert await audit.count() == 1
        assert (await audit.verify()).ok
        assert await audit.head() == Head(1, row["hash"])


async def test_two_replicas_append_to_one_chain(
    store_url: str, redis_url: str, redis: Redis
) -> None:
    one = audit_for(store_url, redis_url, consumer="replica-1", batch_size=1)
    two = audit_for(store_url, redis_url, consumer="replica-2", batch_size=1)
    handled = {"replica-1": 0, "replica-2": 0}
    for audit in (one, two):
        archive = audit.archive

        async def counting(envelope: Envelope, ctx: Any, archive: Any = archive) -> None:
            await archive(envelope, ctx)
            handled[ctx.consumer] += 1

        audit.service.every = counting
    pub = publisher(redis)
    async with archiving(one), archiving(two):
        events = [example(CitizenDied, i) for i in range(20)]
        events += [example(PermitIssued, i) for i in range(20)]
        await pub.publish_many(pub.envelope(e, id=f"e-{n}") for n, e in enumerate(events))
        await archived(one, 40)
        # Direct appends racing from both replicas' stores at once.
        entries = [
            (
                audit,
                Envelope(
                    id=f"x-{n}",
                    source="urn:test",
                    type=UNKNOWN_TYPE,
                    time=format_time(datetime.now(UTC)),
                    dataschema="simpul:dukcapil.citizen.teleported:1.0",
                    data="{}",
                ),
                f"9-{n}",
            )
            for n, audit in enumerate([one, two] * 15)
        ]
        results = await asyncio.gather(
            *(audit.append(e, stream=CITIZEN, entry_id=i) for audit, e, i in entries)
        )
        report = await two.verify()
        rows = await _rows(one)
    assert handled["replica-1"] > 0 and handled["replica-2"] > 0, handled
    assert sorted(r.seq for r in results) == list(range(41, 71))
    assert [r["seq"] for r in rows] == list(range(1, 71))
    assert len({(r["stream"], r["entry_id"]) for r in rows}) == 70
    assert report.ok, report.problems
    assert report.head is not None and report.head.seq >= 40


# -- tamper evidence ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("column", "value"),
    [("data", '{"nik":"3573010000000000"}'), ("type", "dukcapil.citizen.moved.v1")],
)
async def test_verify_names_an_altered_row(
    store_url: str, redis_url: str, redis: Redis, column: str, value: str
) -> None:
    audit = audit_for(store_url, redis_url)
    async with archiving(audit):
        await _archive_five(audit, redis)
        assert (await audit.verify()).ok
        await _sql(audit, f"UPDATE audit_log SET {column} = ? WHERE seq = 3", (value,))
        report = await audit.verify()
    assert not report.ok
    assert report.first is not None
    assert (report.first.seq, report.first.kind) == (3, "altered")
    assert "seq 3" in report.first.message
    assert len(report.problems) == 1  # rows 4 and 5 still link to row 3's stored hash
    assert "3573010000000000" not in json.dumps(report.to_json())


async def test_verify_detects_a_removed_middle_row(
    store_url: str, redis_url: str, redis: Redis
) -> None:
    audit = audit_for(store_url, redis_url)
    async with archiving(audit):
        await _archive_five(audit, redis)
        await _sql(audit, "DELETE FROM audit_log WHERE seq = 3")
        report = await audit.verify()
    assert report.first is not None
    assert (report.first.seq, report.first.kind) == (3, "removed")
    assert "seq 3 removed" in report.first.message


async def test_verify_detects_a_replaced_row_by_the_next_link(
    sqlite_url: str, redis_url: str, redis: Redis
) -> None:
    audit = audit_for(sqlite_url, redis_url)
    async with archiving(audit):
        await _archive_five(audit, redis)
        rows = await _rows(audit)
        forged = {**rows[2], "data": '{"forged":true}'}
        forged["hash"] = row_hash(forged["prev_hash"], forged)  # a careful forger re-hashes
        await _sql(
            audit,
            "UPDATE audit_log SET data = ?, hash = ? WHERE seq = 3",
            (forged["data"], forged["hash"]),
        )
        report = await audit.verify()
    assert report.first is not None
    assert (report.first.seq, report.first.kind) == (4, "relinked")
    assert "seq 3 was replaced" in report.first.message


async def test_verify_detects_a_replaced_newest_row_by_the_head(
    sqlite_url: str, redis_url: str, redis: Redis
) -> None:
    audit = audit_for(sqlite_url, redis_url)
    async with archiving(audit):
        await _archive_five(audit, redis)
        last = (await _rows(audit))[-1]
        forged = {**last, "data": '{"forged":true}'}
        forged["hash"] = row_hash(forged["prev_hash"], forged)  # no next row to break
        await _sql(
            audit,
            "UPDATE audit_log SET data = ?, hash = ? WHERE seq = 5",
            (forged["data"], forged["hash"]),
        )
        report = await audit.verify()
    assert [(p.seq, p.kind) for p in report.problems] == [(5, "replaced_head")]


async def test_verify_detects_a_truncated_tail_by_the_head_in_redis(
    store_url: str, redis_url: str, redis: Redis
) -> None:
    audit = audit_for(store_url, redis_url)
    async with archiving(audit):
        await _archive_five(audit, redis)
        await _sql(audit, "DELETE FROM audit_log WHERE seq >= 4")
        report = await audit.verify()
        assert report.first is not None
        assert (report.first.seq, report.first.kind) == (4, "truncated")
        assert "seq 4 to 5 removed from the tail" in report.first.message
        # The next append reuses seq 4, but it is not the row the head remembers.
        await publisher(redis).publish(example(CitizenMoved), id="moved-1")
        await archived(audit, 4)
        report = await audit.verify()
        assert report.first is not None
        assert report.first.kind in ("truncated", "replaced_head")
        assert not report.ok
        # Without the head (Redis lost it), truncation cannot be seen: a warning, not a pass.
        await redis.delete(head_key())
        await _sql(audit, "DELETE FROM audit_log WHERE seq = 4")
        report = await audit.verify()
    assert report.ok
    assert any("truncation" in w for w in report.warnings)


async def test_verify_of_an_empty_archive(sqlite_url: str, redis_url: str) -> None:
    audit = audit_for(sqlite_url, redis_url)
    try:
        report = await audit.verify()
    finally:
        await audit.close()
    assert report.ok
    assert (report.rows, report.last, report.warnings) == (0, None, [])


# -- search -------------------------------------------------------------------------------


async def test_search_by_correlation_type_and_time(
    store_url: str, redis_url: str, redis: Redis
) -> None:
    audit = audit_for(store_url, redis_url)
    pub = publisher(redis)
    t0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
    async with archiving(audit):
        await pub.publish(example(CitizenDied), id="root", time=t0, subject="case-1")
        await pub.publish(
            example(CitizenMoved),
            id="follow",
            correlationid="root",
            causationid="root",
            time=t0 + timedelta(hours=1),
        )
        await pub.publish(
            example(CitizenBorn),
            id="child",
            correlationid="root",
            time=t0 + timedelta(hours=2),
            subject="child-pseudonym",
        )
        await pub.publish(example(PermitIssued), id="other", time=t0 + timedelta(days=1))
        await archived(audit, 4)

        chain = await audit.search(correlation="root")
        died = await audit.search(event_type="dukcapil.citizen.died.v1")
        # 15:30 WIB is 08:30 UTC: after the root event, before the others of the morning.
        window = await audit.search(since="2026-11-01T15:30:00+07:00", until="2026-11-02")
        first_two = await audit.search(since=t0, limit=2)
        plain = await audit.search(correlation="root")
        shown = await audit.search(correlation="root", show_data=True, actor="inspector")
        accesses = await audit.accesses()

    assert [r["event_id"] for r in chain] == ["root", "follow", "child"]
    assert [r["event_id"] for r in died] == ["root"]
    assert [r["event_id"] for r in window] == ["follow", "child"]
    assert [r["event_id"] for r in first_two] == ["root", "follow"]
    assert all("data" not in r for r in plain)
    # Who a specific row is about (a child's pseudonym) is shown on a recorded access only.
    assert {r["event_id"]: r["subject"] for r in plain} == {
        "root": "case-1",
        "follow": None,
        "child": None,
    }
    assert {r["event_id"]: r["subject"] for r in shown}["child"] == "child-pseudonym"
    assert {r["event_id"]: r["data"] is not None for r in shown} == {
        "root": True,
        "follow": True,
        "child": False,
    }
    assert len(accesses) == 1
    assert (accesses[0]["actor"], accesses[0]["action"], accesses[0]["rows"]) == (
        "inspector",
        "show_data",
        3,
    )
    assert json.loads(accesses[0]["filter"])["correlation"] == "root"


async def test_search_masks_a_subject_that_identifies_a_person(
    store_url: str, redis_url: str, redis: Redis
) -> None:
    """bapenda's taxpayer events have the NPWPD as subject, itself personal: a personal row's
    metadata is shown, but not who it is about (catalogue: masked wherever shown)."""
    audit = audit_for(store_url, redis_url)
    registered = example(TaxpayerRegistered)
    assert TaxpayerRegistered.__contract__.personal_subject
    npwpd = registered.npwpd  # type: ignore[attr-defined]
    async with archiving(audit):
        await publisher(redis).publish(registered, id="taxpayer", subject=npwpd)
        died = example(CitizenDied)
        nik = died.nik  # type: ignore[attr-defined]
        # A producer against the wire format's advice builds ids from the NIK.
        await publisher(redis).publish(
            died, id=f"died-{nik}", subject="case-1", correlationid=f"case-{nik}"
        )
        await archived(audit, 2)
        plain = await audit.search(since="2000-01-01")
        shown = await audit.search(since="2000-01-01", show_data=True, actor="inspector")

    assert {r["event_id"]: r["subject"] for r in plain} == {
        "taxpayer": "***",
        "died-***": "case-1",
    }
    assert [r["correlationid"] for r in plain] == [None, "case-***"]
    assert nik not in json.dumps(plain) and npwpd not in json.dumps(plain)
    assert {r["event_id"]: r["subject"] for r in shown}["taxpayer"] == npwpd  # a recorded access
    assert f"died-{nik}" in {r["event_id"] for r in shown}


async def _length(redis: Redis, key: str, n: int) -> bool:
    return int(await redis.xlen(key)) == n
