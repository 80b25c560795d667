"""``python -m demo`` (``make demo``): a day in Kota Malang, across six departments, on the bus.

Starts Redis (embedded, or ``SIMPUL_REDIS_URL``), the four reference adapters over their
legacy data (SIAK rows, the licensing application's webhook, the tax system's CSV export, the
job-seeker registry's MySQL binlog on a private MariaDB or ``SIMPUL_MYSQL_URL``) and
every service (profile, dinsos, bapenda, dinkes, notifier with a local SMTP server, audit, and
an archive whose disk is full for one kecamatan), plays the day of :mod:`demo.city`, shows it
live, then says what happened and where to look. Ctrl-C stops everything cleanly at any time.

On a terminal the services keep running after the day (so the API and the CLI can be tried)
until Ctrl-C; otherwise, or with ``SIMPUL_DEMO_STAY=0``, the demo ends after the summary.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from pydantic import Field
from pydantic_settings import SettingsConfigDict
from redis.asyncio import Redis
from rich.live import Live

from bus import ComponentSettings, ConfigurationError, connect
from bus import configure_logging as configure
from bus.admin import handled
from bus.local import find_mariadbd, mariadb_url_or_embedded, redis_url_or_embedded
from demo.city import play
from demo.departments import MONITOR_TOKEN, City, Legacy, jobs, licensing, registry, seed, taxes
from demo.live import flow, live_table, settled, watch
from demo.mail import MailCatcher
from demo.report import console, summary, where_to_look
from demo.security import (
    OPERATOR,
    Security,
    lock_down,
    prepare,
    silence_another_department,
    stolen_password,
)
from demo.trust import _living_account_holder, trust
from services.monitor import Monitor, MonitorSettings

T = TypeVar("T")

SETTLE_TIMEOUT_S = 40.0


# -- the day --------------------------------------------------------------------------------------


async def secure(url: str, folder: Path, *, owned: bool) -> Security:
    """An empty bus, locked down to the topology's principals (see demo.security)."""
    first = connect(url)
    try:
        await _check_empty(first, url)
    finally:
        await first.aclose()
    security = prepare(url, folder / "security")
    await lock_down(security, owned=owned)
    return security


async def run(
    url: str,
    folder: Path,
    *,
    stay: bool,
    owned: bool,
    mysql: str | None = None,
    stopped: asyncio.Event | None = None,
) -> None:
    """The day, then (``stay``) the services keep running until ``stopped`` is set."""
    security = await secure(url, folder, owned=owned)
    redis = security.connect(OPERATOR)  # the operators' own view: status, dashboard, summary
    try:
        day = play()
        legacy = Legacy()
        with MailCatcher() as mail:
            city = City(security, folder, mail.port)
            monitor = Monitor(
                redis,
                settings=MonitorSettings(token=MONITOR_TOKEN, sample_s=1.0),
                handled=handled(city.services),
            )
            async with city.running(), monitor.serving() as dashboard:
                console.print(
                    f"[bold]Dashboard:[/bold] {dashboard}  (Replay token: {MONITOR_TOKEN})"
                )
                stage = ["starting"]
                with Live(live_table([], stage[0]), console=console, refresh_per_second=8) as live:
                    done = asyncio.Event()
                    watcher = asyncio.create_task(watch(redis, live, stage, done))
                    started = time.monotonic()
                    try:
                        stage[0] = "the super-app's accounts and Dinas Sosial's grants"
                        await seed(city, day)
                        stage[0] = "the licensing application's decisions"
                        await licensing(security, day, legacy)
                        silencing = await _staged(
                            stage,
                            "a stolen dinkes password tries to silence Dinas Sosial",
                            silence_another_department(security),
                        )
                        stage[0] = "SIAK: births, deaths and moves"
                        await registry(security, day, folder, legacy)
                        stage[0] = "the tax system's nightly export"
                        await taxes(security, day, folder, legacy)
                        if mysql is not None:
                            stage[0] = "the job-seeker registry's binlog (MySQL)"
                            await jobs(security, day, mysql, legacy)
                        stage[0] = "a stolen adapter password tries its luck"
                        victim = _living_account_holder(day)
                        intrusion = await stolen_password(security, victim.nik, victim.kecamatan)
                        stage[0] = "services at work"
                        await _wait_settled(redis)
                        stage[0] = f"the day is done ({time.monotonic() - started:.1f} s)"
                        live.update(live_table(await flow(redis), stage[0]))
                    finally:
                        done.set()  # its last refresh finishes by itself (cancelled after 5 s)
                        await _ended(watcher, 5)
                await summary(city, redis, day, legacy, mail, registry=mysql is not None)
                await trust(
                    city,
                    redis,
                    day=day,
                    intrusion=intrusion,
                    silencing=silencing,
                    account_id=victim.account_id,
                )
                # The operator's password is the demo's own, made for this run: shown so that
                # the printed commands work; a URL the user gave keeps its password hidden.
                operator_url = security.url(OPERATOR) if security.acl_applied else _shown(url)
                where_to_look(city, operator_url, folder, day, dashboard)
                if stay:
                    console.print("\n[bold]The services keep running.[/bold] Press Ctrl-C to stop.")
                    await (stopped or asyncio.Event()).wait()
    finally:
        await redis.aclose()


