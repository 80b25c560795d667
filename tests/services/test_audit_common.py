"""Shared helpers of the audit tests (no tests here): example events, publishing, archiving."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from bus import Publisher
from bus.contracts import Contract
from bus.envelope import Envelope, format_time
from bus.settings import Settings
from bus.store import Store
from bus.testing import quick_settings, wait_until
from services.audit import Audit

EXAMPLES = Path(__file__).parent.parent.parent / "schemas" / "examples"
SOURCE = "urn:malangkota:test:audit"
UNKNOWN_TYPE = "dukcapil.citizen.teleported.v1"  # a type of a known stream, without a contract


def example(model: type[Contract], index: int = 0) -> Contract:
    """The ``index``-th valid example payload of a contract, parsed."""
    files = sorted((EXAMPLES / model.__contract__.event_type).glob("valid-*.json"))
    return model.parse(json.loads(files[index % len(files)].read_text()))


def unknown_envelope(event_id: str, data: str = '{"where": "mars"}') -> Envelope:
    name = UNKNOWN_TYPE.rpartition(".")[0]
    return Envelope(
        id=event_id,
        source=SOURCE,
        type=UNKNOWN_TYPE,
        time=format_time(datetime.now(UTC)),
        dataschema=f"simpul:{name}:1.0",
        data=data,
    )


def settings_for(redis_url: str, **overrides: Any) -> Settings:
    return quick_settings(redis_url, **overrides)


def audit_for(store_url: str, redis_url: str, **overrides: Any) -> Audit:
    return Audit(Store(store_url), settings=settings_for(redis_url, **overrides))


@contextlib.asynccontextmanager
async def archiving(audit: Audit) -> AsyncIterator[Audit]:
    async with audit.service.running():
        yield audit


async def archived(audit: Audit, count: int) -> None:
    """Wait until the archive holds ``count`` rows."""

    async def enough() -> bool:
        return await audit.count() >= count

    await wait_until(enough, timeout=10)
    assert await audit.count() == count


def publisher(redis: Redis) -> Publisher:
    return Publisher(redis, source=SOURCE)
