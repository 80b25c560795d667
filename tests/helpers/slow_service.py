"""A service whose handler takes a while, for the graceful-shutdown test of ``simpul run``."""

from __future__ import annotations

import asyncio
import os

from redis.asyncio import Redis

from bus import EventContext, Service
from schemas.dukcapil import CitizenDied

service = Service("slow")
clients: list[Redis] = []


@service.on_startup
async def open_client() -> None:
    clients.append(Redis.from_url(os.environ["SIMPUL_REDIS_URL"]))


@service.on_shutdown
async def close_client() -> None:
    await clients.pop().aclose()


@service.on(CitizenDied)
async def slow(event: CitizenDied, ctx: EventContext) -> None:
    await clients[0].set("test:slow:started", ctx.event_id)
    await asyncio.sleep(1.0)
    await clients[0].rpush("test:slow:done", ctx.event_id)
