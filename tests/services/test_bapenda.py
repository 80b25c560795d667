"""Bapenda: taxpayers registered from permits, billing addresses and reviews, on real Redis."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable
from datetime import date
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import TypeAdapter
from redis.asyncio import Redis

from bus import ConfigurationError, Envelope, Publisher, keys
from bus.settings import Settings
from bus.store import Store
from bus.testing import capture_logs, wait_until
from schemas.bapenda import NPWPD, TaxKind, TaxpayerRegistered
from schemas.dpmptsp import PermitIssued, PermitKind
from schemas.dukcapil import CitizenDied, CitizenMoved
from services.bapenda import Bapenda, default_rules, npwpd_for

DPMPTSP = "urn:malangkota:dpmptsp:sicantik"
DUKCAPIL = "urn:malangkota:dukcapil:siak"
TODAY = date(2026, 11, 30)
PERSON = "3573025203900002"
OTHER_PERSON = "3573011203850002"
BUSINESS = "8120203456781"
SITE = {
    "street": "Jl. Soekarno Hatta No. 9",
    "rt": "002",
    "rw": "011",
    "kelurahan": "35.73.05.1010",
    "kecamatan": "35.73.05",
}


def permit(
    permit_no: str,
    kind: str = "reklame",
    scheme: str = "nik",
    value: str = PERSON,
    issued_on: str = "2026-10-30",
) -> PermitIssued:
    return PermitIssued.parse(
        {
            "application_no": f"APP-{permit_no}",
            "permit_no": permit_no,
            "kind": kind,
            "applicant": {"scheme": scheme, "value": value},
            "site": SITE,
            "issued_on": issued_on,
        }
    )


def moved(nik: str, on: str, street: str = "Jl. Kawi 12", kecamatan: str = "35.73.02") -> Any:
    return CitizenMoved(
        nik=nik, address=street, kecamatan=kecamatan, moved_on=date.fromisoformat(on)
    )


def died(nik: str) -> CitizenDied:
    return CitizenDied(nik=nik, date_of_death=date(2026, 11, 20), kecamatan="35.73.05")


@pytest.fixture
async def bapenda(tmp_path: Path, settings: Settings) -> AsyncIterator[Bapenda]:
    service = Bapenda(
        Store(f"sqlite:///{tmp_path / 'bapenda.db'}"), settings=settings, today=lambda: TODAY
    )
    yield service
    await service.store.close()


@pytest.fixture
def dpmptsp(redis: Redis) -> Publisher:
    return Publisher(redis, source=DPMPTSP)


@pytest.fixture
def dukcapil(redis: Redis) -> Publisher:
    return Publisher(redis, source=DUKCAPIL)


async def registrations(redis: Redis) -> list[tuple[Envelope, TaxpayerRegistered]]:
    entries = await redis.xrange(keys.stream("bapenda.taxpayer"))
    envelopes = [Envelope.from_fields(fields) for _, fields in entries]
    return [(e, TaxpayerRegistered.parse(e.data)) for e in envelopes]


async def handled(bapenda: Bapenda, event_id: str, purpose: str) -> bool:
    key = f"{event_id}:{purpose}"
    found = await bapenda.store.run(
        lambda tx: tx.one("SELECT 1 AS done FROM simpul_inbox WHERE key = ?", (key,))
    )
    return found is not None


async def _registered(redis: Redis, count: int) -> bool:
    return len(await registrations(redis)) >= count


# -- rules and numbers -------------------------------------------------------------------------


def test_the_default_rules_register_reklame_and_business_permits_only() -> None:
    rules = default_rules()
    assert rules[PermitKind.REKLAME] == (TaxKind.REKLAME,)
    assert rules[PermitKind.IZIN_USAHA] == (TaxKind.PBJT_MAKANAN_MINUMAN,)
    assert rules[PermitKind.PBG] == rules[PermitKind.SLF] == ()


def test_rules_levying_property_tax_or_missing_a_kind_are_refused(settings: Settings) -> None:
    full = dict(default_rules())
    with pytest.raises(ConfigurationError, match="levied on the NOP"):
        Bapenda(
            Store("sqlite:///:memory:"),
            settings=settings,
            rules=full | {PermitKind.PBG: (TaxKind.PBB_P2,)},
        )
    del full[PermitKind.SLF]
    with pytest.raises(ConfigurationError, match="lack permit kinds: slf"):
        Bapenda(Store("sqlite:///:memory:"), settings=settings, rules=full)


@given(
    permit_no=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9./_-]{2,63}", fullmatch=True),
    scheme=st.sampled_from(["nik", "nib"]),
    kecamatan=st.sampled_from(["35.73.01", "35.73.02", "35.73.03", "35.73.04", "35.73.05"]),
    attempt=st.integers(0, 5),
)
def test_an_npwpd_is_a_valid_number_derived_from_the_permit(
    permit_no: str, scheme: str, kecamatan: str, attempt: int
) -> None:
    number = npwpd_for(permit_no, scheme, kecamatan, attempt)
    assert re.fullmatch(r"[PB]\.0[1-5]\.[0-9]{10}", number)
    assert number == npwpd_for(permit_no, scheme, kecamatan, attempt)
    assert number.startswith("P" if scheme == "nik" else "B")
    assert TypeAdapter(NPWPD).validate_python(number) == number


# -- permits -----------------------------------------------------------------------------------


async def test_a_reklame_permit_registers_its_holder_and_publishes_it(
    bapenda: Bapenda, redis: Redis, dpmptsp: Publisher
) -> None:
    issued = await dpmptsp.publish(permit("503/RKL/077/2026"))
    async with bapenda.service.running():
        await wait_until(lambda: _registered(redis, 1))
        taxpayer = await bapenda.taxpayer_of("503/RKL/077/2026")
        assert taxpayer is not None
        assert await bapenda.taxpayers_by("nik", PERSON) == [taxpayer]
        billing = await bapenda.billing_address(taxpayer.npwpd)

    assert taxpayer.npwpd == npwpd_for("503/RKL/077/2026", "nik", "35.73.05")
    assert (taxpayer.scheme, taxpayer.value) == ("nik", PERSON)
    assert taxpayer.tax_kinds == (TaxKind.REKLAME,)
    assert taxpayer.permits == ("503/RKL/077/2026",)
    assert taxpayer.registered_on == TODAY
    assert billing == taxpayer.billing
    assert (billing.street, billing.kelurahan, billing.as_of) == (
        SITE["street"],
        SITE["kelurahan"],
        date(2026, 10, 30),
    )
    assert PERSON not in repr(taxpayer) and SITE["street"] not in repr(billing)
    [(envelope, event)] = await registrations(redis)
    assert event.npwpd == taxpayer.npwpd
    assert (event.taxpayer.scheme, event.taxpayer.value) == ("nik", PERSON)
    assert event.tax_kinds == (TaxKind.REKLAME,)
    assert (event.permit_no, event.registered_on) == ("503/RKL/077/2026", TODAY)
    assert event.address.model_dump() == SITE
    assert (envelope.causationid, envelope.subject) == (issued.event_id, taxpayer.npwpd)


async def test_building_permits_register_nobody(
    bapenda: Bapenda, redis: Redis, dpmptsp: Publisher
) -> None:
    await dpmptsp.publish(permit("PBG-1", kind="pbg"))
    await dpmptsp.publish(permit("SLF-1", kind="slf"))
    sentinel = await dpmptsp.publish(permit("RKL-1"))
    async with bapenda.service.running():
        await wait_until(lambda: handled(bapenda, sentinel.event_id, "register"))
        assert await bapenda.taxpayer_of("PBG-1") is None
        assert await bapenda.taxpayer_of("SLF-1") is None
        assert [t.permits for t in await bapenda.taxpayers_by("nik", PERSON)] == [("RKL-1",)]
    assert len(await registrations(redis)) == 1


async def test_a_second_permit_adds_its_taxes_to_the_same_npwpd(
    bapenda: Bapenda, redis: Redis, dpmptsp: Publisher
) -> None:
    await dpmptsp.publish(permit("RKL-1", scheme="nib", value=BUSINESS))
    await dpmptsp.publish(permit("RKL-2", scheme="nib", value=BUSINESS, issued_on="2026-11-02"))
    last = await dpmptsp.publish(
        permit("OSS-1", kind="izin-usaha", scheme="nib", value=BUSINESS, issued_on="2026-11-05")
    )
    async with bapenda.service.running():
        await wait_until(lambda: handled(bapenda, last.event_id, "register"))
        await wait_until(lambda: _registered(redis, 2))
        [taxpayer] = await bapenda.taxpayers_by("nib", BUSINESS)
        assert await bapenda.taxpayer_of("OSS-1") == taxpayer == await bapenda.taxpayer_of("RKL-2")

    assert taxpayer.npwpd.startswith("B.05.")
    assert taxpayer.tax_kinds == (TaxKind.REKLAME, TaxKind.PBJT_MAKANAN_MINUMAN)
    assert taxpayer.permits == ("RKL-1", "RKL-2", "OSS-1")
    # Published: the registration and the added tax; the second billboard added no tax.
    events = [event for _, event in await registrations(redis)]
    assert [(e.npwpd, e.permit_no, e.tax_kinds) for e in events] == [
        (taxpayer.npwpd, "RKL-1", (TaxKind.REKLAME,)),
        (taxpayer.npwpd, "OSS-1", (TaxKind.REKLAME, TaxKind.PBJT_MAKANAN_MINUMAN)),
    ]


async def test_a_redelivered_or_republished_permit_registers_once(
    bapenda: Bapenda, redis: Redis, dpmptsp: Publisher
) -> None:
    first = await dpmptsp.publish(permit("RKL-1"))
    stream = keys.stream("dpmptsp.permit")
    await redis.delete(keys.seen(stream, first.event_id))
    assert not (await dpmptsp.publish(permit("RKL-1"), id=first.event_id)).duplicate
    republished = await dpmptsp.publish(permit("RKL-1"))  # another event id, the same permit
    async with bapenda.service.running():
        await wait_until(lambda: handled(bapenda, republished.event_id, "register"))
        assert len(await bapenda.taxpayers_by("nik", PERSON)) == 1
    assert len(await registrations(redis)) == 1


async def test_a_failed_publish_is_retried_from_the_store(
    bapenda: Bapenda, redis: Redis, dpmptsp: Publisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = Publisher.publish
    attempts: list[str] = []

    async def first_fails(self: Publisher, event: Any, **attributes: Any) -> Any:
        if isinstance(event, TaxpayerRegistered):
            attempts.append(event.npwpd)
            if len(attempts) == 1:
                raise ConnectionError("connection reset by peer")
        return await original(self, event, **attributes)

    monkeypatch.setattr(Publisher, "publish", first_fails)
    await dpmptsp.publish(permit("RKL-1"))
    async with bapenda.service.running():
        await wait_until(lambda: _registered(redis, 1))
        assert len(await bapenda.taxpayers_by("nik", PERSON)) == 1
    assert len(attempts) == 2 and attempts[0] == attempts[1]
    assert len(await registrations(redis)) == 1


# -- moves and deaths --------------------------------------------------------------------------


async def test_moves_update_the_billing_address_newest_first(
    bapenda: Bapenda, redis: Redis, dpmptsp: Publisher, dukcapil: Publisher
) -> None:
    await dpmptsp.publish(permit("RKL-1"))
    await dpmptsp.publish(permit("RKL-9", value=OTHER_PERSON))
    async with bapenda.service.running():
        await wait_until(lambda: _registered(redis, 2))
        [taxpayer] = await bapenda.taxpayers_by("nik", PERSON)

        before_permit = await dukcapil.publish(moved(PERSON, "2026-09-01", street="Jl. Lama 1"))
        await wait_until(lambda: handled(bapenda, before_permit.event_id, "move"))
        assert await bapenda.billing_address(taxpayer.npwpd) == taxpayer.billing  # older: kept

        newest = await dukcapil.publish(moved(PERSON, "2026-11-15"))
        late = await dukcapil.publish(moved(PERSON, "2026-11-01", street="Jl. Tengah 5"))
        stranger = await dukcapil.publish(moved("3573052002800005", "2026-11-16"))
        await wait_until(lambda: handled(bapenda, stranger.event_id, "move"))
        assert await handled(bapenda, newest.event_id, "move")
        assert await handled(bapenda, late.event_id, "move")
        billing = await bapenda.billing_address(taxpayer.npwpd)
        [other] = await bapenda.taxpayers_by("nik", OTHER_PERSON)

    assert billing is not None
    assert (billing.street, billing.kecamatan, billing.as_of) == (
        "Jl. Kawi 12",
        "35.73.02",
        date(2026, 11, 15),
    )
    assert (billing.rt, billing.rw, billing.kelurahan) == (None, None, None)  # not in the move
    assert other.billing.street == SITE["street"]  # someone else's move changed nothing


async def test_a_death_opens_a_review_of_the_persons_registrations(
    bapenda: Bapenda, redis: Redis, dpmptsp: Publisher, dukcapil: Publisher
) -> None:
    await dpmptsp.publish(permit("RKL-1"))
    with capture_logs() as logs:
        async with bapenda.service.running():
            await wait_until(lambda: _registered(redis, 1))
            death = await dukcapil.publish(died(PERSON))
            again = await dukcapil.publish(died(PERSON))  # a correction: another id, same fact
            unknown = await dukcapil.publish(died("3573052002800005"))
            await wait_until(lambda: handled(bapenda, unknown.event_id, "death"))
            assert await handled(bapenda, death.event_id, "death")
            assert await handled(bapenda, again.event_id, "death")
            [taxpayer] = await bapenda.taxpayers_by("nik", PERSON)
            reviews = await bapenda.open_reviews()
            assert await bapenda.open_reviews(taxpayer.npwpd) == reviews

    [review] = reviews
    assert (review.npwpd, review.reason, review.since, review.opened_on, review.status) == (
        taxpayer.npwpd,
        "death",
        date(2026, 11, 20),
        TODAY,
        "open",
    )
    opened = [line["reviews_opened"] for line in logs if line["event"] == "death_applied"]
    assert opened == [1, 0, 0]
    assert all(PERSON not in repr(line) for line in logs)  # identifiers never reach the logs


async def in_order(bapenda: Bapenda, publishers: dict[str, Publisher], events: list[Any]) -> None:
    """Publish and handle ``events`` one after the other (the service running)."""
    kinds = {
        PermitIssued: ("dpmptsp", "register"),
        CitizenMoved: ("dukcapil", "move"),
        CitizenDied: ("dukcapil", "death"),
    }
    for event in events:
        source, purpose = kinds[type(event)]
        published = await publishers[source].publish(event)
        await wait_until(partial(handled, bapenda, published.event_id, purpose))


@pytest.mark.parametrize("moves_first", [False, True], ids=["permit-first", "moves-first"])
async def test_moves_before_the_registering_permit_converge(
    bapenda: Bapenda, dpmptsp: Publisher, dukcapil: Publisher, moves_first: bool
) -> None:
    moves = [moved(PERSON, "2026-11-15"), moved(PERSON, "2026-11-01", street="Jl. Tengah 5")]
    issued = permit("RKL-1")  # issued 2026-10-30, before both moves
    publishers = {"dpmptsp": dpmptsp, "dukcapil": dukcapil}
    async with bapenda.service.running():
        await in_order(bapenda, publishers, [*moves, issued] if moves_first else [issued, *moves])
        [taxpayer] = await bapenda.taxpayers_by("nik", PERSON)
        remembered = await _unmatched(bapenda)
    billing = taxpayer.billing
    assert (billing.street, billing.kecamatan, billing.as_of) == (
        "Jl. Kawi 12",
        "35.73.02",
        date(2026, 11, 15),
    )
    assert (billing.rt, billing.rw, billing.kelurahan) == (None, None, None)
    assert remembered == []  # applied, then forgotten


async def test_a_move_from_before_the_permit_leaves_the_site_whatever_the_order(
    bapenda: Bapenda, dpmptsp: Publisher, dukcapil: Publisher
) -> None:
    publishers = {"dpmptsp": dpmptsp, "dukcapil": dukcapil}
    async with bapenda.service.running():
        await in_order(bapenda, publishers, [moved(PERSON, "2026-09-01"), permit("RKL-1")])
        [taxpayer] = await bapenda.taxpayers_by("nik", PERSON)
    assert (taxpayer.billing.street, taxpayer.billing.as_of) == (SITE["street"], date(2026, 10, 30))


@pytest.mark.parametrize("death_first", [False, True], ids=["permit-first", "death-first"])
async def test_a_death_before_the_registering_permit_opens_the_review(
    bapenda: Bapenda, dpmptsp: Publisher, dukcapil: Publisher, death_first: bool
) -> None:
    death, issued = died(PERSON), permit("RKL-1")
    publishers = {"dpmptsp": dpmptsp, "dukcapil": dukcapil}
    async with bapenda.service.running():
        await in_order(bapenda, publishers, [death, issued] if death_first else [issued, death])
        [taxpayer] = await bapenda.taxpayers_by("nik", PERSON)
        reviews = await bapenda.open_reviews()
        await in_order(bapenda, publishers, [died(PERSON)])  # reported again: no second review
        assert await bapenda.open_reviews() == reviews
    assert [(r.npwpd, r.reason, r.since, r.status) for r in reviews] == [
        (taxpayer.npwpd, "death", date(2026, 11, 20), "open")
    ]


async def test_facts_about_people_without_a_registration_are_forgotten_after_a_while(
    store_url: str, settings: Settings, dpmptsp: Publisher, dukcapil: Publisher
) -> None:
    clock = [TODAY]
    bapenda = Bapenda(Store(store_url), settings=settings, today=lambda: clock[0])
    publishers = {"dpmptsp": dpmptsp, "dukcapil": dukcapil}
    try:
        async with bapenda.service.running():
            early = [moved(PERSON, "2026-11-15"), died(PERSON), moved(PERSON, "2026-11-01")]
            await in_order(bapenda, publishers, early)
            assert await _unmatched(bapenda) == [(PERSON, "2026-11-15", "2026-11-20")]
            clock[0] = date(2027, 3, 1)  # more than 90 days later
            await in_order(bapenda, publishers, [moved(OTHER_PERSON, "2027-02-01")])
            # Forgotten after the handler's commit, in a transaction of its own.
            expected = [(OTHER_PERSON, "2027-02-01", None)]
            await wait_until(lambda: _equal(_unmatched(bapenda), expected))
            await in_order(bapenda, publishers, [permit("RKL-1")])
            [taxpayer] = await bapenda.taxpayers_by("nik", PERSON)
            assert taxpayer.billing.street == SITE["street"]  # the forgotten move is not applied
            assert await bapenda.open_reviews() == []
    finally:
        await bapenda.store.close()


async def _equal(value: Awaitable[Any], expected: Any) -> bool:
    return await value == expected


async def _unmatched(bapenda: Bapenda) -> list[tuple[str, str | None, str | None]]:
    rows = await bapenda.store.run(
        lambda tx: tx.all("SELECT nik, moved_on, died_on FROM bapenda_unmatched ORDER BY nik")
    )
    return [(row["nik"], row["moved_on"], row["died_on"]) for row in rows]


async def test_registration_moves_and_reviews_on_postgresql(
    postgres_url: str, settings: Settings, redis: Redis, dpmptsp: Publisher, dukcapil: Publisher
) -> None:
    bapenda = Bapenda(Store(postgres_url), settings=settings, today=lambda: TODAY)
    try:
        await dpmptsp.publish(permit("RKL-1"))
        await dpmptsp.publish(permit("OSS-1", kind="izin-usaha", scheme="nib", value=BUSINESS))
        async with bapenda.service.running():
            await wait_until(lambda: _registered(redis, 2))
            move = await dukcapil.publish(moved(PERSON, "2026-11-15"))
            death = await dukcapil.publish(died(PERSON))
            await wait_until(lambda: handled(bapenda, death.event_id, "death"))
            assert await handled(bapenda, move.event_id, "move")
            person = await bapenda.taxpayer_of("RKL-1")
            business = await bapenda.taxpayer_of("OSS-1")
            reviews = await bapenda.open_reviews()
    finally:
        await bapenda.store.close()
    assert person is not None and business is not None
    assert person.billing.kecamatan == "35.73.02"
    assert business.tax_kinds == (TaxKind.PBJT_MAKANAN_MINUMAN,)
    assert [r.npwpd for r in reviews] == [person.npwpd]
