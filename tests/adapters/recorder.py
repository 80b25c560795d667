"""A fault run judged by a recorder of its own, not by the adapter's bookkeeping.

Writer threads run transactions of several shapes against the SIAK table — short ones, updates
of their own earlier rows, long ones (so commits land out of id and stamp order), rolled-back
ones and bulk ones of 120 rows — and append each row version to ``committed.log`` (fsync per
line) only once COMMIT returned; fresh rows of rolled-back transactions go to
``rolledback.log``, versions whose COMMIT raised to ``indoubt.log`` (the table says afterwards
whether they landed). A reader thread appends every entry of the department stream to
``stream.log``, following it across Redis restarts. Faults come in between: the adapter process
SIGKILLed and started again, redis-server SIGKILLed and restarted (AOF, ``appendfsync always``),
the adapter's database connections killed by the server (a walsender or binlog dump among them),
the log rotated while the adapter is down (``pg_switch_wal`` and a checkpoint; ``FLUSH BINARY
LOGS``), the database server SIGKILLed and restarted. :meth:`Run.judge` compares the logs.

``python -m tests.adapters.recorder SOURCE [--seconds S] [--faults adapter,redis,...]`` runs
one on private servers and prints the figures; SOURCE is ``logical``, ``binlog``, ``outbox``
(the PostgreSQL txid outbox), ``settle-pg`` or ``settle-mysql`` (the change column).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

import psycopg
import pymysql
from redis import Redis as SyncRedis
from redis.exceptions import RedisError

from adapters import dukcapil
from adapters.dukcapil.fixtures import as_params, rows
from adapters.dukcapil.schema import Dialect, insert_sql
from bus import event_id, keys
from bus.local.mariadb import EmbeddedMariaDB
from bus.local.postgres import EmbeddedPostgres
from bus.local.redis import EmbeddedRedis
from tests.adapters.contract import create_mysql
from tests.adapters.test_dukcapil import KEY, load_postgres
from tests.conftest import mysql_connect

ROOT = Path(__file__).resolve().parents[2]
STREAM = keys.stream("dukcapil.citizen")
SOURCES = ("logical", "binlog", "outbox", "settle-pg", "settle-mysql")
FAULTS = ("adapter", "redis", "conn", "rotate", "server")
ME = "simpul_recorder"  # the application_name of the recorder's own PostgreSQL sessions

Version = tuple[int, int]  # (id_peristiwa, versi)
# Transaction shapes and how often each comes: a few rows, updates of the writer's own rows, a
# long one (commits out of id and stamp order), a rolled-back one, and a bulk one larger than the
# logical adapter's batch (50), which a batch boundary splits.
SHAPES, WEIGHTS = ("short", "update", "long", "rollback", "bulk"), (50, 30, 10, 10, 1)
BULK = 120


def eid(version: Version) -> str:
    return event_id(dukcapil.SOURCE, dukcapil.TABLE, *version)


class Log:
    """Lines appended and fsynced one by one: what is in the file happened."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = path.open("a")
        self._lock = threading.Lock()

    def add(self, version: Version) -> None:
        with self._lock:
            self._file.write(f"{version[0]} {version[1]}\n")
            self._file.flush()
            os.fsync(self._file.fileno())

    def read(self) -> list[Version]:
        pairs = (line.split() for line in self.path.read_text().splitlines())
        return [(int(k), int(v)) for k, v in pairs]


