"""docs/writing-a-service.md: its snippets run as written (the service, its test, the others)."""

from __future__ import annotations

import re
import sys
import types
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from bus import Envelope, EventContext, GiveUp, Published, Publisher, Retry, Service
from bus.cli.app import load_service
from bus.errors import DependencyUnavailable
from bus.store import Store
from bus.testing import deliver, quick_settings, wait_until
from schemas.dukcapil import CitizenDied

DOC = (Path(__file__).parent.parent / "docs" / "writing-a-service.md").read_text()
SNIPPETS = re.findall(r"```python\n(.*?)```", DOC, flags=re.S)
SERVICE, ARCHIVE, FASTSTREAM_APP, FASTSTREAM_ATTACH, ONCE, OUTCOMES, TEST = SNIPPETS
NIK = "3573014506900001"
DIED = CitizenDied(nik=NIK, date_of_death=date(2026, 11, 1), kecamatan="35.73.01")


@pytest.fixture
def bansos(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """The tutorial's module, importable as ``services.bansos`` for this test only."""
    module = types.ModuleType("services.bansos")
    exec(compile(SERVICE, "services/bansos/__init__.py", "exec"), module.__dict__)
    monkeypatch.setitem(sys.modules, "services.bansos", module)
    return module


def test_the_page_has_the_snippets_this_test_runs() -> None:
    assert len(SNIPPETS) == 7
    assert "app = create().app()" in FASTSTREAM_APP
    assert "create().attach(app)" in FASTSTREAM_ATTACH
    assert "def create(store: Store | None = None) -> Service:" in SERVICE
    assert "from services.bansos import create" in TEST


async def test_the_tutorial_test_passes(
    bansos: types.ModuleType, redis_url: str, redis: Redis, tmp_path: Path
) -> None:
    namespace: dict[str, Any] = {}
    exec(compile(TEST, "tests/test_bansos.py", "exec"), namespace)
    await namespace["test_a_death_suspends_each_grant_once"](redis_url, tmp_path)
    entries = [fields for _, fields in await redis.xrange("simpul:{dinsos.assistance}")]
    assert {e[b"type"] for e in entries} == {b"dinsos.assistance.suspended.v1"}
    assert {e[b"causationid"] for e in entries} == {b"death-1"}
    assert sorted(e[b"data"].count(b'"PKH-') for e in entries) == [1, 1]


async def test_a_crash_between_commit_and_publish_loses_no_event(
    bansos: types.ModuleType,
    redis_url: str,
    redis: Redis,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Why the tutorial publishes outside ``store.once``: the redelivery still publishes."""
    store = Store(f"sqlite:///{tmp_path / 'bansos.db'}")
    service: Service = bansos.create(store)
    service.settings = quick_settings(redis_url)
    publish = Publisher.publish
    crashed: list[int] = []

    async def crash_once(self: Publisher, *args: Any, **kwargs: Any) -> Published:
        if self.source == bansos.SOURCE and not crashed:  # committed, not yet published
            crashed.append(1)
            raise ConnectionError("Redis went away")
        return await publish(self, *args, **kwargs)

    monkeypatch.setattr(Publisher, "publish", crash_once)
    deliveries: list[int] = []
    handler = service.handlers["dukcapil.citizen.died.v1"]

    async def counted(event: CitizenDied, ctx: EventContext) -> None:
        deliveries.append(ctx.delivery)
        await handler.func(event, ctx)

    service.handlers["dukcapil.citizen.died.v1"] = replace(handler, func=counted)
    async with service.running():
        await store.run(
            lambda tx: tx.executemany(
                "INSERT INTO grants (grant_no, programme, recipient, status)"
                " VALUES (?, 'pkh', ?, 'active')",
                [("PKH-1", NIK), ("PKH-2", NIK)],
            )
        )
        await Publisher(redis, source="urn:test").publish(DIED, id="death-1")

        async def settled() -> bool:
            pending = await redis.xpending("simpul:{dukcapil.citizen}", "bansos")
            return deliveries == [1, 2] and pending["pending"] == 0

        await wait_until(settled)
    assert crashed == [1]
    assert await redis.xlen("simpul:{dinsos.assistance}") == 2  # each grant's event, once
    assert await store_rows(tmp_path) == [
        {"grant_no": "PKH-1", "status": "suspended", "suspended_by": "death-1"},
        {"grant_no": "PKH-2", "status": "suspended", "suspended_by": "death-1"},
    ]
    assert await store_rows(tmp_path, "SELECT key FROM simpul_inbox") == [{"key": "death-1"}]


async def store_rows(
    tmp_path: Path, sql: str = "SELECT grant_no, status, suspended_by FROM grants ORDER BY 1"
) -> list[dict[str, Any]]:
    store = Store(f"sqlite:///{tmp_path / 'bansos.db'}")
    try:
        return await store.run(lambda tx: tx.all(sql))
    finally:
        await store.close()


def test_simpul_run_can_load_the_factory(
    bansos: types.ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("SIMPUL_BANSOS_DB", raising=False)
    monkeypatch.setenv("SIMPUL_DATA_DIR", str(tmp_path))
    service = load_service("services.bansos:create")
    assert service.name == "bansos"
    assert service.source == "urn:malangkota:dinsos:bansos"
    assert service.http_app is not None


async def test_the_archive_snippet_keeps_every_envelope() -> None:
    kept: list[tuple[str, str]] = []

    class Archive:
        async def append(self, stream: str, event_id: str, event_type: str, data: str) -> None:
            kept.append((event_id, event_type))

    namespace: dict[str, Any] = {"archived": Archive()}
    exec(ARCHIVE, namespace)
    archive: Service = namespace["archive"]
    assert archive.every is not None
    envelope = Envelope(
        id="e-1",
        source="urn:test",
        type="dukcapil.citizen.renamed.v1",
        data="{}",
        time="2026-11-01T00:00:00.000Z",
        dataschema="simpul:dukcapil.citizen.renamed:1.0",
    )
    ctx = EventContext(envelope, "simpul:{dukcapil.citizen}", "1-0", "archive", "test", 1)
    await archive.every(envelope, ctx)
    assert kept == [("e-1", "dukcapil.citizen.renamed.v1")]


async def test_the_once_snippet_texts() -> None:
    sent: list[tuple[str, str, str]] = []

    class Sms:
        async def send_template(self, template: str, *, to_nik: str, ref: str) -> None:
            sent.append((template, to_nik, ref))

    namespace: dict[str, Any] = {"sms": Sms()}
    exec(ONCE, namespace)
    notifier: Service = namespace["notifier"]
    assert notifier.handlers["dukcapil.citizen.died.v1"].once
    await deliver(notifier, DIED, id="death-1")
    assert sent == [("visit-cancelled", NIK, "death-1")]


async def test_the_outcomes_snippet_gives_up_retries_later_and_files() -> None:
    filed: list[str] = []

    class Archive:
        up, busy_now = True, False

        def reachable(self) -> bool:
            return self.up

        def busy(self) -> bool:
            return self.busy_now

        async def file(self, event_id: str) -> None:
            filed.append(event_id)

    archive = Archive()
    namespace: dict[str, Any] = {"archive": archive}
    exec(OUTCOMES, namespace)
    office: Service = namespace["registry_office"]
    with pytest.raises(GiveUp, match="filed on paper"):
        await deliver(office, DIED.model_copy(update={"date_of_death": date(1944, 5, 1)}))
    archive.busy_now = True
    with pytest.raises(Retry) as later:
        await deliver(office, DIED)
    assert later.value.after_ms == 30_000
    archive.up = False
    with pytest.raises(DependencyUnavailable):
        await deliver(office, DIED)
    archive.up, archive.busy_now = True, False
    await deliver(office, DIED, id="death-1")
    assert filed == ["death-1"]


@pytest.fixture
def faststream_env(redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment ``faststream run`` would give the snippets."""
    monkeypatch.delenv("SIMPUL_BANSOS_DB", raising=False)
    monkeypatch.setenv("SIMPUL_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SIMPUL_REDIS_URL", redis_url)
    monkeypatch.setenv("SIMPUL_BLOCK_MS", "100")


@pytest.mark.usefixtures("bansos", "faststream_env")
@pytest.mark.parametrize("snippet", ["app", "attach"])
async def test_the_faststream_snippets_run_the_service(
    snippet: str, redis: Redis, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``service.app()`` (with a FastStream handler beside the service) and
    ``service.attach(app)`` on one's own broker: the tutorial's service handles a death."""
    namespace: dict[str, Any] = {}
    code = FASTSTREAM_APP if snippet == "app" else FASTSTREAM_ATTACH
    exec(compile(code, f"services/bansos/{snippet}.py", "exec"), namespace)
    app = namespace["app"]
    async with app:
        await wait_until((tmp_path / "bansos.db").exists)
        store = Store(f"sqlite:///{tmp_path / 'bansos.db'}")
        await store.run(
            lambda tx: tx.execute(
                "INSERT INTO grants (grant_no, programme, recipient, status)"
                " VALUES ('PKH-1', 'pkh', ?, 'active')",
                (NIK,),
            )
        )
        await store.close()
        await Publisher(redis, source="urn:test").publish(DIED, id="death-1")
        if snippet == "app":
            await app.broker.publish({"order": "A-7"}, stream="legacy:orders")

        async def suspended() -> bool:
            rows = await store_rows(tmp_path)
            return rows == [{"grant_no": "PKH-1", "status": "suspended", "suspended_by": "death-1"}]

        await wait_until(suspended)
        if snippet == "app":
            await wait_until(lambda: "legacy order A-7" in capsys.readouterr().out)
    assert await redis.xlen("simpul:{dinsos.assistance}") == 1
