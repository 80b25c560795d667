"""The licensing (DPMPTSP) webhook adapter end to end: real uvicorn socket, real Redis."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from adapters import dpmptsp
from adapters.dpmptsp.fixtures import as_form, payloads
from bus import ConfigurationError, event_id, keys
from bus.adapter.quarantine import Quarantine
from bus.adapter.sources.webhook import running
from bus.contracts import Contract
from bus.testing import capture_logs
from schemas.dpmptsp import PermitApplied, PermitIssued, PermitKind, PermitRejected

STREAM = keys.stream("dpmptsp.permit")
TOKEN = "dpmptsp-test-token-0123"
AUTH = {"authorization": f"Bearer {TOKEN}"}
FORM = {"content-type": "application/x-www-form-urlencoded"}


@pytest.fixture
async def url(redis: Redis) -> AsyncIterator[str]:
    async with running(dpmptsp.webhook(redis, token=TOKEN).app()) as base:
        yield base


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10, headers=AUTH) as http:
        yield http


async def post(client: httpx.AsyncClient, url: str, payload: dict[str, Any], *, form: bool) -> int:
    if form:
        return (await client.post(url, content=as_form(payload), headers=FORM)).status_code
    return (await client.post(url, json=payload)).status_code


def of(status: str, seed: int = 1) -> dict[str, Any]:
    return next(p for p in payloads(100, seed=seed) if p["status_permohonan"] == status)


async def test_every_decision_is_published_once_as_json_or_form(
    url: str, client: httpx.AsyncClient, redis: Redis
) -> None:
    data = list(payloads(40, seed=7))
    statuses = [await post(client, url, p, form=i % 2 == 1) for i, p in enumerate(data)]
    # The application retries the lot (say it lost our answers), switching encodings.
    replays = [await post(client, url, p, form=i % 2 == 0) for i, p in enumerate(data)]

    assert statuses == [201] * 40 and replays == [200] * 40
    entries = await redis.xrange(STREAM)
    ids = [fields[b"id"].decode() for _, fields in entries]
    assert ids == [dpmptsp.map_payload(p)[1] for p in data]
    types = {fields[b"type"].decode() for _, fields in entries}
    assert types == {
        "dpmptsp.permit.applied.v1",
        "dpmptsp.permit.issued.v1",
        "dpmptsp.permit.rejected.v1",
    }
    times = {fields[b"time"].decode() for _, fields in entries}
    assert all(t.endswith("T03:15:00.000Z") for t in times)  # 10:15 WIB


def bad_payloads() -> list[dict[str, Any]]:
    base = list(payloads(6, seed=3, first_no=900))
    return [
        {**base[0], "nik_pemohon": base[0]["nik_pemohon"][:15], "nib": ""},  # truncated NIK
        {**base[1], "status_permohonan": "DIBATALKAN"},  # a status this adapter does not know
        {**base[2], "jenis_izin": "IZIN_USAHA", "nib": ""},  # a business permit without NIB
        {**base[3], "revisi": ""},  # no version: no stable event id
        {**of("TERBIT"), "nomor_permohonan": base[4]["nomor_permohonan"], "nomor_izin": ""},
    ]


async def test_bad_decisions_are_quarantined_with_reasons_while_the_rest_flow(
    url: str, client: httpx.AsyncClient, redis: Redis
) -> None:
    good = list(payloads(10, seed=5))
    with capture_logs() as logs:
        answers = [await client.post(url, json=p) for p in [*good[:5], *bad_payloads(), *good[5:]]]

    codes = [a.status_code for a in answers]
    assert codes == [201] * 5 + [422] * 5 + [201] * 5
    problems = [{p["field"] for p in a.json()["problems"]} for a in answers[5:10]]
    assert problems == [
        {"applicant.value"},
        {"(record)"},
        {"applicant"},
        {"(record)"},
        {"permit_no"},
    ]
    assert "DIAJUKAN, TERBIT, DITOLAK" in answers[6].json()["problems"][0]["problem"]
    entries = await Quarantine(redis, dpmptsp.NAME).entries()
    assert len(entries) == 5
    assert json.loads(entries[0].raw) == bad_payloads()[0]
    assert await redis.xlen(STREAM) == 10
    text = json.dumps(logs, default=str) + "".join(a.text for a in answers)
    for payload in bad_payloads():
        assert payload["nik_pemohon"] not in text and payload["nama_pemohon"] not in text


class FixedMapper(dpmptsp.SicantikMapper):
    """After a (hypothetical) fix: DIBATALKAN (withdrawn) turns out to mean not eligible."""

    def map(self, payload: Any) -> Contract:
        if payload.get("status_permohonan") == "DIBATALKAN":
            return self.rejected({**payload, "kode_alasan_penolakan": "TIDAK_MEMENUHI_SYARAT"})
        return super().map(payload)


async def test_quarantine_retry_publishes_what_a_fixed_mapper_maps(
    url: str, client: httpx.AsyncClient, redis: Redis
) -> None:
    for payload in bad_payloads()[:2]:
        await client.post(url, json=payload)
    hook = dpmptsp.webhook(redis, token=TOKEN)

    outcomes = await hook.quarantine.retry_all(mapper=FixedMapper(), publisher=hook.publisher)

    assert [o.published for o in outcomes] == [False, True]
    entries = await redis.xrange(STREAM)
    assert [f[b"id"].decode() for _, f in entries] == [expected_id(bad_payloads()[1])]
    assert await Quarantine(redis, dpmptsp.NAME).count() == 1


def expected_id(payload: dict[str, Any]) -> str:
    """The id without mapping (map_payload raises for a payload that does not map)."""
    version = dpmptsp.version_of(payload)
    return event_id(dpmptsp.SOURCE, dpmptsp.SOURCE_NAME, payload["nomor_permohonan"], version)


async def test_the_webhook_refuses_without_its_token(url: str, redis: Redis) -> None:
    async with httpx.AsyncClient() as anonymous:
        answer = await anonymous.post(url, json=of("TERBIT"))
    assert answer.status_code == 401
    assert await redis.xlen(STREAM) == 0


def test_from_env_needs_a_token(redis: Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(dpmptsp.TOKEN_ENV, raising=False)
    with pytest.raises(ConfigurationError, match=dpmptsp.TOKEN_ENV):
        dpmptsp.from_env(redis)
    monkeypatch.setenv(dpmptsp.TOKEN_ENV, TOKEN)
    assert dpmptsp.from_env(redis).name == dpmptsp.NAME


def test_the_mapper_reads_the_applications_formats() -> None:
    issued = {
        **of("TERBIT"),
        "jenis_izin": "pbg",
        "retribusi": "4.750.000",
        "nib": "",
        "tanggal_keputusan": "12/09/2026",
        "masa_berlaku_sampai": "",
    }
    event, event_id = dpmptsp.map_payload(issued)
    assert isinstance(event, PermitIssued)
    assert (event.kind, event.retribution, event.valid_until) == (PermitKind.PBG, 4_750_000, None)
    assert event.issued_on.isoformat() == "2026-09-12"
    assert event.applicant.scheme == "nik"
    assert event_id == dpmptsp.map_payload({**issued, "catatan": "dicek ulang"})[1]
    assert event_id != dpmptsp.map_payload({**issued, "revisi": 2})[1]

    applied, _ = dpmptsp.map_payload({**of("DIAJUKAN"), "nib": "9120001234567"})
    assert isinstance(applied, PermitApplied) and applied.applicant.scheme == "nib"
    rejected, _ = dpmptsp.map_payload(
        {**of("DITOLAK"), "kode_alasan_penolakan": "tidak_sesuai_rdtr"}
    )
    assert isinstance(rejected, PermitRejected) and rejected.reason == "zoning-mismatch"


def test_the_fixtures_are_reproducible_and_valid() -> None:
    assert list(payloads(50, seed=9)) == list(payloads(50, seed=9))
    assert list(payloads(5, seed=9)) != list(payloads(5, seed=10))
    numbers = [p["nomor_permohonan"] for p in payloads(500, seed=1)]
    assert len(set(numbers)) == 500
    for payload in payloads(500, seed=1):
        dpmptsp.map_payload(payload)  # raises if one does not map