class Database:
    """What the writers and the faults need of one database server."""

    dialect: ClassVar[Dialect]
    url: str

    def connect(self) -> Any:
        raise NotImplementedError

    def kill_connections(self) -> int:
        raise NotImplementedError

    def rotate(self) -> None:
        raise NotImplementedError

    def restart(self) -> None:
        raise NotImplementedError

    def stamp(self) -> datetime:
        return datetime.now(dukcapil.WIB).replace(tzinfo=None)

    def insert(self, conn: Any, row: dict[str, Any]) -> None:
        with conn.cursor() as cursor:
            cursor.execute(insert_sql(self.dialect), as_params(row, self.dialect))

    def bump(self, conn: Any, key: int) -> None:
        with conn.cursor() as cursor:
            cursor.execute(
                "UPDATE peristiwa SET versi = versi + 1, updated_at = %s WHERE id_peristiwa = %s",
                (self.stamp(), key),
            )

    def table(self) -> dict[int, int]:
        with contextlib.closing(self.connect()) as conn, conn.cursor() as cursor:
            cursor.execute("SELECT id_peristiwa, versi FROM peristiwa")
            found = {int(k): int(v) for k, v in cursor.fetchall()}
            conn.rollback()
            return found


class Postgres(Database):
    dialect = "postgresql"

    def __init__(self, server: EmbeddedPostgres) -> None:
        self.server, self.url = server, server.url
        load_postgres(self.url, list(rows(1, seed=1, first_id=1)))

    def connect(self) -> Any:
        return psycopg.connect(self.url, connect_timeout=3, application_name=ME)

    def _admin(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.url, autocommit=True, application_name=ME)

    def kill_connections(self) -> int:
        with self._admin() as conn:
            found = conn.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name <> %s AND backend_type IN ('client backend', 'walsender')",
                [ME],
            ).fetchone()
        return int(found[0]) if found else 0

    def rotate(self) -> None:
        with self._admin() as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS ballast (n int)")
            for _ in range(2):
                conn.execute("INSERT INTO ballast SELECT generate_series(1, 20000)")
                conn.execute("SELECT pg_switch_wal()")
            conn.execute("CHECKPOINT")

    def restart(self) -> None:
        self.server.crash()
        self.server.start()


class MariaDB(Database):
    dialect = "mysql"

    def __init__(self, server: EmbeddedMariaDB) -> None:
        self.server, self.url = server, server.url_for("siak")
        self._mine: set[int] = set()  # the recorder's own connection ids
        with mysql_connect(server.url) as conn, conn.cursor() as cursor:
            cursor.execute("CREATE DATABASE siak")
        create_mysql(self.url)
        with mysql_connect(self.url) as conn, conn.cursor() as cursor:
            # The writers update by the business id: without an index InnoDB locks the scan.
            cursor.execute("CREATE INDEX peristiwa_id ON peristiwa (id_peristiwa)")
            cursor.execute(insert_sql("mysql"), as_params(next(iter(rows(1, seed=1))), "mysql"))

    def connect(self) -> Any:
        conn = mysql_connect(self.url, autocommit=False, connect_timeout=3)
        self._mine.add(conn.thread_id())
        return conn

    def kill_connections(self) -> int:
        killed = 0
        with mysql_connect(self.url) as conn, conn.cursor() as cursor:
            cursor.execute("SELECT ID, COMMAND FROM information_schema.PROCESSLIST")
            for pid, command in cursor.fetchall():
                if pid in self._mine or pid == conn.thread_id() or command == "Daemon":
                    continue
                with contextlib.suppress(pymysql.err.MySQLError):  # gone meanwhile
                    cursor.execute(f"KILL CONNECTION {int(pid)}")
                    killed += 1
        return killed

    def rotate(self) -> None:
        with mysql_connect(self.url) as conn, conn.cursor() as cursor:
            for _ in range(3):
                cursor.execute("FLUSH BINARY LOGS")

    def restart(self) -> None:
        self.server.kill()
        self.server.start()


