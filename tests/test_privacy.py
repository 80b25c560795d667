"""No personal data in what operators, dashboards and other systems get to see.

A full day of Kota Malang (``demo.city.play()``: the four adapters, every service) plus what
goes wrong on a real bus — a producer outside Simpul writing a contract-breaking event and an
undecodable one, a department publishing a new event type before the consumers know it, a
handler whose error quotes the event, a replica stuck with pending entries — then every view
an operator has of it is collected and searched for each NIK, family card (KK), name, address,
account id, e-mail address and NPWPD the scenario used:

* ``simpul status``, ``tail`` (masked by default), ``pending``, ``dlq list``/``show``,
  ``quarantine list``/``show``, ``audit search`` (stdout and stderr, tables and JSON);
* the Prometheus text of every service's ``/metrics`` and of the bus-wide exporter;
* the error answers of the HTTP APIs (profile 401/403/404/422, notifier 400/422, the licensing
  webhook's 400/422) for requests carrying personal identifiers;
* structlog (before any masking processor: as the code wrote it) and stdlib log records at DEBUG
  of all of it (tests/e2e/test_full_day.py scans the logs of the plain day already).

The scenario runs once per module; each view is its own test, so a leak names the view.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis import Redis as SyncRedis
from typer.testing import CliRunner

from adapters import disnaker
from adapters.disnaker import fixtures as pencaker
from bus import EventContext, Service, keys
from bus.admin import inspect
from bus.admin.exporter import BusCollector, exporter_app
from bus.cli.app import app as simpul
from bus.connection import connect
from bus.contracts import default_registry
from bus.logging import configure
from bus.testing import capture_logs
from demo.city import Day, play
from schemas.dukcapil import CitizenDied, CitizenMoved
from services.audit.cli import app as audit_cli
from services.profile.policy import Tokens
from tests.bus.delivery.helpers import fields_of
from tests.conftest import mysql_connect, mysql_server_url
from tests.e2e.conftest import (
    CITIZEN_APP_TOKEN,
    NOTIFIER_TOKEN,
    SERVICES,
    City,
    city_running,
    is_settled,
    sqlite_stores,
)

pytestmark = pytest.mark.slow

DINSOS_TOKEN = "privacy-test-dinsos-token-00001"
# Not the city's code: the stand-in for the citizens' mail server, and the HTTP client of this
# test (the other systems calling the APIs, whose URLs carry the identifiers they ask about).
FOREIGN_LOGGERS = ("mail.log", "httpx", "httpcore")
STUCK_GROUP = "arsip-lama"  # a consumer group whose only replica read and never acked
CITIZEN = keys.stream("dukcapil.citizen")
runner = CliRunner()


# -- the personal values of the scenario -----------------------------------------------------------


@dataclass
class Personal:
    """Every personal value the scenario used, by kind."""

    values: dict[str, set[str]] = field(default_factory=dict)

    def add(self, kind: str, *found: object) -> None:
        self.values.setdefault(kind, set()).update(str(v) for v in found if v)

    def leaks(self, text: str, *, ignore: frozenset[str] = frozenset()) -> list[str]:
        """``kind: value`` for every value found in ``text`` (names and streets as whole words)."""
        found = []
        for kind, values in sorted(self.values.items()):
            for value in sorted(values):
                if len(value) < 4 or value in ignore:
                    continue
                if kind in ("name", "address"):
                    hit = re.search(rf"(?<!\w){re.escape(value)}(?!\w)", text) is not None
                else:
                    hit = value in text
                if hit:
                    found.append(f"{kind}: {value}")
        return found


def personal_values(day: Day) -> Personal:
    p = Personal()
    for person in day.residents:
        p.add("nik", person.nik)
        p.add("name", person.name)
        p.add("address", person.address.line, person.address.street)
    p.add("kk", *day.kk.values())
    for account in day.accounts:
        p.add("nik", account.nik)
        p.add("account", account.account_id)
        p.add("email", account.email)
    for grant in day.grants:
        p.add("nik", grant.recipient)
        p.add("kk", grant.kk)
    for row in day.siak:  # newborns, and the broken rows' values as they were sent
        p.add("nik", row["nik"])
        p.add("kk", row["no_kk"])
        p.add("name", row["nama_lengkap"])
        p.add("address", row["alamat"])
    for body in day.permits:
        if isinstance(body, dict):
            p.add("nik", body["nik_pemohon"])
            p.add("name", body["nama_pemohon"])
            p.add("address", body["alamat_lokasi"])
    for payment in day.payments:
        p.add("nik", payment["no_identitas"])
        p.add("name", payment["nama_wp"])
    for row in day.pencaker:  # the job-seeker registry writes names in capitals
        p.add("nik", row["nik"])
        p.add("name", row["nama"])
        p.add("address", row["alamat"])
    return p


# -- the scenario ----------------------------------------------------------------------------------


@dataclass
class Observed:
    personal: Personal
    # Values only the entries without a usable contract carry (a new type, an unparseable
    # payload): the masked views must show them by their shape only.
    shapeless: dict[str, frozenset[str]] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)  # view -> text
    answers: dict[str, int] = field(default_factory=dict)  # HTTP request -> status
    dead_letters: int = 0

    def add(self, view: str, text: str) -> None:
        self.outputs[view] = self.outputs.get(view, "") + text + "\n"


async def _day(city: City, day: Day, seen: Observed) -> None:
    """The day as the producers make it (City.play, as tests/e2e/test_full_day.py plays it),
    keeping the webhook's error answers."""
    for number, answer in enumerate(await city.play(day)):
        if answer.status_code >= 400:
            seen.answers[f"webhook permit {number}"] = answer.status_code
            seen.add("http: licensing webhook errors", answer.text)
    registry = _job_registry()
    pencaker.create(registry, day.pencaker)
    runner = disnaker.adapter(city.redis, registry)
    try:
        progress = await runner.run_once()
    finally:
        await runner.source.close()  # type: ignore[attr-defined]
    assert (progress.published, progress.quarantined) == (5, 2)  # 3 registered, 2 placed


