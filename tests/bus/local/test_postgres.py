"""The private PostgreSQL: started and stopped by pid, its data thrown away, a failed start
reported with the server's own log."""

from __future__ import annotations

import os

import psycopg
import pytest

from bus.errors import PostgresUnavailable
from bus.local.postgres import EmbeddedPostgres, postgres_url_or_embedded

pytestmark = pytest.mark.slow


def test_a_private_server_answers_survives_a_crash_and_is_gone_after_stop() -> None:
    with EmbeddedPostgres(durable=True) as server:
        with psycopg.connect(server.url, autocommit=True) as conn:
            conn.execute("CREATE TABLE t (id INT PRIMARY KEY)")
            conn.execute("INSERT INTO t VALUES (1)")
        pid = server.pid
        assert pid is not None
        server.crash()
        assert server.pid is None
        server.start()
        assert server.pid not in (None, pid)
        with psycopg.connect(server.url) as conn:
            assert conn.execute("SELECT id FROM t").fetchall() == [(1,)]
        data = server.data_dir
    assert server.pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not data.exists(), "stopping throws the data away"


def test_a_server_that_cannot_start_fails_with_its_log_and_leaves_nothing() -> None:
    server = EmbeddedPostgres(wal_level="no-such-level")
    with pytest.raises(PostgresUnavailable, match=r"(?s)postgres exited with status .*wal_level"):
        server.start()
    assert server.pid is None and server.base_dir is None


def test_simpul_postgres_url_is_used_instead_of_a_private_server(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SIMPUL_POSTGRES_URL", "postgresql://someone@db.example:5432/simpul")
    with postgres_url_or_embedded() as url:
        assert url == "postgresql://someone@db.example:5432/simpul"
