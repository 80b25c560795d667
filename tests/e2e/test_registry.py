"""The civil registry's facts across the city: a birth, a death, a move (SIAK -> every service)."""

from __future__ import annotations

import hashlib
import random
from datetime import datetime, timedelta
from pathlib import Path

from tests.e2e.conftest import (
    DAY,
    WIB,
    City,
    elsewhere,
    newborn,
    payment_row,
    permit_body,
    residents,
    snapshot,
)

BORN = "dukcapil.citizen.born.v1"
SCHEDULED = "dinkes.immunisation.scheduled.v1"
SUSPENDED = "dinsos.assistance.suspended.v1"


def _file_bytes(folder: Path, pattern: str) -> bytes:
    """The bytes of a SQLite store's files (the database, its WAL and shared memory)."""
    return b"".join(p.read_bytes() for p in sorted(folder.glob(pattern)))


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


async def test_a_birth_registers_the_child_schedules_immunisation_and_grows_the_household(
    city: City, tmp_path: Path
) -> None:
    parent, other = residents(2, seed=101)
    grant_no = await city.grant(parent)  # parent's household receives assistance; other's not
    await city.settled()
    untouched = {name: await snapshot(city.store(name)) for name in ("bapenda", "notifier")}
    rechecks_before = await city.dinsos.rechecks(grant_no)

    rng = random.Random(101)
    child, other_child = newborn(rng, DAY - timedelta(days=6)), newborn(rng, DAY - timedelta(3))
    reg = city.registry
    published = await city.siak([reg.birth(child, parent), reg.birth(other_child, other)])
    assert published == 2
    await city.settled()

    # profile: the child is registered, in the family, at the family's kelurahan
    view = await city.profile.person(child.nik)
    assert view is not None
    sections = view["sections"]
    assert sections["registry"]["status"] == "registered"
    assert sections["family"]["kk"] == parent.kk
    assert sections["address"]["kelurahan"] == parent.kelurahan
    assert sections["address"]["source"] == "birth"

    # dinkes: a schedule at the puskesmas of the family's kecamatan, published once
    ref = city.child_ref(child.nik)
    schedule = await city.dinkes.schedule_of(ref)
    assert schedule is not None
    puskesmas = city.dinkes.puskesmas_serving(parent.kelurahan)
    assert schedule.puskesmas == puskesmas.code
    assert puskesmas.kecamatan == parent.kecamatan
    assert schedule.doses[0].due_on == child.born  # HB0 at birth
    assert len(schedule.doses) == 18
    assert await city.dinkes.schedule_of(city.child_ref(other_child.nik)) is not None
    scheduled = [f for _, f in await city.entries("dinkes.immunisation")]
    assert sorted(f["subject"] for f in scheduled) == sorted([ref, city.child_ref(other_child.nik)])
    # ... and no NIK or KK anywhere in its store
    dinkes_rows = repr(await snapshot(city.store("dinkes"), inbox=True))
    for secret in (child.nik, other_child.nik, parent.kk, other.kk, parent.nik):
        assert secret not in dinkes_rows
    raw = _file_bytes(tmp_path, "dinkes.db*")
    assert raw, "the dinkes store is a SQLite file in tmp_path"
    for secret in (child.nik, other_child.nik, parent.kk, other.kk):
        assert secret.encode() not in raw

    # dinsos: the child joins the household receiving assistance; a re-check is opened
    assert await city.dinsos.household_of(parent.kk) == sorted([parent.nik, child.nik])
    opened = [r for r in await city.dinsos.rechecks(grant_no) if r not in rechecks_before]
    assert [(r.kind, r.reason, r.status) for r in opened] == [
        ("re-verification", "member-born", "open")
    ]
    assert await city.dinsos.household_of(other.kk) == []  # no grant: dinsos keeps nothing

    # audit: both births and both schedules archived, metadata and digest only
    births = await city.audit.search(event_type=BORN, show_data=True, actor="e2e")
    assert len(births) == 2
    entries = {f["id"]: f for _, f in await city.entries("dukcapil.citizen") if f["type"] == BORN}
    for row in births:
        assert row["classification"] == "specific"
        assert row["data"] is None
        assert row["data_digest"] == _sha256(entries[row["event_id"]]["data"])
    schedules = await city.audit.search(event_type=SCHEDULED, show_data=True, actor="e2e")
    assert [(r["classification"], r["data"]) for r in schedules] == [("specific", None)] * 2

    # the services births do not concern are unchanged; nothing was dead-lettered
    for name, before in untouched.items():
        assert await snapshot(city.store(name)) == before, name
    assert await city.dead_letters() == {}


