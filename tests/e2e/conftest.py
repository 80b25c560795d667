"""The whole city on one real Redis, for end-to-end scenarios.

:class:`City` builds every service as ``demo.departments.City`` does — profile, dinsos, bapenda,
dinkes, notifier (real SMTP to a :class:`demo.mail.MailCatcher`), audit — each with its own store
(SQLite files in ``tmp_path``, or PostgreSQL schemas), and runs them all. Inputs reach the bus
the way the real producers put them there:

* the civil registry: rows in a SQLite SIAK database, read by the dukcapil adapter;
* the licensing application: POSTs to the dpmptsp webhook, served on loopback;
* the tax system: a CSV export in a drop folder, read by the bapenda adapter;
* the city super-app: ``identity.account.*`` events from the identity source, and contact
  addresses written to the notifier;
* Dinas Sosial itself: ``Dinsos.grant(...)``.

:meth:`City.settled` waits until every consumer group of every stream has read everything and
holds nothing pending (with no fixed sleep). A store closes when its service stops: read the
stores while the city runs.
"""

from __future__ import annotations

import contextlib
import csv
import random
import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence, Set
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Protocol

import httpx
import psycopg
import pytest
from redis.asyncio import Redis

from adapters import bapenda as bapenda_adapter
from adapters import dpmptsp, dukcapil, synthetic
from adapters.bapenda import fixtures as tax_fixtures
from adapters.dukcapil import fixtures as siak
from adapters.synthetic import Person
from bus import Publisher, keys
from bus.connection import connect
from bus.http import running as serving
from bus.settings import Settings
from bus.store import Store
from bus.testing import quick_settings, wait_until
from demo.city import LINKED_AT, Day, account_links
from demo.mail import MailCatcher
from schemas.common import pseudonym
from services.audit import Audit
from services.bapenda import Bapenda
from services.dinkes import Dinkes
from services.dinsos import Dinsos
from services.notifier import Notifier, SmtpSettings
from services.profile import Profile
from tests.conftest import postgres_server_url

# Test-only credentials: never use them anywhere real.
PSEUDONYM_KEY = b"e2e-only-pseudonym-key-000000001"
CITIZEN_APP_TOKEN = "e2e-citizen-app-token-00000001"
NOTIFIER_TOKEN = "e2e-notifier-token-000000000001"
WEBHOOK_TOKEN = "e2e-licensing-webhook-token-0001"
IDENTITY_SOURCE = "urn:malangkota:diskominfo:identitas"
SENDER = "Pemkot Malang <layanan@malangkota.go.id>"

WIB = timezone(timedelta(hours=7), "WIB")
TODAY = datetime.now(WIB).date()  # the services' "today" (their decisions are dated by it)
DAY = TODAY - timedelta(days=1)  # the day the scenarios' facts happened: recent, so the
# notifier (which ignores events older than 7 days) still tells citizens about them

SERVICES = ("profile", "dinsos", "bapenda", "dinkes", "notifier", "audit")
STREAM_PREFIX = f"{keys.PREFIX}:{{"


# -- the population -------------------------------------------------------------------------------


