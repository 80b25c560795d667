"""``simpul adapter run`` and ``simpul quarantine list|show|retry`` on a real SIAK SQLite file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis import Redis
from typer.testing import CliRunner

from adapters import dukcapil
from adapters.dpmptsp.fixtures import payloads as dpmptsp_payloads
from adapters.dukcapil.fixtures import create_sqlite, rows
from bus import keys
from bus.cli.app import app
from bus.local.redis import free_port
from bus.logging import os_user
from bus.testing import capture_logs

runner = CliRunner()


@pytest.fixture
def siak(tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    data = list(rows(40, seed=7))
    data[3]["nik"] = data[3]["nik"][:15]  # a truncated NIK, typed into an old form
    data[9]["jenis_peristiwa"] = "CERAI"  # a kind the adapter does not map
    create_sqlite(tmp_path / "siak.db", data)
    monkeypatch.setenv("SIMPUL_REDIS_URL", redis_url)
    monkeypatch.setenv("SIMPUL_DUKCAPIL_DB", str(tmp_path / "siak.db"))
    monkeypatch.setenv("SIMPUL_PSEUDONYM_KEY", "test-key-of-32-bytes-for-pseudonyms")
    return data


def _invoke(*args: str) -> Any:
    result = runner.invoke(app, list(args))
    return result


def test_run_once_publishes_the_good_rows_and_quarantines_the_bad(
    siak: list[dict[str, Any]], redis_url: str
) -> None:
    result = _invoke("adapter", "run", "adapters.dukcapil:from_env", "--once", "--json")
    assert result.exit_code == 0, result.output
    counts = json.loads(result.stdout.strip().splitlines()[-1])
    assert counts["read"] == 40 and counts["quarantined"] == 2 and counts["published"] == 38
    client = Redis.from_url(redis_url)
    published = sum(client.xlen(keys.stream(a)) for a in ("dukcapil.citizen",))
    assert published == 38

    listed = _invoke("quarantine", "list", dukcapil.NAME, "--json")
    assert listed.exit_code == 0
    entries = json.loads(listed.stdout)
    assert sorted(e["record_key"] for e in entries) == sorted(
        str(siak[i]["id_peristiwa"]) for i in (3, 9)
    )
    fields = {p["field"] for e in entries for p in e["problems"]}
    assert "nik" in fields
    assert siak[3]["nik"] not in listed.stdout  # list never shows record contents

    shown = _invoke("quarantine", "show", dukcapil.NAME, entries[0]["entry_id"], "--json")
    assert shown.exit_code == 0
    assert all(siak[i]["nik"] not in shown.stdout for i in (3, 9))  # masked by default
    shown_all = [
        _invoke("quarantine", "show", dukcapil.NAME, e["entry_id"], "--json") for e in entries
    ]
    shapes = [json.loads(result.stdout) for result in shown_all]
    assert "15 digits" in [s["raw"]["nik"] for s in shapes]  # why it failed, not what it was


def test_list_and_retry_never_quote_a_value_the_mapper_quoted(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A column shifted in an import puts a name where the kind belongs; the mapper's error
    quotes it ("unknown jenis_peristiwa 'Sri Wahyuningsih'"). The quarantine keeps the record
    for the operator (``show --reveal``), the problem says which field and why only."""
    name = "Canaryname Siti Wahyuningsih"
    data = list(rows(3, seed=7))
    data[1]["jenis_peristiwa"] = name
    create_sqlite(tmp_path / "siak.db", data)
    monkeypatch.setenv("SIMPUL_REDIS_URL", redis_url)
    monkeypatch.setenv("SIMPUL_DUKCAPIL_DB", str(tmp_path / "siak.db"))
    monkeypatch.setenv("SIMPUL_PSEUDONYM_KEY", "test-key-of-32-bytes-for-pseudonyms")
    monkeypatch.setenv("COLUMNS", "300")
    assert _invoke("adapter", "run", "adapters.dukcapil:from_env", "--once").exit_code == 0

    views = [
        _invoke("quarantine", "list", dukcapil.NAME),
        _invoke("quarantine", "list", dukcapil.NAME, "--json"),
        _invoke("quarantine", "retry", "adapters.dukcapil:from_env", "--all"),
        _invoke("quarantine", "retry", "adapters.dukcapil:from_env", "--all", "--json"),
    ]
    for view in views:
        assert "unknown jenis_peristiwa" in view.output, view.output
        assert "canaryname" not in view.output.lower(), view.output
    [entry] = json.loads(views[1].stdout)
    assert entry["problems"] == [
        {
            "field": "(record)",
            "problem": "ValueError: unknown jenis_peristiwa '***' (expected LAHIR, KEMATIAN, "
            "PINDAH)",
        }
    ]
    with capture_logs() as logs:
        revealed = _invoke("quarantine", "show", dukcapil.NAME, entry["entry_id"], "--reveal")
    assert name in revealed.stdout  # the record itself is kept whole, for the operator
    [logged] = [line for line in logs if line["event"] == "quarantine_revealed"]
    assert (logged["entry_id"], logged["by"]) == (entry["entry_id"], os_user())