async def _ended(task: asyncio.Task[None], timeout: float) -> None:
    """Wait for ``task`` to end, cancelled after ``timeout`` s; its error, if any, is raised.
    With ``asyncio.wait``: ``wait_for`` (Python 3.11) returns when a cancellation of this task
    arrives as ``task`` ends, and a suppressed CancelledError would drop one arriving meanwhile
    (a Ctrl-C as the day ended was lost so: the demo then waited at "Press Ctrl-C" for ever)."""
    await asyncio.wait({task}, timeout=timeout)
    if not task.done():
        task.cancel()
    elif not task.cancelled():
        task.result()


async def _staged(stage: list[str], what: str, step: Awaitable[T]) -> T:
    """Show ``what`` as the live table's stage while ``step`` runs."""
    stage[0] = what
    return await step


async def _wait_settled(redis: Redis) -> None:
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    calm = 0
    while calm < 3:  # three checks in a row: follow-up events have been published and read
        calm = calm + 1 if await settled(redis) else 0
        if time.monotonic() > deadline:
            console.print("[yellow]the services have not caught up yet; showing what is done")
            return
        await asyncio.sleep(0.2)


async def _check_empty(redis: Redis, url: str) -> None:
    existing = [k async for k in redis.scan_iter(match="simpul:*", count=1000)]
    if not existing:
        return
    if DemoSettings.load().reset == "1":
        await redis.delete(*existing)
        return
    raise SystemExit(
        f"the Redis at SIMPUL_REDIS_URL already holds {len(existing)} simpul:* keys; the demo "
        "plays its day on an empty bus. Set SIMPUL_DEMO_RESET=1 to delete them first, or unset "
        "SIMPUL_REDIS_URL to use a private Redis."
    )


class DemoSettings(ComponentSettings):
    """``SIMPUL_DEMO_RESET=1`` empties a given Redis's simpul:* keys first; ``SIMPUL_DEMO_STAY=0``
    ends at the summary; the demo's own default log level is critical (empty: unset)."""

    model_config = SettingsConfigDict(env_prefix="SIMPUL_DEMO_")

    reset: str = ""
    stay: str = "1"
    log_level: str = Field(default="critical", validation_alias="SIMPUL_LOG_LEVEL")
    redis_url: str | None = Field(default=None, validation_alias="SIMPUL_REDIS_URL")
    mysql_url: str | None = Field(default=None, validation_alias="SIMPUL_MYSQL_URL")


