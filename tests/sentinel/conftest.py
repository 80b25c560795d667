"""A private Sentinel group per test (bus.local.sentinel): a master, two replicas, three
Sentinels on free loopback ports, stopped by pid. Each test gets the environment an operator
would set (``SIMPUL_REDIS_SENTINELS``), so every client made by connect() follows the master.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bus.local.sentinel import EmbeddedSentinelGroup

pytestmark = pytest.mark.slow


@pytest.fixture
def group(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[EmbeddedSentinelGroup]:
    with EmbeddedSentinelGroup(tmp_path / "group", min_replicas_max_lag_s=2) as started:
        for name, value in started.environment().items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("SIMPUL_REDIS_URL", started.url)
        yield started