def _job_registry() -> str:
    """A fresh database for the job-seeker registry on the tests' MariaDB."""
    server, database = mysql_server_url(), "privacy_pencaker"
    with mysql_connect(server) as conn, conn.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {database}")
        cursor.execute(f"CREATE DATABASE {database}")
    return f"{server.rstrip('/')}/{database}"


async def _troubles(city: City, day: Day) -> int:
    """What goes wrong on a real bus, with the day's people in it. Returns entries written."""
    who, other = day.residents[33], day.residents[34]
    entries = [
        # A producer outside Simpul (PHP, redis-cli) writes the date as it is shown on screen.
        fields_of(
            CitizenDied(
                nik=who.nik, date_of_death=date(2026, 11, 2), kecamatan=who.address.kecamatan
            ),
            "privacy-contract",
            data=json.dumps(
                {"nik": who.nik, "date_of_death": "02-11-2026", "kecamatan": who.address.kecamatan}
            ),
        ),
        # ... and cuts a payload short.
        fields_of(
            CitizenDied(
                nik=other.nik, date_of_death=date(2026, 11, 2), kecamatan=other.address.kecamatan
            ),
            "privacy-unparseable",
            data=f'{{"nik": "{other.nik}", "nama": "{other.name}", '
            f'"alamat": "{other.address.street}, RT',
        ),
        # Dukcapil publishes a new event type before the consumers' schemas know it.
        fields_of(
            CitizenDied(
                nik=who.nik, date_of_death=date(2026, 11, 2), kecamatan=who.address.kecamatan
            ),
            "privacy-unknown-type",
            type="dukcapil.citizen.renamed.v1",
            dataschema="simpul:dukcapil.citizen.renamed:1.0",
            data=json.dumps(
                {
                    "nik": who.nik,
                    "kk": day.kk[who.nik],
                    "former_name": who.name,
                    "name": f"{who.name} Putri",
                    "kecamatan": who.address.kecamatan,
                }
            ),
        ),
    ]
    for entry in entries:
        await city.redis.xadd(CITIZEN, entry)  # type: ignore[arg-type]
    return len(entries)


def _careless(city: City) -> Service:
    """A department's handler whose error quotes the event: its dead letter's error must still
    be shown masked (the values are the contract's personal ones)."""
    service = Service("careless", settings=city.settings())

    @service.on(CitizenMoved)
    async def geocode(event: CitizenMoved, ctx: EventContext) -> None:
        raise LookupError(f"cannot geocode {event.address!r} for {event.nik}")

    return service


