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
from collections import Counter
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from pydantic import Field
from pydantic_settings import SettingsConfigDict
from redis.asyncio import Redis
from rich.console import Console
from rich.live import Live
from rich.table import Table

from adapters import bapenda as bapenda_adapter
from adapters import disnaker, dpmptsp, dukcapil
from bus import ComponentSettings, ConfigurationError, Service, connect, keys, verify_fields
from bus import configure_logging as configure
from bus.adapter import Quarantine
from bus.admin import handled
from bus.cli import activate_command
from bus.local import find_mariadbd, mariadb_url_or_embedded, redis_url_or_embedded
from demo.city import Day, play
from demo.departments import (
    CITIZEN_APP_TOKEN,
    MONITOR_TOKEN,
    NOTIFIER_TOKEN,
    PSEUDONYM_KEY,
    City,
    Legacy,
    jobs,
    licensing,
    registry,
    seed,
    taxes,
)
from demo.live import flow, live_table, settled, watch
from demo.mail import MailCatcher
from demo.security import (
    OPERATOR,
    SILENCING,
    Intrusion,
    Security,
    lock_down,
    prepare,
    silence_another_department,
    stolen_password,
)
from schemas.common import pseudonym
from services.monitor import Monitor, MonitorSettings

console = Console()
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


async def run(url: str, folder: Path, *, stay: bool, owned: bool, mysql: str | None = None) -> None:
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
                        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                            await asyncio.wait_for(watcher, 5)
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
                    await asyncio.Event().wait()
    finally:
        await redis.aclose()


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


# -- what happened ------------------------------------------------------------------------------


async def summary(
    city: City, redis: Redis, day: Day, legacy: Legacy, mail: MailCatcher, *, registry: bool
) -> None:
    adapters = Table(title="adapters (legacy -> bus)", title_justify="left")
    for column in ("adapter", "published", "quarantined", "why"):
        adapters.add_column(column)
    played = [
        ("dukcapil", dukcapil.NAME),
        ("dpmptsp", dpmptsp.NAME),
        ("bapenda", bapenda_adapter.NAME),
    ]
    if registry:
        played.append(("disnaker", disnaker.NAME))
    for name, adapter in played:
        reasons = await _quarantine_reasons(redis, adapter)
        adapters.add_row(
            name, str(legacy.published[name]), str(legacy.quarantined[name]), "; ".join(reasons)
        )
    console.print(adapters)
    if not registry:
        console.print(
            "  [yellow]no MariaDB server (mariadbd) here: the job-seeker registry was "
            "left out[/yellow] (apt install mariadb-server, or set SIMPUL_MYSQL_URL)"
        )
    answers = ", ".join(f"{n} x {code}" for code, n in sorted(legacy.answers.items()))
    console.print(f"  the licensing webhook answered: {answers}")

    services = Table(title="services (bus -> departments)", title_justify="left")
    for column in ("service", "handled", "what it did"):
        services.add_column(column)
    for service, effect in await _effects(city, day, mail):
        services.add_row(service.name, str(service.health.counters.get("acked", 0)), effect)
    console.print(services)

    dead = Table(title="dead letters (failed 3 attempts, or refused at once)", title_justify="left")
    for column in ("stream", "group", "reason", "error"):
        dead.add_column(column)
    async for key in redis.scan_iter(match="simpul:inbox:{*}:dlq:*", count=1000):
        inbox, _, group = key.decode().partition(":dlq:")
        stream = (keys.inbox_of(inbox) or (inbox, group))[0]
        entries: list[tuple[bytes, dict[bytes, bytes]]] = await redis.xrange(key)  # type: ignore[assignment]
        for _, fields in entries:
            dead.add_row(
                stream, group, fields[b"dlq.reason"].decode(), fields[b"dlq.error"].decode()
            )
    console.print(dead)


async def _quarantine_reasons(redis: Redis, adapter: str) -> list[str]:
    found = []
    for entry in await Quarantine(redis, adapter).entries(limit=10):
        found.append(", ".join(f"{p.field}: {p.problem}" for p in entry.problems)[:90])
    return found


