"""kill -9 the change-data-capture adapter, or the database, while writers commit: each
committed row is published once.

The adapter runs as a process (``python -m tests.adapters.siak_cdc``) following the slot while a
thread inserts rows in small transactions. Writers only insert, so the table itself says which
row versions committed (a commit cut off by the database's death may or may not have).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from redis import Redis as SyncRedis

from adapters import dukcapil
from adapters.dukcapil.fixtures import as_params, rows
from adapters.dukcapil.schema import insert_sql
from bus import event_id
from bus.local.postgres import EmbeddedPostgres
from tests.adapters import siak_cdc
from tests.adapters.crashing import wait_for_growth
from tests.adapters.test_dukcapil import load_postgres
from tests.adapters.writers import STREAM

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
ROWS = 3_000


def start(url: str, slot: str, redis_url: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "SIMPUL_REDIS_URL": redis_url}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.adapters.siak_cdc", url, slot],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
    )


class Writer(threading.Thread):
    """Inserts ROWS rows in transactions of 1-4 rows, riding out the database's restarts."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url

    def run(self) -> None:
        rng = random.Random(7)
        pending = list(rows(ROWS, seed=31, first_id=1))
        while pending:
            try:
                with psycopg.connect(self.url, connect_timeout=2) as conn:
                    while pending:
                        size = rng.randint(1, 4)
                        # Never retried: a commit cut off may have happened; the table knows.
                        chunk, pending = pending[:size], pending[size:]
                        with conn.transaction():
                            for row in chunk:
                                conn.execute(
                                    insert_sql("postgresql"),  # type: ignore[arg-type]
                                    as_params(row, "postgresql"),
                                )
                        time.sleep(rng.uniform(0.003, 0.012))
            except psycopg.OperationalError:
                time.sleep(0.2)  # the database is down: an unfinished commit is in doubt


def committed_ids(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        found = conn.execute("SELECT id_peristiwa, versi FROM peristiwa").fetchall()
    return {event_id(dukcapil.SOURCE, dukcapil.TABLE, key, versi) for key, versi in found}


def drain(redis: SyncRedis, url: str, proc: subprocess.Popen[bytes]) -> list[str]:
    """Wait until the stream holds every committed row, then stop the adapter."""
    expected = committed_ids(url)
    deadline = time.monotonic() + 60
    while redis.xlen(STREAM) < len(expected) and time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode()  # type: ignore[union-attr]
        time.sleep(0.1)
    time.sleep(0.5)  # anything published twice would show up now
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    ids = [f[b"id"].decode() for _, f in redis.xrange(STREAM)]
    assert len(ids) == len(set(ids)), "a committed row was published twice"
    assert set(ids) == expected, f"{len(expected - set(ids))} committed rows never published"
    return ids


@pytest.fixture
def slot(postgres_url: str) -> Iterator[str]:
    yield from siak_cdc.slot_fixture(postgres_url)


def test_sigkill_of_the_cdc_adapter_mid_stream_publishes_each_committed_row_once(
    postgres_url: str, slot: str, redis_url: str
) -> None:
    load_postgres(postgres_url, [])
    redis = SyncRedis.from_url(redis_url)
    writer = Writer(postgres_url)
    writer.start()
    rng = random.Random(2026)
    for _ in range(4):
        proc = start(postgres_url, slot, redis_url)
        wait_for_growth(redis, STREAM, proc, redis.xlen(STREAM))
        time.sleep(rng.uniform(0.05, 0.2))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert redis.xlen(STREAM) < ROWS, "the kills came too late to test anything"
    final = start(postgres_url, slot, redis_url)
    writer.join(timeout=60)
    assert len(drain(redis, postgres_url, final)) == ROWS
    redis.close()


def test_sigkill_of_postgresql_mid_stream_publishes_each_committed_row_once(
    redis_url: str,
) -> None:
    with EmbeddedPostgres(durable=True) as server:
        url = server.url
        load_postgres(url, [])
        redis = SyncRedis.from_url(redis_url)
        writer = Writer(url)
        writer.start()
        time.sleep(0.3)  # rows for the initial snapshot
        proc = start(url, "simpul_crash", redis_url)
        # Once early (most likely in the snapshot), once while streaming.
        for published in (0, ROWS // 2):
            wait_for_growth(redis, STREAM, proc, published)
            server.crash()  # the postmaster and every backend, at once
            time.sleep(0.3)
            server.start()
        assert redis.xlen(STREAM) < ROWS, "the crashes came too late to test anything"
        writer.join(timeout=90)
        assert not writer.is_alive(), "the writer did not finish"
        drain(redis, url, proc)
        redis.close()
