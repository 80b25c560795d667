"""Dinkes: a newborn's immunisation schedule at the right puskesmas, on real Redis."""

from __future__ import annotations

import calendar
from collections.abc import AsyncIterator
from datetime import date, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio import Redis

from bus import ConfigurationError, Envelope, EventContext, Publisher, keys
from bus.settings import Settings
from bus.store import Store
from bus.testing import wait_until
from schemas.common import pseudonym
from schemas.dinkes import ImmunisationScheduled, Vaccine
from schemas.dukcapil import CitizenBorn
from schemas.regions import kelurahan_codes, regions
from services.dinkes import Dinkes, add_months, default_areas, due_dates, routine
from services.dinkes.puskesmas import load

DUKCAPIL = "urn:malangkota:dukcapil:siak"
TODAY = date(2026, 11, 30)
KEY = b"test pseudonym key"
CHILD_NIK = "3573031411260001"
KK = "3573032011260003"
CHILD_REF = pseudonym(KEY, "nik", CHILD_NIK)
PANDANWANGI, SAWOJAJAR = "35.73.01.1006", "35.73.03.1008"


def born(kelurahan: str = PANDANWANGI, nik: str = CHILD_NIK, on: str = "2026-01-31") -> Any:
    return CitizenBorn.parse(
        {
            "child_ref": pseudonym(KEY, "nik", nik),
            "nik": nik,
            "kk": KK,
            "born_on": on,
            "kelurahan": kelurahan,
            "registered_on": (date.fromisoformat(on) + timedelta(days=3)).isoformat(),
        }
    )


@pytest.fixture
async def dinkes(tmp_path: Path, settings: Settings) -> AsyncIterator[Dinkes]:
    service = Dinkes(
        Store(f"sqlite:///{tmp_path / 'dinkes.db'}"), settings=settings, today=lambda: TODAY
    )
    yield service
    await service.store.close()


@pytest.fixture
def dukcapil(redis: Redis) -> Publisher:
    return Publisher(redis, source=DUKCAPIL)


async def scheduled(redis: Redis) -> list[tuple[Envelope, ImmunisationScheduled]]:
    entries = await redis.xrange(keys.stream("dinkes.immunisation"))
    envelopes = [Envelope.from_fields(fields) for _, fields in entries]
    return [(e, ImmunisationScheduled.parse(e.data)) for e in envelopes]


async def _published(redis: Redis, count: int) -> bool:
    return len(await scheduled(redis)) >= count


def stored_bytes(folder: Path) -> bytes:
    """Every file SQLite wrote for the store: the database, its WAL and shared memory."""
    return b"".join(path.read_bytes() for path in sorted(folder.glob("dinkes.db*")))


async def handled(dinkes: Dinkes, event_id: str) -> bool:
    key = f"{event_id}:schedule"
    found = await dinkes.store.run(
        lambda tx: tx.one("SELECT 1 AS done FROM simpul_inbox WHERE key = ?", (key,))
    )
    return found is not None


# -- the schedule --------------------------------------------------------------------------


def test_the_routine_schedule_has_the_national_doses() -> None:
    by_age: dict[int, set[tuple[str, int]]] = {}
    for dose in routine():
        by_age.setdefault(dose.months, set()).add((dose.vaccine.value, dose.dose))
    assert by_age == {
        0: {("hb0", 1)},
        1: {("bcg", 1), ("polio-oral", 1)},
        2: {("dpt-hb-hib", 1), ("polio-oral", 2), ("pcv", 1), ("rotavirus", 1)},
        3: {("dpt-hb-hib", 2), ("polio-oral", 3), ("pcv", 2), ("rotavirus", 2)},
        4: {("dpt-hb-hib", 3), ("polio-oral", 4), ("polio-injected", 1), ("rotavirus", 3)},
        9: {("mr", 1), ("polio-injected", 2)},
        12: {("pcv", 3)},
    }


