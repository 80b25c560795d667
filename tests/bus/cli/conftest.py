"""The CLI suites' fixture: a plain client of the test Redis, which the commands read through
SIMPUL_REDIS_URL (no SIMPUL_STATUS_* threshold of the developer's leaks in)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from redis import Redis


@pytest.fixture
def client(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Redis]:
    monkeypatch.setenv("SIMPUL_REDIS_URL", redis_url)
    for name in list(os.environ):
        if name.startswith("SIMPUL_STATUS_"):
            monkeypatch.delenv(name)
    with Redis.from_url(redis_url) as sync:
        yield sync
