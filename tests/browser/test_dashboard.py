"""The operator dashboard in headless Chromium: it loads, refreshes itself, replays a dead letter
after a confirmation with the operator token, and looks right (a screenshot a person can open).

    SIMPUL_SCREENSHOT=1 .venv/bin/pytest tests/browser -k screenshot  # docs/images/dashboard.png
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import struct
import zlib
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import yaml
from redis.asyncio import Redis
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.wait import WebDriverWait

from bus import EventContext, Publisher, Service, keys
from bus.connection import connect
from bus.contracts import Contract, default_registry
from bus.deadletter import Reason, Verdict, dead_letter_fields
from bus.functions import BusFunction
from bus.router import Router, RouterConfig
from bus.testing import quick_settings, wait_until
from schemas.dukcapil import CitizenDied
from tests.browser.conftest import TOKEN, MonitorServer, script_errors
from tests.bus.routed import TOPOLOGY, routed_document, router_signer, running, signer

SOURCE = "urn:malangkota:dukcapil:siak"
STREAM = CitizenDied.__contract__.stream  # simpul:{dukcapil.citizen}
NIK = "3573014506900001"
EXAMPLES = Path(__file__).parents[2] / "schemas" / "examples"
SCREENSHOT = Path(__file__).parents[2] / "docs" / "images" / "dashboard.png"


def wait(browser: WebDriver, condition: Callable[[WebDriver], Any], timeout: float = 8) -> Any:
    """WebDriverWait with a deadline; elements re-rendered meanwhile are looked up again."""
    return WebDriverWait(
        browser,
        timeout,
        poll_frequency=0.05,
        ignored_exceptions=(NoSuchElementException, StaleElementReferenceException),
    ).until(condition)


def one(browser: WebDriver, css: str) -> WebElement:
    return browser.find_element(By.CSS_SELECTOR, css)


def cell_texts(browser: WebDriver, css: str) -> list[str]:
    """The texts of the cells of the row ``css`` finds, read in one go (again, if the page
    redrew the row while they were read)."""
    found: list[str] = wait(
        browser, lambda b: [c.text for c in one(b, css).find_elements(By.TAG_NAME, "td")]
    )
    return found


def click(browser: WebDriver, css: str) -> None:
    """Click the element ``css`` finds (again, if the page redrew it meanwhile)."""
    wait(browser, lambda b: one(b, css).click() or True)


def died(event_id: str) -> tuple[CitizenDied, str]:
    return CitizenDied(nik=NIK, date_of_death=date(2026, 3, 1), kecamatan="35.73.01"), event_id


async def publish_deaths(redis_url: str, ids: list[str]) -> list[str]:
    redis = connect(redis_url)
    try:
        publisher = Publisher(redis, source=SOURCE)
        return [(await publisher.publish(e, id=i)).entry_id for e, i in map(died, ids)]
    finally:
        await redis.aclose()


async def prepare(redis_url: str) -> None:
    """Three deaths on the stream; group dinsos created after them (it has read everything:
    only later events reach it), group audit read and acked them all."""
    await publish_deaths(redis_url, ["death-1", "death-2", "death-3"])
    redis = connect(redis_url)
    try:
        await redis.xgroup_create(STREAM, "dinsos", id="$")
        await redis.xgroup_create(STREAM, "audit", id="0")
        reply = await redis.xreadgroup("audit", "audit-1", {STREAM: ">"}, count=100)
        await redis.xack(STREAM, "audit", *[entry for entry, _ in reply[0][1]])
    finally:
        await redis.aclose()


async def dead_letter_from_a_failing_service(redis_url: str) -> str:
    """A dinsos whose handler fails (the database is down); max_deliveries=1, so the first
    failure dead-letters the event. Returns the original entry id."""
    service = Service(
        "dinsos", settings=quick_settings(redis_url, consumer="dinsos-1", max_deliveries=1)
    )

    @service.on(CitizenDied)
    async def suspend(event: CitizenDied, ctx: EventContext) -> None:
        raise ConnectionError(f"database unreachable while suspending {event.nik}")

    redis = connect(redis_url)
    try:
        async with service.running():
            [entry] = await publish_deaths(redis_url, ["death-4"])

            async def dead_lettered() -> bool:
                return bool(await redis.xlen(keys.dead_letters(STREAM, "dinsos")))

            await wait_until(dead_lettered, timeout=5)
        return entry
    finally:
        await redis.aclose()


async def group_state(redis_url: str) -> tuple[list[str], int]:
    """Entry ids pending in group dinsos, and how many dead letters it has."""
    redis = connect(redis_url)
    try:
        rows = await redis.xpending_range(STREAM, "dinsos", "-", "+", 100)
        depth = await redis.xlen(keys.dead_letters(STREAM, "dinsos"))
        return [row["message_id"].decode() for row in rows], int(depth)
    finally:
        await redis.aclose()


def test_dashboard_refreshes_itself_and_replays_a_dead_letter_after_confirmation(
    browser: WebDriver, redis_url: str
) -> None:
    asyncio.run(prepare(redis_url))
    with MonitorServer(redis_url, token=TOKEN) as server:
        browser.get(server.url)
        assert browser.title == "Simpul monitor"
        length = wait(
            browser,
            lambda b: one(
                b, 'tr.stream-row[data-stream="dukcapil.citizen"] td[data-field="length"]'
            ),
        )
        assert length.text == "3"
        wait(browser, lambda b: one(b, 'tr.group-row[data-group="dinsos"]'))
        assert one(browser, "#dead-letters").text.startswith("No dead letters")
        assert one(browser, "#flowmap svg").get_attribute("role") == "img"

        # A dead letter made after the page loaded: the page shows it without a reload.
        original = asyncio.run(dead_letter_from_a_failing_service(redis_url))
        row = wait(browser, lambda b: one(b, 'tr.dead-letter[data-group="dinsos"]'))
        dead_id = row.get_attribute("data-id")
        assert "death-4" in row.text and "handler_failed" in row.text
        assert "***" in row.text and NIK not in browser.page_source  # masked
        wait(browser, lambda b: "Breach" in one(b, 'tr.group-row[data-group="dinsos"]').text)

        # Cancel changes nothing.
        click(browser, f'button.replay[data-id="{dead_id}"]')
        dialog = wait(browser, lambda b: one(b, "#confirm-dialog[open]"))
        assert dead_id in dialog.text and "dinsos" in dialog.text
        click(browser, "#confirm-cancel")
        wait(browser, lambda b: not b.find_elements(By.CSS_SELECTOR, "#confirm-dialog[open]"))
        assert asyncio.run(group_state(redis_url)) == ([], 1)

        # A wrong token is refused and asked for again; the right one replays.
        click(browser, f'button.replay[data-id="{dead_id}"]')
        wait(browser, lambda b: one(b, "#token-input").is_displayed())
        one(browser, "#token-input").send_keys("not-the-operator-token")
        click(browser, "#confirm-replay")
        error = wait(
            browser, lambda b: one(b, "#confirm-error").is_displayed() and one(b, "#confirm-error")
        )
        assert "not accepted" in error.text
        assert asyncio.run(group_state(redis_url)) == ([], 1)
        one(browser, "#token-input").send_keys(TOKEN)
        click(browser, "#confirm-replay")

        wait(browser, lambda b: not b.find_elements(By.CSS_SELECTOR, "tr.dead-letter"))
        outcome = wait(browser, lambda b: one(b, "#outcome").is_displayed() and one(b, "#outcome"))
        assert "Replayed 1 dead letter" in outcome.text
        assert f"entry {original} was handed back to group dinsos" in outcome.text
        # The original entry is back in the group's pending list, the dead letter gone.
        assert asyncio.run(group_state(redis_url)) == ([original], 0)
        wait(browser, lambda b: one(b, "#dead-letters").text.startswith("No dead letters"))
        assert script_errors(browser) == []


# -- the screenshot: a small but realistic bus ---------------------------------------------------

BORN, DIED, MOVED = (f"dukcapil.citizen.{verb}.v1" for verb in ("born", "died", "moved"))
CARD, PERMIT, PAID = (
    "dukcapil.family.card-issued.v1",
    "dpmptsp.permit.issued.v1",
    "bapenda.payment.received.v1",
)
WAVES = [  # events per type in each wave: the sparklines get a shape
    {BORN: 2, MOVED: 3, PERMIT: 1},
    {MOVED: 1, PAID: 4},
    {BORN: 4, DIED: 1, PERMIT: 2},
    {PAID: 2, CARD: 1},
    {MOVED: 5, PERMIT: 3, PAID: 1},
    {DIED: 2, CARD: 2},
    {BORN: 1, PAID: 6, PERMIT: 1},
    {MOVED: 2, CARD: 1},
]
GROUPS = {  # the services consuming each stream (as in services/)
    "simpul:{dukcapil.citizen}": ["audit", "bapenda", "dinkes", "dinsos", "notifier", "profile"],
    "simpul:{dukcapil.family}": ["audit", "dinsos", "profile"],
    "simpul:{dpmptsp.permit}": ["audit", "bapenda", "notifier", "profile"],
    "simpul:{bapenda.payment}": ["audit", "notifier", "profile"],
}


def example(event_type: str) -> Contract:
    found = sorted((EXAMPLES / event_type).glob("valid-*.json"))[0]
    model = default_registry.resolve(event_type)
    return model.model_validate(json.loads(found.read_text()))


def example_niks() -> set[str]:
    return {
        m for f in EXAMPLES.glob("*/valid-*.json") for m in re.findall(r"\d{16}", f.read_text())
    }


async def settle(redis: Redis, stream: str, group: str, *, keep_pending: int = 0) -> list[Any]:
    """Group ``group`` reads what is new and acks it, but the last ``keep_pending``."""
    reply = await redis.xreadgroup(group, f"{group}-7c9f", {stream: ">"}, count=1000)
    entries = reply[0][1] if reply else []
    done = entries[: len(entries) - keep_pending]
    if done:
        await redis.xack(stream, group, *[entry for entry, _ in done])
    return list(entries)


async def dead_letter(redis: Redis, stream: str, group: str, entry: Any, verdict: Verdict) -> None:
    """Dead-letter an entry ``group`` read, as its consumer does (the dead-letter script)."""
    entry_id, raw = entry
    flat = dead_letter_fields(
        raw,
        verdict,
        stream=stream,
        group=group,
        consumer=f"{group}-7c9f",
        entry_id=entry_id.decode(),
    )
    script = BusFunction(redis, "deadletter")
    await script(
        keys=[stream, keys.dead_letters(stream, group)], args=[group, entry_id.decode(), *flat]
    )


async def city_traffic(redis_url: str, monitor_url: str) -> None:
    """Waves of events (one per throughput sample), the groups keeping up — except bapenda on
    permits (no consumer: a breach), profile on the citizen stream (two unacked) and dinsos
    (two dead letters)."""
    redis = connect(redis_url)
    publisher = Publisher(redis, source="urn:malangkota:simpul:demo")
    try:
        for stream, groups in GROUPS.items():
            for group in groups:
                await redis.xgroup_create(stream, group, id="0", mkstream=True)
        async with httpx.AsyncClient(base_url=monitor_url, timeout=5) as http:
            for n, wave in enumerate(WAVES):
                for event_type, count in wave.items():
                    event = example(event_type)
                    for k in range(count):
                        await publisher.publish(event, id=f"{event_type}-{n}-{k}")
                for stream, groups in GROUPS.items():
                    for group in groups:
                        if (stream, group) == ("simpul:{dpmptsp.permit}", "bapenda"):
                            continue
                        if (stream, group) == (STREAM, "dinsos") and n == 5:
                            read = await settle(redis, stream, group, keep_pending=2)
                            failures = [
                                Verdict(
                                    Reason.HANDLER_FAILED,
                                    "OperationalError: connection to "
                                    f"the dinsos database refused (NIK {NIK})",
                                    5,
                                ),
                                Verdict(
                                    Reason.HANDLER_FAILED,
                                    "TimeoutError: SIKS-NG lookup did not answer within 10 s",
                                    5,
                                ),
                            ]
                            for entry, verdict in zip(read[-2:], failures, strict=True):
                                await dead_letter(redis, stream, group, entry, verdict)
                            continue
                        last = n == len(WAVES) - 1 and (stream, group) == (STREAM, "profile")
                        await settle(redis, stream, group, keep_pending=2 if last else 0)
                before = (await http.get("/api/throughput")).json()["sampled_at_ms"]

                async def sampled(before: int | None = before) -> bool:
                    return (await http.get("/api/throughput")).json()["sampled_at_ms"] != before

                await wait_until(sampled, timeout=5)
    finally:
        await redis.aclose()


def png_facts(data: bytes) -> tuple[int, int, int]:
    """Width, height and the number of distinct byte values of the decoded image data."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    chunks, at = [], 8
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        kind = data[at + 4 : at + 8]
        if kind == b"IDAT":
            chunks.append(data[at + 8 : at + 8 + length])
        at += 12 + length
    pixels = zlib.decompress(b"".join(chunks))
    return width, height, len(set(pixels))


