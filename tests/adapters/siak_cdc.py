"""The SIAK adapter over change-data-capture, for the tests; runnable as the process they kill.

``python -m tests.adapters.siak_cdc URL SLOT`` runs the adapter until SIGTERM (Redis from
SIMPUL_REDIS_URL), as ``simpul adapter run`` would, for the crash tests to SIGKILL mid-stream.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
from redis.asyncio import Redis

from adapters import dukcapil
from bus import Publisher
from bus.adapter import Adapter, Source
from bus.adapter.checkpoint import RedisCheckpoints
from bus.adapter.quarantine import Quarantine
from bus.adapter.sources.logical import LogicalSource
from bus.connection import connect
from bus.logging import configure

KEY = b"test-pseudonym-key-0123456789"


def source(url: str, slot: str, **options: Any) -> LogicalSource:
    options.setdefault("idle_wait", 0.0)
    return dukcapil.cdc_source(url, slot=slot, **options)


def adapter(redis: Redis, url: str, slot: str, *, batch_size: int = 500, **options: Any) -> Adapter:
    return over(redis, source(url, slot, **options), batch_size=batch_size)


def over(redis: Redis, source: Source, *, batch_size: int = 500) -> Adapter:
    """The SIAK mapper, publisher, checkpoints and quarantine over any source."""
    return Adapter(
        dukcapil.NAME,
        source=source,
        mapper=dukcapil.SiakMapper(KEY),
        publisher=Publisher(redis, source=dukcapil.SOURCE, signer=None),
        checkpoints=RedisCheckpoints(redis),
        quarantine=Quarantine(redis, dukcapil.NAME),
        batch_size=batch_size,
    )


def new_slot() -> str:
    return f"simpul_test_{uuid.uuid4().hex[:12]}"


def drop_slot(url: str, slot: str) -> None:
    """Tests share one server: a slot left behind would keep its WAL for ever."""
    with psycopg.connect(url, autocommit=True) as conn:
        for _ in range(50):
            found = conn.execute(
                "SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s", [slot]
            ).fetchone()
            if found is None:
                return
            if found[0] is None:
                conn.execute("SELECT pg_drop_replication_slot(%s)", [slot])
                return
            conn.execute("SELECT pg_sleep(0.1)")


def slot_fixture(url: str) -> Iterator[str]:
    slot = new_slot()
    yield slot
    drop_slot(url, slot)


async def _main(url: str, slot: str) -> None:
    redis = connect(os.environ["SIMPUL_REDIS_URL"])
    runner = adapter(redis, url, slot, batch_size=50, idle_wait=1.0)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    try:
        await runner.run(poll_interval=0.1, stop=stop)
    finally:
        await redis.aclose()


if __name__ == "__main__":
    configure(level="warning", fmt="json")
    asyncio.run(_main(sys.argv[1], sys.argv[2]))