async def _stuck(redis: Any) -> None:
    """A replica of STUCK_GROUP read three entries and died without acking them."""
    await redis.xgroup_create(CITIZEN, STUCK_GROUP, id="0")
    await redis.xreadgroup(STUCK_GROUP, "arsip-lama-0", {CITIZEN: ">"}, count=3)


async def _npwpds(city: City, day: Day, seen: Observed) -> None:
    """The NPWPDs bapenda derived from the day's permits: personal, and the subject of their
    taxpayer events (x-personal-subject)."""
    for body in day.permits:
        if isinstance(body, dict):
            scheme, value = (
                ("nib", body["nib"]) if body.get("nib") else ("nik", body["nik_pemohon"])
            )
            for taxpayer in await city.bapenda.taxpayers_by(scheme, value):
                seen.personal.add("npwpd", taxpayer.npwpd)


async def _apis(city: City, day: Day, seen: Observed) -> None:
    """Error answers of the profile and notifier APIs to requests carrying identifiers."""
    city.profile.tokens = Tokens.parse(
        city.profile.policy, f"citizen-app={CITIZEN_APP_TOKEN},dinsos={DINSOS_TOKEN}"
    )
    known, unknown = day.residents[6].nik, day.residents[38].nik  # in events / in none
    account = day.accounts[0]
    profile, notifier = city.profile.service.http_url, city.notifier.service.http_url
    assert profile and notifier
    dinsos = {"Authorization": f"Bearer {DINSOS_TOKEN}"}
    app = {"Authorization": f"Bearer {CITIZEN_APP_TOKEN}"}
    mailer = {"Authorization": f"Bearer {NOTIFIER_TOKEN}"}
    fake_account = "0" * 8 + account.account_id[8:]
    requests: list[tuple[str, str, str, dict[str, str], Any]] = [
        ("profile 422 nik too long", "GET", f"{profile}/persons/by-nik/{known}7", dinsos, None),
        (
            "profile 422 nik letter",
            "GET",
            f"{profile}/persons/by-nik/{known[:12]}O{known[13:]}",
            dinsos,
            None,
        ),
        ("profile 404 nik", "GET", f"{profile}/persons/by-nik/{unknown}", dinsos, None),
        ("profile 403 nik", "GET", f"{profile}/persons/by-nik/{known}", app, None),
        ("profile 401 nik", "GET", f"{profile}/persons/by-nik/{known}", {}, None),
        (
            "profile 422 account",
            "GET",
            f"{profile}/persons/by-account/{account.account_id}x",
            app,
            None,
        ),
        ("profile 404 account", "GET", f"{profile}/persons/by-account/{fake_account}", app, None),
        (
            "profile 403 account",
            "GET",
            f"{profile}/persons/by-account/{account.account_id}",
            dinsos,
            None,
        ),
        (
            "notifier 400 inbox",
            "GET",
            f"{notifier}/accounts/{account.account_id}x/inbox",
            mailer,
            None,
        ),
        ("notifier 401 inbox", "GET", f"{notifier}/accounts/{account.account_id}/inbox", {}, None),
        (
            "notifier 422 contact",
            "PUT",
            f"{notifier}/accounts/{account.account_id}/contact",
            mailer,
            {"email": account.email.replace("@", " at ")},
        ),
        (
            "notifier 422 contact domain",
            "PUT",
            f"{notifier}/accounts/{account.account_id}/contact",
            mailer,
            {"email": account.email.replace("example.org", "example")},
        ),
    ]
    async with httpx.AsyncClient(timeout=10) as client:
        for name, method, url, headers, body in requests:
            answer = await client.request(method, url, headers=headers, json=body)
            seen.answers[name] = answer.status_code
            seen.add(f"http: {name.split()[0]} API errors", f"{name}: {answer.text}")
            # The value as presented (malformed ones included) is never echoed either.
            presented = url.rsplit("/", 2)[-2 if url.endswith(("inbox", "contact")) else -1]
            assert presented not in answer.text, name
            if body is not None:
                assert body["email"] not in answer.text, name


async def _metrics(city: City, careless: Service, seen: Observed) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        for name in ("profile", "notifier"):
            url = getattr(city, name).service.http_url
            answer = await client.get(f"{url}/metrics")
            assert answer.status_code == 200
            seen.add("metrics: services", answer.text)
    for service in [*(getattr(city, name).service for name in SERVICES), careless]:
        body, _ = service.metrics.exposition()
        seen.add("metrics: services", body.decode())
    redis = connect(city.url, block_ms=0)
    try:
        inspector = inspect.Inspector(redis, registry=default_registry)
        exporter = exporter_app(BusCollector(inspector, interval_s=0))
        transport = httpx.ASGITransport(app=exporter)
        async with httpx.AsyncClient(transport=transport, base_url="http://exporter") as client:
            answer = await client.get("/metrics")
        assert answer.status_code == 200 and "simpul_dead_letters{" in answer.text
        seen.add("metrics: exporter", answer.text)
    finally:
        await redis.aclose()