@dataclass
class Writers:
    """Threads committing transactions of several shapes until :meth:`join`."""

    db: Database
    folder: Path
    count: int = 6
    long_s: float = 2.0  # the longest transaction (below a settle window, for polling)
    seed: int = 1
    counts: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.committed = Log(self.folder / "committed.log")
        self.rolled_back = Log(self.folder / "rolledback.log")
        self.in_doubt = Log(self.folder / "indoubt.log")
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._write, args=(w,), daemon=True) for w in range(self.count)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def join(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)

    def _write(self, writer: int) -> None:
        rng = random.Random(self.seed * 1000 + writer)
        fresh = rows(100_000, seed=self.seed + writer, first_id=(writer + 1) * 1_000_000)
        mine: dict[int, int] = {}  # my rows and their committed versions
        conn = None
        while not self._stop.is_set():
            shape = rng.choices(SHAPES, WEIGHTS)[0]
            written: list[Version] = []
            try:
                conn = conn or self.db.connect()
                written = self._statements(conn, shape, rng, fresh, mine)
                if shape == "long":
                    time.sleep(rng.uniform(0.3 * self.long_s, self.long_s))
                if shape == "rollback":
                    conn.rollback()
                    for version in written:
                        if version[1] == 1:  # a fresh key: never committed, ever
                            self.rolled_back.add(version)
                    self.counts["rolled back"] += len(written)
                    continue
            except Exception:  # the server went away before COMMIT
                conn = None
                self.counts["aborted by a fault"] += 1
                time.sleep(0.1)
                continue
            try:
                conn.commit()
            except Exception:  # in doubt: the table will say
                conn = None
                for version in written:
                    self.in_doubt.add(version)
                self.counts["in doubt"] += len(written)
                mine.update(self._current(written))
                continue
            for version in written:
                self.committed.add(version)
                mine[version[0]] = version[1]
            self.counts["committed"] += len(written)
            time.sleep(rng.uniform(0.002, 0.01))

    def _statements(
        self,
        conn: Any,
        shape: str,
        rng: random.Random,
        fresh: Iterator[dict[str, Any]],
        mine: dict[int, int],
    ) -> list[Version]:
        """One transaction's inserts and updates (not committed yet): the versions written."""
        written: list[Version] = []
        for _ in range(BULK if shape == "bulk" else rng.randint(1, 3)):
            key = rng.choice(list(mine)) if mine and shape == "update" else None
            if key is not None and all(k != key for k, _ in written):
                self.db.bump(conn, key)
                written.append((key, mine[key] + 1))
            else:
                row = {**next(fresh), "updated_at": self.db.stamp()}
                self.db.insert(conn, row)
                written.append((row["id_peristiwa"], 1))
            if shape != "bulk":
                time.sleep(rng.uniform(0, 0.02))  # the request's other work
        return written

    def _current(self, written: list[Version]) -> dict[int, int]:
        """The versions in the table of rows whose COMMIT was in doubt."""
        deadline = time.monotonic() + 60
        while True:
            try:
                table = self.db.table()
                return {k: table[k] for k, _ in written if k in table}
            except Exception:  # the server is still coming back
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)


class Reader(threading.Thread):
    """Every entry of the department stream, in order, across Redis restarts."""

    def __init__(self, url: str, folder: Path) -> None:
        super().__init__(daemon=True)
        self.url, self.path = url, folder / "stream.log"
        self.entries = 0
        self._stopping = threading.Event()

    def run(self) -> None:
        last = "0-0"
        with SyncRedis.from_url(self.url, socket_timeout=2) as redis, self.path.open("a") as log:
            while True:
                try:
                    got = redis.xread({STREAM: last}, count=500, block=200)
                except (RedisError, OSError):
                    time.sleep(0.1)
                    continue
                if not got:
                    if self._stopping.is_set():
                        return
                    continue
                for entry, fields in got[0][1]:
                    last = entry.decode()
                    log.write(f"{last} {fields[b'id'].decode()}\n")
                    self.entries += 1
                log.flush()

    def ids(self) -> list[str]:
        return [line.split()[1] for line in self.path.read_text().splitlines()]

    def stop(self) -> None:
        self._stopping.set()
        self.join(10)