async def _effects(city: City, day: Day, mail: MailCatcher) -> list[tuple[Service, str]]:
    r = day.residents
    suspended = await _suspended(city, day)
    rechecks = await city.dinsos.rechecks()
    employed = [r for r in rechecks if r.reason.endswith("-employed")]
    children = [row["nik"] for row in day.siak if row["jenis_peristiwa"] == "LAHIR"]
    members = [set(await city.dinsos.household_of(g.kk)) for g in day.grants]
    households = sum(bool(m & set(children)) for m in members)
    registered = [t for p in r for t in await city.bapenda.taxpayers_by("nik", p.nik)]
    registered += await city.bapenda.taxpayers_by("nib", "9120045678901")
    reviews = await city.bapenda.open_reviews()
    schedules = [
        await city.dinkes.schedule_of(pseudonym(PSEUDONYM_KEY, "nik", c)) for c in children
    ]
    opened = [s for s in schedules if s is not None]
    areas = city.dinkes.areas
    names = {p.code: p.name for p in [*areas.by_kelurahan.values(), *areas.by_kecamatan.values()]}
    places = sorted({names.get(s.puskesmas, s.puskesmas) for s in opened})
    inbox = 0
    for account in day.accounts:
        inbox += len(await city.notifier.inbox(account.account_id))
    known = [p for p in r if await city.profile.person(p.nik) is not None]
    audit = await city.audit.verify()
    return [
        (
            city.profile.service,
            f"{len(known)} residents in the one-account view; "
            f"{len(day.accounts)} city accounts linked",
        ),
        (
            city.dinsos.service,
            f"{len(suspended)} grants suspended after deaths, "
            f"{len(rechecks)} re-checks (area or household), "
            f"{households} households grew by a birth, "
            f"{len(employed)} grants re-verified after job placements",
        ),
        (
            city.bapenda.service,
            f"{len(registered)} taxpayers registered from permits, "
            f"{len(reviews)} taxpayer reviews after deaths",
        ),
        (city.dinkes.service, f"{len(opened)} immunisation schedules at {', '.join(places)}"),
        (
            city.notifier.service,
            f"{len(mail.messages)} e-mails delivered over SMTP, {inbox} in-app messages",
        ),
        (
            city.audit.service,
            f"{audit.rows} events archived; hash chain " + ("verifies" if audit.ok else "BROKEN"),
        ),
        (city.archive, f"{city.archived} moves archived; Kedungkandang's fail (dead letters)"),
    ]


@dataclass(frozen=True)
class Victim:
    """A resident with a city account whom the day leaves alone (alive, same address)."""

    nik: str
    kecamatan: str
    account_id: str


def _living_account_holder(day: Day) -> Victim:
    touched = {row["nik"] for row in day.siak}
    people = {p.nik: p for p in day.residents}
    for account in day.accounts:
        if account.nik not in touched and account.nik in people:
            kecamatan = people[account.nik].address.kecamatan
            return Victim(account.nik, kecamatan, account.account_id)
    raise RuntimeError("the demo's day has no account holder the registry leaves alone")


async def trust(
    city: City,
    redis: Redis,
    *,
    day: Day,
    intrusion: Intrusion,
    silencing: dict[str, str],
    account_id: str,
) -> None:
    """Who could do what: the ACLs, the signatures on the bus, what stolen passwords got."""
    table = Table(title="trust (least privilege, signed events, the router)", title_justify="left")
    table.add_column("check")
    table.add_column("outcome")
    table.add_row("Redis ACLs from deploy/topology.yaml", city.security.acl_note)
    valid, total = await _signed(redis, city.security, inboxes=False)
    table.add_row(
        "signatures on the department streams",
        f"{valid} of {total} events signed by a principal allowed their type "
        "(the router admitted them)",
    )
    valid, total = await _signed(redis, city.security, inboxes=True)
    table.add_row(
        "signatures in the inboxes",
        f"{valid} of {total} inbox entries signed by the router (the audit's: by their "
        "producer, the originals; every service verifies)",
    )
    if intrusion.cross_department:
        table.add_row(
            "stolen dukcapil password: write bapenda's payment stream",
            f"refused by Redis: {intrusion.cross_department}",
        )
    refused = keys.intake_dead_letters("adapter-dukcapil")
    entries: list[tuple[bytes, dict[bytes, bytes]]] = await redis.xrange(refused)  # type: ignore[assignment]
    reasons = [
        f[b"dlq.reason"].decode()
        for _, f in entries
        if f.get(b"id", b"").decode() == intrusion.forged_event_id
    ]
    delivered = await _delivered(redis, intrusion.forged_event_id)
    linked = await city.profile.by_account(account_id) is not None
    account = "still linked" if linked else "CLOSED (!)"
    table.add_row(
        "...and an unsigned death of a living resident",
        f"refused by the router: {', '.join(reasons) or 'NOT REFUSED (!)'}; in {delivered} "
        f"inboxes; the resident's account is {account}",
    )
    if silencing:
        answers = Counter(silencing[what] for what in SILENCING)
        shown = ", ".join(f"{n} x {answer}" for answer, n in sorted(answers.items()))
        suspended = len(await _suspended(city, day))
        table.add_row(
            f"stolen dinkes password vs dinsos's inbox ({', '.join(SILENCING)})",
            f"refused by Redis: {shown}; dinsos still got the deaths: {suspended} grants suspended",
        )
    console.print(table)


