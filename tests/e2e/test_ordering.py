"""Events of different streams are never ordered relative to each other (docs/delivery.md,
"Ordering"): the city's outcome must not depend on which of two facts arrives first.

The profile converges whatever the order; these tests hold the other services to the same.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from tests.e2e.conftest import (
    DAY,
    SERVICES,
    City,
    city_running,
    payment_row,
    permit_body,
    residents,
    sqlite_stores,
)


async def test_a_notifier_started_after_a_death_does_not_notify_the_deceased(
    redis_url: str, tmp_path: Path
) -> None:
    # a notifier deployed after the rest of the city (or over a new store): its first start
    others = [name for name in SERVICES if name != "notifier"]
    async with city_running(redis_url, tmp_path, sqlite_stores(tmp_path), services=others) as city:
        dead, alive = residents(2, seed=910)
        await city.link(dead, alive, contacts=False)  # the super-app linked them long ago
        died_on = DAY - timedelta(days=2)
        await city.death(dead, on=died_on)
        await city.settled()
        view = await city.profile.person(dead.nik)  # the profile: deceased, link closed
        assert view is not None
        assert view["sections"]["registry"]["status"] == "deceased"
        assert view["sections"]["accounts"]["current"] is None

        await city.start("notifier")  # reads the history: the death, the links
        for holder in (dead, alive):
            await city.notifier.set_contact(holder.account_id, holder.email)
        await city.settled()
        assert await city.notifier.account_of(alive.nik) == alive.account_id
        assert await city.pay([payment_row(dead, 41), payment_row(alive, 42)]) == 2
        await city.settled()

        assert [m["To"] for m in city.mail.messages] == [alive.email]  # the control is mailed
        assert (await city.notifier.counts()).get("skipped:deceased") == 1


async def test_a_permit_delivered_after_its_holders_death_still_gets_a_review(
    city: City,
) -> None:
    [dead] = residents(1, seed=920)
    died_on = DAY - timedelta(days=1)
    await city.death(dead, on=died_on)
    await city.settled()
    # issued two days before the death; the licensing application POSTs it late
    permit = permit_body(dead, 7601, decided=DAY - timedelta(days=3), seed=920)
    assert (await city.post(permit)).status_code == 201
    await city.settled()

    [taxpayer] = await city.bapenda.taxpayers_by("nik", dead.nik)
    assert [(r.reason, r.since) for r in await city.bapenda.open_reviews(taxpayer.npwpd)] == [
        ("death", died_on)
    ]


async def test_a_move_delivered_before_the_permit_still_moves_the_bills(city: City) -> None:
    [mover] = residents(1, seed=930)
    moved_on = DAY - timedelta(days=1)
    new_line = "Jl. Semeru No. 21, RT 004/RW 006, Malang"
    assert (
        await city.siak(
            [city.registry.move(mover, to="35.73.04.1002", on=moved_on, alamat=new_line)]
        )
        == 1
    )
    await city.settled()
    permit = permit_body(mover, 7701, decided=DAY - timedelta(days=4), seed=930)
    assert (await city.post(permit)).status_code == 201
    await city.settled()

    view = await city.profile.person(mover.nik)  # the profile has the move, whatever the order
    assert view is not None
    assert view["sections"]["address"]["street"] == new_line
    [taxpayer] = await city.bapenda.taxpayers_by("nik", mover.nik)
    assert (taxpayer.billing.street, taxpayer.billing.as_of) == (new_line, moved_on)
