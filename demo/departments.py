"""The city's departments in the demo: their services on the bus, each its own principal
(:class:`City`), and their legacy applications feeding the adapters the day's records
(:func:`registry`, :func:`licensing`, :func:`taxes`, :func:`jobs`), after :func:`seed`."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import os
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from redis.asyncio import Redis

from adapters import bapenda as bapenda_adapter
from adapters import disnaker, dpmptsp, dukcapil
from adapters.disnaker import fixtures as pencaker
from adapters.dukcapil import fixtures as siak
from bus import EventContext, Publisher, Service, Settings, Store
from bus import serving_http as serving
from bus.testing import quick_settings
from demo.city import DAY, Day, account_links
from demo.security import ARCHIVE, IDENTITY, Security
from schemas.dukcapil import CitizenMoved
from services.audit import Audit
from services.bapenda import Bapenda
from services.dinkes import Dinkes
from services.dinsos import Dinsos
from services.dinsos.service import SOURCE as DINSOS_SOURCE
from services.notifier import Notifier
from services.notifier.mail import SmtpSettings
from services.profile import Profile

# Demo credentials: fixed so the printed commands work; never use them anywhere real.
PSEUDONYM_KEY = b"demo-only-pseudonym-key-2026"
CITIZEN_APP_TOKEN = "demo-citizen-app-token-0001"
DINSOS_TOKEN = "demo-dinsos-token-000000001"
NOTIFIER_TOKEN = "demo-notifier-token-0000001"
MONITOR_TOKEN = "demo-monitor-replay-token-01"
IDENTITY_SOURCE = "urn:malangkota:diskominfo:identitas"


class ArchiveDiskFull(OSError):
    """The archive demo's failure: its volume for Kedungkandang is full."""


@dataclass
class Legacy:
    """What the legacy systems were told back: adapter outcomes, webhook answers."""

    published: Counter[str] = field(default_factory=Counter)
    quarantined: Counter[str] = field(default_factory=Counter)
    answers: Counter[int] = field(default_factory=Counter)


class City:
    """Every service of the demo, each as its own principal, with stores in one folder."""

    def __init__(self, security: Security, folder: Path, smtp_port: int) -> None:
        self.security = security
        self.folder = folder

        def settings(principal: str, **extra: Any) -> Settings:
            return quick_settings(
                security.url(principal), max_deliveries=3, **security.settings(principal), **extra
            )

        def store(name: str) -> Store:
            return Store(f"sqlite:///{folder / f'{name}.db'}")

        self.profile = Profile(
            store("profile"),
            settings=settings("svc-profile", http="127.0.0.1:0"),
            tokens=f"citizen-app={CITIZEN_APP_TOKEN},dinsos={DINSOS_TOKEN}",
            pseudonym_key=PSEUDONYM_KEY,
        )
        self.dinsos = Dinsos(store("dinsos"), settings=settings("svc-dinsos"))
        self.bapenda = Bapenda(store("bapenda"), settings=settings("svc-bapenda"))
        self.dinkes = Dinkes(store("dinkes"), settings=settings("svc-dinkes"))
        smtp = SmtpSettings(
            host="127.0.0.1", port=smtp_port, sender="Pemkot Malang <layanan@malangkota.go.id>"
        )
        self.notifier = Notifier(
            store("notifier"),
            settings=settings("svc-notifier", http="127.0.0.1:0"),
            smtp=smtp,
            token=NOTIFIER_TOKEN,
            max_age=timedelta(0),  # the day is in the past: notify anyway
        )
        self.audit = Audit(store("audit"), settings=settings("svc-audit"))
        self.archive = Service("arsip-demo", settings=settings(ARCHIVE))
        self.archived = 0
        self.archive.on(CitizenMoved)(self._archive_move)

    @property
    def services(self) -> list[Service]:
        return [
            self.profile.service,
            self.dinsos.service,
            self.bapenda.service,
            self.dinkes.service,
            self.notifier.service,
            self.audit.service,
            self.archive,
        ]

    async def _archive_move(self, event: CitizenMoved, ctx: EventContext) -> None:
        if event.kecamatan == "35.73.03":
            raise ArchiveDiskFull("archive volume for Kedungkandang is full")
        self.archived += 1

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[City]:
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(routing(self.security))
            for service in self.services:
                await stack.enter_async_context(service.running())
            yield self


