"""The webhook source over a real socket (uvicorn on a free loopback port) and a real Redis."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from bus import Publisher, keys
from bus.adapter import Record, record_event_id
from bus.adapter.quarantine import Quarantine
from bus.adapter.sources.webhook import Webhook, running, webhook_app
from bus.connection import connect
from bus.contracts import Contract
from bus.local.redis import EmbeddedRedis
from bus.testing import capture_logs
from schemas.dpmptsp import PermitRejected

SOURCE = "urn:malangkota:test:webhook"
STREAM = keys.stream("dpmptsp.permit")
NIK = "3573055708900003"
TOKEN = "a-long-enough-test-token"


def map_rejection(record: Record) -> Contract:
    data = record.data
    return PermitRejected.parse(
        {
            "application_no": data.get("no"),
            "kind": "pbg",
            "applicant": {"scheme": "nik", "value": data.get("nik")},
            "reason": "not-eligible",
            "rejected_on": data.get("on"),
        }
    )


def good(no: str = "PBG/2026/000001", **changes: Any) -> dict[str, Any]:
    return {"no": no, "rev": 1, "nik": NIK, "on": "2026-09-03", "name": "Siti Handayani", **changes}


def make(redis: Redis, **options: Any) -> Webhook:
    return Webhook(
        "test-hook",
        source_name="keputusan",
        mapper=map_rejection,
        publisher=Publisher(redis, source=SOURCE),
        quarantine=Quarantine(redis, "test-hook"),
        **{"key": "no", "version": "rev", **options},
    )


@pytest.fixture
async def url(redis: Redis) -> AsyncIterator[str]:
    async with running(make(redis, max_body=1024).app()) as base:
        yield base


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as http:
        yield http


def expected_id(data: dict[str, Any]) -> str:
    record = Record(str(data["no"]), str(data["rev"]), None, data)
    return record_event_id(SOURCE, "keputusan", record)


async def test_a_json_record_is_published_once_and_a_replay_answers_200(
    url: str, client: httpx.AsyncClient, redis: Redis
) -> None:
    first = await client.post(url, json=good())
    again = await client.post(url, json=good())

    assert first.status_code == 201
    assert first.json() == {
        "event_id": expected_id(good()),
        "duplicate": False,
        "type": "dpmptsp.permit.rejected.v1",
    }
    assert again.status_code == 200 and again.json()["duplicate"] is True
    entries = await redis.xrange(STREAM)
    assert [fields[b"id"].decode() for _, fields in entries] == [expected_id(good())]


async def test_a_form_record_maps_like_json_and_gets_the_same_event_id(
    url: str, client: httpx.AsyncClient, redis: Redis
) -> None:
    form = await client.post(url, data={k: str(v) for k, v in good().items()})
    as_json = await client.post(url, json=good())

    assert form.status_code == 201 and as_json.status_code == 200
    assert form.json()["event_id"] == as_json.json()["event_id"] == expected_id(good())
    latin1 = await client.post(
        url,
        content="no=PBG%2F2026%2F000002&rev=1&nik=3573055708900003&on=2026-09-03&name=Andr%E9",
        headers={"content-type": "application/x-www-form-urlencoded; charset=iso-8859-1"},
    )
    assert latin1.status_code == 201
    assert await redis.xlen(STREAM) == 2


@pytest.mark.parametrize(
    "case",
    [
        (b'{"no": "PBG/1", ', "application/json", 400, "not valid JSON"),
        (b'["PBG/1"]', "application/json", 400, "must be an object"),
        (b"\xff\xfe{}", "application/json", 400, "not valid text in charset utf-8"),
        (b"no=1&no=2", "application/x-www-form-urlencoded", 400, "more than once"),
        (b"<permohonan/>", "text/xml", 415, "application/json"),
        (b'{"no": "x"}', "", 415, "application/json"),
        (b"{}", "application/json; charset=klingon", 400, "charset klingon"),
    ],
)
async def test_a_malformed_body_is_refused_and_kept_then_the_next_one_flows(
    url: str, client: httpx.AsyncClient, redis: Redis, case: tuple[bytes, str, int, str]
) -> None:
    body, content_type, status, says = case
    headers = {"content-type": content_type} if content_type else {}
    answer = await client.post(url, content=body, headers=headers)

    assert answer.status_code == status
    assert says in answer.json()["error"] and answer.json()["quarantined"] is True
    entries = await Quarantine(redis, "test-hook").entries()
    assert len(entries) == 1 and entries[0].problems[0].field == "(body)"
    kept = json.loads(entries[0].raw)
    assert kept["content_type"] == content_type
    text = body.decode() if kept["body_encoding"] == "utf-8" else body.hex()
    assert kept["body"] == text
    # The same body sent again (the legacy app retries) is not kept twice.
    await client.post(url, content=body, headers=headers)
    assert await Quarantine(redis, "test-hook").count() == 1
    assert (await client.post(url, json=good())).status_code == 201


async def test_an_oversized_body_is_refused_unread_and_the_receiver_keeps_serving(
    url: str, client: httpx.AsyncClient, redis: Redis
) -> None:
    declared = await client.post(url, json=good(name="x" * 5000))

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: chunked encoding
        yield b'{"no": "PBG/2026/000001", "name": "'
        for _ in range(1000):
            yield b"x" * 1000
        yield b'"}'

    streamed = await client.post(
        url, content=chunks(), headers={"content-type": "application/json"}
    )

    for answer in (declared, streamed):
        assert answer.status_code == 413
        assert "at most 1024 bytes" in answer.json()["error"]
    assert await Quarantine(redis, "test-hook").count() == 0
    assert (await client.post(url, json=good())).status_code == 201
    assert await redis.xlen(STREAM) == 1


async def test_a_record_failing_its_contract_is_quarantined_with_field_problems_not_values(
    url: str, client: httpx.AsyncClient, redis: Redis
) -> None:
    bad = good(nik=NIK[:15], on="2099-01-01")
    with capture_logs() as logs:
        answer = await client.post(url, json=bad)
        no_key = await client.post(url, json=good(no=""))

    assert answer.status_code == 422
    fields = {p["field"] for p in answer.json()["problems"]}
    assert fields == {"applicant.value", "rejected_on"}
    assert NIK[:15] not in answer.text and "Siti" not in answer.text
    assert no_key.status_code == 422 and no_key.json()["problems"][0]["field"] == "(record)"
    entries = await Quarantine(redis, "test-hook").entries()
    assert [e.record_key for e in entries] == ["PBG/2026/000001", ""]
    assert json.loads(entries[0].raw) == bad
    assert entries[0].event_id == expected_id(bad)
    text = json.dumps(logs, default=str)
    assert NIK[:15] not in text and "Siti" not in text
    assert [log["event"] for log in logs if log["event"].startswith("webhook_")] == [
        "webhook_received",
        "webhook_rejected",
        "webhook_received",
        "webhook_rejected",
    ]
    assert await redis.xlen(STREAM) == 0
    assert (await client.post(url, json=good())).status_code == 201


async def test_the_same_key_and_version_with_other_data_is_a_conflict_not_a_duplicate(
    url: str, client: httpx.AsyncClient, redis: Redis
) -> None:
    assert (await client.post(url, json=good())).status_code == 201
    changed = await client.post(url, json=good(on="2026-09-04"))
    bumped = await client.post(url, json=good(on="2026-09-04", rev=2))

    assert changed.status_code == 409
    assert "bump the record's version" in changed.json()["problems"][0]["problem"]
    assert bumped.status_code == 201
    assert await redis.xlen(STREAM) == 2
    assert await Quarantine(redis, "test-hook").count() == 1


async def test_on_an_intake_a_conflict_is_seen_after_the_router_trimmed_the_first(
    redis: Redis, client: httpx.AsyncClient
) -> None:
    """Routed delivery: the router admits and trims an intake's entries within seconds, so
    the first publish is gone when its resend comes; the digest beside the dedupe marker
    still tells a replay (200) from other data under the same key and version (409)."""
    intake = keys.intake("adapter-dpmptsp")
    hook = Webhook(
        "test-hook",
        source_name="keputusan",
        mapper=map_rejection,
        publisher=Publisher(redis, source=SOURCE, intake="adapter-dpmptsp"),
        quarantine=Quarantine(redis, "test-hook"),
        key="no",
        version="rev",
    )
    async with running(hook.app()) as url:
        assert (await client.post(url, json=good())).status_code == 201
        [(entry_id, _)] = await redis.xrange(intake)
        await redis.xdel(intake, entry_id)  # what the router's trim does once it admitted it
        replay = await client.post(url, json=good())
        changed = await client.post(url, json=good(on="2026-09-04"))

    assert replay.status_code == 200 and replay.json()["duplicate"] is True
    assert changed.status_code == 409
    assert await Quarantine(redis, "test-hook").count() == 1
    assert await redis.xlen(intake) == 0


async def test_a_bearer_token_is_required_when_configured(
    redis: Redis, client: httpx.AsyncClient
) -> None:
    with capture_logs() as logs:
        async with running(make(redis, token=TOKEN).app(path="/keputusan")) as base:
            url = f"{base}/keputusan"
            missing = await client.post(url, json=good())
            wrong = await client.post(url, json=good(), headers={"authorization": "Bearer nope"})
            auth = {"authorization": f"Bearer {TOKEN}"}
            right = await client.post(url, json=good(), headers=auth)

    assert missing.status_code == wrong.status_code == 401
    refused = [e for e in logs if e["event"] == "webhook_rejected"]
    assert [(e["status"], e["client"]) for e in refused] == [(401, "127.0.0.1")] * 2
    assert all(TOKEN not in str(e) and "nope" not in str(e) for e in logs)
    assert missing.headers["www-authenticate"] == "Bearer"
    assert right.status_code == 201
    assert await Quarantine(redis, "test-hook").count() == 0
    assert await redis.xlen(STREAM) == 1


@pytest.fixture
def hook_on_private_redis(private_redis: EmbeddedRedis) -> Iterator[tuple[EmbeddedRedis, Redis]]:
    yield private_redis, connect(private_redis.url)


@pytest.mark.slow
async def test_redis_down_answers_503_with_retry_after_and_never_2xx(
    hook_on_private_redis: tuple[EmbeddedRedis, Redis], client: httpx.AsyncClient
) -> None:
    server, redis = hook_on_private_redis
    async with running(make(redis).app()) as url:
        assert (await client.get(f"{url}/healthz")).status_code == 200
        server.kill()
        answers = [await client.post(url, json=good(no=f"PBG/2026/00000{i}")) for i in range(3)]
        health = await client.get(f"{url}/healthz")
        bad = await client.post(url, json=good(nik="1"))  # would be quarantined: can't be now
        server.start()
        after = await client.post(url, json=good(no="PBG/2026/000001"))

    assert [a.status_code for a in answers] == [503, 503, 503]
    assert all(a.headers["retry-after"] == "5" for a in answers)
    assert answers[0].json()["quarantined"] is False
    assert health.status_code == 503 and bad.status_code == 503
    assert after.status_code == 201
    assert await redis.xlen(STREAM) == 1
    await redis.aclose()


async def test_webhook_app_and_in_process_transport(redis: Redis) -> None:
    app = webhook_app(
        adapter_name="test-hook",
        source_name="keputusan",
        mapper=map_rejection,
        publisher=Publisher(redis, source=SOURCE),
        quarantine=Quarantine(redis, "test-hook"),
        key=("no",),
        version=lambda d: d["rev"],
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://hook") as http:
        created = await http.post("/", json=good())
        missing_version = await http.post("/", json={k: v for k, v in good().items() if k != "rev"})
        health = await http.get("/healthz")
        wrong_method = await http.get("/")

    assert created.json()["event_id"] == expected_id(good())
    assert missing_version.status_code == 422
    assert health.json() == {"status": "ok", "adapter": "test-hook"}
    assert wrong_method.status_code == 405


@pytest.mark.parametrize(
    "case",
    [
        ("[" * 20_000 + "]" * 20_000, "too_deep", "nests deeper than 32"),
        ('{"a": ' * 33 + "1" + "}" * 33, "too_deep", "nests deeper than 32"),
        ('{"no": "x", "rev": ' + "9" * 5_000 + "}", "number_too_long", "more than 64 digits"),
        ('{"no": "x", "rev": 1' + "0" * 5_000 + ".5}", "number_too_long", "more than 64 digits"),
        ('{"no": "x", "rev": NaN}', "bad_json", "NaN"),
    ],
)
async def test_a_body_json_cannot_hold_is_a_400_quarantined_and_no_traceback_is_logged(
    redis: Redis,
    client: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    case: tuple[str, str, str],
) -> None:
    body, reason, says = case
    with capture_logs() as logs:
        async with running(make(redis, max_body=64 * 1024).app()) as url:
            answer = await client.post(
                url, content=body, headers={"content-type": "application/json"}
            )
            after = await client.post(url, json=good())

    assert answer.status_code == 400, answer.text
    assert says in answer.json()["error"] and answer.json()["quarantined"] is True
    entries = await Quarantine(redis, "test-hook").entries()
    assert len(entries) == 1 and json.loads(entries[0].raw)["body"] == body
    assert {"status": 400, "reason": reason} in [
        {"status": e.get("status"), "reason": e.get("reason")}
        for e in logs
        if e["event"] == "webhook_rejected"
    ]
    assert after.status_code == 201
    # A server error would reach uvicorn's logger with the traceback as text.
    assert not [r for r in caplog.records if r.exc_info], caplog.text
    assert "Traceback" not in caplog.text + capfd.readouterr().err


async def test_a_record_keyed_by_a_nik_is_logged_without_it(
    redis: Redis, client: httpx.AsyncClient
) -> None:
    """A legacy application may key its records by a person's NIK: the logs mask it."""
    with capture_logs() as logs:
        async with running(make(redis, key="nik").app()) as url:
            published = await client.post(url, json=good())
            refused = await client.post(url, json={**good(rev=2), "no": None})  # no application_no
    assert published.status_code == 201 and refused.status_code == 422
    keyed = [e for e in logs if "record_key" in e]
    assert {e["event"] for e in keyed} == {"webhook_published", "webhook_rejected"}
    assert all(e["record_key"] == "***" for e in keyed)
    assert NIK not in str(logs)