def _shown(url: str) -> str:
    """The URL without its password (a user's own Redis may have one)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return parts._replace(netloc=netloc).geturl()


def main() -> None:
    # The day's expected failures (a full archive disk, broken legacy rows) are shown in the
    # summary; logs would only scribble over the live table. SIMPUL_LOG_LEVEL=info shows them.
    own = DemoSettings.load()
    configure(own.log_level, "console")
    stay = sys.stdout.isatty() and own.stay != "0"
    url = own.redis_url
    stop = _Stop()
    with tempfile.TemporaryDirectory(prefix="simpul-demo-") as tmp:
        folder = Path(tmp)
        with (
            redis_url_or_embedded(url, str(folder / "redis")) as resolved,
            _mysql_server() as mysql,
        ):
            console.print(f"[dim]Redis at {_shown(resolved)}; stores in {folder}[/dim]")
            asyncio.run(
                _main(resolved, folder, stay=stay, stop=stop, owned=url is None, mysql=mysql)
            )
    stop.ignore_from_now()
    console.print("[dim]stopped cleanly[/dim]")


@contextlib.contextmanager
def _mysql_server() -> Iterator[str | None]:
    """The job-seeker registry's server: SIMPUL_MYSQL_URL, else a private MariaDB (binlog ROW);
    None where there is neither, and the day goes on without the registry."""
    if not DemoSettings.load().mysql_url:
        try:
            find_mariadbd()
        except ConfigurationError:
            yield None
            return
    with mariadb_url_or_embedded() as url:
        yield url


async def _main(
    url: str,
    folder: Path,
    *,
    stay: bool,
    stop: _Stop,
    owned: bool,
    mysql: str | None = None,
) -> None:
    with stop.cancelling() as stopped:
        if stopped.is_set():  # asked while the servers started
            return
        with contextlib.suppress(asyncio.CancelledError):
            await run(url, folder, stay=stay, owned=owned, mysql=mysql, stopped=stopped)


class _Stop:
    """Ctrl-C (SIGINT) and SIGTERM for the demo's whole run: asked once, it stays asked.

    One handler from start to end, never replaced: asyncio's (``loop.add_signal_handler``) is
    removed as ``asyncio.run`` closes its loop, and a signal while the servers then stop would
    kill the demo (SIGTERM) or interrupt their stop (SIGINT), leaving them running. Before the
    event loop runs (while Redis starts) a signal only asks to stop, and the loop then ends the
    day at once. Within the loop (:meth:`cancelling`) the first one also cancels the day, and
    every service stops; the day's end waits for it too, so a cancellation lost on the way
    still ends the demo. Later signals wait for the stop under way (they would cut it short).
    """

    def __init__(self) -> None:
        self._asked = threading.Event()
        self._day: tuple[asyncio.AbstractEventLoop, Callable[[], None]] | None = None
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._signalled)

    @contextlib.contextmanager
    def cancelling(self) -> Iterator[asyncio.Event]:
        """Within the block, in the running loop, the first signal cancels the current task;
        yields the event it sets (already set if a signal came before)."""
        task = asyncio.current_task()
        assert task is not None
        stopped = asyncio.Event()

        def stop_the_day() -> None:
            stopped.set()
            task.cancel()

        self._day = (asyncio.get_running_loop(), stop_the_day)
        if self._asked.is_set():
            stopped.set()
        try:
            yield stopped
        finally:
            self._day = None  # the loop closes: from now on a signal only asks

    def ignore_from_now(self) -> None:
        """Everything stopped: a signal while the interpreter exits is ignored (Python puts the
        default handlers back as it exits, and a late SIGTERM made a clean stop look killed)."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)

    def _signalled(self, signum: int, frame: object) -> None:
        # A Python-level handler runs between two bytecodes of the main thread, the event
        # loop's included: hand the cancellation to the loop instead of cancelling from here.
        if self._asked.is_set():
            return
        self._asked.set()
        if self._day is not None:
            loop, stop_the_day = self._day
            loop.call_soon_threadsafe(stop_the_day)


if __name__ == "__main__":
    main()