def test_run_again_publishes_nothing_twice(siak: list[dict[str, Any]]) -> None:
    first = _invoke("adapter", "run", "adapters.dukcapil:from_env", "--once", "--json")
    second = _invoke("adapter", "run", "adapters.dukcapil:from_env", "--once", "--json")
    assert first.exit_code == second.exit_code == 0
    assert json.loads(second.stdout.strip().splitlines()[-1])["published"] == 0


def test_retry_with_the_same_mapper_keeps_failing_entries(siak: list[dict[str, Any]]) -> None:
    _invoke("adapter", "run", "adapters.dukcapil:from_env", "--once")
    result = _invoke("quarantine", "retry", "adapters.dukcapil:from_env", "--all", "--json")
    assert result.exit_code == 1  # nothing maps yet: the records are still wrong
    assert [o["published"] for o in json.loads(result.stdout)] == [False, False]


def test_clear_errors_for_bad_arguments(siak: list[dict[str, Any]]) -> None:
    missing = _invoke("quarantine", "show", dukcapil.NAME, "0-1")
    assert missing.exit_code == 2 and "no entry 0-1" in missing.output
    neither = _invoke("quarantine", "retry", "adapters.dukcapil:from_env")
    assert neither.exit_code == 2 and "give one ENTRY_ID or --all" in neither.output
    wrong = _invoke("adapter", "run", "adapters.dukcapil:nothing", "--once")
    assert wrong.exit_code == 2 and "has no attribute 'nothing'" in wrong.output


def test_redis_down_is_one_line_not_a_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIMPUL_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")  # nobody there
    down = _invoke("quarantine", "list", dukcapil.NAME)
    assert down.exit_code == 2, down.output
    assert "unreachable" in down.output and "127.0.0.1" in down.output
    assert "Traceback" not in down.output


@pytest.mark.slow
def test_serve_answers_the_legacy_app_and_stops_on_sigterm(redis_url: str) -> None:
    port = free_port()
    token = "a-test-token-of-enough-length"
    env = dict(
        os.environ, SIMPUL_REDIS_URL=redis_url, SIMPUL_DPMPTSP_TOKEN=token, SIMPUL_LOG_FORMAT="json"
    )
    command = [
        sys.executable,
        "-m",
        "bus.cli.app",
        "adapter",
        "serve",
        "adapters.dpmptsp:from_env",
        "--port",
        str(port),
    ]
    proc = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    try:
        payload = next(dpmptsp_payloads(1, seed=5))
        answer = _post_when_up(f"http://127.0.0.1:{port}/", payload, token, proc)
        assert answer.status_code == 201, answer.text
        again = httpx.post(
            f"http://127.0.0.1:{port}/", json=payload, headers={"Authorization": f"Bearer {token}"}
        )
        assert again.status_code == 200 and again.json()["duplicate"] is True
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""