async def _scenario(url: str, folder: Path, day: Day, seen: Observed) -> None:
    stores = sqlite_stores(folder)
    async with city_running(url, folder, stores, notifier_max_age=timedelta(0)) as city:
        careless = _careless(city)
        async with careless.running():
            await _day(city, day, seen)
            written = await _troubles(city, day)
            assert written == 3
            await city.settled(timeout=20)
            seen.dead_letters = sum((await city.dead_letters()).values())
            await _stuck(city.redis)
            await _npwpds(city, day, seen)
            await _apis(city, day, seen)
            await _metrics(city, careless, seen)
            assert not await is_settled(city.redis)  # the stuck group holds its entries


def _cli(seen: Observed, view: str, *args: str) -> Any:
    # `simpul audit` is a plug-in command group (an entry point), added by bus.cli.app.main().
    command, argv = (audit_cli, args[1:]) if args[0] == "audit" else (simpul, args)
    result = runner.invoke(command, list(argv))
    assert result.exit_code in (0, 1), f"simpul {' '.join(args)}: {result.output}"
    seen.add(view, f"$ simpul {' '.join(args)}\n{result.output}")
    return result


def _operators(seen: Observed, url: str, audit_db: str) -> None:
    """What an operator types, in tables and JSON."""
    for args in (["status"], ["status", "--json"]):
        _cli(seen, "cli: status", *args)
    with SyncRedis.from_url(url) as redis:
        streams = sorted(
            k.decode()
            for k in redis.scan_iter(match=f"{keys.PREFIX}:{{*", _type="stream")
            if b":dlq:" not in k and b":quarantine:" not in k
        )
        adapters = sorted(
            k.decode().split("{", 1)[1].rstrip("}")
            for k in redis.scan_iter(match=f"{keys.PREFIX}:quarantine:{{*}}", _type="stream")
        )
    for stream in streams:
        _cli(seen, "cli: tail", "tail", stream, "--count", "1000")
        _cli(seen, "cli: tail", "tail", stream, "--count", "1000", "--json")
    for args in (["pending", CITIZEN, STUCK_GROUP], ["pending", CITIZEN, STUCK_GROUP, "--json"]):
        _cli(seen, "cli: pending", *args)
    _cli(seen, "cli: dlq list", "dlq", "list")
    listed = _cli(seen, "cli: dlq list", "dlq", "list", "--json")
    dead = json.loads(listed.stdout)
    refs = dead if isinstance(dead, list) else dead["dead_letters"]
    assert len(refs) == seen.dead_letters
    distinct = {(ref["event_id"], ref["reason"]): ref for ref in refs}  # not every group's copy
    for ref in distinct.values():
        where = [ref["id"], "--stream", ref["stream"], "--group", ref["group"]]
        _cli(seen, "cli: dlq show", "dlq", "show", *where)
        _cli(seen, "cli: dlq show", "dlq", "show", *where, "--json")
    assert adapters, "the day's broken records are quarantined"
    for adapter in adapters:
        _cli(seen, "cli: quarantine", "quarantine", "list", adapter)
        records = json.loads(
            _cli(seen, "cli: quarantine", "quarantine", "list", adapter, "--json").stdout
        )
        for record in records if isinstance(records, list) else records["records"]:
            entry = record["entry_id"]
            _cli(seen, "cli: quarantine", "quarantine", "show", adapter, entry)
            _cli(seen, "cli: quarantine", "quarantine", "show", adapter, entry, "--json")
    for args in ([], ["--json"]):
        _cli(
            seen,
            "cli: audit search",
            "audit",
            "search",
            "--since",
            "2000-01-01",
            "--limit",
            "10000",
            "--db",
            audit_db,
            *args,
        )


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def observed(redis_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Observed]:
    with SyncRedis.from_url(redis_server) as client:
        client.flushdb()
        client.script_flush()
    folder = tmp_path_factory.mktemp("privacy")
    day = play()
    seen = Observed(personal_values(day))
    renamed, cut = day.residents[33], day.residents[34]  # in _troubles() only
    seen.personal.add("name", f"{renamed.name} Putri")  # the renamed person's new name
    seen.shapeless = {
        "unknown type": frozenset({renamed.name, f"{renamed.name} Putri"}),
        "unparseable payload": frozenset({cut.name, cut.address.street}),
    }
    root, handler = logging.getLogger(), _Records()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    monkeypatch = pytest.MonkeyPatch()
    try:
        configure("debug", "json")
        with capture_logs() as logs:  # as the code wrote them: no masking processor
            asyncio.run(_scenario(redis_server, folder, day, seen))
        seen.add("logs: structlog", "\n".join(repr(entry) for entry in logs))
        monkeypatch.setenv("SIMPUL_REDIS_URL", redis_server)
        monkeypatch.setenv("SIMPUL_LOG_LEVEL", "debug")
        _operators(seen, redis_server, sqlite_stores(folder)["audit"])
    finally:
        monkeypatch.undo()
        root.removeHandler(handler)
        root.setLevel(level)
    ours = [r for r in handler.records if not r.name.startswith(FOREIGN_LOGGERS)]
    seen.add(
        "logs: stdlib", "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in ours)
    )
    dump = os.environ.get("SIMPUL_PRIVACY_DUMP")  # a folder: every view as a file, to read
    if dump:
        Path(dump).mkdir(parents=True, exist_ok=True)
        for view, text in seen.outputs.items():
            Path(dump, re.sub(r"\W+", "-", view) + ".txt").write_text(text, encoding="utf-8")
    yield seen