class Holder(Protocol):
    """Someone with a city account: a :class:`Resident`, or an account of ``demo.city``."""

    @property
    def account_id(self) -> str: ...
    @property
    def nik(self) -> str: ...
    @property
    def email(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Resident:
    """A synthetic adult of Kota Malang, with the family card and account ids the city gives."""

    person: Person
    kk: str
    account_id: str
    email: str

    @property
    def nik(self) -> str:
        return self.person.nik

    @property
    def kelurahan(self) -> str:
        return self.person.address.kelurahan

    @property
    def kecamatan(self) -> str:
        return self.person.address.kecamatan


def residents(count: int, *, seed: int) -> list[Resident]:
    """``count`` adults with distinct NIKs and family cards; deterministic for a seed."""
    rng = random.Random(seed)
    found: list[Resident] = []
    seen: set[str] = set()
    for person in synthetic.people(count * 4, seed=seed):
        if person.born.year > 2006 or person.nik in seen:
            continue
        seen.add(person.nik)
        card = synthetic.kk(
            rng, date(2015, 1, 1) + timedelta(rng.randrange(3000)), person.address.kecamatan
        )
        account = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        found.append(Resident(person, card, account, f"warga.{len(found) + 1}@example.org"))
        if len(found) == count:
            return found
    raise AssertionError("not enough synthetic adults for the seed")


def newborn(rng: random.Random, born: date) -> Person:
    return synthetic.person(rng, born=born)


def elsewhere(kecamatan: str) -> str:
    """A kelurahan of another kecamatan than ``kecamatan``."""
    other = "35.73.02" if kecamatan != "35.73.02" else "35.73.05"
    return f"{other}.1003"


# -- legacy records ------------------------------------------------------------------------------


class Registry:
    """SIAK's ``peristiwa`` table (a SQLite file) and its rows' ids and change times."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.next_id = 50_000
        self.moment = datetime.combine(DAY, datetime.min.time()) + timedelta(hours=7, minutes=30)
        siak.create_sqlite(path)

    def row(
        self,
        kind: str,
        who: Person,
        *,
        kk: str,
        kelurahan: str,
        on: date,
        alamat: str | None = None,
    ) -> dict[str, Any]:
        """One SIAK row: LAHIR (``on`` = birth), KEMATIAN (death) or PINDAH (move)."""
        self.next_id += 1
        self.moment += timedelta(minutes=7)
        return {
            "id_peristiwa": self.next_id,
            "versi": 1,
            "jenis_peristiwa": kind,
            "nik": who.nik,
            "no_kk": kk,
            "nama_lengkap": who.name,
            "tgl_lahir": who.born,
            "jenis_kelamin": who.sex,
            "alamat": alamat or who.address.line,
            "kode_kecamatan": kelurahan[:8],
            "kode_kelurahan": kelurahan,
            "tgl_peristiwa": on,
            "tgl_lapor": max(on, DAY),
            "updated_at": self.moment,
        }

    def birth(self, child: Person, parent: Resident) -> dict[str, Any]:
        """The LAHIR row of ``child``, born into ``parent``'s family card, at their home."""
        return self.row(
            "LAHIR",
            child,
            kk=parent.kk,
            kelurahan=parent.kelurahan,
            on=child.born,
            alamat=parent.person.address.line,
        )

    def death(self, who: Resident, *, on: date) -> dict[str, Any]:
        """The KEMATIAN row of ``who``, died ``on``, in their family card and kelurahan."""
        return self.row("KEMATIAN", who.person, kk=who.kk, kelurahan=who.kelurahan, on=on)

    def move(self, who: Resident, *, to: str, on: date, alamat: str) -> dict[str, Any]:
        """The PINDAH row of ``who``, moved ``on`` to kelurahan ``to``, at ``alamat``."""
        return self.row("PINDAH", who.person, kk=who.kk, kelurahan=to, on=on, alamat=alamat)

    def add(self, rows: Sequence[dict[str, Any]]) -> None:
        with contextlib.closing(sqlite3.connect(self.path)) as conn:
            siak.insert_sqlite(conn, rows)


def permit_body(
    who: Resident,
    number: int,
    *,
    kind: str = "REKLAME",
    status: str = "TERBIT",
    nib: str = "",
    decided: date = DAY,
    seed: int = 0,
) -> dict[str, Any]:
    """What the licensing application POSTs when it decides application ``number``."""
    prefix = {"PBG": "PBG", "SLF": "SLF", "REKLAME": "RKL", "IZIN_USAHA": "OSS"}[kind]
    site = synthetic.address(random.Random(seed * 10_000 + number))
    issued = status == "TERBIT"
    return {
        "nomor_permohonan": f"{prefix}/{DAY:%Y}/{DAY:%m}/{number:06d}",
        "status_permohonan": status,
        "revisi": 1,
        "jenis_izin": kind,
        "nik_pemohon": who.nik,
        "nama_pemohon": who.person.name,
        "nib": nib,
        "alamat_lokasi": site.street,
        "rt": site.rt,
        "rw": site.rw,
        "kode_kelurahan": site.kelurahan,
        "kode_kecamatan": site.kecamatan,
        "tanggal_permohonan": f"{decided - timedelta(days=20):%d-%m-%Y}",
        "tanggal_keputusan": f"{decided:%d-%m-%Y}" if status != "DIAJUKAN" else "",
        "nomor_izin": f"503/{prefix}/{number:06d}/35.73.406/{DAY:%Y}" if issued else "",
        "masa_berlaku_sampai": f"{decided + timedelta(days=364):%d-%m-%Y}"
        if issued and kind == "REKLAME"
        else "",
        "retribusi": "",
        "kode_alasan_penolakan": "TIDAK_SESUAI_RDTR" if status == "DITOLAK" else "",
        "catatan": "",
        "waktu_proses": f"{decided:%Y-%m-%d} 10:{number % 60:02d}:00",
    }


def payment_row(who: Resident, number: int, *, amount: int = 386_400) -> dict[str, str]:
    """One row of the tax system's nightly export: a PBB-P2 payment by ``who``."""
    nop = tax_fixtures.nop(random.Random(number))
    paid = datetime.combine(DAY, datetime.min.time()) + timedelta(hours=9, minutes=number % 60)
    return {
        "no_sspd": f"SSPD-{DAY:%Y}-{number:07d}",
        "versi": "1",
        "nomor_bukti_bayar": f"BJTM-{paid:%Y%m%d}-{number:06d}",
        "no_ketetapan": f"SPPT-{DAY:%Y}-{nop.replace('.', '').replace('-', '')}",
        "jenis_pajak": "PBB-P2",
        "nop": nop,
        "npwpd": "",
        "masa_pajak": f"{DAY:%Y}",
        "jenis_identitas": "NIK",
        "no_identitas": who.nik,
        "nama_wp": who.person.name,
        "jumlah_bayar": f"{amount:,}".replace(",", "."),
        "tanggal_bayar": f"{paid:%d/%m/%Y %H:%M:%S}",
        "bank": "Bank Jatim",
        "saluran_bayar": "QRIS",
    }


# -- the city -------------------------------------------------------------------------------------


@dataclass
class City:
    """Every service, one Redis, one store per service; and the legacy producers."""

    url: str
    folder: Path
    mail: MailCatcher
    store_urls: dict[str, str]
    notifier_max_age: timedelta | None = None
    redis: Redis = field(init=False)
    registry: Registry = field(init=False)
    drop: Path = field(init=False)
    webhook_url: str = ""
    _stacks: dict[str, contextlib.AsyncExitStack] = field(default_factory=dict)
    _domains: dict[str, Any] = field(default_factory=dict)
    _payments: int = 0

    def __post_init__(self) -> None:
        self.redis = connect(self.url)
        self.registry = Registry(self.folder / "siak.db")
        self.drop = self.folder / "bapenda-drop"
        for sub in ("incoming", "done", "failed"):
            (self.drop / sub).mkdir(parents=True, exist_ok=True)

    # -- the services ------------------------------------------------------------------------

    def settings(self, **extra: Any) -> Settings:
        return quick_settings(self.url, max_deliveries=3, **extra)

    def build(self, name: str) -> Any:
        """A new domain object of service ``name`` over its store: what a process start makes."""
        store = Store(self.store_urls[name], scope=name)  # as Store.for_service(name) does
        if name == "profile":
            return Profile(
                store,
                settings=self.settings(http="127.0.0.1:0"),
                tokens=f"citizen-app={CITIZEN_APP_TOKEN}",
                pseudonym_key=PSEUDONYM_KEY,
            )
        if name == "dinsos":
            return Dinsos(store, settings=self.settings())
        if name == "bapenda":
            return Bapenda(store, settings=self.settings())
        if name == "dinkes":
            return Dinkes(store, settings=self.settings())
        if name == "notifier":
            smtp = SmtpSettings(
                host="127.0.0.1", port=self.mail.port, sender=SENDER, starttls=False
            )
            return Notifier(
                store,
                settings=self.settings(http="127.0.0.1:0"),
                smtp=smtp,
                token=NOTIFIER_TOKEN,
                max_age=self.notifier_max_age,
            )
        if name == "audit":
            return Audit(store, settings=self.settings())
        raise KeyError(name)

    async def start(self, name: str) -> Any:
        assert name not in self._stacks, f"{name} runs already"
        domain = self.build(name)
        stack = contextlib.AsyncExitStack()
        await stack.enter_async_context(domain.service.running())
        self._stacks[name], self._domains[name] = stack, domain
        return domain

    async def stop(self, name: str) -> None:
        """Stop one service gracefully (its store closes)."""
        await self._stacks.pop(name).aclose()

    def running(self, name: str) -> bool:
        return name in self._stacks

    @property
    def profile(self) -> Profile:
        return self._domains["profile"]

    @property
    def dinsos(self) -> Dinsos:
        return self._domains["dinsos"]

    @property
    def bapenda(self) -> Bapenda:
        return self._domains["bapenda"]

    @property
    def dinkes(self) -> Dinkes:
        return self._domains["dinkes"]

    @property
    def notifier(self) -> Notifier:
        return self._domains["notifier"]

    @property
    def audit(self) -> Audit:
        return self._domains["audit"]

    def store(self, name: str) -> Store:
        return self._domains[name].store

    # -- the producers -----------------------------------------------------------------------

    async def link(
        self, *people: Holder, at: datetime | None = None, contacts: bool = True
    ) -> None:
        """The super-app: each resident's account linked to their NIK, and (``contacts``) the
        e-mail address they gave it, written to the notifier. Returns once the services have
        taken the links (links come long before a permit in life; a permit overtaking its
        holder's link in the notifier's read would find no account to write to)."""
        identity = Publisher(self.redis, source=IDENTITY_SOURCE)
        links = account_links(people, at=at or LINKED_AT, step=timedelta(minutes=1))
        await identity.publish_many(identity.envelope(link) for link in links)
        for r in people if contacts else ():
            await self.notifier.set_contact(r.account_id, r.email)
        await self.settled()

    async def grant(self, who: Resident, programme: str = "pkh", **terms: Any) -> str:
        """Dinas Sosial grants ``who`` assistance (administered in their kelurahan)."""
        values: dict[str, Any] = {
            "recipient": who.nik,
            "kk": who.kk,
            "kelurahan": who.kelurahan,
            "programme": programme,
            "amount": 300_000,
            "frequency": "monthly",
            "starts_on": date(2026, 1, 1),
            "granted_on": date(2025, 12, 15),
        }
        values.update(terms)
        return await self.dinsos.grant(self.redis, **values)

    async def siak(self, rows: Sequence[dict[str, Any]]) -> int:
        """SIAK records ``rows``; the dukcapil adapter polls them. Returns events published."""
        self.registry.add(rows)
        runner = dukcapil.adapter(self.redis, self.registry.path, pseudonym_key=PSEUDONYM_KEY)
        progress = await runner.run_once()
        return progress.published

    async def death(self, who: Resident, *, on: date) -> None:
        """SIAK records the death of ``who`` on ``on``; the adapter publishes it (one event)."""
        assert await self.siak([self.registry.death(who, on=on)]) == 1

    async def post(self, body: dict[str, Any] | str) -> httpx.Response:
        """The licensing application POSTs one decision to the dpmptsp webhook."""
        sent: dict[str, Any] = {"content": body} if isinstance(body, str) else {"json": body}
        async with httpx.AsyncClient() as client:
            return await client.post(
                self.webhook_url + "/",
                headers={
                    "Authorization": f"Bearer {WEBHOOK_TOKEN}",
                    "Content-Type": "application/json",
                },
                **sent,
            )

    async def pay(self, rows: Sequence[dict[str, str]]) -> int:
        """The tax system's export lands in the drop folder; the bapenda adapter reads it."""
        self._payments += 1
        export = self.drop / "incoming" / f"pembayaran-{DAY:%Y%m%d}-{self._payments:03d}.csv"
        with export.open("w", newline="", encoding="utf-8") as out:
            writer = csv.DictWriter(out, fieldnames=bapenda_adapter.COLUMNS, delimiter=";")
            writer.writeheader()
            writer.writerows(rows)
        progress = await bapenda_adapter.adapter(self.redis, self.drop, settle_seconds=0).run_once()
        return progress.published

    async def play(self, day: Day) -> list[httpx.Response]:
        """The day as the producers make it: the super-app links the accounts, dinsos grants,
        each permit goes to the licensing webhook (its answers returned, in order), SIAK's rows
        and the tax export are read (asserting what the adapters publish of them)."""
        await self.link(*day.accounts)
        for grant in day.grants:
            await self.dinsos.grant(self.redis, **grant.terms())
        answers = [await self.post(body) for body in day.permits]
        self.registry.add(day.siak)
        assert await self.siak([]) == 11  # 3 deaths, 4 moves, 4 births; 2 rows quarantined
        assert await self.pay(day.payments) == 5  # one amount in words is quarantined
        return answers

    # -- watching ----------------------------------------------------------------------------

    async def settled(self, timeout: float = 10.0) -> None:
        """Wait until every group of every stream read everything and holds nothing pending,
        three checks in a row (a handler may publish to a stream checked before it acked)."""
        calm = 0

        async def calm_three_times() -> bool:
            nonlocal calm
            calm = calm + 1 if await is_settled(self.redis) else 0
            return calm >= 3

        await wait_until(calm_three_times, timeout=timeout, interval=0.05)

    async def entries(self, aggregate: str) -> list[tuple[str, dict[str, str]]]:
        """The entries of one stream: (entry id, fields)."""
        found: Any = await self.redis.xrange(keys.stream(aggregate))
        return [(e.decode(), {k.decode(): v.decode() for k, v in f.items()}) for e, f in found]

    async def stream_lengths(self) -> dict[str, int]:
        """Every event stream (not dead letters) and its length."""
        found = {}
        async for key in self.redis.scan_iter(match=f"{STREAM_PREFIX}*", _type="stream"):
            if b":dlq:" not in key:
                found[key.decode()] = int(await self.redis.xlen(key))
        return found

    async def dead_letters(self) -> dict[str, int]:
        """Dead-letter streams and their lengths."""
        found: dict[str, int] = {}
        async for key in self.redis.scan_iter(match=f"{STREAM_PREFIX}*}}:dlq:*", _type="stream"):
            found[key.decode()] = int(await self.redis.xlen(key))
        return found

    def child_ref(self, nik: str) -> str:
        return pseudonym(PSEUDONYM_KEY, "nik", nik)


async def is_settled(redis: Redis, *, ignore: Set[str] = frozenset()) -> bool:
    """Every group of every stream (but those in ``ignore``) has read up to the last entry and
    holds nothing pending."""
    streams = [
        k.decode()
        async for k in redis.scan_iter(match=f"{STREAM_PREFIX}*", count=1000, _type="stream")
    ]
    for stream in streams:
        if ":dlq:" in stream:
            continue
        last = (await redis.xinfo_stream(stream))["last-generated-id"]
        groups = await redis.xinfo_groups(stream)
        if not groups:
            return False
        for group in groups:
            if group["name"].decode() in ignore:
                continue
            if group["last-delivered-id"] != last or group["pending"]:
                return False
    return True


@contextlib.asynccontextmanager
async def city_running(
    url: str,
    folder: Path,
    store_urls: dict[str, str],
    *,
    notifier_max_age: timedelta | None = None,
    services: Sequence[str] = SERVICES,
) -> AsyncIterator[City]:
    """A running city: the SMTP catcher, the webhook and every service of ``services``."""
    with MailCatcher() as mail:
        city = City(url, folder, mail, store_urls, notifier_max_age)
        try:
            async with contextlib.AsyncExitStack() as stack:
                hook = dpmptsp.webhook(city.redis, token=WEBHOOK_TOKEN)
                city.webhook_url = await stack.enter_async_context(serving(hook.app(), port=0))
                try:
                    for name in services:
                        await city.start(name)
                    yield city
                finally:
                    for name in reversed(SERVICES):
                        if city.running(name):
                            await city.stop(name)
        finally:
            await city.redis.aclose()


def sqlite_stores(folder: Path) -> dict[str, str]:
    return {name: f"sqlite:///{folder / f'{name}.db'}" for name in SERVICES}


@pytest.fixture
async def city(redis_url: str, tmp_path: Path) -> AsyncIterator[City]:
    """The whole city on SQLite stores, running."""
    async with city_running(redis_url, tmp_path, sqlite_stores(tmp_path)) as running:
        yield running


@pytest.fixture
def postgres_schemas() -> Iterator[Callable[[str], str]]:
    """``schema(name)``: a URL of the test's PostgreSQL server whose search_path is a fresh
    schema of that name (one per service store); all dropped afterwards."""
    server = postgres_server_url()
    made: list[str] = []
    token = uuid.uuid4().hex[:8]

    def schema(name: str) -> str:
        schema_name = f"e2e_{token}_{name}"
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema_name}")
        made.append(schema_name)
        separator = "&" if "?" in server else "?"
        return f"{server}{separator}options=-csearch_path%3D{schema_name}"

    yield schema
    with psycopg.connect(server, autocommit=True) as conn:
        for schema_name in made:
            conn.execute(f"DROP SCHEMA {schema_name} CASCADE")


# -- reading stores --------------------------------------------------------------------------------


async def snapshot(store: Store, *, inbox: bool = False) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table of a store (without ``simpul_inbox`` unless asked), sorted."""

    def read(tx: Any) -> dict[str, list[tuple[Any, ...]]]:
        if tx.dialect == "sqlite":
            names = [
                r["name"]
                for r in tx.all(
                    "SELECT name FROM sqlite_master WHERE type = 'table' "
                    "AND name NOT LIKE 'sqlite_%'"
                )
            ]
        else:
            names = [
                r["table_name"]
                for r in tx.all(
                    "SELECT table_name FROM information_schema.tables "
                    "WHERE table_schema = current_schema()"
                )
            ]
        tables: dict[str, list[tuple[Any, ...]]] = {}
        for name in sorted(names):
            if name == "simpul_inbox" and not inbox:
                continue
            rows = [tuple(str(v) for v in row.values()) for row in tx.all(f"SELECT * FROM {name}")]
            tables[name] = sorted(rows)
        return tables

    return await store.run(read)


async def inbox_keys(store: Store) -> list[str]:
    rows = await store.run(lambda tx: tx.all("SELECT key FROM simpul_inbox ORDER BY key"))
    return [row["key"] for row in rows]
