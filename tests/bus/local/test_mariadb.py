"""The private MariaDB: binlog settings as asked, data kept across a SIGKILL and a restart."""

from __future__ import annotations

from pathlib import Path

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


def _flaky_install_db(tmp_path: Path, real: Path, failures: int) -> Path:
    """A mariadb-install-db that fails its first ``failures`` runs as a crashed bootstrap does
    (leaving a half-written data folder), then runs the real one."""
    count = tmp_path / "runs"
    script = tmp_path / "mariadb-install-db"
    script.write_text(
        "#!/bin/sh\n"
        f'n=$(cat "{count}" 2>/dev/null || echo 0); echo $((n + 1)) > "{count}"\n'
        f'if [ "$n" -lt {failures} ]; then\n'
        "  for arg; do\n"
        '    case "$arg" in --datadir=*) mkdir -p "${arg#--datadir=}/mysql";; esac\n'
        "  done\n"
        '  echo "Installation of system tables failed!"; exit 1\n'
        "fi\n"
        f'exec "{real}" "$@"\n'
    )
    script.chmod(0o755)
    return script


def test_a_bootstrap_that_fails_once_is_tried_again_on_an_empty_folder(tmp_path: Path) -> None:
    server = EmbeddedMariaDB()
    server.install_db = _flaky_install_db(tmp_path, Path(server.install_db), failures=1)
    with server:
        assert variables(server.url)["log_bin"] == "ON"
    assert (tmp_path / "runs").read_text().strip() == "2"


def test_a_bootstrap_that_fails_twice_is_reported_with_its_output(tmp_path: Path) -> None:
    server = EmbeddedMariaDB()
    server.install_db = _flaky_install_db(tmp_path, Path(server.install_db), failures=2)
    with pytest.raises(MariaDBUnavailable, match="Installation of system tables failed"):
        server.start()
    assert (tmp_path / "runs").read_text().strip() == "2"
    assert server.base_dir is None  # nothing left behind
