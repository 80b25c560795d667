"""The private MariaDB: binlog settings as asked, data kept across a SIGKILL and a restart."""

from __future__ import annotations

import pytest

from bus.errors import MariaDBUnavailable
from bus.local.mariadb import EmbeddedMariaDB, mariadb_url_or_embedded
from tests.conftest import mysql_connect

pytestmark = pytest.mark.slow


def variables(url: str) -> dict[str, str]:
    with mysql_connect(url) as conn, conn.cursor() as cursor:
        cursor.execute(
            "SHOW VARIABLES WHERE Variable_name IN ('log_bin', 'binlog_format', "
            "'binlog_row_image', 'port')"
        )
        return {name: value for name, value in cursor.fetchall()}


def test_a_private_server_keeps_its_data_and_port_across_a_sigkill_and_a_restart() -> None:
    with EmbeddedMariaDB(binlog_format="STATEMENT") as server:
        expected = {"log_bin": "ON", "binlog_format": "STATEMENT", "binlog_row_image": "FULL"}
        assert variables(server.url) == {**expected, "port": str(server.port)}
        with mysql_connect(server.url) as conn, conn.cursor() as cursor:
            cursor.execute("CREATE DATABASE siak")
            cursor.execute("CREATE TABLE siak.t (id INT PRIMARY KEY) ENGINE=InnoDB")
            cursor.execute("INSERT INTO siak.t VALUES (1)")
        pid = server.pid
        server.kill()
        assert server.pid is None
        server.start()
        assert server.pid not in (None, pid)
        with mysql_connect(server.url_for("siak")) as conn, conn.cursor() as cursor:
            cursor.execute("SELECT id FROM t")
            assert cursor.fetchall() == ((1,),)
        data = server.data_dir
    assert not data.exists(), "closing throws the data away"


def test_simpul_mysql_url_is_used_instead_of_a_private_server(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SIMPUL_MYSQL_URL", "mysql://someone@db.example:3306/")
    with mariadb_url_or_embedded() as url:
        assert url == "mysql://someone@db.example:3306/"


def test_a_server_that_cannot_start_fails_with_its_log_and_leaves_nothing() -> None:
    server = EmbeddedMariaDB(options=["--no-such-option=1"])
    with pytest.raises(
        MariaDBUnavailable, match=r"(?s)mariadbd exited with status .*no-such-option"
    ):
        server.start()
    assert server.pid is None and server.base_dir is None  # closed: stopped, data thrown away