def test_month_arithmetic_clamps_to_the_month_end() -> None:
    assert add_months(date(2026, 1, 31), 1) == date(2026, 2, 28)
    assert add_months(date(2027, 12, 31), 2) == date(2028, 2, 29)
    assert add_months(date(2026, 8, 31), 1) == date(2026, 9, 30)
    assert add_months(date(2026, 11, 14), 12) == date(2027, 11, 14)
    assert add_months(date(2026, 3, 15), 0) == date(2026, 3, 15)


@given(st.dates(min_value=date(2000, 1, 1), max_value=date(2090, 12, 31)))
def test_due_dates_follow_the_birth_date_in_order(born_on: date) -> None:
    doses = due_dates(born_on)
    event = ImmunisationScheduled(
        child_ref=CHILD_REF,
        puskesmas="P3573010001",
        schedule=tuple(doses),
        scheduled_on=date(2000, 1, 1),
    )
    assert len(event.schedule) == 18
    assert doses[0].vaccine == Vaccine.HB0 and doses[0].due_on == born_on
    plans = {(p.vaccine, p.dose): p for p in routine()}
    for dose in doses:
        plan = plans[(dose.vaccine, dose.dose)]
        months = (dose.due_on.year - born_on.year) * 12 + dose.due_on.month - born_on.month
        assert months == plan.months
        last_day = calendar.monthrange(dose.due_on.year, dose.due_on.month)[1]
        assert dose.due_on.day == min(born_on.day, last_day)


# -- puskesmas by area -------------------------------------------------------------------------


def test_every_kelurahan_has_a_puskesmas_of_its_own_kecamatan() -> None:
    areas = default_areas()
    codes = {p.code for p in [*areas.by_kecamatan.values(), *areas.by_kelurahan.values()]}
    assert len(codes) == 15
    for kelurahan in kelurahan_codes():
        puskesmas = areas.serving(kelurahan)
        assert puskesmas.kecamatan == regions()[kelurahan].parent
        assert puskesmas.code.startswith("P" + puskesmas.kecamatan.replace(".", ""))
    assert areas.serving(PANDANWANGI).name == "Puskesmas Pandanwangi"
    assert areas.serving(SAWOJAJAR) == areas.by_kecamatan["35.73.03"]  # the fallback


def test_a_broken_area_table_is_refused() -> None:
    one = {
        "code": "P3573010001",
        "name": "X",
        "kecamatan": "35.73.01",
        "default": True,
        "kelurahan": [],
    }
    with pytest.raises(ConfigurationError, match=r"no default puskesmas for 35\.73\.02"):
        load([one])
    with pytest.raises(ConfigurationError, match="not a puskesmas code"):
        load([one | {"code": "P12345"}])
    with pytest.raises(ConfigurationError, match="not a kelurahan of its kecamatan"):
        load([one | {"kelurahan": [SAWOJAJAR]}])
    with pytest.raises(ConfigurationError, match="two defaults"):
        load([one, one])


# -- the service -------------------------------------------------------------------------------


async def test_a_birth_opens_the_schedule_at_the_puskesmas_of_the_kelurahan(
    dinkes: Dinkes, redis: Redis, dukcapil: Publisher
) -> None:
    birth = await dukcapil.publish(born())
    other = await dukcapil.publish(born(SAWOJAJAR, nik="3573034311260002"))
    async with dinkes.service.running():
        await wait_until(lambda: _published(redis, 2))
        schedule = await dinkes.schedule_of(CHILD_REF)
        fallback = await dinkes.schedule_of(pseudonym(KEY, "nik", "3573034311260002"))
        assert await dinkes.schedule_of(pseudonym(KEY, "nik", "3573035511260003")) is None

    assert schedule is not None and fallback is not None
    assert (schedule.puskesmas, schedule.scheduled_on) == ("P3573010002", TODAY)
    assert schedule.doses == tuple(due_dates(date(2026, 1, 31)))
    assert fallback.puskesmas == "P3573030001"  # Sawojajar: Kedungkandang's default
    events = {event.child_ref: (envelope, event) for envelope, event in await scheduled(redis)}
    envelope, event = events[CHILD_REF]
    assert (event.puskesmas, event.schedule, event.scheduled_on) == (
        schedule.puskesmas,
        schedule.doses,
        TODAY,
    )
    assert (envelope.subject, envelope.causationid) == (CHILD_REF, birth.event_id)
    assert events[fallback.child_ref][0].causationid == other.event_id
    for envelope, _ in events.values():
        assert CHILD_NIK not in envelope.data and KK not in envelope.data


