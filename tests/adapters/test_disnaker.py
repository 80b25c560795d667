"""The job-seeker registry adapter end to end on the private MariaDB and a real Redis.

Each test runs with the row binlog (change-data-capture, the default) and with polling, the
fallback; what only the binlog can see (a delete) is tested on it alone. The private MariaDB runs
on WIB (``--default-time-zone=+07:00``, as compose and the office's server), so a row the server
stamps now is inside the polling source's settle window (5 s) and is held back until it is older:
the tests wait for that rather than rely on a zone that makes every row look hours old.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from redis.asyncio import Redis

from adapters import disnaker
from adapters.disnaker import fixtures
from bus import Envelope, keys
from bus.adapter import Progress
from bus.adapter.quarantine import Quarantine
from bus.testing import wait_until
from schemas.disnaker import EducationLevel, JobseekerPlaced, JobseekerRegistered

STREAM = keys.stream("disnaker.jobseeker")
Run = Callable[[], Any]


@pytest.fixture(params=[True, False], ids=["binlog", "polling"])
def binlog(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


@pytest.fixture
def run(mysql_url: str, redis: Redis, binlog: bool) -> Run:
    """One pass of a freshly built adapter, as a restarted ``simpul adapter run --once`` makes
    it (the binlog's reader is a replica: only one with the adapter's server id at a time)."""

    async def once() -> Progress:
        runner = disnaker.adapter(redis, mysql_url, binlog=binlog, signer=None)
        try:
            return await runner.run_once()
        finally:
            await runner.source.close()  # type: ignore[attr-defined]

    return once


async def settled(run: Run, binlog: bool, published: int) -> Progress:
    """A pass after a change the server stamped just now: the binlog publishes it at once;
    polling holds it back while it is younger than the settle window, then publishes it."""
    first: Progress = await run()
    if binlog:
        return first
    assert first.published == 0  # held back: its transaction may not have committed yet
    done: list[Progress] = []

    async def publishes() -> bool:
        done.append(await run())
        return done[-1].published >= published

    await wait_until(publishes, timeout=15, interval=0.5)
    return done[-1]


async def events(redis: Redis) -> list[Envelope]:
    return [Envelope.from_fields(fields) for _, fields in await redis.xrange(STREAM)]


def update(url: str, sql: str, *params: Any) -> None:
    with fixtures.connect(url) as conn, conn.cursor() as cursor:
        assert cursor.execute(sql, params) == 1


async def test_rows_are_published_once_and_a_bad_row_quarantined_with_its_reason(
    mysql_url: str, redis: Redis, run: Run
) -> None:
    good = list(fixtures.rows(12, seed=5))
    bad = {**next(fixtures.rows(1, seed=6, first_serial=500, placed=0)), "kecamatan": "Kota Batu"}
    fixtures.create(mysql_url, [*good[:6], bad, *good[6:]])

    first = await run()
    again = await run()

    published = await events(redis)
    assert (first.published, first.quarantined, again.published) == (12, 1, 0)
    placed = sum(r["sudah_bekerja"] for r in good)
    assert [e.type for e in published].count("disnaker.jobseeker.placed.v1") == placed
    cards = {
        JobseekerRegistered.parse(e.data).card_no
        if "registered" in e.type
        else JobseekerPlaced.parse(e.data).card_no
        for e in published
    }
    assert cards == {f"3573-{r['thn_daftar']}-{r['no_pendaftaran']:06d}" for r in good}
    [entry] = await Quarantine(redis, disnaker.NAME).entries()
    assert [(p.field, p.problem) for p in entry.problems] == [
        ("(record)", "ValueError: kecamatan must name one of Kota Malang's five kecamatan")
    ]
    assert entry.record_key == "7"  # id_pencaker of the 7th row
    assert bad["nik"] not in str(entry.problems)


async def test_zero_dates_and_zero_filled_serials_are_read_as_the_application_meant(
    mysql_url: str, redis: Redis, run: Run
) -> None:
    row = next(fixtures.rows(1, seed=7, first_serial=42, placed=0))
    fixtures.create(mysql_url, [{**row, "tgl_berlaku": "0000-00-00"}])

    await run()

    [envelope] = await events(redis)
    event = JobseekerRegistered.parse(envelope.data)
    assert event.card_no == f"3573-{row['thn_daftar']}-000042"
    assert event.valid_until == event.registered_on.replace(year=event.registered_on.year + 2)
    # The application's local time (WIB), as the fact's time.
    moment = datetime.fromisoformat(envelope.time.replace("Z", "+00:00"))
    assert moment == row["tgl_update"].replace(tzinfo=disnaker.WIB)


async def test_a_correction_is_a_new_event_and_a_placement_follows_as_placed(
    mysql_url: str, redis: Redis, run: Run, binlog: bool
) -> None:
    row = next(fixtures.rows(1, seed=8, first_serial=7, placed=0))
    fixtures.create(mysql_url, [{**row, "pendidikan_terakhir": "SMA"}])
    await run()

    # The operator corrects the education; MySQL stamps tgl_update itself (ON UPDATE).
    update(mysql_url, "UPDATE pencaker SET pendidikan_terakhir = 'S1' WHERE id_pencaker = 1")
    corrected = await settled(run, binlog, 1)
    update(
        mysql_url,
        "UPDATE pencaker SET sudah_bekerja = 1, jenis_penempatan = 'AKL', "
        "tgl_penempatan = '2026-11-30', tgl_update = tgl_update + INTERVAL 1 SECOND "
        "WHERE id_pencaker = 1",
    )
    placement = await settled(run, binlog, 1)

    first, second, third = await events(redis)
    assert (corrected.published, placement.published) == (1, 1)
    assert JobseekerRegistered.parse(first.data).education is EducationLevel.SENIOR_SECONDARY
    assert JobseekerRegistered.parse(second.data).education is EducationLevel.BACHELOR
    assert (
        JobseekerPlaced.parse(third.data).card_no == JobseekerRegistered.parse(first.data).card_no
    )
    assert len({first.id, second.id, third.id}) == 3


async def test_a_soft_deleted_registration_is_no_event(
    mysql_url: str, redis: Redis, run: Run
) -> None:
    fixtures.create(mysql_url, fixtures.rows(2, seed=9, placed=0))
    await run()

    # Stamped a minute ago rather than now (ON UPDATE): this test is about the soft delete,
    # not the settle window, which the correction test above waits out.
    update(
        mysql_url,
        "UPDATE pencaker SET is_hapus = 1, tgl_update = NOW() - INTERVAL 1 MINUTE "
        "WHERE id_pencaker = 2",
    )
    after = await run()

    assert (after.read, after.skipped, after.published) == (1, 1, 0)
    assert len(await events(redis)) == 2


@pytest.mark.parametrize("binlog", [True], ids=["binlog"])
async def test_a_deleted_row_reaches_the_mapper_and_is_no_event(
    mysql_url: str, redis: Redis, run: Run
) -> None:
    fixtures.create(mysql_url, fixtures.rows(3, seed=10))
    await run()

    update(mysql_url, "DELETE FROM pencaker WHERE id_pencaker = 3")
    after = await run()

    assert (after.read, after.skipped, after.published, after.quarantined) == (1, 1, 0, 0)
    assert len(await events(redis)) == 3
    assert await Quarantine(redis, disnaker.NAME).entries() == []


async def test_the_module_runs_one_pass_from_the_command_line(
    mysql_url: str, redis: Redis, redis_url: str, binlog: bool
) -> None:
    fixtures.create(mysql_url, fixtures.rows(4, seed=12))
    argv = [sys.executable, "-m", "adapters.disnaker", mysql_url]
    done = await asyncio.to_thread(
        subprocess.run,
        argv if binlog else [*argv, "--poll-table"],
        env={**os.environ, "SIMPUL_REDIS_URL": redis_url},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(await events(redis)) == 4