async def _suspended(city: City, day: Day) -> list[Any]:
    """The grants dinsos suspended: what it did with the day's deaths."""
    return [
        g
        for a in day.grants
        for g in await city.dinsos.grants_of(a.recipient)
        if g.status == "suspended"
    ]


async def _delivered(redis: Redis, event_id: str) -> int:
    """How many inboxes hold an entry of event ``event_id`` (dead letters included)."""
    found = set()
    async for key in redis.scan_iter(match="simpul:inbox:{*}", count=1000, _type="stream"):
        entries: list[tuple[bytes, dict[bytes, bytes]]] = await redis.xrange(key)  # type: ignore[assignment]
        if any(f.get(b"id", b"").decode() == event_id for _, f in entries):
            inbox = keys.inbox_of(key.decode().partition(":dlq:")[0])
            found.add(inbox[1] if inbox else key)
    return len(found)


def _sees_all(inbox: str, security: Security) -> bool:
    """Whether the inbox's group is approved for every field of everything it subscribes."""
    found = keys.inbox_of(inbox)
    assert found is not None
    service = next(s for s in security.topology.services if s.group == found[1])
    return all(
        security.topology.approved_fields(service.group, sub.type) is None
        for sub in service.subscriptions
    )


async def _signed(redis: Redis, security: Security, *, inboxes: bool) -> tuple[int, int]:
    """(entries validly signed by a principal allowed their type, all entries) on the
    department streams, or in the inboxes (entries validly signed by the router, or by their
    producer in an inbox approved for every field: the original as admitted, all)."""
    ring = {key.key_id: key for key in security.topology.signing_keys()}
    router = security.signer("router").key_id
    valid = total = 0
    match = "simpul:inbox:{*}" if inboxes else "simpul:{*}"
    async for key_b in redis.scan_iter(match=match, count=1000, _type="stream"):
        key = key_b.decode()
        if not (keys.is_inbox(key) if inboxes else keys.is_stream(key)):
            continue
        entries: list[tuple[bytes, dict[bytes, bytes]]] = await redis.xrange(key_b)  # type: ignore[assignment]
        for _, fields in entries:
            total += 1
            signer = ring.get(fields.get(b"signer", b"").decode())
            allowed = signer is not None and fields.get(b"type", b"").decode() in signer.types
            if inboxes and signer is not None and signer.key_id != router:
                # only a subscription that may see everything gets the producer's original
                allowed = allowed and keys.inbox_of(key) is not None and _sees_all(key, security)
            valid += bool(allowed and signer and verify_fields(signer.public_key, fields))
    return valid, total


def where_to_look(city: City, url: str, folder: Path, day: Day, dashboard: str) -> None:
    account = day.accounts[0].account_id
    console.print("\n[bold]Where to look[/bold] (while the demo runs)")
    console.print(f"  the operators' dashboard: {dashboard}   (Replay token: {MONITOR_TOKEN})")
    console.print("  in another terminal, in this folder:")
    if activate := activate_line():
        console.print(activate)
    console.print(f"  export SIMPUL_REDIS_URL={url}")
    console.print(f"  export SIMPUL_AUDIT_DB=sqlite:///{folder / 'audit.db'}")
    console.print("  simpul quarantine list dukcapil-siak     # the SIAK rows the adapter refused")
    console.print("  simpul quarantine list disnaker-pencaker # the job-seeker rows it refused")
    console.print("  simpul audit verify                      # the archive's hash chain")
    console.print("  simpul status                            # the department streams at a glance")
    console.print("  simpul contracts list                    # the shared data contracts")
    console.print("  the citizen app's view of one resident (profile API):")
    console.print(
        f"  curl -H 'Authorization: Bearer {CITIZEN_APP_TOKEN}' "
        f"{city.profile.service.http_url}/persons/by-account/{account}"
    )
    console.print(
        f"  curl -H 'Authorization: Bearer {NOTIFIER_TOKEN}' "
        f"{city.notifier.service.http_url}/accounts/{account}/inbox"
    )


def activate_line() -> str | None:
    """The printed line that puts `simpul` on PATH: `make install` does not, so without it the
    first printed command failed. None when not running from a virtualenv."""
    activate = activate_command()
    if activate is None:
        return None
    return f"  {activate}".ljust(43) + "# puts simpul on PATH (make install does not)"


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
    # Ctrl-C before the event loop runs (while Redis starts) only asks to stop; the loop then
    # ends the day at once. Within the loop it cancels the day, and every service stops.
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
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
    stop: threading.Event,
    owned: bool,
    mysql: str | None = None,
) -> None:
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    if stop.is_set():
        return
    with contextlib.suppress(asyncio.CancelledError):
        await run(url, folder, stay=stay, owned=owned, mysql=mysql)


if __name__ == "__main__":
    main()
