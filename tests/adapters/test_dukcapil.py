"""The SIAK adapter end to end on a real PostgreSQL (and SQLite) and a real Redis."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from redis.asyncio import Redis

from adapters import dukcapil
from adapters.dukcapil.fixtures import as_params, create_sqlite, rows
from adapters.dukcapil.schema import ddl, insert_sql
from bus import keys
from bus.adapter import Progress, Record, record_event_id
from bus.adapter.checkpoint import RedisCheckpoints
from bus.adapter.quarantine import Quarantine
from bus.contracts import Contract
from bus.testing import capture_logs
from schemas.dukcapil import CitizenBorn, CitizenDied, CitizenMoved

KEY = b"test-pseudonym-key-0123456789"
STREAM = keys.stream("dukcapil.citizen")


def load_postgres(url: str, data: list[dict[str, Any]]) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(ddl("postgresql"))  # type: ignore[arg-type]
        conn.cursor().executemany(
            insert_sql("postgresql"),  # type: ignore[arg-type]
            [as_params(r, "postgresql") for r in data],
        )


@pytest.fixture(params=["postgresql", "sqlite"])
def siak(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(dialect, database) with an empty SIAK schema."""
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres_url")
        load_postgres(url, [])
        yield "postgresql", url
    else:
        path = tmp_path / "siak.db"
        create_sqlite(path)
        yield "sqlite", str(path)


def insert(siak: tuple[str, str], data: list[dict[str, Any]]) -> None:
    dialect, target = siak
    if dialect == "postgresql":
        with psycopg.connect(target, autocommit=True) as conn:
            conn.cursor().executemany(
                insert_sql("postgresql"),  # type: ignore[arg-type]
                [as_params(r, "postgresql") for r in data],
            )
        return
    with sqlite3.connect(target) as conn:
        conn.executemany(insert_sql("sqlite"), [as_params(r, "sqlite") for r in data])
    conn.close()


async def stream_ids(redis: Redis) -> list[str]:
    entries = await redis.xrange(STREAM)
    return [fields[b"id"].decode() for _, fields in entries]


def expected_id(row: dict[str, Any]) -> str:
    return dukcapil.map_record(row, pseudonym_key=KEY)[1]


async def test_publishes_every_record_once_across_restarts(
    siak: tuple[str, str], redis: Redis
) -> None:
    data = list(rows(120, seed=7))
    insert(siak, data[:80])
    progress: list[Progress] = []
    first = dukcapil.adapter(
        redis, siak[1], pseudonym_key=KEY, batch_size=25, on_progress=progress.append
    )

    done = await first.run_once()
    assert (done.read, done.published, done.quarantined, done.total) == (80, 80, 0, 80)
    assert [p.read for p in progress] == [0, 25, 50, 75, 80]

    # A restart with no checkpoint (lost, or reset) replays everything: nothing is added.
    await RedisCheckpoints(redis).reset(dukcapil.NAME)
    replay = await dukcapil.adapter(redis, siak[1], pseudonym_key=KEY).run_once()
    assert (replay.read, replay.published, replay.duplicates) == (80, 0, 80)

    insert(siak, data[80:])
    later = await dukcapil.adapter(redis, siak[1], pseudonym_key=KEY).run_once()
    assert (later.read, later.published) == (40, 40)

    ids = await stream_ids(redis)
    assert len(ids) == len(set(ids)) == 120
    assert set(ids) == {expected_id(r) for r in data}
    kinds = {
        t.decode() for _, f in await redis.xrange(STREAM) for k, t in f.items() if k == b"type"
    }
    assert kinds == {
        "dukcapil.citizen.born.v1",
        "dukcapil.citizen.died.v1",
        "dukcapil.citizen.moved.v1",
    }


async def test_outbox_mode_publishes_corrections_as_new_versions(
    siak: tuple[str, str], redis: Redis
) -> None:
    data = list(rows(10, seed=3))
    insert(siak, data)
    runner = dukcapil.adapter(redis, siak[1], pseudonym_key=KEY, outbox=True)
    assert (await runner.run_once()).published == 10

    corrected = {**data[4], "versi": 2, "alamat": "Jl. Ijen No. 1, Malang"}
    insert(siak, [corrected, data[5]])  # a correction, and the same row appended again
    after = await runner.run_once()

    assert (after.published, after.duplicates) == (11, 1)
    assert await redis.xlen(STREAM) == 11


