"""``simpul run`` runs a service as a FastStream app and stops gracefully on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from redis import Redis

from bus import keys
from bus.envelope import Envelope, format_time

ROOT = Path(__file__).parent.parent
STREAM = keys.stream("dukcapil.citizen")


def _simpul(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bus.cli", *args], cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _env(redis_url: str, **extra: str) -> dict[str, str]:
    env = dict(
        os.environ, SIMPUL_REDIS_URL=redis_url, SIMPUL_LOG_FORMAT="json", SIMPUL_BLOCK_MS="100"
    )
    env.update(extra)
    return env


def _died(event_id: str) -> dict[str, str]:
    data = '{"nik":"3573014506900001","date_of_death":"2026-11-01","kecamatan":"35.73.01"}'
    envelope = Envelope(
        id=event_id, source="urn:test", type="dukcapil.citizen.died.v1",
        time=format_time(datetime.now(UTC)),
        dataschema="simpul:dukcapil.citizen.died:1.0", data=data,
    )  # fmt: skip
    return envelope.to_fields()


@pytest.mark.slow
def test_run_consumes_and_stops_gracefully_on_sigterm(redis_url: str) -> None:
    client = Redis.from_url(redis_url)
    client.xadd(STREAM, _died("cli-1"))  # type: ignore[arg-type]
    proc = _simpul("run", "tests.slow_service:service", env=_env(redis_url))
    try:
        deadline = time.monotonic() + 30
        while client.get("test:slow:started") is None:  # the handler is running now
            assert proc.poll() is None, proc.communicate()[1][-2000:]
            assert time.monotonic() < deadline, "handler never started"
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-2000:]
    assert client.lrange("test:slow:done", 0, -1) == [b"cli-1"]  # finished, not cut short
    assert client.xpending(STREAM, "slow")["pending"] == 0  # and acked before exit
    assert '"event": "consumer_stopped"' in err


def test_run_with_a_bad_target_exits_2_with_a_message(redis_url: str) -> None:
    proc = _simpul("run", "tests.nowhere:service", env=_env(redis_url))
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert "cannot import 'tests.nowhere'" in err
    assert "Traceback" not in err


def test_run_refuses_to_start_without_redis_url() -> None:
    env = {k: v for k, v in os.environ.items() if k != "SIMPUL_REDIS_URL"}
    proc = _simpul("run", "tests.slow_service:service", env=env)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert "set SIMPUL_REDIS_URL" in err
