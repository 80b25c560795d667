"""Fixtures of the delivery-semantics suite (real Redis from tests/conftest.py)."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from bus import Publisher
from tests.bus.delivery.helpers import SOURCE


@pytest.fixture
def publisher(redis: Redis) -> Publisher:
    return Publisher(redis, source=SOURCE)
