"""Browser tests: Debian's headless Chromium driven by Selenium, the monitor served in a thread.

Selenium is given ``/usr/bin/chromedriver`` and ``/usr/bin/chromium`` explicitly, so Selenium
Manager never runs (it would download drivers). Without them (a developer machine without
``make system-deps``) the tests skip with a message saying so; ``make test`` installs them.

The tests are synchronous (Selenium blocks), so the monitor runs in a thread with an event loop
of its own (:class:`MonitorServer`); the tests change Redis with ``asyncio.run(...)`` between
browser steps.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service as ChromeService
from selenium.webdriver.remote.webdriver import WebDriver

from bus.cli.contracts import load as load_contracts
from bus.connection import connect
from bus.specs.catalogue import find_services
from services.monitor import Monitor, MonitorSettings
from services.monitor.service import redis_location

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
TOKEN = "operator-token-3f9a1c7e5b2d"


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    """One headless Chromium per module (starting one takes about two seconds)."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.is_file()]
    if missing:
        pytest.skip(
            f"{' and '.join(missing)} not found: install Debian's chromium and chromium-driver "
            "(`make system-deps` does) to run the browser tests"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",  # containers and CI run as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--disable-extensions",
        "--no-first-run",
        "--force-device-scale-factor=1",
        "--window-size=1440,1000",
        "--lang=en-GB",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the console, for checks
    driver = webdriver.Chrome(
        service=ChromeService(executable_path=str(CHROMEDRIVER)), options=options
    )
    driver.set_page_load_timeout(10)
    driver.set_script_timeout(10)
    try:
        yield driver
    finally:
        driver.quit()


class MonitorServer:
    """The monitor over ``redis_url``, served on a free loopback port from a thread of its own.

    ``with MonitorServer(url, token=...) as server:`` — ``server.url`` is the page,
    ``server.monitor`` the :class:`Monitor` (read it only through HTTP from the test thread).
    """

    def __init__(self, redis_url: str, **settings: Any) -> None:
        self.redis_url = redis_url
        self.settings = MonitorSettings(**{"refresh_s": 0.5, "sample_s": 0.5, **settings})
        self.url = ""
        self.monitor: Monitor | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="monitor-server", daemon=True)

    def __enter__(self) -> MonitorServer:
        self._thread.start()
        if not self._ready.wait(15):
            raise AssertionError("the monitor did not start within 15 s")
        if self._error is not None:
            raise self._error
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(15)
        assert not self._thread.is_alive(), "the monitor did not stop within 15 s"

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported to the test thread
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        redis = connect(self.redis_url, block_ms=0)
        self.monitor = Monitor(redis, settings=self.settings, where=redis_location(self.redis_url))
        try:
            async with self.monitor.serving() as url:
                self.url = url
                self._ready.set()
                await self._stop.wait()
        finally:
            await redis.aclose()


def script_errors(driver: WebDriver) -> list[str]:
    """Console messages of the page since the last call that say the page broke: an uncaught
    script error or something the Content-Security-Policy blocked (a refused request's status,
    e.g. the 401 of a wrong token, is expected and not among them)."""
    entries = driver.get_log("browser")  # type: ignore[no-untyped-call]
    return [
        str(e["message"])
        for e in entries
        if "Uncaught" in str(e["message"]) or "Content Security Policy" in str(e["message"])
    ]


@pytest.fixture(scope="session", autouse=True)
def _contracts() -> None:
    """The contracts registered (the flow map draws them, the masking knows personal fields),
    and the services imported once (the flow map finds them), not in each test's time."""
    load_contracts("schemas")
    find_services("services")
