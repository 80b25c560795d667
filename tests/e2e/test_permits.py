"""A permit issued through the licensing webhook, across the city; replays and redeliveries."""

from __future__ import annotations

import httpx

from bus import keys
from services.notifier.mail import message_id
from tests.e2e.conftest import (
    CITIZEN_APP_TOKEN,
    NOTIFIER_TOKEN,
    City,
    permit_body,
    residents,
    snapshot,
)

PERMITS = keys.stream("dpmptsp.permit")
REGISTERED = "bapenda.taxpayer.registered.v1"


async def test_a_permit_registers_a_taxpayer_shows_in_the_profile_and_mails_once(
    city: City,
) -> None:
    holder, business_owner = residents(2, seed=404)
    await city.link(holder, business_owner)
    await city.settled()
    untouched = {name: await snapshot(city.store(name)) for name in ("dinsos", "dinkes")}

    body = permit_body(holder, 7201, seed=404)
    business = permit_body(business_owner, 7202, kind="IZIN_USAHA", nib="9120045678901", seed=404)
    answer = await city.post(body)
    assert answer.status_code == 201, answer.text
    event_id = answer.json()["event_id"]
    assert (await city.post(business)).status_code == 201
    await city.settled()

    # bapenda: the holder is a reklame taxpayer, announced once on the bus
    permit_no = body["nomor_izin"]
    taxpayer = await city.bapenda.taxpayer_of(permit_no)
    assert taxpayer is not None
    assert (taxpayer.scheme, taxpayer.value, taxpayer.permits) == ("nik", holder.nik, (permit_no,))
    assert [k.value for k in taxpayer.tax_kinds] == ["reklame"]
    assert taxpayer.npwpd.startswith("P.")
    registered = [f for _, f in await city.entries("bapenda.taxpayer") if f["type"] == REGISTERED]
    assert len(registered) == 2  # the person's and the business's
    assert taxpayer.npwpd in {f["subject"] for f in registered}
    [business_taxpayer] = await city.bapenda.taxpayers_by("nib", "9120045678901")
    assert business_taxpayer.npwpd.startswith("B.")

    # profile: the NPWPD and the permit (the business is no person: not in any profile)
    view = await city.profile.person(holder.nik)
    assert view is not None
    tax = view["sections"]["tax"]
    assert [(t["npwpd"], t["tax_kinds"]) for t in tax["npwpd"]] == [(taxpayer.npwpd, ["reklame"])]
    [permit] = view["sections"]["permits"]
    assert (permit["application_no"], permit["status"], permit["permit_no"]) == (
        body["nomor_permohonan"],
        "issued",
        permit_no,
    )
    owner = await city.profile.person(business_owner.nik)
    assert owner is not None
    assert owner["sections"]["permits"] == []

    # notifier: exactly one e-mail, to the linked account's address, with its Message-ID
    [mail] = city.mail.messages
    assert mail["To"] == holder.email
    assert mail["Message-ID"] == message_id(event_id, holder.account_id)
    [notice] = await city.notifier.inbox(holder.account_id)
    assert (notice.event_id, notice.kind, mail["Subject"]) == (
        event_id,
        "permit-issued",
        notice.title,
    )
    assert await city.notifier.sent_mail() == [(event_id, holder.account_id)]
    assert (await city.notifier.counts()).get("skipped:business") == 1

    # the citizen app reads both over HTTP: the profile by account, the notifier's inbox
    async with httpx.AsyncClient() as client:
        answer = await client.get(
            f"{city.profile.service.http_url}/persons/by-account/{holder.account_id}",
            headers={"Authorization": f"Bearer {CITIZEN_APP_TOKEN}"},
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["sections"]["tax"]["npwpd"][0]["npwpd"] == taxpayer.npwpd
        answer = await client.get(
            f"{city.notifier.service.http_url}/accounts/{holder.account_id}/inbox",
            headers={"Authorization": f"Bearer {NOTIFIER_TOKEN}"},
        )
        assert answer.status_code == 200, answer.text
        assert [i["event_id"] for i in answer.json()["items"]] == [event_id]

    state = {name: await snapshot(city.store(name)) for name in ("bapenda", "profile", "notifier")}
    stream_lengths = {a: len(await city.entries(a)) for a in ("bapenda.taxpayer", "dpmptsp.permit")}

    # the licensing application POSTs the same decision again: a replay, nothing new
    again = await city.post(body)
    assert again.status_code == 200
    assert again.json() == {
        "event_id": event_id,
        "type": "dpmptsp.permit.issued.v1",
        "duplicate": True,
    }
    await city.settled()
    assert {a: len(await city.entries(a)) for a in stream_lengths} == stream_lengths

    # the bus delivers the permit again: the notifier's group re-reads the stream ...
    await city.redis.xgroup_setid(PERMITS, "notifier", "0")
    await city.settled()
    # ... and an operator replays the entry itself to every group (docs/services/notifier.md)
    [(_, fields)] = [(e, f) for e, f in await city.entries("dpmptsp.permit") if f["id"] == event_id]
    await city.redis.xadd(PERMITS, fields)  # type: ignore[arg-type]
    await city.settled()

    assert len(city.mail.messages) == 1
    for name, before in state.items():
        assert await snapshot(city.store(name)) == before, name
    assert len(await city.entries("bapenda.taxpayer")) == stream_lengths["bapenda.taxpayer"]
    archived = await city.audit.search(correlation=None, event_type="dpmptsp.permit.issued.v1")
    assert [r["event_id"] for r in archived].count(event_id) == 2  # two entries, two rows
    for name, before in untouched.items():
        assert await snapshot(city.store(name)) == before, name
    assert await city.dead_letters() == {}
