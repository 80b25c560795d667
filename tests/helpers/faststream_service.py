"""A service for ``faststream run tests.helpers.faststream_service:app`` (test_faststream.py).

Its handler writes with the app broker's own client (one pool for Simpul and FastStream), and the
broker also carries a plain FastStream stream subscriber.
"""

from __future__ import annotations

import asyncio
import os

from faststream.redis import StreamSub

from bus import EventContext, Service
from schemas.dukcapil import CitizenDied

service = Service("fsrun")
app = service.app()
PLAIN = "test:fsrun:plain"


@service.on(CitizenDied)
async def record(event: CitizenDied, ctx: EventContext) -> None:
    client = await app.broker.connect()
    await client.set("test:fsrun:started", ctx.event_id)
    await asyncio.sleep(float(os.environ.get("FSRUN_HANDLER_S", "0")))
    await client.rpush("test:fsrun:done", f"{ctx.event_id}:{os.getpid()}")


@app.broker.subscriber(stream=StreamSub(PLAIN, group="plain", consumer=f"c{os.getpid()}"))
async def plain(body: dict[str, str]) -> None:
    client = await app.broker.connect()
    await client.rpush("test:fsrun:plain:done", body["n"])