@contextlib.asynccontextmanager
async def routing(security: Security) -> AsyncIterator[None]:
    """The router's replicas, as tasks beside the services: they admit every producer's intake
    onto the department streams and forward each subscription its inbox (decision 0011)."""
    routers = security.routers()
    tasks = [asyncio.create_task(r.run(), name=f"router:{r.replica}") for r in routers]
    try:
        yield
    finally:
        for router in routers:
            router.stop()  # graceful: each source loop ends its turn, leases are handed back
        # Bounded, and without waiting on a cancellation (redis-py can lose one that lands in a
        # command): a replica not done by then is cancelled and its connections closed.
        await asyncio.wait(tasks, timeout=10)
        for task in tasks:
            task.cancel()
        for router in routers:
            await router.redis.aclose()


@contextlib.contextmanager
def producing_as(principal: str) -> Iterator[None]:
    """An adapter built here writes its own intake, as compose configures it
    (``SIMPUL_INTAKE=<principal>``, read when the adapter's Publisher is made)."""
    before = os.environ.get("SIMPUL_INTAKE")
    os.environ["SIMPUL_INTAKE"] = principal
    try:
        yield
    finally:
        if before is None:
            del os.environ["SIMPUL_INTAKE"]
        else:
            os.environ["SIMPUL_INTAKE"] = before


# -- the legacy side ----------------------------------------------------------------------------


async def seed(city: City, day: Day) -> None:
    """Before the day: accounts the super-app linked, e-mails citizens gave, assistance paid."""
    security = city.security
    async with _client(security, IDENTITY) as redis:
        identity = Publisher(
            redis, source=IDENTITY_SOURCE, signer=security.signer(IDENTITY), intake=IDENTITY
        )
        links = account_links(day.accounts, step=timedelta(hours=1))
        await identity.publish_many(identity.envelope(link) for link in links)
    for account in day.accounts:
        await city.notifier.set_contact(account.account_id, account.email)
    async with _client(security, "svc-dinsos") as redis:
        grants = Publisher(
            redis, source=DINSOS_SOURCE, signer=security.signer("svc-dinsos"), intake="svc-dinsos"
        )
        for grant in day.grants:
            await city.dinsos.grant(grants, **grant.terms())


@contextlib.asynccontextmanager
async def _client(security: Security, principal: str) -> AsyncIterator[Redis]:
    redis = security.connect(principal)
    try:
        yield redis
    finally:
        await redis.aclose()


async def registry(security: Security, day: Day, folder: Path, legacy: Legacy) -> None:
    """SIAK: the day's rows in its database; the dukcapil adapter polls them."""
    db = folder / "siak.db"
    siak.create_sqlite(db, day.siak)
    async with _client(security, "adapter-dukcapil") as redis:
        with producing_as("adapter-dukcapil"):
            runner = dukcapil.adapter(
                redis, db, pseudonym_key=PSEUDONYM_KEY, signer=security.signer("adapter-dukcapil")
            )
        progress = await runner.run_once()
    legacy.published["dukcapil"] += progress.published
    legacy.quarantined["dukcapil"] += progress.quarantined


async def licensing(security: Security, day: Day, legacy: Legacy) -> None:
    """The licensing application POSTs its decisions to the dpmptsp webhook."""
    token = "demo-licensing-webhook-token"
    async with contextlib.AsyncExitStack() as stack:
        redis = await stack.enter_async_context(_client(security, "adapter-dpmptsp"))
        with producing_as("adapter-dpmptsp"):
            hook = dpmptsp.webhook(redis, token=token, signer=security.signer("adapter-dpmptsp"))
        base = await stack.enter_async_context(serving(hook.app(), port=0))
        client = await stack.enter_async_context(httpx.AsyncClient())
        for body in day.permits:
            sent = {"content": body} if isinstance(body, str) else {"json": body}
            answer = await client.post(
                base + "/",
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
                **sent,
            )
            legacy.answers[answer.status_code] += 1
    legacy.published["dpmptsp"] += legacy.answers[201]
    legacy.quarantined["dpmptsp"] += legacy.answers[422] + legacy.answers[400]


