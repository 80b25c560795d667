"""One replica of the ``replicas`` service, run as its own process by the kill tests.

    python -m tests.bus.delivery.replica --url redis://... --consumer r1 [--hang]

Its handler appends the event id to the Redis list ``test:effects``. With ``--hang``, an event
whose id starts with ``marker`` then sets ``test:inside:<consumer>`` and never returns, so the
test can SIGKILL the process while it is inside the handler.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from redis.asyncio import Redis

from bus import EventContext, Service
from bus.connection import connect
from bus.testing import quick_settings
from schemas.dukcapil import CitizenDied

GROUP = "replicas"
EFFECTS = "test:effects"


def inside_key(consumer: str) -> str:
    return f"test:inside:{consumer}"


def build_service(
    url: str, consumer: str, effects: Redis, *, hang: bool = False, **settings: Any
) -> Service:
    """The replica's service; ``effects`` is the client its handler writes effects with."""
    service = Service(GROUP, settings=quick_settings(url, consumer=consumer, **settings))

    @service.on(CitizenDied)
    async def record(event: CitizenDied, ctx: EventContext) -> None:
        await effects.rpush(EFFECTS, ctx.event_id)
        if hang and ctx.event_id.startswith("marker"):
            await effects.set(inside_key(consumer), ctx.entry_id)
            await asyncio.Event().wait()  # until SIGKILL

    return service


async def _run(url: str, consumer: str, hang: bool) -> None:
    effects = connect(url)
    try:
        async with build_service(url, consumer, effects, hang=hang).running():
            await asyncio.Event().wait()
    finally:
        await effects.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--consumer", required=True)
    parser.add_argument("--hang", action="store_true")
    args = parser.parse_args()
    asyncio.run(_run(args.url, args.consumer, args.hang))


if __name__ == "__main__":
    main()
