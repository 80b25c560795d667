"""A MySQL/MariaDB source that cannot work says why in one line, naming the setting or grant.

Servers of their own for binlog OFF and STATEMENT format (a global setting the session's server
must keep); the grant and missing-table cases use a user or a table on the session's server.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest

from bus.adapter.sources._mysql_server import Server
from bus.adapter.sources.binlog import BinlogSource
from bus.adapter.sources.mysql import MySqlDatabase, MySqlSource, connection_settings
from bus.errors import ConfigurationError, SourceError
from bus.local.mariadb import EmbeddedMariaDB
from tests.conftest import mysql_connect

pytestmark = pytest.mark.slow


def with_table(url: str) -> str:
    with mysql_connect(url) as conn, conn.cursor() as cursor:
        cursor.execute("CREATE DATABASE IF NOT EXISTS siak")
        cursor.execute("CREATE TABLE IF NOT EXISTS siak.t (id INT PRIMARY KEY, versi INT)")
    return urlunsplit(urlsplit(url)._replace(path="/siak"))


async def first_batch(source: BinlogSource | MySqlSource) -> None:
    try:
        async for _ in source.batches(None, size=10):
            break
    finally:
        await source.close()


def binlog(url: str) -> BinlogSource:
    return BinlogSource(url, table="t", key="id", version="versi", wait=0.1)


@pytest.fixture
def server_without_binlog() -> Iterator[EmbeddedMariaDB]:
    with EmbeddedMariaDB(log_bin=False) as server:
        yield server


async def test_a_server_without_binlog_is_named_with_the_my_cnf_lines_to_add(
    server_without_binlog: EmbeddedMariaDB, redis_url: str
) -> None:
    url = with_table(server_without_binlog.url)
    with pytest.raises(ConfigurationError, match=r"log_bin=OFF.*binlog_format=ROW.*my\.cnf"):
        await first_batch(binlog(url))
    env = {
        **os.environ,
        "SIMPUL_REDIS_URL": redis_url,
        "SIMPUL_DUKCAPIL_DB": url,
        "SIMPUL_DUKCAPIL_CDC": "1",
    }
    command = [sys.executable, "-m", "bus.cli.app", "adapter", "run", "adapters.dukcapil:from_env"]
    done = await asyncio.to_thread(
        subprocess.run, command, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2
    assert "log_bin=OFF" in done.stderr
    assert "Traceback" not in done.stderr, "one line for the operator, no traceback"


async def test_a_statement_binlog_and_a_minimal_row_image_are_named(mysql_url: str) -> None:
    """The session's server, switched for the test: SET GLOBAL reaches new sessions only."""
    with mysql_connect(mysql_url) as conn, conn.cursor() as cursor:
        cursor.execute("CREATE TABLE t (id INT PRIMARY KEY, versi INT)")
        try:
            cursor.execute("SET GLOBAL binlog_format = 'STATEMENT'")
            with pytest.raises(ConfigurationError, match=r"binlog_format is STATEMENT.*=ROW"):
                await first_batch(binlog(mysql_url))
            cursor.execute("SET GLOBAL binlog_format = 'ROW'")
            cursor.execute("SET GLOBAL binlog_row_image = 'MINIMAL'")
            with pytest.raises(ConfigurationError, match=r"binlog_row_image is MINIMAL.*=FULL"):
                await first_batch(binlog(mysql_url))
        finally:
            cursor.execute("SET GLOBAL binlog_format = 'ROW'")
            cursor.execute("SET GLOBAL binlog_row_image = 'FULL'")


@pytest.fixture
def reader_url(mysql_url: str) -> Iterator[str]:
    """A user that may SELECT the test's database, and nothing else."""
    user = f"r_{uuid.uuid4().hex[:8]}"
    database = urlsplit(mysql_url).path.lstrip("/")
    with mysql_connect(mysql_url) as conn, conn.cursor() as cursor:
        cursor.execute("CREATE TABLE t (id INT PRIMARY KEY, versi INT)")
        cursor.execute(f"CREATE USER '{user}'@'127.0.0.1'")
        cursor.execute(f"GRANT SELECT ON {database}.* TO '{user}'@'127.0.0.1'")
    parts = urlsplit(mysql_url)
    yield urlunsplit(parts._replace(netloc=f"{user}@{parts.hostname}:{parts.port}"))
    with mysql_connect(mysql_url) as conn, conn.cursor() as cursor:
        cursor.execute(f"DROP USER '{user}'@'127.0.0.1'")