def test_dashboard_screenshot(browser: WebDriver, redis_url: str, tmp_path: Path) -> None:
    """A picture of the dashboard over a small city's traffic: tmp_path/dashboard.png, and
    docs/images/dashboard.png with SIMPUL_SCREENSHOT=1."""
    with MonitorServer(redis_url, token=TOKEN, sample_s=0.15, refresh_s=0.5) as server:
        browser.set_window_size(1440, 1000)
        browser.get(server.url)
        asyncio.run(city_traffic(redis_url, server.url))
        wait(browser, lambda b: len(b.find_elements(By.CSS_SELECTOR, "tr.dead-letter")) == 2)
        wait(browser, lambda b: len(b.find_elements(By.CSS_SELECTOR, ".spark polyline")) == 4)
        wait(
            browser,
            lambda b: (
                "Breach"
                in one(
                    b, 'tbody[data-stream="dpmptsp.permit"] tr.group-row[data-group="bapenda"]'
                ).text
            ),
        )
        wait(browser, lambda b: one(b, "#flowmap svg #edges"))
        profile = 'tbody[data-stream="dukcapil.citizen"] tr.group-row[data-group="profile"]'
        wait(browser, lambda b: one(b, profile).text.split()[2:4] == ["0", "2"])  # lag, pending
        page = browser.page_source
        assert not [nik for nik in example_niks() | {NIK} if nik in page]  # nothing personal
        height, chrome = browser.execute_script(  # the whole page, in one picture
            "return [document.documentElement.scrollHeight,"
            " window.outerHeight - window.innerHeight]"
        )
        browser.set_window_size(1440, int(height) + int(chrome))
        wait(browser, lambda b: b.execute_script("return window.innerHeight") >= int(height))
        png = browser.get_screenshot_as_png()
        assert script_errors(browser) == []
    (tmp_path / "dashboard.png").write_bytes(png)
    if os.environ.get("SIMPUL_SCREENSHOT") == "1":
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        SCREENSHOT.write_bytes(png)
    width, tall, colours = png_facts(png)
    assert width >= 1400 and tall >= 1200, (width, tall)
    assert len(png) > 60_000 and colours > 100  # a real page, not a blank one