@pytest.mark.slow
def test_serve_warns_when_the_webhook_takes_records_without_a_token(
    redis_url: str, tmp_path: Path
) -> None:
    (tmp_path / "open_hook.py").write_text(
        "from adapters import dpmptsp\n\n\n"
        "def factory(redis):\n"
        "    return dpmptsp.webhook(redis, token=None, signer=None)\n"
    )
    port = free_port()
    env = dict(
        os.environ,
        SIMPUL_REDIS_URL=redis_url,
        SIMPUL_LOG_FORMAT="json",
        PYTHONPATH=os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
    )
    command = [sys.executable, "-m", "bus.cli.app", "adapter", "serve", "open_hook:factory"]
    proc = subprocess.Popen(
        [*command, "--port", str(port)], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        answer = _post_when_up(f"http://127.0.0.1:{port}/", {}, "no-token-needed", proc)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert answer.status_code == 422  # taken without a token (and quarantined: not a permit)
    assert "has no token: anyone who reaches 127.0.0.1" in err
    assert '"event": "webhook_without_token"' in err


def _post_when_up(
    url: str, payload: Any, token: str, proc: subprocess.Popen[str]
) -> httpx.Response:
    deadline = time.monotonic() + 20
    while True:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else "server exited"
        try:
            return httpx.post(url, json=payload, headers={"Authorization": f"Bearer {token}"})
        except httpx.ConnectError:
            assert time.monotonic() < deadline, "the webhook never came up"
            time.sleep(0.05)


def test_discard_drops_one_entry_for_good(siak: list[dict[str, Any]]) -> None:
    assert _invoke("adapter", "run", "adapters.dukcapil:from_env", "--once").exit_code == 0
    entries = json.loads(_invoke("quarantine", "list", dukcapil.NAME, "--json").stdout)
    gone = entries[0]["entry_id"]
    result = _invoke("quarantine", "discard", dukcapil.NAME, gone, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["discarded"]["entry_id"] == gone
    left = json.loads(_invoke("quarantine", "list", dukcapil.NAME, "--json").stdout)
    assert [e["entry_id"] for e in left] == [e["entry_id"] for e in entries[1:]]
    again = _invoke("quarantine", "discard", dukcapil.NAME, gone)
    assert again.exit_code == 2 and f"no entry {gone}" in again.output
    assert all(siak[i]["nik"] not in result.output for i in (3, 9))


def test_checkpoint_show_and_reset(siak: list[dict[str, Any]]) -> None:
    empty = _invoke("adapter", "checkpoint", "show", dukcapil.NAME, "--json")
    assert empty.exit_code == 0 and json.loads(empty.stdout)["position"] is None
    assert _invoke("adapter", "run", "adapters.dukcapil:from_env", "--once").exit_code == 0
    shown = json.loads(_invoke("adapter", "checkpoint", "show", dukcapil.NAME, "--json").stdout)
    assert shown["position"] is not None
    people = _invoke("adapter", "checkpoint", "show", dukcapil.NAME).output
    assert json.dumps(shown["position"]) in " ".join(people.split())  # as JSON, not as styles

    unconfirmed = _invoke("adapter", "checkpoint", "reset", dukcapil.NAME, "--json")
    assert unconfirmed.exit_code == 2 and "--yes" in unconfirmed.output
    reset = _invoke("adapter", "checkpoint", "reset", dukcapil.NAME, "--yes", "--json")
    assert reset.exit_code == 0, reset.output
    expected = {"adapter": dukcapil.NAME, "reset": True, "was": shown["position"]}
    assert json.loads(reset.stdout) == expected
    assert "no checkpoint" in _invoke("adapter", "checkpoint", "show", dukcapil.NAME).output

    rerun = _invoke("adapter", "run", "adapters.dukcapil:from_env", "--once", "--json")
    counts = json.loads(rerun.stdout.strip().splitlines()[-1])
    assert counts["read"] == 40 and counts["published"] == 0  # read again, nothing twice


def test_a_checkpoint_holding_a_nik_is_shown_masked(redis_url: str) -> None:
    """A legacy table keyed by NIK: the position is the last row's key, as in simpul status."""
    nik = "3573014506900001"
    Redis.from_url(redis_url).set(
        keys.checkpoint("kependudukan"), json.dumps(["2026-11-02 08:00:00", nik])
    )
    env = {"SIMPUL_REDIS_URL": redis_url}
    views = [
        runner.invoke(app, ["adapter", "checkpoint", "show", "kependudukan"], env=env),
        runner.invoke(app, ["adapter", "checkpoint", "show", "kependudukan", "--json"], env=env),
        runner.invoke(
            app, ["adapter", "checkpoint", "reset", "kependudukan", "--yes", "--json"], env=env
        ),
    ]
    assert all(view.exit_code == 0 for view in views), [view.output for view in views]
    assert not [view.output for view in views if nik in view.output]
    assert json.loads(views[1].stdout)["position"] == ["2026-11-02 08:00:00", "***"]
    reset = views[2].stdout  # after the log line of the reset, if logs share the stream
    assert json.loads(reset[reset.index("{") :])["was"] == ["2026-11-02 08:00:00", "***"]


def test_outbox_ddl_prints_the_table_and_trigger_a_dba_installs() -> None:
    result = runner.invoke(app, ["adapter", "outbox-ddl", "peristiwa"])
    assert result.exit_code == 0, result.output
    assert 'CREATE TABLE "peristiwa_outbox"' in result.output
    assert "pg_current_xact_id()" in result.output and "AFTER INSERT OR UPDATE" in result.output
    refused = runner.invoke(app, ["adapter", "outbox-ddl", "peristiwa; DROP TABLE x"])
    assert refused.exit_code != 0 and "plain SQL identifier" in refused.output


def test_a_binlog_adapter_starts_its_next_pass_at_once_and_a_polling_one_waits(
    tmp_path: Path,
) -> None:
    """``simpul adapter run`` without --poll: 0 s between passes for the row binlog (a pass
    waits for a change itself), the source's 5 s for polling."""
    from redis.asyncio import Redis as AsyncRedis  # noqa: PLC0415

    from adapters import disnaker  # noqa: PLC0415
    from bus.cli.adapter import _source_interval  # noqa: PLC0415

    url = "mysql://simpul@127.0.0.1:1/disnaker"  # building a source connects to nothing
    redis = AsyncRedis.from_url("redis://127.0.0.1:1/0")  # nor does building an adapter
    binlog = disnaker.adapter(redis, url, binlog=True, signer=None)
    polling = disnaker.adapter(redis, url, binlog=False, signer=None)
    assert (_source_interval(binlog), _source_interval(polling)) == (0.0, 5.0)