async def test_a_user_without_replication_grants_is_told_which_grant_to_add(
    reader_url: str,
) -> None:
    with pytest.raises(ConfigurationError, match=r"lacks the REPLICATION SLAVE grant.*GRANT REPL"):
        await first_batch(binlog(reader_url))


async def test_polling_a_missing_table_or_an_unreachable_server_is_a_one_line_source_error(
    mysql_url: str,
) -> None:
    missing = MySqlSource.by_change_column(
        MySqlDatabase(mysql_url),
        table="tidak_ada",
        change_column="id",
        primary_key="id",
        version="id",
    )
    with pytest.raises(SourceError, match="has no table 'tidak_ada'"):
        await first_batch(missing)
    parts = urlsplit(mysql_url)
    nobody = urlunsplit(parts._replace(netloc="simpul@127.0.0.1:1"))
    down = MySqlSource.by_change_column(
        MySqlDatabase(nobody), table="t", change_column="id", primary_key="id", version="id"
    )
    with pytest.raises(SourceError, match=r"simpul@127\.0\.0\.1:1/.* unavailable") as caught:
        await first_batch(down)
    assert "\n" not in str(caught.value)


async def test_a_wrong_password_is_a_configuration_error_naming_the_user(mysql_url: str) -> None:
    parts = urlsplit(mysql_url)
    wrong = urlunsplit(parts._replace(netloc=f"simpul:salah@{parts.hostname}:{parts.port}"))
    source = MySqlSource.by_change_column(
        MySqlDatabase(wrong), table="t", change_column="id", primary_key="id", version="id"
    )
    with pytest.raises(ConfigurationError, match="MySQL refused simpul@") as caught:
        await first_batch(source)
    assert "salah" not in str(caught.value), "never the password"


async def test_a_checkpoint_in_a_purged_binlog_file_stops_instead_of_resuming_elsewhere(
    mysql_url: str,
) -> None:
    with mysql_connect(mysql_url) as conn, conn.cursor() as cursor:
        cursor.execute("CREATE TABLE t (id INT PRIMARY KEY, versi INT)")
    source = binlog(mysql_url)
    gone = {"file": "mariadb-bin.000000", "pos": 4, "gtid": "0-1-1"}
    try:
        with pytest.raises(
            ConfigurationError, match=r"no longer has binlog file mariadb-bin\.0+\b"
        ):
            async for _ in source.batches(gone, size=10):
                pass
    finally:
        await source.close()


def test_a_reader_error_quoting_row_values_is_reported_without_them() -> None:
    server = Server(connection_settings("mysql://simpul@127.0.0.1:3306/siak"))
    raw = b"Siti Aminah"
    decoding = UnicodeDecodeError("utf-8", raw, 0, 1, "invalid start byte")
    message = str(server.translate(decoding, "peristiwa"))
    assert "UnicodeDecodeError" in message
    assert "Siti" not in message, "never a value of the row"


async def test_a_connection_lost_while_asking_for_the_binlog_end_is_reported_as_such(
    mysql_url: str,
) -> None:
    """SHOW MASTER STATUS failing because the connection went away is not MySQL 8.4 refusing the
    old name: the error says the server is unavailable, not that SHOW BINARY LOG STATUS is bad
    syntax (what MariaDB answers the fallback)."""
    server = Server(connection_settings(mysql_url))
    try:
        await server.binlog_end()
        found = await server.fetch("SELECT CONNECTION_ID() AS id")
        with mysql_connect(mysql_url) as conn, conn.cursor() as cursor:
            cursor.execute(f"KILL CONNECTION {int(found[0]['id'])}")
        with pytest.raises(SourceError) as raised:
            await server.binlog_end()
    finally:
        await server.close()
    assert "syntax" not in str(raised.value), str(raised.value)
    assert "unavailable" in str(raised.value)