async def test_the_store_never_holds_the_childs_nik_or_the_kk(
    tmp_path: Path, dinkes: Dinkes, redis: Redis, dukcapil: Publisher
) -> None:
    await dukcapil.publish(born())
    async with dinkes.service.running():
        await wait_until(lambda: _published(redis, 1))
    # The service closed its store: everything it wrote is in the files now.
    raw = stored_bytes(tmp_path)
    assert CHILD_REF.encode() in raw  # the check reads what was stored
    assert CHILD_NIK.encode() not in raw
    assert KK.encode() not in raw


async def test_the_handler_reads_only_the_pseudonym_birth_date_and_kelurahan(
    dinkes: Dinkes, redis: Redis, dukcapil: Publisher
) -> None:
    # An event with nothing but the three fields: touching the NIK or the KK would fail.
    thin = SimpleNamespace(child_ref=CHILD_REF, born_on=date(2026, 1, 31), kelurahan=PANDANWANGI)
    envelope = dukcapil.envelope(born(), id="born-1")
    publisher = Publisher(redis, source="urn:malangkota:dinkes:imunisasi")
    ctx = EventContext(
        envelope, keys.stream_of(envelope.type), "1-0", "dinkes", "test", 1, publisher
    )
    await dinkes.open()
    await dinkes.on_citizen_born(thin, ctx)  # type: ignore[arg-type]
    schedule = await dinkes.schedule_of(CHILD_REF)
    assert schedule is not None and schedule.puskesmas == "P3573010002"
    assert len(await scheduled(redis)) == 1


async def test_a_redelivered_birth_or_a_second_birth_event_schedules_once(
    dinkes: Dinkes, redis: Redis, dukcapil: Publisher
) -> None:
    first = await dukcapil.publish(born())
    await redis.delete(keys.seen(keys.stream("dukcapil.citizen"), first.event_id))
    assert not (await dukcapil.publish(born(), id=first.event_id)).duplicate
    second = await dukcapil.publish(born(SAWOJAJAR))  # registered again, another id
    async with dinkes.service.running():
        await wait_until(lambda: handled(dinkes, second.event_id))
        schedule = await dinkes.schedule_of(CHILD_REF)
    assert schedule is not None and schedule.puskesmas == "P3573010002"  # the first stands
    assert len(await scheduled(redis)) == 1


async def test_a_failed_publish_is_retried_from_the_store(
    dinkes: Dinkes, redis: Redis, dukcapil: Publisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = Publisher.publish
    attempts: list[str] = []

    async def first_fails(self: Publisher, event: Any, **attributes: Any) -> Any:
        if isinstance(event, ImmunisationScheduled):
            attempts.append(event.child_ref)
            if len(attempts) == 1:
                raise ConnectionError("connection reset by peer")
        return await original(self, event, **attributes)

    monkeypatch.setattr(Publisher, "publish", first_fails)
    await dukcapil.publish(born())
    async with dinkes.service.running():
        await wait_until(lambda: _published(redis, 1))
    assert attempts == [CHILD_REF, CHILD_REF]
    assert len(await scheduled(redis)) == 1


async def test_schedules_on_postgresql(
    postgres_url: str, settings: Settings, redis: Redis, dukcapil: Publisher
) -> None:
    dinkes = Dinkes(Store(postgres_url), settings=settings, today=lambda: TODAY)
    try:
        recent = (TODAY - timedelta(days=3)).isoformat()
        await dukcapil.publish(born(on=recent))
        async with dinkes.service.running():
            await wait_until(lambda: _published(redis, 1))
            schedule = await dinkes.schedule_of(CHILD_REF)
    finally:
        await dinkes.store.close()
    assert schedule is not None
    assert schedule.doses == tuple(due_dates(date.fromisoformat(recent)))
    [(_, event)] = await scheduled(redis)
    assert event.schedule == schedule.doses
