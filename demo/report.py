"""What the demo's day did, said at its end: what the adapters published and quarantined, what
each service did with it, the dead letters, and where to look while the services keep running."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from rich.console import Console
from rich.table import Table

from adapters import bapenda as bapenda_adapter
from adapters import disnaker, dpmptsp, dukcapil
from bus import Service, keys
from bus.adapter import Quarantine
from bus.cli import activate_command
from demo.city import Day
from demo.departments import (
    CITIZEN_APP_TOKEN,
    MONITOR_TOKEN,
    NOTIFIER_TOKEN,
    PSEUDONYM_KEY,
    City,
    Legacy,
)
from demo.mail import MailCatcher
from schemas.common import pseudonym

console = Console()


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


async def _suspended(city: City, day: Day) -> list[Any]:
    """The grants dinsos suspended: what it did with the day's deaths."""
    return [
        g
        for a in day.grants
        for g in await city.dinsos.grants_of(a.recipient)
        if g.status == "suspended"
    ]


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
