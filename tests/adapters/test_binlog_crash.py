"""SIGKILL the binlog adapter, or the database, mid-stream: every committed row version once.

The adapter runs as ``simpul adapter run adapters.dukcapil:from_env`` with the binlog source
(``SIMPUL_DUKCAPIL_CDC=1``) while writer threads commit inserts and updates; it is SIGKILLed
at points drawn from a fixed seed and started again. In the second test mariadbd itself is
SIGKILLed and restarted on the same data and port while the adapter and the writers run on. The
truth is the table afterwards: each row at version v was committed at versions 1..v (updates
bump versi by one in SQL, so a commit whose answer was lost to a kill is still counted).
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
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pymysql
import pytest
from redis import Redis as SyncRedis

from adapters import dukcapil
from adapters.dukcapil.fixtures import as_params, rows
from adapters.dukcapil.schema import insert_sql
from bus import keys
from bus.errors import SourceError
from bus.local.mariadb import EmbeddedMariaDB
from tests.adapters.contract import create_mysql, insert_mysql
from tests.adapters.crashing import wait_for_growth
from tests.adapters.test_binlog import expected_id
from tests.adapters.test_dukcapil import KEY
from tests.conftest import mysql_connect

pytestmark = pytest.mark.slow

STREAM = keys.stream("dukcapil.citizen")
ROOT = Path(__file__).resolve().parents[2]


def start_adapter(db: str, redis_url: str, *, once: bool = False) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "SIMPUL_REDIS_URL": redis_url,
        "SIMPUL_PSEUDONYM_KEY": KEY.decode(),
        "SIMPUL_DUKCAPIL_DB": db,
        "SIMPUL_DUKCAPIL_CDC": "1",
        "SIMPUL_LOG_LEVEL": "warning",
    }
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bus.cli.app",
            "adapter",
            "run",
            "adapters.dukcapil:from_env",
            *(["--once"] if once else ["--poll", "0.02"]),
        ],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
    )


class Writers:
    """Threads committing an insert, and every other time an update, per transaction, riding
    out a database that goes away (a failed transaction is retried as a new one)."""

    def __init__(self, url: str, *, count: int, per_writer: int, think: float = 0.04) -> None:
        self.url, self.count, self.per_writer, self.think = url, count, per_writer, think
        self.threads = [threading.Thread(target=self._write, args=(w,)) for w in range(count)]

    def __enter__(self) -> Writers:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.join()

    def join(self) -> None:
        for thread in self.threads:
            thread.join()

    def finished(self) -> bool:
        return not any(thread.is_alive() for thread in self.threads)

    def _write(self, writer: int) -> None:
        rng = random.Random(writer)
        data = list(rows(self.per_writer, seed=writer, first_id=(writer + 1) * 100_000))
        done = 0
        conn = None
        while done < len(data):
            try:
                conn = conn or mysql_connect(self.url, autocommit=False)
                with conn.cursor() as cursor:
                    row = {**data[done], "updated_at": datetime.now()}
                    cursor.execute(insert_sql("mysql"), as_params(row, "mysql"))
                    time.sleep(rng.uniform(0, self.think))
                    if done and rng.random() < 0.5:
                        cursor.execute(
                            "UPDATE peristiwa SET versi = versi + 1, updated_at = %s "
                            "WHERE id_peristiwa = %s",
                            (datetime.now(), data[rng.randrange(done)]["id_peristiwa"]),
                        )
                conn.commit()
                done += 1
            except pymysql.err.MySQLError:
                conn = None  # the server went away: reconnect and write this row again
                time.sleep(0.05)
                # A commit whose answer was lost may have landed: never insert a row twice.
                done += _landed(self.url, data[done]["id_peristiwa"])


def _landed(url: str, id_peristiwa: int) -> int:
    while True:
        try:
            with mysql_connect(url) as conn, conn.cursor() as cursor:
                cursor.execute("SELECT 1 FROM peristiwa WHERE id_peristiwa = %s", (id_peristiwa,))
                return 1 if cursor.fetchone() else 0
        except pymysql.err.MySQLError:
            time.sleep(0.05)


def create_indexed(url: str, redis_url: str) -> None:
    """The SIAK table, with an index on the business id the writers update by (without it,
    InnoDB locks the whole scan and concurrent updates deadlock), and one row published by a
    first pass: from that checkpoint on the binlog holds every version. (Before a first
    checkpoint the source starts with a snapshot, which holds each row's state then, not the
    versions that led to it.)"""
    create_mysql(url)
    with mysql_connect(url) as conn, conn.cursor() as cursor:
        cursor.execute("CREATE INDEX peristiwa_id ON peristiwa (id_peristiwa)")
    insert_mysql(url, list(rows(1, seed=1, first_id=1)))
    first = start_adapter(url, redis_url, once=True)
    _, stderr = first.communicate(timeout=60)
    assert first.returncode == 0, stderr.decode()


def committed(url: str) -> set[str]:
    with mysql_connect(url) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT id_peristiwa, versi FROM peristiwa")
        return {expected_id(k, v) for k, final in cursor.fetchall() for v in range(1, final + 1)}


def wait_for_all(redis: SyncRedis, expected: set[str], proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while redis.xlen(STREAM) < len(expected):
        assert proc.poll() is None, f"adapter exited: {proc.stderr.read()!r}"  # type: ignore[union-attr]
        assert time.monotonic() < deadline, f"{redis.xlen(STREAM)} of {len(expected)} published"
        time.sleep(0.05)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)


def assert_each_once(redis: SyncRedis, expected: set[str]) -> None:
    ids = [f[b"id"].decode() for _, f in redis.xrange(STREAM)]
    assert len(ids) == len(set(ids)), "no row version twice"
    assert set(ids) == expected, (
        f"missing {len(expected - set(ids))}, extra {len(set(ids) - expected)}"
    )


def caught_up(redis: SyncRedis, url: str, writers: Writers) -> bool:
    """The writers have ended and the stream holds every committed version."""
    return writers.finished() and redis.xlen(STREAM) >= len(committed(url))


def wait_for_growth_unless_caught_up(
    redis: SyncRedis, url: str, writers: Writers, proc: subprocess.Popen[bytes]
) -> None:
    """Return once the adapter published something, or once nothing is left for it to publish
    (the writers ended while an earlier run was catching up)."""
    since = redis.xlen(STREAM)
    deadline = time.monotonic() + 60
    while redis.xlen(STREAM) <= since and not caught_up(redis, url, writers):
        assert proc.poll() is None, f"adapter exited early: {proc.stderr.read()!r}"  # type: ignore[union-attr]
        assert time.monotonic() < deadline, "the adapter made no progress"
        time.sleep(0.02)


def test_sigkill_of_the_binlog_adapter_mid_stream_loses_and_repeats_nothing(
    mysql_url: str, redis_url: str
) -> None:
    create_indexed(mysql_url, redis_url)
    redis = SyncRedis.from_url(redis_url)
    rng = random.Random(13)
    behind_at_a_kill = False
    with Writers(mysql_url, count=6, per_writer=400) as writers:
        for _ in range(4):
            if caught_up(redis, mysql_url, writers):
                break  # a slowed machine: the writers ended and an earlier run caught up
            proc = start_adapter(mysql_url, redis_url)
            wait_for_growth_unless_caught_up(redis, mysql_url, writers, proc)
            time.sleep(rng.uniform(0.05, 0.3))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            # Asked at each kill, not only at the end: an adapter that keeps up with writers
            # slowed by a busy machine may have caught up by the time they finish.
            behind_at_a_kill |= redis.xlen(STREAM) < len(committed(mysql_url))
        writers.join()
    expected = committed(mysql_url)
    assert behind_at_a_kill, "the kills came too late to test anything"
    final = start_adapter(mysql_url, redis_url)
    try:
        wait_for_all(redis, expected, final)
    finally:
        stop(final)
    assert_each_once(redis, expected)
    redis.close()


@pytest.fixture
def private_mariadb() -> Iterator[EmbeddedMariaDB]:
    with EmbeddedMariaDB() as server:
        yield server


def test_sigkill_and_restart_of_mariadb_mid_stream_loses_and_repeats_nothing(
    private_mariadb: EmbeddedMariaDB, redis_url: str
) -> None:
    server = urlsplit(private_mariadb.url)
    with mysql_connect(private_mariadb.url) as conn, conn.cursor() as cursor:
        cursor.execute("CREATE DATABASE siak")
    url = urlunsplit(server._replace(path="/siak"))
    create_indexed(url, redis_url)
    redis = SyncRedis.from_url(redis_url)
    adapter = start_adapter(url, redis_url)
    try:
        with Writers(url, count=4, per_writer=400):
            for _ in range(2):
                wait_for_growth(redis, STREAM, adapter, redis.xlen(STREAM))
                private_mariadb.kill()
                private_mariadb.start()
        expected = committed(url)
        wait_for_all(redis, expected, adapter)
    finally:
        stop(adapter)
    assert_each_once(redis, expected)
    redis.close()


async def test_a_pass_after_the_server_restarted_with_nothing_new_returns_promptly(
    private_mariadb: EmbeddedMariaDB, redis: Any
) -> None:
    """After a restart the binlog's new file holds only bookkeeping events: the source must see
    that it has read everything rather than wait for a commit that is not coming; the pass that
    finds the connection lost fails with a SourceError, which the runner retries."""
    with mysql_connect(private_mariadb.url) as conn, conn.cursor() as cursor:
        cursor.execute("CREATE DATABASE siak")
    url = private_mariadb.url_for("siak")
    create_mysql(url)
    insert_mysql(url, list(rows(3, seed=1)))
    adapter = dukcapil.adapter(redis, url, pseudonym_key=KEY, cdc=True)
    try:
        await adapter.run_once()
        private_mariadb.stop()
        private_mariadb.start()
        with pytest.raises(SourceError):  # the reader lost its connection: a pass fails
            await adapter.run_once()
        started = time.monotonic()
        await adapter.run_once()
        took = time.monotonic() - started
    finally:
        await adapter.source.close()  # type: ignore[attr-defined]
    assert adapter.progress.published == 3
    assert took < 5, f"a pass with nothing new took {took:.1f} s"
