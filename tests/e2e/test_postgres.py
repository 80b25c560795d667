"""The city with every store on PostgreSQL (production's configuration): one schema per service.

And why one schema each: stores sharing one database share ``simpul_inbox`` as well.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from tests.e2e.conftest import (
    DAY,
    SERVICES,
    City,
    city_running,
    elsewhere,
    newborn,
    payment_row,
    permit_body,
    residents,
    snapshot,
)


async def _a_week(city: City) -> dict[str, str]:
    """A permit, a payment, a birth, a move and a death of linked, assisted residents."""
    holder, parent, mover = residents(3, seed=707)
    await city.link(holder, parent)
    grants = {
        "holder": await city.grant(holder),
        "parent": await city.grant(parent, "bpnt"),
        "mover": await city.grant(mover, "bansos-daerah"),
    }
    permit = permit_body(holder, 7401, decided=DAY - timedelta(days=3), seed=707)
    assert (await city.post(permit)).status_code == 201
    assert await city.pay([payment_row(parent, 11)]) == 1
    child = newborn(random.Random(707), DAY - timedelta(days=4))
    reg = city.registry
    assert (
        await city.siak(
            [
                reg.birth(child, parent),
                reg.move(
                    mover,
                    to=elsewhere(mover.kecamatan),
                    on=DAY - timedelta(days=1),
                    alamat="Jl. Bandung No. 4, RT 001/RW 001, Malang",
                ),
            ]
        )
        == 2
    )
    await city.settled()
    await city.death(holder, on=DAY)
    await city.settled()
    return {
        "holder": holder.nik,
        "parent": parent.nik,
        "mover": mover.nik,
        "child": child.nik,
        "kk": parent.kk,
        "holder_email": holder.email,
        "parent_email": parent.email,
        "permit_no": permit["nomor_izin"],
        **{f"grant_{k}": v for k, v in grants.items()},
    }


async def test_the_city_on_postgresql_stores(
    redis_url: str, tmp_path: Path, postgres_schemas: Callable[[str], str]
) -> None:
    stores = {name: postgres_schemas(name) for name in SERVICES}
    async with city_running(redis_url, tmp_path, stores) as city:
        assert {city.store(name).dialect for name in SERVICES} == {"postgresql"}
        w = await _a_week(city)

        # bapenda: registered from the permit, reviewed after the death
        taxpayer = await city.bapenda.taxpayer_of(w["permit_no"])
        assert taxpayer is not None and taxpayer.value == w["holder"]
        assert [r.reason for r in await city.bapenda.open_reviews(taxpayer.npwpd)] == ["death"]
        # dinsos: suspended, household grown, area re-check
        [suspended] = await city.dinsos.grants_of(w["holder"])
        assert suspended.status == "suspended"
        assert w["child"] in await city.dinsos.household_of(w["kk"])
        assert [r.kind for r in await city.dinsos.rechecks(w["grant_mover"])] == ["area-recheck"]
        # dinkes: scheduled, without NIK or KK in its tables
        assert await city.dinkes.schedule_of(city.child_ref(w["child"])) is not None
        dinkes_rows = repr(await snapshot(city.store("dinkes"), inbox=True))
        assert w["child"] not in dinkes_rows and w["kk"] not in dinkes_rows
        # profile: everything about the holder, in one place
        view = await city.profile.person(w["holder"])
        assert view is not None
        sections = view["sections"]
        assert sections["registry"]["status"] == "deceased"
        assert [t["npwpd"] for t in sections["tax"]["npwpd"]] == [taxpayer.npwpd]
        assert [a["status"] for a in sections["assistance"]] == ["suspended"]
        assert sections["accounts"]["current"] is None
        # notifier: the permit and the payment mailed, once each
        assert sorted(m["To"] for m in city.mail.messages) == sorted(
            [w["holder_email"], w["parent_email"]]
        )
        assert await city.notifier.sent_count() == 2
        # audit: the chain holds, every entry archived
        report = await city.audit.verify()
        assert report.ok, report.problems
        assert report.rows == await city.audit.count() > 10
        assert await city.dead_letters() == {}


async def test_services_sharing_one_database_each_apply_a_death(
    redis_url: str, tmp_path: Path, postgres_url: str
) -> None:
    # One database for all: the tables have distinct names, and each store's scope (the
    # service name) keeps its inbox keys apart — a death is '<event id>:death' to three services.
    stores = dict.fromkeys(SERVICES, postgres_url)
    async with city_running(redis_url, tmp_path, stores) as city:
        [dead] = residents(1, seed=808)
        await city.link(dead)
        await city.grant(dead)
        assert (await city.post(permit_body(dead, 7501, seed=808))).status_code == 201
        await city.settled()
        await city.death(dead, on=DAY)
        await city.settled()
        assert await city.pay([payment_row(dead, 21)]) == 1
        await city.settled()

        [grant] = await city.dinsos.grants_of(dead.nik)
        [taxpayer] = await city.bapenda.taxpayers_by("nik", dead.nik)
        applied = {
            "dinsos": grant.status == "suspended",
            "bapenda": len(await city.bapenda.open_reviews(taxpayer.npwpd)) == 1,
            "notifier": (await city.notifier.counts()).get("skipped:deceased") == 1,
        }
        assert applied == {"dinsos": True, "bapenda": True, "notifier": True}
