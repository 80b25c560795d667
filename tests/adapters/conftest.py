"""PostgreSQL for adapter tests: SIMPUL_POSTGRES_URL if set, else one private server per session.

Each test gets its own schema (dropped afterwards), selected through the connection's
search_path, so tests never see each other's tables and a shared server stays clean.
"""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Iterator
from urllib.parse import quote

import psycopg
import pytest

from bus.postgres import EmbeddedPostgres


@functools.cache
def postgres_server_url() -> str:
    """Cached, so every module that imports the fixtures shares one server per process."""
    url = os.environ.get("SIMPUL_POSTGRES_URL")
    if url:
        return url
    return EmbeddedPostgres().start().url  # stopped by bus.postgres at exit


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