# -- the checks ------------------------------------------------------------------------------------


def test_the_scenario_exercised_every_view(observed: Observed) -> None:
    kinds = observed.personal.values
    assert {k: len(v) >= 4 for k, v in kinds.items()} == dict.fromkeys(
        ("account", "address", "email", "kk", "name", "nik", "npwpd"), True
    )
    assert observed.dead_letters >= 3 * 4  # three bad entries for several groups, + careless
    assert observed.answers == {
        "webhook permit 6": 422,
        "webhook permit 7": 400,
        "profile 422 nik too long": 422,
        "profile 422 nik letter": 422,
        "profile 404 nik": 404,
        "profile 403 nik": 403,
        "profile 401 nik": 401,
        "profile 422 account": 422,
        "profile 404 account": 404,
        "profile 403 account": 403,
        "notifier 400 inbox": 400,
        "notifier 401 inbox": 401,
        "notifier 422 contact": 422,
        "notifier 422 contact domain": 422,
    }
    assert len(observed.outputs["logs: structlog"]) > 10_000
    # The masked views still say what happened.
    assert "dukcapil.citizen.renamed.v1" in observed.outputs["cli: dlq list"]
    assert "LookupError" in observed.outputs["cli: dlq show"]
    assert "arsip-lama-0" in observed.outputs["cli: pending"]
    assert "simpul quarantine show disnaker-pencaker" in observed.outputs["cli: quarantine"]


VIEWS = [
    "cli: status",
    "cli: tail",
    "cli: pending",
    "cli: dlq list",
    "cli: dlq show",
    "cli: quarantine",
    "cli: audit search",
    "metrics: services",
    "metrics: exporter",
    "http: profile API errors",
    "http: notifier API errors",
    "http: licensing webhook errors",
    "logs: structlog",
    "logs: stdlib",
]


@pytest.mark.parametrize("view", VIEWS)
def test_no_personal_value_in(observed: Observed, view: str) -> None:
    leaks = observed.personal.leaks(observed.outputs[view], ignore=frozenset())
    assert not leaks, f"{view}: {len(leaks)} personal values, e.g. {leaks[:5]}"


# Entries without a usable contract (a new type, a payload that is not JSON): nothing says
# which fields are personal, so tail and dlq show give every value's shape only.
@pytest.mark.parametrize("entries", ["unknown type", "unparseable payload"])
@pytest.mark.parametrize("view", ["cli: tail", "cli: dlq show"])
def test_no_personal_value_of_an_entry_without_a_usable_contract_in(
    observed: Observed, view: str, entries: str
) -> None:
    text = observed.outputs[view]
    leaks = [value for value in sorted(observed.shapeless[entries]) if value in text]
    assert not leaks, f"{view}: {entries}: {leaks}"
