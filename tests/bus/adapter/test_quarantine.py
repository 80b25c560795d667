"""The quarantine stream: raw record and problems per entry, idempotent adds, retry, discard."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

from redis.asyncio import Redis

from bus.adapter import Problem, Record, Rejected, record_event_id
from bus.adapter.quarantine import Quarantine
from bus.contracts import Contract
from bus.publisher import Publisher
from schemas.dukcapil import CitizenDied

URN = "urn:malangkota:dukcapil:siak"
A_NIK = "3573014107900001"  # synthetic


def rejected(key: str, nik: str = A_NIK[:15]) -> Rejected:
    record = Record(
        key,
        "1",
        [key],
        {"nik": nik, "tgl": date(2026, 11, 2)},
        datetime(2026, 11, 2, 1, tzinfo=UTC),
    )
    return Rejected(
        "peristiwa",
        record_event_id(URN, "peristiwa", record),
        record,
        [Problem("nik", "a NIK has exactly 16 digits")],
    )


def fixed_mapper(record: Record) -> Contract:
    nik = str(record.data["nik"]).ljust(16, "1")
    return CitizenDied(nik=nik, date_of_death=record.data["tgl"], kecamatan="35.73.01")


async def test_entries_keep_the_raw_record_and_the_problems(redis: Redis) -> None:
    quarantine = Quarantine(redis, "siak")
    assert await quarantine.add([rejected("1"), rejected("2")]) == 2

    entries = await quarantine.entries()
    assert [e.record_key for e in entries] == ["1", "2"]
    first = entries[0]
    assert (first.adapter, first.source, first.record_version) == ("siak", "peristiwa", "1")
    assert json.loads(first.raw) == {"nik": A_NIK[:15], "tgl": "2026-11-02"}
    assert first.problems == (Problem("nik", "a NIK has exactly 16 digits"),)
    assert first.record().data["tgl"] == "2026-11-02"
    assert await quarantine.show(first.entry_id) == first
    assert await quarantine.show("1-1") is None
    assert [e.record_key for e in await quarantine.entries(after=first.entry_id)] == ["2"]
    raw = await redis.xrange("simpul:quarantine:{siak}")
    assert set(raw[0][1]) >= {
        b"adapter",
        b"source",
        b"record_key",
        b"record_version",
        b"raw",
        b"errors",
        b"time",
    }


async def test_the_same_record_is_quarantined_once_but_a_conflicting_copy_too(
    redis: Redis,
) -> None:
    quarantine = Quarantine(redis, "siak")
    await quarantine.add([rejected("1")])
    assert await quarantine.add([rejected("1")]) == 0
    assert await quarantine.add([rejected("1", nik="35730")]) == 1
    assert await quarantine.count() == 2


async def test_retry_publishes_once_and_removes_the_entry(redis: Redis) -> None:
    quarantine = Quarantine(redis, "siak")
    publisher = Publisher(redis, source=URN)
    await quarantine.add([rejected("1")])
    (entry,) = await quarantine.entries()

    outcome = await quarantine.retry(entry, mapper=fixed_mapper, publisher=publisher)

    assert outcome.published and not outcome.duplicate
    assert await quarantine.count() == 0
    stream = CitizenDied.__contract__.stream
    ((_, fields),) = await redis.xrange(stream)
    assert fields[b"id"].decode() == entry.event_id
    # A crash after publishing but before removing: the retry is repeated, nothing doubles.
    again = await quarantine.retry(entry, mapper=fixed_mapper, publisher=publisher)
    assert again.duplicate and await redis.xlen(stream) == 1
    # Once removed, the same record can be quarantined again (e.g. after a full replay).
    assert await quarantine.add([rejected("1")]) == 1


async def test_a_record_that_still_fails_stays_and_says_why(redis: Redis) -> None:
    quarantine = Quarantine(redis, "siak")
    await quarantine.add([rejected("1")])
    (entry,) = await quarantine.entries()

    def still_broken(record: Record) -> Contract:
        return CitizenDied.parse(
            {"nik": record.data["nik"], "date_of_death": "2026-11-02", "kecamatan": "35.73.01"}
        )

    outcome = await quarantine.retry(
        entry, mapper=still_broken, publisher=Publisher(redis, source=URN)
    )
    assert not outcome.published
    assert [p.field for p in outcome.problems] == ["nik"]
    assert await quarantine.count() == 1
    assert await quarantine.discard(entry)
    assert await quarantine.count() == 0