# -- routed delivery -----------------------------------------------------------------------------


async def routed_traffic(redis_url: str) -> None:
    """Routed delivery on the test's Redis: a router forwards two deaths from dukcapil's intake
    to every subscriber's inbox; dinsos reads one of them (pending); then, the router stopped,
    three more wait in the intake."""
    admin = connect(redis_url)
    producer = connect(redis_url)
    router = Router(
        connect(redis_url),
        TOPOLOGY,
        default_registry,
        keyring=None,
        signer=router_signer(),
        config=RouterConfig(block_ms=50, lease_ms=1_000),
    )
    publisher = Publisher(
        producer, source=SOURCE, signer=signer("adapter-dukcapil"), intake="adapter-dukcapil"
    )
    inbox = keys.inbox(STREAM, "dinsos")
    try:
        async with running(router):
            for event, event_id in map(died, ["death-1", "death-2"]):
                await publisher.publish(event, id=event_id)

            async def forwarded() -> bool:
                return bool(await admin.xlen(inbox) == 2)

            await wait_until(forwarded, timeout=20)
        await admin.xgroup_create(inbox, "dinsos", id="0")
        await admin.xreadgroup("dinsos", "dinsos-1", {inbox: ">"}, count=1)
        for event, event_id in map(died, ["death-3", "death-4", "death-5"]):
            await publisher.publish(event, id=event_id)
    finally:
        await producer.aclose()
        await admin.aclose()


