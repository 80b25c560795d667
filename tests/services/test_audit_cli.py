"""``simpul audit verify | search | backfill``: output, exit codes, and the plugin wiring."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bus import EventContext, Service, connect, keys
from bus.settings import Settings
from schemas.dukcapil import CitizenBorn, CitizenDied
from services.audit.cli import app
from tests.services.test_audit_common import archived, archiving, audit_for, example, publisher

ROOT = Path(__file__).parent.parent.parent
CITIZEN = keys.stream("dukcapil.citizen")
NIK = example(CitizenDied).model_dump()["nik"]
runner = CliRunner()
BACKFILLED: list[str] = []


def cli_service() -> Service:
    """The target of ``simpul audit backfill`` in these tests."""
    service = Service("cli-newcomer", settings=Settings.load())

    @service.on(CitizenDied, once=True)
    async def died(event: CitizenDied, ctx: EventContext) -> None:
        BACKFILLED.append(ctx.event_id)

    return service


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "audit.db"


def _archive(db: Path, redis_url: str, *, trim: bool = False) -> None:
    """Archive three died events and a birth; with ``trim``, leave only the last in the stream."""

    async def main() -> None:
        redis = connect(redis_url)
        audit = audit_for(f"sqlite:///{db}", redis_url)
        try:
            async with archiving(audit):
                pub = publisher(redis)
                published = [
                    await pub.publish(example(CitizenDied, i), id=f"d{i}", correlationid="case-1")
                    for i in range(3)
                ]
                await pub.publish(example(CitizenBorn), id="b0", correlationid="case-1")
                await archived(audit, 4)
                if trim:
                    minid = published[-1].entry_id
                    await redis.xtrim(CITIZEN, minid=minid, approximate=False)
        finally:
            await redis.aclose()

    asyncio.run(main())


def _invoke(*args: str) -> tuple[int, str]:
    """Exit code and standard output (logs go to standard error)."""
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout


def _failing(*args: str) -> tuple[int, str]:
    """Exit code and standard error."""
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stderr


def test_verify_reports_ok_then_names_the_altered_seq(db: Path, redis_url: str) -> None:
    _archive(db, redis_url)
    where = ("--db", f"sqlite:///{db}", "--redis-url", redis_url)

    code, out = _invoke("verify", *where)
    assert code == 0, out
    assert "OK" in out and "4 rows" in out and "head in Redis: seq 4" in out

    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE audit_log SET data = '{}' WHERE seq = 2")
    code, out = _invoke("verify", *where)
    assert code == 1
    assert "DAMAGED at seq 2" in out
    assert NIK not in out

    code, out = _invoke("verify", *where, "--json")
    assert code == 1
    report = json.loads(out)
    assert report["ok"] is False
    assert report["first_problem"]["seq"] == 2
    assert report["first_problem"]["kind"] == "altered"

    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM audit_log WHERE seq = 4")
    code, out = _invoke("verify", *where, "--json")
    assert code == 1
    kinds = {(p["seq"], p["kind"]) for p in json.loads(out)["problems"]}
    assert kinds == {(2, "altered"), (4, "truncated")}

    code, err = _failing(
        "verify", "--db", f"sqlite:///{db}", "--redis-url", "redis://127.0.0.1:1/0"
    )
    assert code == 2 and "Redis is unreachable" in err


def test_search_shows_metadata_and_data_only_when_asked(db: Path, redis_url: str) -> None:
    _archive(db, redis_url)
    where = ("--db", f"sqlite:///{db}")

    code, out = _invoke("search", *where, "--correlation", "case-1", "--json")
    assert code == 0, out
    rows = json.loads(out)
    assert {r["event_id"] for r in rows} == {"d0", "d1", "d2", "b0"}
    assert all("data" not in r for r in rows)
    assert NIK not in out

    code, out = _invoke("search", *where, "--type", "dukcapil.citizen.born.v1", "--limit", "5")
    assert code == 0, out
    assert "b0" in out and "d0" not in out and "1 rows" in out

    code, out = _invoke("search", *where, "--type", "dukcapil.citizen.died.v1", "--limit", "2")
    assert code == 0
    assert "2 rows; more match" in out

    code, out = _invoke("search", *where, "--since", "2000-01-01", "--show-data", "--json")
    assert code == 0, out
    data = {r["event_id"]: r["data"] for r in json.loads(out)}
    assert data["b0"] is None  # specific: never kept, so never shown
    assert json.loads(data["d0"])["nik"] == NIK
    with sqlite3.connect(db) as conn:
        (accesses,) = conn.execute("SELECT COUNT(*) FROM audit_access").fetchone()
    assert accesses == 1

    code, err = _failing("search", *where)
    assert code == 2 and "--correlation" in err
    code, err = _failing("search", *where, "--since", "last tuesday")
    assert code == 2 and "ISO 8601" in err


def test_backfill_command(db: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _archive(db, redis_url, trim=True)
    monkeypatch.setenv("SIMPUL_REDIS_URL", redis_url)
    BACKFILLED.clear()
    target = "tests.services.test_audit_cli:cli_service"
    where = ("--db", f"sqlite:///{db}")

    code, out = _invoke("backfill", target, *where, "--dry-run")
    assert code == 0, out
    assert "would deliver 2 archived events" in out
    assert BACKFILLED == []

    code, out = _invoke("backfill", target, *where, "--json")
    assert code == 0, out
    report = json.loads(out)
    assert (report["delivered"], report["dead_lettered"], report["ok"]) == (2, 0, True)
    assert BACKFILLED == ["d0", "d1"]

    code, err = _failing("backfill", "tests.services.test_audit_cli:nothing", *where)
    assert code == 2 and "has no attribute" in err


@pytest.mark.slow
def test_simpul_audit_verify_through_the_plugin(db: Path, redis_url: str) -> None:
    _archive(db, redis_url)
    env = dict(os.environ, SIMPUL_AUDIT_DB=f"sqlite:///{db}", SIMPUL_REDIS_URL=redis_url)

    def simpul(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "bus.cli.app", *args],
            check=False,
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    ok = simpul("audit", "verify")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "OK" in ok.stdout
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM audit_log WHERE seq = 2")
    damaged = simpul("audit", "verify")
    assert damaged.returncode == 1
    assert "seq 2 removed" in damaged.stdout
