"""kill -9 during a 10,000-record backfill, restart, repeat: one stream entry per record.

The adapter runs as a subprocess (``python -m adapters.dukcapil``) and is SIGKILLed at points
drawn from a fixed seed, each time once the stream has grown since the last kill, so every kill
lands mid-backfill. After each kill the checkpoint must not be ahead of the stream.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from redis import Redis as SyncRedis

from adapters import dukcapil
from adapters.dukcapil.fixtures import create_sqlite, rows
from bus import keys
from tests.adapters.crashing import kill_repeatedly
from tests.adapters.test_dukcapil import KEY, load_postgres

pytestmark = pytest.mark.slow

RECORDS = 10_000
KILLS = 4
STREAM = keys.stream("dukcapil.citizen")
ROOT = Path(__file__).resolve().parents[2]


def start(db: str, redis_url: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "SIMPUL_REDIS_URL": redis_url, "SIMPUL_PSEUDONYM_KEY": KEY.decode()}
    return subprocess.Popen(
        [sys.executable, "-m", "adapters.dukcapil", db, "--batch-size", "250"],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
    )


def assert_checkpoint_not_ahead(redis: SyncRedis, data: list[dict[str, Any]]) -> None:
    """Every record at or before the checkpoint's position is in the stream. The position is
    (updated_at, no_urut); the fixture's updated_at never decreases, so the records covered are
    the first ``no_urut`` inserted."""
    raw = redis.get(keys.checkpoint(dukcapil.NAME))
    if raw is None:
        return
    _, row_number = json.loads(raw)
    in_stream = {f[b"id"].decode() for _, f in redis.xrange(STREAM)}
    missing = [r["id_peristiwa"] for r in data[:row_number] if expected(r) not in in_stream]
    assert not missing, f"checkpoint ran ahead of the stream: {missing[:5]}"


def expected(row: dict[str, Any]) -> str:
    return dukcapil.map_record(row, pseudonym_key=KEY)[1]


def backfill_with_kills(db: str, redis_url: str, data: list[dict[str, Any]]) -> None:
    redis = SyncRedis.from_url(redis_url)

    def check() -> None:
        assert_checkpoint_not_ahead(redis, data)

    kill_repeatedly(
        lambda: start(db, redis_url),
        redis,
        STREAM,
        records=RECORDS,
        kills=KILLS,
        seed=4_2026,
        after_kill=check,
    )

    ids = [f[b"id"].decode() for _, f in redis.xrange(STREAM)]
    assert redis.xlen(STREAM) == len(ids) == RECORDS
    assert set(ids) == {expected(r) for r in data}
    redis.close()


def test_sigkill_during_a_sqlite_backfill_leaves_one_entry_per_record(
    tmp_path: Path, redis_url: str
) -> None:
    data = list(rows(RECORDS, seed=99))
    create_sqlite(tmp_path / "siak.db", data)
    backfill_with_kills(str(tmp_path / "siak.db"), redis_url, data)


def test_sigkill_during_a_postgresql_backfill_leaves_one_entry_per_record(
    postgres_url: str,
    redis_url: str,
) -> None:
    data = list(rows(RECORDS, seed=98))
    load_postgres(postgres_url, data)
    backfill_with_kills(postgres_url, redis_url, data)