class AdapterProcess:
    """The SIAK adapter as a process reading ``source``, SIGKILLed and started again at will."""

    def __init__(self, source: str, db: Database, redis_url: str, folder: Path) -> None:
        self.env = {
            **os.environ,
            "SIMPUL_REDIS_URL": redis_url,
            "SIMPUL_PSEUDONYM_KEY": KEY.decode(),
            "SIMPUL_DUKCAPIL_DB": db.url,
            "SIMPUL_LOG_LEVEL": "warning",
            "SIMPUL_DUKCAPIL_CDC": "1" if source == "binlog" else "",
            "SIMPUL_DUKCAPIL_OUTBOX": "1" if source == "outbox" else "",
        }
        if source == "logical":  # batches of 50: a kill lands inside transactions' batches
            self.command = ["-m", "tests.adapters.siak_cdc", db.url, "simpul_recorder"]
        else:
            self.command = ["-m", "bus.cli.app", "adapter", "run", "adapters.dukcapil:from_env"]
            self.command += ["--poll", "0.05"]
        self.log = folder / "adapter.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, *self.command],
                cwd=ROOT,
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        self.starts += 1

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def ensure_running(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            self.start()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class Run:
    """One fault run over private servers in ``folder``."""

    source: str
    folder: Path
    redis: EmbeddedRedis
    db: Database
    seed: int = 1
    faults_done: list[str] = field(default_factory=list)
    killed_connections: int = 0

    def __post_init__(self) -> None:
        settle = self.source.startswith("settle")
        self.seeded = self.db.table()  # one row, for the first pass to publish
        self.reader = Reader(self.redis.url, self.folder)
        self.adapter = AdapterProcess(self.source, self.db, self.redis.url, self.folder)
        self.writers = Writers(self.db, self.folder, long_s=3.0 if settle else 2.0, seed=self.seed)

    def mid_batch(self, rng: random.Random) -> None:
        """Return just after the adapter published something (at most 5 s on): a fault then
        lands while it is at work, between a batch's publish and its checkpoint or in the
        next one."""
        since, deadline = self.reader.entries, time.monotonic() + 5
        while self.reader.entries == since and time.monotonic() < deadline:
            time.sleep(0.002)
        time.sleep(rng.uniform(0, 0.03))

    def inject(self, fault: str, rng: random.Random) -> None:
        if fault in ("adapter", "redis", "conn"):
            self.mid_batch(rng)
        at = self.reader.entries
        if fault == "adapter":
            self.adapter.kill()
            time.sleep(rng.uniform(0.1, 0.5))
            self.adapter.start()
        elif fault == "redis":
            self.redis.kill()  # only what appendfsync always wrote survives
            time.sleep(rng.uniform(0.2, 1.0))
            self.redis.start()
        elif fault == "conn":
            self.killed_connections += self.db.kill_connections()
        elif fault == "rotate":
            self.adapter.kill()
            self.db.rotate()
            time.sleep(rng.uniform(0.3, 1.0))  # writers commit into the new files meanwhile
            self.db.rotate()
            self.adapter.start()
        elif fault == "server":
            self.db.restart()
        self.faults_done.append(f"{fault}@{at}")

    def run(self, faults: list[str], *, rounds: int, seconds: float) -> dict[str, Any]:
        """Write for about ``seconds`` with ``rounds`` of ``faults`` in between, then wait for
        the adapter to publish everything and judge."""
        rng = random.Random(self.seed)
        self.reader.start()
        self.adapter.start()
        try:
            self._wait(lambda: self.reader.entries >= len(self.seeded), 30, "the first pass")
            self.writers.start()
            pause = seconds / (len(faults) * rounds + 1)
            for _ in range(rounds):
                for fault in faults:
                    time.sleep(pause * rng.uniform(0.5, 1.5))
                    self.inject(fault, rng)
                    self.adapter.ensure_running()  # a configuration error would show in judge
            time.sleep(pause)
            self.writers.join()
            want, deadline = self.expected(), time.monotonic() + 60
            while not want <= set(self.reader.ids()) and time.monotonic() < deadline:
                self.adapter.ensure_running()
                time.sleep(0.2)  # judged either way: what is missing then counts as lost
            time.sleep(1.0)  # anything published twice would show up now
        finally:
            self.writers.join()
            self.adapter.stop()
            self.reader.stop()
        return self.judge()

    def committed(self) -> set[Version]:
        """Every row version committed: logged after COMMIT returned, or in doubt and found in
        the table, or seeded before the run."""
        table = self.db.table()
        doubt = {v for v in self.writers.in_doubt.read() if table.get(v[0], 0) >= v[1]}
        return set(self.writers.committed.read()) | doubt | set(self.seeded.items())

    def expected(self) -> set[str]:
        """What the source promises to publish: every version (the logs and the txid outbox)
        or, by a change column, each row's latest (states, not history)."""
        versions = self.committed()
        if not self.source.startswith("settle"):
            return {eid(v) for v in versions}
        latest: dict[int, int] = {}
        for key, versi in versions:
            latest[key] = max(versi, latest.get(key, 0))
        return {eid(v) for v in latest.items()}

    def judge(self) -> dict[str, Any]:
        versions = self.committed()
        table = self.db.table()
        latest = {k: max(v for kk, v in versions if kk == k) for k, _ in versions}
        assert latest == table, "the recorder and the table disagree"
        stream = self.reader.ids()
        on_stream = Counter(stream)
        with SyncRedis.from_url(self.redis.url) as redis:
            stored = Counter(f[b"id"].decode() for _, f in redis.xrange(STREAM))
            quarantined = redis.xlen(keys.quarantine(dukcapil.NAME))
        every = {eid(v) for v in versions}
        return {
            "source": self.source,
            "faults": self.faults_done,
            "connections killed": self.killed_connections,
            "adapter starts": self.adapter.starts,
            "writers": dict(self.writers.counts),
            "committed versions": len(versions),
            "committed rows": len(latest),
            "in doubt, landed": len(versions - set(self.writers.committed.read()))
            - len(self.seeded),
            "published": len(set(stream)),
            "lost": len(self.expected() - set(stream)),
            "versions not published (states, not history)": len(every - set(stream)),
            "rolled back but published": len(
                {eid(v) for v in self.writers.rolled_back.read()} & set(stream)
            ),
            "never committed but published": len(set(stream) - every),
            "duplicates read": sum(n - 1 for n in on_stream.values()),
            "duplicates stored": sum(n - 1 for n in stored.values()),
            "quarantined": quarantined,
        }

    def _wait(self, done: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            self.adapter.ensure_running()
            if time.monotonic() > deadline:
                tail = self.adapter.log.read_text()[-2000:]
                raise AssertionError(f"timed out waiting for {what}; adapter log:\n{tail}")
            time.sleep(0.2)


@contextlib.contextmanager
def servers(source: str, folder: Path) -> Iterator[tuple[EmbeddedRedis, Database]]:
    """A private Redis (AOF, appendfsync always) and a private database server for ``source``."""
    with EmbeddedRedis(folder / "redis", appendfsync="always") as redis:
        if source in ("binlog", "settle-mysql"):
            with EmbeddedMariaDB() as maria:
                yield redis, MariaDB(maria)
        else:
            with EmbeddedPostgres(durable=True) as postgres:
                yield redis, Postgres(postgres)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.adapters.recorder")
    parser.add_argument("source", choices=SOURCES)
    parser.add_argument("--seconds", type=float, default=25.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--faults", default=",".join(FAULTS), help=f"of {', '.join(FAULTS)}")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix=f"simpul-recorder-{args.source}-"))
    with servers(args.source, folder) as (redis, db):
        run = Run(args.source, folder, redis, db, seed=args.seed)
        figures = run.run(args.faults.split(","), rounds=args.rounds, seconds=args.seconds)
    print(json.dumps({**figures, "folder": str(folder)}, indent=1))


if __name__ == "__main__":
    main()