def bad_rows() -> list[dict[str, Any]]:
    base = list(rows(6, seed=11, first_id=900))
    return [
        {**base[0], "nik": base[0]["nik"][:15]},  # a truncated NIK
        {**base[1], "jenis_peristiwa": "CERAI"},  # a kind this adapter does not know
        {**base[2], "nik": None, "kode_kecamatan": None},  # NULLs
        {**base[3], "id_peristiwa": None},  # no key: no stable event id
        base[4],  # fine...
        {**base[4], "alamat": "Jl. Lain No. 9, Malang", "jenis_peristiwa": "PINDAH"},  # ...twice
    ]


async def test_bad_rows_land_in_quarantine_with_reasons_while_the_rest_flows(
    siak: tuple[str, str], redis: Redis
) -> None:
    good = list(rows(30, seed=5))
    insert(siak, good[:15] + bad_rows() + good[15:])
    runner = dukcapil.adapter(redis, siak[1], pseudonym_key=KEY, batch_size=50)

    with capture_logs() as logs:
        progress = await runner.run_once()

    assert (progress.read, progress.published, progress.quarantined) == (36, 31, 5)
    quarantine = Quarantine(redis, dukcapil.NAME)
    entries = await quarantine.entries()
    assert [e.record_key for e in entries] == ["900", "901", "902", "", "904"]
    problems = {e.record_key: {p.field for p in e.problems} for e in entries}
    assert problems["900"] == {"nik"}
    assert problems["901"] == {"(record)"}
    # The kind's rule, not the value: a shifted column puts a name where the kind belongs.
    assert "unknown jenis_peristiwa '***'" in entries[1].problems[0].problem
    assert problems["902"] >= {"nik"}
    assert "same key and version" in entries[4].problems[0].problem
    raw = json.loads(entries[0].raw)
    assert raw["nik"] == bad_rows()[0]["nik"] and raw["nama_lengkap"]
    # The operator's queue holds the raw record; the logs hold none of it.
    text = json.dumps(logs, default=str)
    for row in bad_rows():
        assert row["nama_lengkap"] not in text
        assert not row["nik"] or row["nik"] not in text
    assert any(log["event"] == "record_quarantined" for log in logs)

    # A replay after a crash neither publishes nor quarantines anything twice.
    await RedisCheckpoints(redis).reset(dukcapil.NAME)
    await runner.run_once()
    assert await quarantine.count() == 5
    assert await redis.xlen(STREAM) == 31


class LenientMapper(dukcapil.SiakMapper):
    """The mapper after a (hypothetical) fix: an old form code, CERAI, turns out to be used for
    moves between kelurahan, so it now maps as a move."""

    def map(self, row: Any) -> Contract:
        if row.get("jenis_peristiwa") == "CERAI":
            return self.moved(row)
        return super().map(row)


async def test_retry_publishes_what_the_fixed_mapper_now_maps(
    siak: tuple[str, str], redis: Redis
) -> None:
    insert(siak, bad_rows()[:2])
    runner = dukcapil.adapter(redis, siak[1], pseudonym_key=KEY)
    await runner.run_once()
    quarantine = Quarantine(redis, dukcapil.NAME)
    assert await quarantine.count() == 2

    outcomes = await quarantine.retry_all(mapper=LenientMapper(KEY), publisher=runner.publisher)

    assert [o.published for o in outcomes] == [False, True]
    assert outcomes[0].problems[0].field == "nik"
    remaining = await quarantine.entries()
    assert [e.record_key for e in remaining] == ["900"]
    ids = await stream_ids(redis)
    assert ids == [dukcapil.map_record({**bad_rows()[1], "jenis_peristiwa": "PINDAH"})[1]]
    # Retrying again is harmless: the entry is gone, the event is not published twice.
    assert await quarantine.retry_all(mapper=LenientMapper(KEY), publisher=runner.publisher)
    assert await redis.xlen(STREAM) == 1


def test_map_record_keeps_its_shape_for_the_demo() -> None:
    row = next(rows(1, seed=1))
    died = {**row, "jenis_peristiwa": "KEMATIAN"}
    event, event_id = dukcapil.map_record(died)
    assert isinstance(event, CitizenDied)
    assert event_id == dukcapil.map_record(died)[1]
    moved, _ = dukcapil.map_record({**row, "jenis_peristiwa": "PINDAH"})
    assert isinstance(moved, CitizenMoved)
    born, _ = dukcapil.map_record({**row, "jenis_peristiwa": "LAHIR"}, pseudonym_key=KEY)
    assert isinstance(born, CitizenBorn) and born.nik == row["nik"]
    assert born.child_ref != row["nik"] and born.registered_on >= born.born_on


def test_the_event_id_is_the_runners() -> None:
    row = next(rows(1, seed=1))
    record = Record(str(row["id_peristiwa"]), str(row["versi"]), None, row)
    assert record_event_id(dukcapil.SOURCE, dukcapil.TABLE, record) == expected_id(row)