async def test_a_death_stops_assistance_opens_a_tax_review_closes_accounts_and_notices(
    city: City,
) -> None:
    dead, spouse, neighbour = residents(3, seed=202)
    await city.link(dead, neighbour)
    pkh = await city.grant(dead, "pkh")
    bpnt = await city.grant(dead, "bpnt", amount=200_000)
    # the spouse: same family card, a grant of their own
    spouse_grant = await city.grant(spouse, "bansos-daerah", kk=dead.kk, kelurahan=dead.kelurahan)
    permit = permit_body(dead, 7001, seed=202)
    assert (await city.post(permit)).status_code == 201
    await city.settled()
    [taxpayer] = await city.bapenda.taxpayers_by("nik", dead.nik)
    assert len(city.mail.messages) == 1  # the permit's e-mail, while alive
    untouched = await snapshot(city.store("dinkes"))
    assert sorted(await city.dinsos.household_of(dead.kk)) == sorted([dead.nik, spouse.nik])

    died_on = DAY - timedelta(days=2)
    before = datetime.now(WIB).date()  # the services date their decisions by Malang's today
    await city.death(dead, on=died_on)
    await city.settled()

    # dinsos: both grants suspended from the day after the death, one event each
    grants = {g.grant_no: g for g in await city.dinsos.grants_of(dead.nik)}
    assert set(grants) == {pkh, bpnt}
    for grant in grants.values():
        assert (grant.status, grant.reason and grant.reason.value) == ("suspended", "death")
        assert grant.effective_from == died_on + timedelta(days=1)
        assert before <= grant.suspended_on <= datetime.now(WIB).date()  # midnight may pass
    suspensions = [f for _, f in await city.entries("dinsos.assistance") if f["type"] == SUSPENDED]
    assert sorted(f["subject"] for f in suspensions) == sorted([pkh, bpnt])
    [spouse_view] = await city.dinsos.grants_of(spouse.nik)
    assert spouse_view.status == "active"
    assert await city.dinsos.household_of(dead.kk) == [spouse.nik]
    assert [(r.kind, r.reason) for r in await city.dinsos.rechecks(spouse_grant)] == [
        ("re-verification", "member-died")
    ]

    # profile: deceased, the suspensions seen, the account link closed
    view = await city.profile.person(dead.nik)
    assert view is not None
    sections = view["sections"]
    assert sections["registry"] == {"status": "deceased", "died_on": died_on.isoformat()}
    assistance = {a["grant_no"]: a for a in sections["assistance"]}
    assert set(assistance) == {pkh, bpnt}
    for grant in assistance.values():
        assert (grant["status"], grant["suspension_reason"]) == ("suspended", "death")
        assert grant["suspended_from"] == (died_on + timedelta(days=1)).isoformat()
    assert [link["closed_reason"] for link in sections["accounts"]["links"]] == ["death"]
    assert sections["accounts"]["current"] is None
    assert await city.profile.by_account(dead.account_id) is None
    assert await city.profile.by_account(neighbour.account_id) is not None

    # bapenda: the taxpayer's status is under review
    reviews = await city.bapenda.open_reviews(taxpayer.npwpd)
    assert [(r.reason, r.since, r.status) for r in reviews] == [("death", died_on, "open")]
    assert len(await city.bapenda.open_reviews()) == 1

    # notifier: a later payment of the deceased sends nothing; the neighbour's is mailed
    inbox_before = await city.notifier.inbox(dead.account_id)
    assert await city.pay([payment_row(dead, 1), payment_row(neighbour, 2)]) == 2
    await city.settled()
    assert [m["To"] for m in city.mail.messages] == [dead.email, neighbour.email]
    assert await city.notifier.inbox(dead.account_id) == inbox_before
    counts = await city.notifier.counts()
    assert counts["skipped:deceased"] == 1
    assert counts["notified"] == 2
    # ... though the tax position still shows the payment in the profile
    view = await city.profile.person(dead.nik)
    assert view is not None
    assert [a["status"] for a in view["sections"]["tax"]["assessments"]] == ["assessment-pending"]

    assert await snapshot(city.store("dinkes")) == untouched
    assert await city.dead_letters() == {}