async def taxes(security: Security, day: Day, folder: Path, legacy: Legacy) -> None:
    """The tax system's nightly export lands in the drop folder; the bapenda adapter reads it."""
    drop = folder / "bapenda-drop"
    for sub in ("incoming", "done", "failed"):
        (drop / sub).mkdir(parents=True, exist_ok=True)
    export = drop / "incoming" / f"pembayaran-{DAY:%Y%m%d}.csv"
    with export.open("w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=bapenda_adapter.COLUMNS, delimiter=";")
        writer.writeheader()
        writer.writerows(day.payments)
    async with _client(security, "adapter-bapenda") as redis:
        with producing_as("adapter-bapenda"):
            runner = bapenda_adapter.adapter(
                redis, drop, settle_seconds=0, signer=security.signer("adapter-bapenda")
            )
        progress = await runner.run_once()
    legacy.published["bapenda"] += progress.published
    legacy.quarantined["bapenda"] += progress.quarantined


async def jobs(security: Security, day: Day, mysql: str, legacy: Legacy) -> None:
    """The labour office's job-seeker registry on MySQL: the disnaker adapter reads its row
    binlog. First the registrations already there (a consistent snapshot), then the day's
    placements as the application writes them, UPDATEs streamed from the binlog."""
    url = _fresh_database(mysql, "simpul_demo_disnaker")
    placed = [row for row in day.pencaker if row["sudah_bekerja"]]
    pencaker.create(
        url, [row | _NOT_PLACED if row["sudah_bekerja"] else row for row in day.pencaker]
    )
    async with _client(security, "adapter-disnaker") as redis:
        for step in ("registrations", "placements"):
            if step == "placements":
                _place(url, placed)
            with producing_as("adapter-disnaker"):
                runner = disnaker.adapter(redis, url, signer=security.signer("adapter-disnaker"))
            try:
                progress = await runner.run_once()
            finally:
                await runner.source.close()  # type: ignore[attr-defined]
            legacy.published["disnaker"] += progress.published
            legacy.quarantined["disnaker"] += progress.quarantined


_NOT_PLACED = {
    "sudah_bekerja": 0,
    "jenis_penempatan": "",
    "kode_jabatan_kerja": "",
    "tgl_penempatan": "0000-00-00",
}


def _place(url: str, rows: list[dict[str, Any]]) -> None:
    """The registry's operator records that these job seekers found work."""
    with pencaker.connect(url) as conn, conn.cursor() as cursor:
        for row in rows:
            cursor.execute(
                "UPDATE pencaker SET sudah_bekerja = 1, jenis_penempatan = %s, "
                "kode_jabatan_kerja = %s, tgl_penempatan = %s, tgl_update = %s "
                "WHERE thn_daftar = %s AND no_pendaftaran = %s",
                (
                    row["jenis_penempatan"],
                    row["kode_jabatan_kerja"],
                    row["tgl_penempatan"],
                    row["tgl_update"] + timedelta(hours=1),
                    row["thn_daftar"],
                    row["no_pendaftaran"],
                ),
            )


def _fresh_database(server: str, name: str) -> str:
    """A new, empty database ``name`` on the server of ``server`` (its user creates it),
    replacing the one an earlier demo left; its mysql:// URL."""
    parts = urlsplit(server)
    admin = parts._replace(path=parts.path if parts.path.strip("/") else "/mysql").geturl()
    with pencaker.connect(admin) as conn, conn.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {name}")
        cursor.execute(f"CREATE DATABASE {name}")
    return parts._replace(path=f"/{name}").geturl()