def test_dashboard_shows_inboxes_under_their_service_and_what_the_router_has_not_admitted(
    browser: WebDriver, redis_url: str, tmp_path: Path
) -> None:
    topology = tmp_path / "topology.yaml"
    topology.write_text(yaml.safe_dump(routed_document(), sort_keys=False))
    asyncio.run(routed_traffic(redis_url))
    with MonitorServer(redis_url, topology=str(topology)) as server:
        browser.get(server.url)
        inbox = keys.inbox(STREAM, "dinsos")
        cells = cell_texts(browser, f'tr.inbox-row[data-inbox="{inbox}"]')
        assert one(browser, "#routed").is_displayed()
        assert cells[0] == "dukcapil.citizen" and "dukcapil.citizen.died.v1" in cells[1]
        assert cells[2:7] == ["1", "1", "1", cells[5], "0"]  # consumers, lag, pending, ., dead
        assert cells[7] == "Working"
        audit = cell_texts(browser, f'tr.inbox-row[data-inbox="{keys.inbox(STREAM, "audit")}"]')
        assert "not started" in " ".join(audit)
        empty = cell_texts(browser, f'tr.inbox-row[data-inbox="{keys.inbox(STREAM, "dinkes")}"]')
        assert "empty" in " ".join(empty)  # dinkes takes births: no death reaches its inbox
        intake = cell_texts(browser, 'tr.intake-row[data-principal="adapter-dukcapil"]')
        assert intake[1] == "3"
        assert not one(browser, "#ahead-of-time").is_displayed()

        # An explicit far-future id on another producer's intake shows up without a reload.
        asyncio.run(far_future(redis_url, keys.intake("adapter-bapenda")))
        ahead = wait(browser, lambda b: one(b, "#ahead-of-time li"))
        assert keys.intake("adapter-bapenda") in ahead.text
        assert script_errors(browser) == []


async def far_future(redis_url: str, key: str) -> None:
    redis = connect(redis_url)
    try:
        await redis.xadd(key, {"type": "x"}, id="4102444800000-0")
    finally:
        await redis.aclose()
