"""Shared fixtures: one real Redis per test session, flushed before every test.

With SIMPUL_REDIS_URL set the tests use that server (and FLUSHDB its database: point it at a
scratch database). Otherwise they start a private embedded Redis with AOF on a free port, so
a test that needs Redis never skips.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import structlog
from redis import Redis as SyncRedis
from redis.asyncio import Redis

from bus.connection import connect
from bus.embedded import EmbeddedRedis
from bus.settings import Settings
from bus.testing import quick_settings


@pytest.fixture(autouse=True)
def _fresh_logging() -> Iterator[None]:
    """Commands under test configure logging (level, format); don't let it leak into the next."""
    yield
    structlog.reset_defaults()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("SIMPUL_REDIS_URL")
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
