"""Dinsos: grants, households and re-checks following dukcapil events, on real Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from datetime import date
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from bus import ContractViolation, Envelope, Publisher, keys
from bus.contracts import Contract
from bus.settings import Settings
from bus.store import Store
from bus.testing import capture_logs, wait_until
from schemas.dinsos import AssistanceGranted, AssistanceSuspended, Programme, SuspensionReason
from schemas.disnaker import JobseekerPlaced, Placement
from schemas.dukcapil import CitizenBorn, CitizenDied, CitizenMoved, FamilyCardIssued
from services.dinsos import Dinsos, GrantConflict
from services.dinsos.db import effective_from_death

DUKCAPIL = "urn:malangkota:dukcapil:siak"
DISNAKER = "urn:malangkota:disnaker:pencaker"
TODAY = date(2026, 11, 30)

MOTHER = "3573014506900001"  # recipient
FATHER = "3573011203850002"  # recipient of another programme, same household
GRANDMA = "3573015101450003"  # member, not a recipient
CHILD = "3573011411260004"
STRANGER = "3573052002800005"
KK = "3573010101200001"
OTHER_KK = "3573050202210002"
PANDANWANGI = "35.73.01.1006"  # kecamatan Blimbing
ADDRESS = {
    "street": "Jl. Teluk Pelabuhan Ratu 3",
    "rt": "002",
    "rw": "004",
    "kelurahan": PANDANWANGI,
    "kecamatan": "35.73.01",
}


def terms(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "recipient": MOTHER,
        "kk": KK,
        "kelurahan": PANDANWANGI,
        "programme": Programme.PKH,
        "amount": 750_000,
        "frequency": "quarterly",
        "starts_on": date(2026, 1, 1),
        "granted_on": date(2025, 12, 15),
    }
    return base | changes


@pytest.fixture
async def dinsos(tmp_path: Path, settings: Settings) -> AsyncIterator[Dinsos]:
    service = Dinsos(
        Store(f"sqlite:///{tmp_path / 'dinsos.db'}"), settings=settings, today=lambda: TODAY
    )
    yield service
    await service.store.close()


@pytest.fixture
def dukcapil(redis: Redis) -> Publisher:
    return Publisher(redis, source=DUKCAPIL)


async def published(redis: Redis, model: type[Contract]) -> list[tuple[Envelope, Any]]:
    entries = await redis.xrange(keys.stream_of(model.__contract__.event_type))
    found = [Envelope.from_fields(fields) for _, fields in entries]
    typed = model.__contract__.event_type
    return [(e, model.parse(e.data)) for e in found if e.type == typed]


async def handled(dinsos: Dinsos, event_id: str, purpose: str) -> bool:
    key = f"{event_id}:{purpose}"
    found = await dinsos.store.run(
        lambda tx: tx.one("SELECT 1 AS done FROM simpul_inbox WHERE key = ?", (key,))
    )
    return found is not None


def died(nik: str, on: str = "2026-11-10") -> CitizenDied:
    return CitizenDied(nik=nik, date_of_death=date.fromisoformat(on), kecamatan="35.73.01")


def moved(nik: str, kecamatan: str, on: str) -> CitizenMoved:
    return CitizenMoved(
        nik=nik, address="Jl. Baru 1", kecamatan=kecamatan, moved_on=date.fromisoformat(on)
    )


def card(members: tuple[str, ...], issued_on: str, kk: str = KK) -> FamilyCardIssued:
    return FamilyCardIssued.parse(
        {
            "kk": kk,
            "head": members[0],
            "members": members,
            "address": ADDRESS,
            "reason": "correction",
            "issued_on": issued_on,
        }
    )


def born(kk: str = KK) -> CitizenBorn:
    return CitizenBorn.parse(
        {
            "child_ref": "wrzc36nynecyoe6hkelr7elwwq",
            "nik": CHILD,
            "kk": kk,
            "born_on": "2026-11-14",
            "kelurahan": PANDANWANGI,
            "registered_on": "2026-11-20",
        }
    )


# -- grants ------------------------------------------------------------------------------------


async def test_grant_is_stored_and_published_once_for_the_same_terms(
    dinsos: Dinsos, redis: Redis
) -> None:
    first = await dinsos.grant(redis, **terms())
    again = await dinsos.grant(Publisher(redis, source="urn:malangkota:dinsos:bansos"), **terms())
    other = await dinsos.grant(redis, **terms(recipient=FATHER, programme=Programme.BPNT))

    assert first == again == "DINSOS/PKH/2025/000001"
    assert other == "DINSOS/BPNT/2025/000001"
    events = await published(redis, AssistanceGranted)
    assert [event.grant_no for _, event in events] == [first, other]
    envelope, event = events[0]
    assert (event.recipient, event.kk, event.amount, event.ends_on) == (MOTHER, KK, 750_000, None)
    assert envelope.subject == first  # the grant number, never the NIK
    [grant] = await dinsos.grants_of(MOTHER)
    assert (grant.grant_no, grant.status, grant.reason) == (first, "active", None)
    assert await dinsos.household_of(KK) == sorted([MOTHER, FATHER])


async def test_grant_with_other_terms_for_the_same_grant_is_refused(
    dinsos: Dinsos, redis: Redis
) -> None:
    number = await dinsos.grant(redis, **terms())
    with pytest.raises(GrantConflict, match=number) as caught:
        await dinsos.grant(redis, **terms(amount=900_000))
    assert MOTHER not in str(caught.value)
    with pytest.raises(GrantConflict):
        await dinsos.grant(redis, **terms(programme=Programme.BPNT), grant_no=number)
    assert len(await published(redis, AssistanceGranted)) == 1


async def test_invalid_terms_are_refused_before_anything_is_stored(
    dinsos: Dinsos, redis: Redis
) -> None:
    with pytest.raises(ContractViolation) as caught:
        await dinsos.grant(redis, **terms(kelurahan="35.73.09.1001", amount=-1))
    assert {field for field, _ in caught.value.problems} == {"kelurahan", "amount"}
    assert await dinsos.grants_of(MOTHER) == []
    assert await published(redis, AssistanceGranted) == []


async def test_a_given_grant_number_is_kept(dinsos: Dinsos, redis: Redis) -> None:
    number = await dinsos.grant(redis, **terms(), grant_no="SIKS/PKH/2025/77")
    assert number == "SIKS/PKH/2025/77"
    assert [g.grant_no for g in await dinsos.grants_of(MOTHER)] == [number]


# -- deaths ------------------------------------------------------------------------------------


def test_a_death_takes_effect_the_day_after_and_never_before_the_start() -> None:
    assert effective_from_death(date(2026, 3, 15), date(2026, 1, 1)) == date(2026, 3, 16)
    assert effective_from_death(date(2026, 3, 31), date(2026, 1, 1)) == date(2026, 4, 1)
    assert effective_from_death(date(2025, 12, 1), date(2026, 1, 1)) == date(2026, 1, 1)


async def test_death_suspends_every_active_grant_of_the_recipient_one_event_each(
    dinsos: Dinsos, redis: Redis, dukcapil: Publisher
) -> None:
    pkh = await dinsos.grant(redis, **terms())
    bpnt = await dinsos.grant(
        redis, **terms(programme=Programme.BPNT, amount=200_000, frequency="monthly")
    )
    husband = await dinsos.grant(redis, **terms(recipient=FATHER, programme="bansos-daerah"))
    death = await dukcapil.publish(died(MOTHER))

    async with dinsos.service.running():
        await wait_until(lambda: _count(redis, AssistanceSuspended, 2))
        await wait_until(lambda: handled(dinsos, death.event_id, "death"))
        grants = {g.grant_no: g for g in await dinsos.grants_of(MOTHER)}
        household = await dinsos.household_of(KK)
        rechecks = await dinsos.rechecks()
        husbands = await dinsos.grants_of(FATHER)

    events = await published(redis, AssistanceSuspended)
    assert sorted(event.grant_no for _, event in events) == sorted([pkh, bpnt])
    for envelope, event in events:
        assert (event.recipient, event.reason) == (MOTHER, SuspensionReason.DEATH)
        assert (event.suspended_on, event.effective_from) == (TODAY, date(2026, 11, 11))
        assert envelope.causationid == death.event_id
        assert envelope.subject == event.grant_no
    assert {(g.status, g.reason) for g in grants.values()} == {("suspended", "death")}
    assert grants[pkh].effective_from == date(2026, 11, 11)
    assert household == [FATHER]  # the recipient left the household
    assert [(r.grant_no, r.kind, r.reason) for r in rechecks] == [
        (husband, "re-verification", "member-died")
    ]
    assert [g.status for g in husbands] == ["active"]


async def test_death_of_a_member_who_is_not_the_recipient_rechecks_the_household(
    dinsos: Dinsos, redis: Redis, dukcapil: Publisher
) -> None:
    number = await dinsos.grant(redis, **terms())
    issued = await dukcapil.publish(card((MOTHER, GRANDMA), "2025-06-01"))
    async with dinsos.service.running():
        await wait_until(lambda: handled(dinsos, issued.event_id, "card"))
        assert await dinsos.household_of(KK) == sorted([MOTHER, GRANDMA])
        death = await dukcapil.publish(died(GRANDMA))
        await wait_until(lambda: handled(dinsos, death.event_id, "death"))
        assert await dinsos.household_of(KK) == [MOTHER]
        [recheck] = await dinsos.rechecks(number)
        assert (recheck.kind, recheck.reason, recheck.opened_on) == (
            "re-verification",
            "member-died",
            TODAY,
        )
        assert [g.status for g in await dinsos.grants_of(MOTHER)] == ["active"]
    assert await published(redis, AssistanceSuspended) == []


async def test_death_of_an_unknown_person_changes_nothing(
    dinsos: Dinsos, redis: Redis, dukcapil: Publisher
) -> None:
    await dinsos.grant(redis, **terms())
    death = await dukcapil.publish(died(STRANGER))
    with capture_logs() as logs:
        async with dinsos.service.running():
            await wait_until(lambda: handled(dinsos, death.event_id, "death"))
            assert await dinsos.rechecks(status=None) == []
            assert [g.status for g in await dinsos.grants_of(MOTHER)] == ["active"]
    assert await published(redis, AssistanceSuspended) == []
    [line] = [line for line in logs if line["event"] == "death_applied"]
    assert line["grants_suspended"] == 0
    assert all(STRANGER not in repr(line) for line in logs)


async def test_a_failed_publish_is_retried_and_every_suspension_published_once(
    dinsos: Dinsos, redis: Redis, dukcapil: Publisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = await dinsos.grant(redis, **terms())
    second = await dinsos.grant(redis, **terms(programme=Programme.BPNT))
    original = Publisher.publish
    calls: list[str] = []

    async def second_publish_fails(self: Publisher, event: Any, **attributes: Any) -> Any:
        if isinstance(event, AssistanceSuspended):
            calls.append(event.grant_no)
            if len(calls) == 2:  # the store committed and one event is out: then Redis fails
                raise ConnectionError("connection reset by peer")
        return await original(self, event, **attributes)

    monkeypatch.setattr(Publisher, "publish", second_publish_fails)
    await dukcapil.publish(died(MOTHER))
    async with dinsos.service.running():
        await wait_until(lambda: _count(redis, AssistanceSuspended, 2))
        assert {g.status for g in await dinsos.grants_of(MOTHER)} == {"suspended"}

    # The retry published both again, in the same order (the first one as a duplicate).
    assert len(calls) == 4 and calls[:2] == calls[2:] and set(calls) == {first, second}
    events = await published(redis, AssistanceSuspended)
    assert sorted(e.grant_no for _, e in events) == sorted([first, second])  # no repeats
    assert len({envelope.id for envelope, _ in events}) == 2


async def test_a_redelivered_death_suspends_and_publishes_once(
    dinsos: Dinsos, redis: Redis, dukcapil: Publisher
) -> None:
    await dinsos.grant(redis, **terms())
    await dinsos.grant(redis, **terms(recipient=FATHER))
    death = await dukcapil.publish(died(MOTHER))
    # The same event a second time in the stream (as after a producer's lost reply): the
    # publisher's dedupe marker is gone, so it is really delivered twice.
    stream = keys.stream("dukcapil.citizen")
    await redis.delete(keys.seen(stream, death.event_id))
    again = await dukcapil.publish(died(MOTHER), id=death.event_id)
    assert not again.duplicate
    sentinel = await dukcapil.publish(died(STRANGER))
    async with dinsos.service.running():
        await wait_until(lambda: handled(dinsos, sentinel.event_id, "death"))
        rechecks = await dinsos.rechecks()
    assert len(await published(redis, AssistanceSuspended)) == 1
    assert len(rechecks) == 1  # the husband's grant, once


# -- births, cards, moves ----------------------------------------------------------------------


async def test_birth_adds_the_child_and_rechecks_the_household(
    dinsos: Dinsos, redis: Redis, dukcapil: Publisher
) -> None:
    number = await dinsos.grant(redis, **terms())
    birth = await dukcapil.publish(born())
    elsewhere = await dukcapil.publish(born(kk=OTHER_KK), id="birth-without-assistance")
    async with dinsos.service.running():
        await wait_until(lambda: handled(dinsos, elsewhere.event_id, "birth"))
        assert await handled(dinsos, birth.event_id, "birth")
        assert await dinsos.household_of(KK) == sorted([MOTHER, CHILD])
        assert await dinsos.household_of(OTHER_KK) == []  # no grant: nothing kept
        assert [(r.grant_no, r.reason) for r in await dinsos.rechecks()] == [
            (number, "member-born")
        ]


async def test_family_cards_set_the_household_newest_card_wins(
    dinsos: Dinsos, redis: Redis, dukcapil: Publisher
) -> None:
    number = await dinsos.grant(redis, **terms())
    unrelated = card((STRANGER,), "2026-02-01", kk=OTHER_KK)
    async with dinsos.service.running():
        newer = await dukcapil.publish(card((MOTHER, FATHER, GRANDMA), "2026-03-01"))
        await wait_until(lambda: handled(dinsos, newer.event_id, "card"))
        older = await dukcapil.publish(card((MOTHER,), "2026-01-01"))
        other = await dukcapil.publish(unrelated)
        await wait_until(lambda: handled(dinsos, other.event_id, "card"))
        assert await handled(dinsos, older.event_id, "card")
        assert await dinsos.household_of(KK) == sorted([MOTHER, FATHER, GRANDMA])
        assert await dinsos.household_of(OTHER_KK) == []
        # The card came after the grant decision and changed the household.
        assert [(r.grant_no, r.reason) for r in await dinsos.rechecks()] == [
            (number, "household-changed")
        ]


async def test_a_recipient_on_another_family_card_is_rechecked(
    dinsos: Dinsos, redis: Redis, dukcapil: Publisher
) -> None:
    number = await dinsos.grant(redis, **terms())
    async with dinsos.service.running():
        new_family = await dukcapil.publish(card((MOTHER,), "2026-05-01", kk=OTHER_KK))
        await wait_until(lambda: handled(dinsos, new_family.event_id, "card"))
        assert await dinsos.household_of(OTHER_KK) == [MOTHER]
        assert [(r.grant_no, r.reason) for r in await dinsos.rechecks()] == [(number, "kk-changed")]


async def test_moves_recheck_the_area_only_across_kecamatan_in_date_order(
    dinsos: Dinsos, redis: Redis, dukcapil: Publisher
) -> None:
    number = await dinsos.grant(redis, **terms())  # administered in Blimbing
    async with dinsos.service.running():
        within = await dukcapil.publish(moved(MOTHER, "35.73.01", "2026-03-01"))
        await wait_until(lambda: handled(dinsos, within.event_id, "move"))
        assert await dinsos.rechecks(status=None) == []

        away = await dukcapil.publish(moved(MOTHER, "35.73.05", "2026-06-01"))
        stale = await dukcapil.publish(moved(MOTHER, "35.73.03", "2026-04-01"))  # late, older
        await wait_until(lambda: handled(dinsos, stale.event_id, "move"))
        assert await handled(dinsos, away.event_id, "move")
        [recheck] = await dinsos.rechecks(number)
        assert (recheck.kind, recheck.reason, recheck.kecamatan) == (
            "area-recheck",
            "moved",
            "35.73.05",
        )

        back = await dukcapil.publish(moved(MOTHER, "35.73.01", "2026-07-01"))
        await wait_until(lambda: handled(dinsos, back.event_id, "move"))
        assert await dinsos.rechecks(number) == []
        assert [r.status for r in await dinsos.rechecks(number, status=None)] == ["closed"]


async def test_a_move_of_an_unknown_person_changes_nothing(
    dinsos: Dinsos, redis: Redis, dukcapil: Publisher
) -> None:
    await dinsos.grant(redis, **terms())
    move = await dukcapil.publish(moved(STRANGER, "35.73.05", "2026-06-01"))
    async with dinsos.service.running():
        await wait_until(lambda: handled(dinsos, move.event_id, "move"))
        assert await dinsos.rechecks(status=None) == []


# -- events of two streams in either order -----------------------------------------------------


async def in_order(dinsos: Dinsos, dukcapil: Publisher, events: list[Any]) -> None:
    """Publish and handle ``events`` one after the other (the service running)."""
    purposes = {CitizenDied: "death", CitizenBorn: "birth", FamilyCardIssued: "card"}
    for event in events:
        published = await dukcapil.publish(event)
        await wait_until(partial(handled, dinsos, published.event_id, purposes[type(event)]))


async def outcome(dinsos: Dinsos) -> tuple[list[str], list[tuple[str, str, str]]]:
    rechecks = await dinsos.rechecks(status=None)
    return await dinsos.household_of(KK), sorted((r.grant_no, r.kind, r.reason) for r in rechecks)


@pytest.mark.parametrize("death_first", [False, True], ids=["card-first", "death-first"])
async def test_a_death_and_an_older_first_card_listing_the_person_converge(
    dinsos: Dinsos, redis: Redis, dukcapil: Publisher, death_first: bool
) -> None:
    number = await dinsos.grant(redis, **terms())  # the household: the recipient only
    listing = card((MOTHER, GRANDMA), "2026-06-01")  # issued before the death
    death = died(GRANDMA, "2026-11-10")
    async with dinsos.service.running():
        await in_order(dinsos, dukcapil, [death, listing] if death_first else [listing, death])
        household, rechecks = await outcome(dinsos)
    assert household == [MOTHER]  # the grandmother died: listed on the card, not a member
    assert rechecks == [
        (number, "re-verification", "household-changed"),  # the card changed the household
        (number, "re-verification", "member-died"),  # and a member of it died
    ]


@pytest.mark.parametrize("death_first", [False, True], ids=["card-first", "death-first"])
async def test_a_death_and_a_late_card_of_a_known_member_converge(
    dinsos: Dinsos, redis: Redis, dukcapil: Publisher, death_first: bool
) -> None:
    number = await dinsos.grant(redis, **terms())
    correction = card((MOTHER, GRANDMA), "2026-06-01")  # same members, issued before the death
    death = died(GRANDMA, "2026-11-10")
    async with dinsos.service.running():
        await in_order(dinsos, dukcapil, [card((MOTHER, GRANDMA), "2025-06-01")])
        await in_order(
            dinsos, dukcapil, [death, correction] if death_first else [correction, death]
        )
        household, rechecks = await outcome(dinsos)
    assert household == [MOTHER]  # not back in the household
    assert rechecks == [(number, "re-verification", "member-died")]  # no spurious change


@pytest.mark.parametrize("death_first", [False, True], ids=["birth-first", "death-first"])
async def test_an_infant_death_reported_before_the_birth_converges(
    dinsos: Dinsos, redis: Redis, dukcapil: Publisher, death_first: bool
) -> None:
    number = await dinsos.grant(redis, **terms())
    birth, death = born(), died(CHILD, "2026-11-16")
    async with dinsos.service.running():
        await in_order(dinsos, dukcapil, [death, birth] if death_first else [birth, death])
        household, rechecks = await outcome(dinsos)
    assert household == [MOTHER]
    assert rechecks == [
        (number, "re-verification", "member-born"),
        (number, "re-verification", "member-died"),
    ]


async def test_a_second_report_of_a_death_opens_no_second_recheck(
    dinsos: Dinsos, redis: Redis, dukcapil: Publisher
) -> None:
    number = await dinsos.grant(redis, **terms())
    async with dinsos.service.running():
        await in_order(dinsos, dukcapil, [card((MOTHER, GRANDMA), "2025-06-01"), died(GRANDMA)])
        await in_order(dinsos, dukcapil, [died(GRANDMA, "2026-11-09")])  # a correction
        _, rechecks = await outcome(dinsos)
    assert rechecks == [(number, "re-verification", "member-died")]


async def test_deaths_of_people_dinsos_does_not_know_are_forgotten_after_a_while(
    store_url: str, settings: Settings, redis: Redis, dukcapil: Publisher
) -> None:
    clock = [TODAY]
    dinsos = Dinsos(Store(store_url), settings=settings, today=lambda: clock[0])

    async def remembered() -> list[str]:
        rows = await dinsos.store.run(lambda tx: tx.all("SELECT nik FROM dinsos_death"))
        return sorted(row["nik"] for row in rows)

    try:
        await dinsos.grant(redis, **terms())
        async with dinsos.service.running():
            await in_order(dinsos, dukcapil, [card((MOTHER, GRANDMA), "2025-06-01")])
            await in_order(dinsos, dukcapil, [died(STRANGER), died(GRANDMA)])
            assert await remembered() == sorted([STRANGER, GRANDMA])
            clock[0] = date(2027, 3, 1)  # more than 90 days later
            await in_order(dinsos, dukcapil, [died(FATHER, "2027-02-27")])
            # The stranger is forgotten (after the handler's commit, in a transaction of its
            # own); the household member and the newest death are kept.
            expected = sorted([GRANDMA, FATHER])
            await wait_until(lambda: _equal(remembered(), expected))
    finally:
        await dinsos.store.close()


# -- PostgreSQL --------------------------------------------------------------------------------


async def test_the_death_flow_on_postgresql(
    postgres_url: str, settings: Settings, redis: Redis, dukcapil: Publisher
) -> None:
    dinsos = Dinsos(Store(postgres_url), settings=settings, today=lambda: TODAY)
    try:
        number = await dinsos.grant(redis, **terms())
        assert await dinsos.grant(redis, **terms()) == number
        await dinsos.grant(redis, **terms(recipient=FATHER))
        birth = await dukcapil.publish(born())
        death = await dukcapil.publish(died(MOTHER))
        async with dinsos.service.running():
            await wait_until(lambda: _count(redis, AssistanceSuspended, 1))
            await wait_until(lambda: handled(dinsos, death.event_id, "death"))
            assert await handled(dinsos, birth.event_id, "birth")
            [grant] = await dinsos.grants_of(MOTHER)
            assert (grant.status, grant.reason, grant.effective_from) == (
                "suspended",
                SuspensionReason.DEATH,
                date(2026, 11, 11),
            )
            assert await dinsos.household_of(KK) == sorted([FATHER, CHILD])
            reasons = sorted(r.reason for r in await dinsos.rechecks())
            assert reasons == ["member-born", "member-born", "member-died"]
            # A card issued before the death, arriving after it: the dead stays out.
            await in_order(dinsos, dukcapil, [card((MOTHER, FATHER, CHILD), "2026-11-25")])
            assert await dinsos.household_of(KK) == sorted([FATHER, CHILD])
    finally:
        await dinsos.store.close()


async def _equal(value: Awaitable[Any], expected: Any) -> bool:
    return await value == expected


async def _count(redis: Redis, model: type[Contract], expected: int) -> bool:
    return len(await published(redis, model)) >= expected


# -- placements (disnaker) ---------------------------------------------------------------------


def placed(nik: str, on: str = "2026-11-02", card_no: str = "3573-2026-000412") -> JobseekerPlaced:
    return JobseekerPlaced(
        card_no=card_no,
        nik=nik,
        placement=Placement.LOCAL,
        occupation="7411",
        placed_on=date.fromisoformat(on),
    )


async def test_a_placement_rechecks_the_recipients_and_the_households_grants(
    dinsos: Dinsos, redis: Redis, dukcapil: Publisher
) -> None:
    mothers = await dinsos.grant(redis, **terms())
    fathers = await dinsos.grant(redis, **terms(recipient=FATHER, programme=Programme.BPNT))
    elsewhere = await dinsos.grant(redis, **terms(recipient=STRANGER, kk=OTHER_KK))
    disnaker = Publisher(redis, source=DISNAKER)
    issued = await dukcapil.publish(card((MOTHER, FATHER, GRANDMA), "2025-06-01"))
    async with dinsos.service.running():
        await wait_until(lambda: handled(dinsos, issued.event_id, "card"))
        placement = await disnaker.publish(placed(FATHER))
        await wait_until(lambda: handled(dinsos, placement.event_id, "placement"))
        rechecks = await dinsos.rechecks()
        assert [g.status for g in await dinsos.grants_of(FATHER)] == ["active"]
    assert sorted((r.grant_no, r.kind, r.reason, r.opened_on) for r in rechecks) == [
        (fathers, "re-verification", "recipient-employed", TODAY),
        (mothers, "re-verification", "member-employed", TODAY),
    ]
    assert elsewhere not in {r.grant_no for r in rechecks}


async def test_a_placement_of_someone_dinsos_does_not_know_changes_and_keeps_nothing(
    dinsos: Dinsos, redis: Redis
) -> None:
    await dinsos.grant(redis, **terms())
    placement = await Publisher(redis, source=DISNAKER).publish(placed(STRANGER))
    with capture_logs() as logs:
        async with dinsos.service.running():
            await wait_until(lambda: handled(dinsos, placement.event_id, "placement"))
            assert await dinsos.rechecks(status=None) == []
            tables = await dinsos.store.run(
                lambda tx: tx.all(
                    "SELECT nik FROM dinsos_household_member"
                    " UNION SELECT recipient FROM dinsos_grant"
                )
            )
    assert STRANGER not in {t["nik"] for t in tables}
    [line] = [line for line in logs if line["event"] == "placement_applied"]
    assert line["rechecks_opened"] == 0
    assert all(STRANGER not in repr(line) and "3573-2026" not in repr(line) for line in logs)


async def test_a_corrected_placement_opens_no_second_recheck_while_one_is_open(
    dinsos: Dinsos, redis: Redis
) -> None:
    number = await dinsos.grant(redis, **terms())
    disnaker = Publisher(redis, source=DISNAKER)
    first = await disnaker.publish(placed(MOTHER, "2026-11-02"), id="placement-v1")
    async with dinsos.service.running():
        await wait_until(lambda: handled(dinsos, first.event_id, "placement"))
        corrected = await disnaker.publish(placed(MOTHER, "2026-11-09"), id="placement-v2")
        await wait_until(lambda: handled(dinsos, corrected.event_id, "placement"))
        rechecks = await dinsos.rechecks(status=None)
    assert [(r.grant_no, r.reason) for r in rechecks] == [(number, "recipient-employed")]


async def test_a_grant_that_ended_before_the_first_day_of_work_is_not_rechecked(
    dinsos: Dinsos, redis: Redis
) -> None:
    await dinsos.grant(redis, **terms(ends_on=date(2026, 6, 30)))
    running = await dinsos.grant(redis, **terms(programme=Programme.BPNT))
    placement = await Publisher(redis, source=DISNAKER).publish(placed(MOTHER, "2026-07-01"))
    async with dinsos.service.running():
        await wait_until(lambda: handled(dinsos, placement.event_id, "placement"))
        assert [r.grant_no for r in await dinsos.rechecks()] == [running]