async def test_a_move_follows_the_bills_rechecks_other_kecamatan_and_ignores_an_older_move(
    city: City,
) -> None:
    mover, stayer = residents(2, seed=303)
    mover_grant = await city.grant(mover)
    stayer_grant = await city.grant(stayer, "bpnt")
    permit = permit_body(mover, 7101, decided=DAY - timedelta(days=12), seed=303)
    assert (await city.post(permit)).status_code == 201
    await city.settled()
    [taxpayer] = await city.bapenda.taxpayers_by("nik", mover.nik)
    untouched = {name: await snapshot(city.store(name)) for name in ("dinkes", "notifier")}

    reg = city.registry
    destination = elsewhere(mover.kecamatan)
    new_line = "Jl. Danau Toba E5 No. 12, RT 007/RW 012, Malang"
    moved_on = DAY - timedelta(days=1)
    same_kecamatan = (
        f"{stayer.kecamatan}.1001"
        if stayer.kelurahan[-4:] != "1001"
        else (f"{stayer.kecamatan}.1002")
    )
    assert (
        await city.siak(
            [
                reg.move(mover, to=destination, on=moved_on, alamat=new_line),
                reg.move(
                    stayer,
                    to=same_kecamatan,
                    on=moved_on,
                    alamat="Jl. Kawi No. 3, RT 001/RW 002, Malang",
                ),
            ]
        )
        == 2
    )
    await city.settled()

    # bapenda: the bills go to the new address (a move gives street and kecamatan only)
    billing = await city.bapenda.billing_address(taxpayer.npwpd)
    assert billing is not None
    assert (billing.street, billing.kecamatan, billing.as_of) == (
        new_line,
        destination[:8],
        moved_on,
    )
    assert (billing.rt, billing.rw, billing.kelurahan) == (None, None, None)

    # dinsos: an area re-check for the move to another kecamatan, none within one
    assert [(r.kind, r.kecamatan, r.status) for r in await city.dinsos.rechecks(mover_grant)] == [
        ("area-recheck", destination[:8], "open")
    ]
    assert await city.dinsos.rechecks(stayer_grant, status=None) == []

    # profile: the new address
    view = await city.profile.person(mover.nik)
    assert view is not None
    address = view["sections"]["address"]
    assert (address["street"], address["kecamatan"], address["since"], address["source"]) == (
        new_line,
        destination[:8],
        moved_on.isoformat(),
        "move",
    )

    # an older move (recorded later in SIAK) changes nothing anywhere
    state = (
        billing,
        await city.dinsos.rechecks(status=None),
        address,
        await snapshot(city.store("bapenda")),
        await snapshot(city.store("dinsos")),
    )
    older = reg.move(
        mover,
        to=elsewhere(destination[:8]),
        on=DAY - timedelta(days=5),
        alamat="Jl. Ijen No. 99, RT 003/RW 004, Malang",
    )
    assert await city.siak([older]) == 1
    await city.settled()
    view = await city.profile.person(mover.nik)
    assert view is not None
    assert state == (
        await city.bapenda.billing_address(taxpayer.npwpd),
        await city.dinsos.rechecks(status=None),
        view["sections"]["address"],
        await snapshot(city.store("bapenda")),
        await snapshot(city.store("dinsos")),
    )
    for name, before in untouched.items():
        assert await snapshot(city.store(name)) == before, name
    assert await city.dead_letters() == {}
