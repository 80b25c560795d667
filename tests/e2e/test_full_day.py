"""A full day of Kota Malang (``demo.city.play()``) through the three adapters and every service:
the audit chain archives all of it and detects tampering; no log line carries personal data."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from bus import keys
from bus.logging import configure
from bus.store import Store
from bus.testing import capture_logs
from demo.city import Day, play
from services.audit import Audit
from services.audit.cli import app as audit_cli
from tests.e2e.conftest import City, city_running, sqlite_stores

# The stand-in for the citizens' mail server logs the SMTP conversation (addresses included):
# it is the outside world, not the city's code.
FOREIGN_LOGGERS = ("mail.log",)


async def _play(city: City, day: Day) -> Counter[int]:
    """The day as the producers make it: the super-app, dinsos, SIAK, licensing, the tax export."""
    answers: Counter[int] = Counter(a.status_code for a in await city.play(day))
    await city.settled(timeout=12)
    return answers


def _secrets(day: Day) -> set[str]:
    """Every NIK, KK, account id and e-mail address of the day."""
    found = {p.nik for p in day.residents} | set(day.kk.values())
    found |= {str(row["nik"]) for row in day.siak} | {str(row["no_kk"]) for row in day.siak}
    found |= {a.account_id for a in day.accounts} | {a.email for a in day.accounts}
    found |= {g.recipient for g in day.grants} | {g.kk for g in day.grants}
    found |= {str(b["nik_pemohon"]) for b in day.permits if isinstance(b, dict)}
    found |= {row["no_identitas"] for row in day.payments}
    return found


def _cli(*args: str) -> tuple[int, str]:
    """``simpul audit ...`` (typer's runner, in a thread: the command runs its own loop)."""
    result = CliRunner().invoke(audit_cli, list(args))
    return result.exit_code, result.stdout


async def test_a_full_day_is_archived_intact_tampering_is_detected_and_logs_hold_no_personal_data(
    redis_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    day = play()
    stores = sqlite_stores(tmp_path)
    caplog.set_level(logging.DEBUG)
    # Every level, whatever an earlier import or test configured; capture_logs then replaces the
    # processors (the masking one included): the lines are checked as the code wrote them.
    configure("debug", "json")
    # The day is fixed (demo.city.DAY): without an age limit the notifier mails its decisions
    # whenever the suite runs, so e-mail addresses are really in play.
    with capture_logs() as logs:
        async with city_running(redis_url, tmp_path, stores, notifier_max_age=timedelta(0)) as city:
            answers = await _play(city, day)
            assert answers == Counter({201: 6, 422: 1, 400: 1})

            # every entry of every stream archived once; specific data kept as a digest only
            lengths = await city.stream_lengths()
            assert lengths[keys.stream("dukcapil.citizen")] == 11
            assert await city.audit.count() == sum(lengths.values())
            assert await city.dead_letters() == {}
            rows = await city.audit.search(
                since="2000-01-01", limit=10_000, show_data=True, actor="e2e"
            )
            assert len(rows) == sum(lengths.values())
            for row in rows:
                assert (row["data"] is None) == (row["classification"] == "specific"), row["type"]
            kinds = Counter(row["type"] for row in rows)
            assert kinds["dukcapil.citizen.born.v1"] == 4
            assert kinds["dinkes.immunisation.scheduled.v1"] == 4
            assert kinds["dinsos.assistance.suspended.v1"] >= 2
            report = await city.audit.verify()
            assert report.ok, report.problems
            assert report.rows == len(rows)
            assert report.head is not None and report.head.seq == len(rows)

            mails = len(city.mail.messages)
            assert mails >= 3  # permits and payments of account holders were mailed
            assert mails == await city.notifier.sent_count()
            assert {m["To"] for m in city.mail.messages} <= {a.email for a in day.accounts}

    # -- no NIK, KK, account id or e-mail address in any log line --------------------------
    assert len(logs) > 100  # the capture saw the day (debug included)
    secrets = _secrets(day)
    assert len(secrets) > 80
    leaks = {s for entry in logs for s in secrets if s in repr(entry)}
    assert not leaks, f"{len(leaks)} personal values in structlog lines"
    ours = [r for r in caplog.records if not r.name.startswith(FOREIGN_LOGGERS)]
    text = "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in ours)
    leaks = {s for s in secrets if s in text}
    assert not leaks, f"{len(leaks)} personal values in stdlib log records"

    # -- tampering with the archive -----------------------------------------------------------
    db = tmp_path / "audit.db"
    code, out = await asyncio.to_thread(
        _cli, "verify", "--db", stores["audit"], "--redis-url", redis_url
    )
    assert code == 0, out
    assert "OK" in out

    with sqlite3.connect(db) as conn:
        seq, data = conn.execute(
            "SELECT seq, data FROM audit_log WHERE type = 'dukcapil.citizen.died.v1' "
            "ORDER BY seq LIMIT 1"
        ).fetchone()
        died: dict[str, Any] = json.loads(data)
        died["date_of_death"] = "2026-01-01"  # a death rewritten after the fact
        conn.execute("UPDATE audit_log SET data = ? WHERE seq = ?", (json.dumps(died), seq))
    conn.close()

    audit = Audit(Store(stores["audit"]), settings=city.settings())
    try:
        report = await audit.verify()
    finally:
        await audit.close()
    assert not report.ok
    assert [(p.seq, p.kind) for p in report.problems] == [(seq, "altered")]

    code, out = await asyncio.to_thread(
        _cli, "verify", "--db", stores["audit"], "--redis-url", redis_url
    )
    assert code == 1, out
    assert f"DAMAGED at seq {seq}" in out
    assert died["nik"] not in out  # verify never prints archived data
