"""A source table that does not exist stops `simpul adapter run` with one line, not a traceback,
on PostgreSQL and SQLite, once or polling (retrying a missing table would never succeed)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

ENV = {"SIMPUL_PSEUDONYM_KEY": "test-key-of-32-bytes-for-pseudonyms", "SIMPUL_LOG_LEVEL": "error"}


def _run(redis_url: str, database: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **ENV, "SIMPUL_REDIS_URL": redis_url, "SIMPUL_DUKCAPIL_DB": database}
    command = [sys.executable, "-m", "bus.cli.app", "adapter", "run", "adapters.dukcapil:from_env"]
    return subprocess.run(
        [*command, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def _one_line_naming_the_table(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and "peristiwa" in line and "create the table" in line


@pytest.mark.parametrize("args", [("--once",), ("--poll", "0.1")])
def test_a_missing_sqlite_table_is_one_line(
    redis_url: str, tmp_path: Path, args: tuple[str, ...]
) -> None:
    with sqlite3.connect(tmp_path / "siak.db") as db:
        db.execute("CREATE TABLE other (a INTEGER)")
    _one_line_naming_the_table(_run(redis_url, str(tmp_path / "siak.db"), *args))


def test_a_missing_postgresql_table_is_one_line(redis_url: str, postgres_url: str) -> None:
    _one_line_naming_the_table(_run(redis_url, postgres_url, "--once"))
