"""Shared fixtures: one real Redis per test session, flushed before every test; PostgreSQL.

With SIMPUL_TEST_REDIS_URL set the tests use that server (and FLUSHDB its database: point it at
a scratch database). Otherwise they start a private embedded Redis with AOF on a free port, so
a test that needs Redis never skips. SIMPUL_REDIS_URL, the developer's dev bus, is never used:
it is removed from the environment before any test runs.
"""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
import pymysql
import pytest
import structlog
from redis import Redis as SyncRedis
from redis.asyncio import Redis

from bus.connection import connect
from bus.functions import load_sync
from bus.local.mariadb import EmbeddedMariaDB
from bus.local.postgres import EmbeddedPostgres
from bus.local.redis import EmbeddedRedis
from bus.settings import Settings
from bus.testing import quick_settings

# pytest-xdist's workers run with COLUMNS=80 (and LINES) set: rich fixes a console's width from
# them when the CLI modules are imported, and the tables under test would then ignore the
# width a test asks for with COLUMNS. The width is the terminal's, as in a serial run.
for _name in ("COLUMNS", "LINES"):
    os.environ.pop(_name, None)

# The private servers' ports: each worker (and what it starts) takes them from a range of its
# own below the kernel's ephemeral ports (32768 and up), so a port free_port() handed to one
# worker is never taken by another's server before its own binds it.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
_SPAN = 20_000 // max(_WORKERS, 1)
os.environ["SIMPUL_LOCAL_PORTS"] = f"{10_000 + _WORKER * _SPAN}-{9_999 + (_WORKER + 1) * _SPAN}"

# A developer who ran `export SIMPUL_REDIS_URL=...` for `simpul redis` keeps it while testing:
# code under test that falls back to the variable must not publish to (or flush) that bus.
os.environ.pop("SIMPUL_REDIS_URL", None)
# A development run (docs/security.md): the tests use the public development keys and passwords
# of deploy/ (compose), and most services under test verify no signatures. Tests of the
# production defaults (tests/bus/test_devmaterial.py) remove these for their own processes.
os.environ["SIMPUL_DEV_MODE"] = "1"
os.environ["SIMPUL_SIGNATURES"] = "off"


@pytest.fixture(autouse=True)
def _fresh_logging() -> Iterator[None]:
    """Commands under test configure logging (level, format); don't let it leak into the next."""
    yield
    structlog.reset_defaults()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("SIMPUL_TEST_REDIS_URL")
    if url:
        yield url
        return
    with EmbeddedRedis(tmp_path_factory.mktemp("redis"), appendfsync="everysec") as server:
        yield server.url


@pytest.fixture
def redis_url(redis_server: str) -> str:
    with SyncRedis.from_url(redis_server) as client:
        client.flushdb()
        client.script_flush()
        load_sync(client)  # the admin's Redis Functions library (a test may have flushed it)
    return redis_server


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = connect(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def settings(redis_url: str) -> Settings:
    return quick_settings(redis_url)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A Redis of this test's own (AOF, appendfsync always), for restarts and kills."""
    with EmbeddedRedis(tmp_path / "redis", appendfsync="always") as server:
        yield server


# PostgreSQL: SIMPUL_POSTGRES_URL if set, else one private server per session, started on first
# use. Each test gets its own schema (dropped afterwards), selected through the connection's
# search_path, so tests never see each other's tables and a shared server stays clean.


@functools.cache
def postgres_server_url() -> str:
    """Cached, so every module that imports the fixtures shares one server per process."""
    url = os.environ.get("SIMPUL_POSTGRES_URL")
    if url:
        return url
    return EmbeddedPostgres().start().url  # stopped by bus.local.postgres at exit


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A connection URL whose search_path is a fresh schema of this test's own."""
    server = postgres_server_url()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    separator = "&" if "?" in server else "?"
    yield f"{server}{separator}options={quote(f'-csearch_path={schema}')}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store URL for tests that run on both databases: a SQLite file in the test's folder,
    then a PostgreSQL schema of the test's own (``postgres_url``)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


# MySQL/MariaDB: SIMPUL_MYSQL_URL if set, else one private mariadbd per session (binlog ROW),
# started on first use. Each test gets a database of its own, dropped afterwards.


@functools.cache
def mysql_server_url() -> str:
    url = os.environ.get("SIMPUL_MYSQL_URL")
    if url:
        return url
    return EmbeddedMariaDB().start().url  # stopped by bus.local.mariadb at exit


def mysql_connect(url: str, **options: object) -> pymysql.Connection:  # type: ignore[type-arg]
    parts = urlsplit(url)
    return pymysql.connect(
        host=parts.hostname,
        port=parts.port or 3306,
        user=parts.username or "root",
        password=parts.password or "",
        database=parts.path.lstrip("/") or None,
        **{"autocommit": True, "charset": "utf8mb4", **options},
    )


@pytest.fixture
def mysql_url() -> Iterator[str]:
    """A mysql:// URL of a fresh database of this test's own on the session's server."""
    server = mysql_server_url()
    database = f"t_{uuid.uuid4().hex[:12]}"
    with mysql_connect(server) as conn, conn.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE {database} CHARACTER SET utf8mb4")
    yield urlunsplit(urlsplit(server)._replace(path=f"/{database}"))
    with mysql_connect(server) as conn, conn.cursor() as cursor:
        cursor.execute(f"DROP DATABASE {database}")
