"""The profile's HTTP API, served by the running service: tokens, roles, sections, errors."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from bus import ConfigurationError, Settings
from bus.http import running
from bus.store import Store
from bus.testing import capture_logs, quick_settings
from services.profile import Policy, Profile, RateLimit, Tokens, create
from services.profile.policy import SECTIONS
from tests.services.test_profile import (
    ACCOUNT,
    NIK,
    OTHER_ACCOUNT,
    Feed,
    applied,
    assessed,
    card,
    granted,
    linked,
    moved,
    paid,
    registered,
)

TOKENS = {
    "citizen-app": "citizen-app-token-7f3a9c",
    "dinsos": "dinsos-token-0b6e11d2",
    "bapenda": "bapenda-token-5c8d2e90",
    "dinkes": "dinkes-token-a1f4b7c3",
    "dpmptsp": "dpmptsp-token-9e2d6a15",
    "notifier": "notifier-token-4b7e9f20",
    "operator": "operator-token-c3d8e1a6",
    "auditor": "auditor-token-8f1c5b3d",
}
ALL = set(SECTIONS)
# What each role may do, written out here (not read from roles.json) so that a change of the
# shipped policy shows up as a failing test to review.
MAY: dict[str, tuple[set[str], set[str]]] = {
    "citizen-app": ({"by-account"}, ALL),
    "dinsos": ({"by-nik"}, {"registry", "address", "family", "assistance"}),
    "bapenda": ({"by-nik"}, {"registry", "address", "tax"}),
    "dinkes": ({"by-nik"}, {"registry", "address"}),  # no member NIKs (children's)
    "dpmptsp": ({"by-nik"}, {"registry", "address", "permits"}),
    "notifier": ({"by-nik"}, {"registry", "accounts"}),
    "operator": ({"by-nik", "by-account"}, {"registry", "accounts"}),
    "auditor": (set(), set()),
}
UNKNOWN_NIK = "3573014107780004"


def bearer(role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[role]}"}


@pytest.fixture
async def profile(redis_url: str, redis: Redis, tmp_path: Path) -> AsyncIterator[Profile]:
    """The service running with its API on a free port, knowing one person in every section."""
    settings = quick_settings(redis_url, http="127.0.0.1:0")
    tokens = ",".join(f"{role}={token}" for role, token in TOKENS.items())
    store = Store(f"sqlite:///{tmp_path / 'profile.db'}")
    profile = Profile(store, settings=settings, tokens=tokens, pseudonym_key=b"test-key")
    async with profile.service.running():
        await Feed(redis, profile)(
            moved(), card(), applied(), registered(), assessed(), paid(), granted(), linked()
        )
        yield profile


@pytest.fixture
async def client(profile: Profile) -> AsyncIterator[httpx.AsyncClient]:
    assert profile.service.http_url is not None
    async with httpx.AsyncClient(base_url=profile.service.http_url, timeout=10) as http:
        yield http


async def lookup(client: httpx.AsyncClient, kind: str, role: str | None) -> httpx.Response:
    """A lookup as the docs show it: a NIK in a POST body, an account id in the path."""
    headers = bearer(role) if role else {}
    if kind == "by-nik":
        return await client.post("/persons/by-nik", json={"nik": NIK}, headers=headers)
    return await client.get(f"/persons/by-account/{ACCOUNT}", headers=headers)


async def test_a_nik_in_the_path_gets_the_same_answer_and_is_logged_without_it(
    client: httpx.AsyncClient,
) -> None:
    """GET /persons/by-nik/{nik} stays for existing clients; the log names the client that
    still puts a NIK into URLs (proxies and access logs write them down), never the NIK."""
    posted = await lookup(client, "by-nik", "dinsos")
    with capture_logs() as logs:
        in_path = await client.get(f"/persons/by-nik/{NIK}", headers=bearer("dinsos"))
    assert in_path.status_code == posted.status_code == 200
    assert in_path.json() == posted.json()
    assert [e["event"] for e in logs].count("profile_nik_in_url") == 1
    assert NIK not in repr(logs)


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        (b"not json " + NIK.encode(), 400, "bad-body-bad-json"),
        (b'{"nik": "' + NIK.encode() + b'"' + b" " * 2000 + b"}", 413, "bad-body-too-large"),
        (b'{"id": "' + NIK.encode() + b'"}', 422, "malformed-body"),
        (b'["' + NIK.encode() + b'"]', 422, "malformed-body"),
        (b'{"nik": 3573051708850003}', 422, "malformed-body"),
        (b'{"nik": "3573051708850000"}', 422, "malformed-nik"),
    ],
)
async def test_a_posted_body_that_is_no_nik_is_refused_without_quoting_it(
    client: httpx.AsyncClient, body: bytes, status: int, error: str
) -> None:
    headers = {**bearer("dinsos"), "content-type": "application/json"}
    response = await client.post("/persons/by-nik", content=body, headers=headers)
    assert response.status_code == status
    assert response.json()["error"] == error
    assert NIK not in response.text and "3573051708850000" not in response.text


async def test_a_role_without_the_lookup_is_refused_before_its_body_is_read(
    client: httpx.AsyncClient,
) -> None:
    headers = {**bearer("citizen-app"), "content-type": "application/json"}
    response = await client.post("/persons/by-nik", content=b"not json", headers=headers)
    assert response.status_code == 403
    assert (await client.post("/persons/by-nik", json={"nik": NIK})).status_code == 401


@pytest.mark.parametrize("role", list(MAY))
async def test_each_role_sees_only_its_sections(client: httpx.AsyncClient, role: str) -> None:
    lookups, visible = MAY[role]
    for kind in ("by-nik", "by-account"):
        response = await lookup(client, kind, role)
        if kind not in lookups:
            assert response.status_code == 403, kind
            assert response.json()["error"] == "forbidden"
            assert NIK not in response.text
            continue
        assert response.status_code == 200, kind
        body = response.json()
        assert body["nik"] == NIK
        for section in SECTIONS:  # the matrix: roles x sections
            assert (section in body["sections"]) == (section in visible), (role, section)
            assert (section in body["withheld"]) == (section not in visible), (role, section)
            if section in visible:
                assert body["sections"][section], (role, section)  # this person has each


async def test_the_policy_shipped_is_the_one_tested() -> None:
    roles = Policy.load().roles
    assert {name: (set(r.lookups), set(r.sections)) for name, r in roles.items()} == MAY
    assert [name for name, r in roles.items() if r.access_records] == ["auditor"]


async def test_the_citizen_app_gets_everything_of_the_account_holder(
    client: httpx.AsyncClient, profile: Profile
) -> None:
    response = await lookup(client, "by-account", "citizen-app")
    assert response.json() == {**(await profile.by_account(ACCOUNT) or {}), "withheld": []}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": f"Basic {TOKENS['dinsos']}"},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer dinsos-token-0b6e11d3"},  # one character off
        {"Authorization": f"Bearer {TOKENS['dinsos']}x"},
        {"Authorization": f"Bearer {TOKENS['dinsos'][:-1]}"},
    ],
    ids=["none", "basic", "empty", "wrong", "longer", "shorter"],
)
async def test_a_missing_or_wrong_token_gets_401(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    for path in (f"/persons/by-nik/{NIK}", f"/persons/by-account/{ACCOUNT}", "/access-records"):
        response = await client.get(path, headers=headers)
        assert response.status_code == 401, path
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert NIK not in response.text


async def test_an_unknown_person_or_account_gets_404(client: httpx.AsyncClient) -> None:
    response = await client.get(f"/persons/by-nik/{UNKNOWN_NIK}", headers=bearer("dinsos"))
    assert (response.status_code, response.json()["error"]) == (404, "not-found")
    assert UNKNOWN_NIK not in response.text
    response = await client.get(
        f"/persons/by-account/{OTHER_ACCOUNT}", headers=bearer("citizen-app")
    )
    assert (response.status_code, response.json()["error"]) == (404, "not-found")


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        ("357305170885000", "a NIK has exactly 16 digits"),
        ("35730517088500031", "a NIK has exactly 16 digits"),
        ("3573051713850003", "NIK digits 9-10 (birth month) must be 01-12"),
        ("9973051708850003", "NIK digits 1-2 are not a known province code"),
        ("3573051708850000", "NIK digits 13-16 (serial) must not be 0000"),
        ("35730517O8850003", "a NIK has ASCII digits 0-9 only"),
        ("3573051708850\u066003", "a NIK has ASCII digits 0-9 only"),  # an Arabic-Indic zero
    ],
)
async def test_a_malformed_nik_gets_422_naming_the_rule_not_the_value(
    client: httpx.AsyncClient, value: str, rule: str
) -> None:
    response = await client.get(f"/persons/by-nik/{value}", headers=bearer("dinsos"))
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "malformed-nik"
    assert body["detail"].startswith(rule)
    assert value not in response.text
    assert value[:12] not in response.text


async def test_a_malformed_account_id_gets_422(client: httpx.AsyncClient) -> None:
    response = await client.get("/persons/by-account/not-a-uuid-at-all", headers=bearer("operator"))
    assert response.status_code == 422
    assert response.json() == {
        "error": "malformed-account",
        "detail": "an account id is a UUID: 32 hex digits as 8-4-4-4-12",
    }


async def test_a_role_is_checked_before_the_identifier(client: httpx.AsyncClient) -> None:
    response = await client.get("/persons/by-nik/123", headers=bearer("citizen-app"))
    assert response.status_code == 403


async def test_no_nik_or_account_id_reaches_the_logs(client: httpx.AsyncClient) -> None:
    with capture_logs() as logs:
        for role in MAY:
            for kind in ("by-nik", "by-account"):
                await lookup(client, kind, role)
        await client.get(f"/persons/by-nik/{UNKNOWN_NIK}", headers=bearer("dinsos"))
        await client.get(f"/persons/by-nik/{NIK[:-1]}", headers=bearer("dinsos"))
        await client.get(f"/persons/by-nik/{NIK}")
    text = repr(logs)
    assert [e["outcome"] for e in logs if e["event"] == "profile_lookup"].count(200) == 8
    for secret in (NIK, UNKNOWN_NIK, NIK[:-1], ACCOUNT, *TOKENS.values()):
        assert secret not in text


async def test_every_lookup_leaves_an_access_record_by_pseudonym(
    client: httpx.AsyncClient, profile: Profile
) -> None:
    await lookup(client, "by-nik", "dinsos")
    await lookup(client, "by-account", "citizen-app")
    await lookup(client, "by-nik", "citizen-app")  # forbidden: recorded too, without subject
    await client.get(f"/persons/by-nik/{UNKNOWN_NIK}", headers=bearer("bapenda"))
    assert (await client.get("/access-records", headers=bearer("operator"))).status_code == 403
    response = await client.get("/access-records?limit=10", headers=bearer("auditor"))
    assert response.status_code == 200
    records = response.json()["records"]
    subject = profile.subject_of(NIK)
    got = [(r["caller"].split("#")[0], r["lookup"], r["subject"], r["outcome"]) for r in records]
    assert got == [
        ("bapenda", "by-nik", profile.subject_of(UNKNOWN_NIK), 404),
        ("citizen-app", "by-nik", None, 403),
        ("citizen-app", "by-account", subject, 200),
        ("dinsos", "by-nik", subject, 200),
    ]
    assert records[-1]["sections"] == ["registry", "address", "family", "assistance"]
    assert NIK not in response.text and ACCOUNT not in response.text
    stored = await profile.store.run(lambda tx: tx.all("SELECT * FROM profile_access"))
    assert NIK not in json.dumps(stored)
    bad = await client.get("/access-records?limit=0", headers=bearer("auditor"))
    assert bad.status_code == 422


async def test_nothing_is_disclosed_while_the_store_is_down(
    client: httpx.AsyncClient, profile: Profile
) -> None:
    await profile.store.close()
    response = await lookup(client, "by-nik", "dinsos")
    assert (response.status_code, response.json()["error"]) == (503, "unavailable")
    assert NIK not in response.text
    response = await client.get("/access-records", headers=bearer("auditor"))
    assert response.status_code == 503


# -- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("dinsos", "entry 1 is not role=token"),
        ("dinsos=short-token", "at least 16 characters"),
        ("mayor=a-long-enough-token-1", "unknown role 'mayor'"),
        (
            "dinsos=a-long-enough-token-1,bapenda=a-long-enough-token-1",
            "entry 2: token given twice",
        ),
    ],
)
def test_bad_tokens_stop_the_service_without_showing_a_token(text: str, problem: str) -> None:
    with pytest.raises(ConfigurationError, match=problem) as caught:
        Tokens.parse(Policy.load(), text)
    for token in ("short-token", "a-long-enough-token-1"):
        assert token not in str(caught.value)


def test_a_policy_naming_an_unknown_section_is_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"unknown sections \['medical'\]"):
        Policy.parse({"roles": {"dinkes": {"lookups": ["by-nik"], "sections": ["medical"]}}})


def test_tokens_with_spaces_and_several_per_role() -> None:
    tokens = Tokens.parse(Policy.load(), " dinsos = 0123456789abcdef , dinsos=fedcba9876543210 ,")
    first, second = tokens.authenticate("0123456789abcdef"), tokens.authenticate("fedcba9876543210")
    assert first is not None and second is not None
    assert first.role.name == second.role.name == "dinsos"
    assert first.name != second.name  # the token's fingerprint tells them apart
    assert tokens.authenticate("0123456789abcdeF") is None


async def test_create_reads_its_configuration_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, settings: Settings
) -> None:
    monkeypatch.setenv("SIMPUL_PROFILE_DB", f"sqlite:///{tmp_path / 'env.db'}")
    monkeypatch.setenv("SIMPUL_PROFILE_TOKENS", f"dinsos={TOKENS['dinsos']}")
    service = create()
    assert service.name == "profile"
    assert service.http_app is not None
    transport = httpx.ASGITransport(app=service.http_app)
    service.settings = settings
    async with (
        service.running(),
        httpx.AsyncClient(transport=transport, base_url="http://profile") as http,
    ):
        response = await http.get(f"/persons/by-nik/{NIK}", headers=bearer("dinsos"))
    assert response.status_code == 404  # a fresh store, a valid token


@contextlib.asynccontextmanager
async def limited(
    redis_url: str, tmp_path: Path, rate: RateLimit
) -> AsyncIterator[tuple[Profile, httpx.AsyncClient]]:
    """The service running with its API and ``rate`` per token, and a client for it."""
    settings = quick_settings(redis_url, http="127.0.0.1:0")
    tokens = ",".join(f"{role}={token}" for role, token in TOKENS.items())
    store = Store(f"sqlite:///{tmp_path / 'profile.db'}")
    profile = Profile(store, settings=settings, tokens=tokens, pseudonym_key=b"k", rate=rate)
    async with profile.service.running():
        assert profile.service.http_url is not None
        async with httpx.AsyncClient(base_url=profile.service.http_url, timeout=10) as http:
            yield profile, http


async def test_a_token_past_its_burst_gets_429_with_retry_after_and_others_go_on(
    redis_url: str, redis: Redis, tmp_path: Path
) -> None:
    with capture_logs() as logs:
        async with limited(redis_url, tmp_path, RateLimit(per_minute=60, burst=3)) as (p, http):
            await Feed(redis, p)(moved())
            path = f"/persons/by-nik/{NIK}"
            first = [await http.get(path, headers=bearer("dinsos")) for _ in range(3)]
            unknown = f"/persons/by-nik/{UNKNOWN_NIK}"
            over = [await http.get(unknown, headers=bearer("dinsos")) for _ in range(3)]
            other = await http.get(path, headers=bearer("bapenda"))
            await asyncio.sleep(float(over[0].headers["retry-after"]))
            later = await http.get(path, headers=bearer("dinsos"))
            metrics = (await http.get("/metrics")).text

    assert [r.status_code for r in first] == [200, 200, 200]
    assert [r.status_code for r in over] == [429, 429, 429]
    assert over[0].headers["retry-after"] == "1"
    assert over[0].json() == {
        "error": "rate-limited",
        "detail": "this token may make 3 requests at once and 60 a minute; retry in 1 s",
    }
    assert other.status_code == 200 and later.status_code == 200
    limited_logs = [e for e in logs if e["event"] == "profile_rate_limited"]
    assert len(limited_logs) == 1  # once per episode; the metric counts each refusal
    assert limited_logs[0]["client"] == "127.0.0.1" and limited_logs[0]["role"] == "dinsos"
    fingerprint = limited_logs[0]["token"]
    assert TOKENS["dinsos"] not in str(logs) and NIK not in str(logs) + metrics
    assert (
        'simpul_profile_lookups_total{lookup="by-nik",outcome="429",role="dinsos",'
        f'service="profile",token="{fingerprint}"}} 3.0'
    ) in metrics
    assert (
        'simpul_profile_lookups_total{lookup="by-nik",outcome="200",role="dinsos",'
        f'service="profile",token="{fingerprint}"}} 4.0'
    ) in metrics


async def test_replicas_sharing_the_store_share_each_tokens_limit(tmp_path: Path) -> None:
    tokens = f"dinsos={TOKENS['dinsos']}"
    rate = RateLimit(per_minute=0.01, burst=4)  # no refill within the test
    url = f"sqlite:///{tmp_path / 'profile.db'}"
    replicas = [
        Profile(
            Store(url), settings=quick_settings(None), tokens=tokens, pseudonym_key=b"k", rate=rate
        )
        for _ in range(2)
    ]
    for replica in replicas:
        await replica.open()
    async with (
        running(replicas[0].app) as one,
        running(replicas[1].app) as two,
        httpx.AsyncClient(timeout=10, headers=bearer("dinsos")) as http,
    ):
        path = f"/persons/by-nik/{UNKNOWN_NIK}"
        answers = [await http.get(f"{base}{path}") for base in (one, two) * 4]
    for replica in replicas:
        await replica.store.close()

    assert [a.status_code for a in answers] == [404] * 4 + [429] * 4


async def test_a_refused_token_is_logged_with_the_client_address_and_counted(
    client: httpx.AsyncClient,
) -> None:
    with capture_logs() as logs:
        await client.get(f"/persons/by-nik/{NIK}", headers={"Authorization": "Bearer nope"})
        await client.get(f"/persons/by-account/{ACCOUNT}", headers=bearer("dinsos"))
        metrics = (await client.get("/metrics")).text

    refused = [e for e in logs if e["event"].startswith("profile_lookup_")]
    assert [(e["event"], e["client"]) for e in refused if "client" in e] == [
        ("profile_lookup_unauthorized", "127.0.0.1"),
        ("profile_lookup_forbidden", "127.0.0.1"),
    ]
    assert 'simpul_profile_unauthorized_total{lookup="by-nik",service="profile"} 1.0' in metrics
