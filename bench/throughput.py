"""Throughput workloads: each returns the rate and CPU costs of one run on a reset Redis.

Consume: the stream is preloaded (not timed), then the clock runs from the consumer's start
until every entry is acked. Publish: the clock runs over ``n`` events sent in batches of 100.
Each workload returns :class:`bench.common.Meter`'s result: ``rate`` (events/s), ``client_us``
(CPU of this process per event) and ``redis_us`` (CPU of the Redis server per event).
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

from faststream.redis import RedisBroker, StreamSub
from redis.asyncio import Redis

from bench.common import BATCH, FS_STREAM, STREAM, Meter, Payloads, Target, preload
from bench.contract import CitizenRecorded
from bus import Publisher, Service, Settings
from bus.envelope import format_time
from bus.testing import wait_until

TIMEOUT_S = 120.0
GROUP = "bench"
Result = dict[str, float]


# What the reports say of every Simpul Service these workloads start (bench/signing.py
# measures the same Service verifying signed entries).
UNSIGNED = "unsigned, verification off; signing costs: bench.signing"


def simpul_settings(target: Target, consumer: str, *, verify: bool = False) -> Settings:
    """Production defaults (not quick_settings: its 50 ms reclaim sweep is a test setting),
    but signature verification off unless ``verify``: the entries are unsigned, and a Service
    without a keyring refuses to start while SIMPUL_SIGNATURES is on (its default). Off is
    said here, not left to the environment, so the figures mean the same on every shell."""
    return Settings.load(
        redis_url=target.url,
        batch_size=BATCH,
        consumer=consumer,
        log_level="warning",
        signatures="on" if verify else "off",
    )


# -- consume ------------------------------------------------------------------------------------


async def consume_raw(target: Target, payloads: Payloads, n: int) -> Result:
    """Hand-written loop: XREADGROUP COUNT 100, validate ``data`` per entry, one XACK per batch."""
    await target.reset()
    redis = target.client()
    try:
        await preload(redis, STREAM, payloads, n)
        model = CitizenRecorded
        async with Meter(redis, n) as meter:
            await redis.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
            done = 0
            while done < n:
                reply: Any = await redis.xreadgroup(
                    GROUP, "raw-1", {STREAM: ">"}, count=BATCH, block=2_000
                )
                for stream, entries in reply:
                    ids = []
                    for entry_id, fields in entries:
                        model.model_validate_json(fields[b"data"])
                        ids.append(entry_id)
                    await redis.xack(stream, GROUP, *ids)
                    done += len(ids)
        return meter.result
    finally:
        await redis.aclose()


async def consume_simpul(target: Target, payloads: Payloads, n: int) -> Result:
    """bus.Service with one trivial handler, from ``running()`` until all ``n`` are acked."""
    await target.reset()
    redis = target.client()
    try:
        await preload(redis, STREAM, payloads, n)
        return await run_simpul_consumer(target, redis, n)
    finally:
        await redis.aclose()


async def run_simpul_consumer(target: Target, redis: object, n: int) -> Result:
    done = asyncio.Event()
    service = Service(GROUP, settings=simpul_settings(target, "bench-1"))
    seen = 0

    @service.on(CitizenRecorded)
    async def count(event: CitizenRecorded) -> None:
        nonlocal seen
        seen += 1
        if seen == n:
            done.set()

    async with Meter(redis, n) as meter, service.running():  # type: ignore[arg-type]
        await asyncio.wait_for(done.wait(), TIMEOUT_S)
        await wait_until(lambda: service.health.counters.get("acked", 0) >= n, interval=0.0005)
    return meter.result


async def consume_simpul_app(target: Target, payloads: Payloads, n: int) -> Result:
    """The same Service hosted by its FastStream app (``service.app()``, as ``faststream run``
    starts it): Simpul's loop on the app broker's client."""
    await target.reset()
    redis = target.client()
    try:
        await preload(redis, STREAM, payloads, n)
        done = asyncio.Event()
        service = Service(GROUP, settings=simpul_settings(target, "bench-app-1"))
        seen = 0

        @service.on(CitizenRecorded)
        async def count(event: CitizenRecorded) -> None:
            nonlocal seen
            seen += 1
            if seen == n:
                done.set()

        app = service.app()
        async with Meter(redis, n) as meter:
            await app.start()
            try:
                await asyncio.wait_for(done.wait(), TIMEOUT_S)
                await wait_until(
                    lambda: service.health.counters.get("acked", 0) >= n, interval=0.0005
                )
            finally:
                await app.stop()
        return meter.result
    finally:
        await redis.aclose()


async def consume_faststream(target: Target, payloads: Payloads, n: int, *, batch: bool) -> Result:
    """FastStream 0.7.8's stream subscriber on its own ``__data__`` format (typed handler).

    Per-message logging is off (``logger=None``) so the framework, not stderr, is measured.
    The group is created at 0 beforehand: FastStream would create it at ``$`` and skip the
    preloaded entries.
    """
    await target.reset()
    broker = RedisBroker(target.url, logger=None)  # type: ignore[arg-type]
    done = asyncio.Event()
    seen = 0
    group, consumer = "bench-fs", "fs-1"
    if batch:
        sub = StreamSub(FS_STREAM, group=group, consumer=consumer, batch=True, max_records=BATCH)

        @broker.subscriber(stream=sub)
        async def handle_batch(events: list[CitizenRecorded]) -> None:
            nonlocal seen
            seen += len(events)
            if seen >= n:
                done.set()
    else:

        @broker.subscriber(stream=StreamSub(FS_STREAM, group=group, consumer=consumer))
        async def handle_one(event: CitizenRecorded) -> None:
            nonlocal seen
            seen += 1
            if seen >= n:
                done.set()

    redis = target.client()
    try:
        await broker.connect()
        for start in range(0, n, 1_000):  # its own wire format, via its own publisher
            async with redis.pipeline(transaction=False) as pipe:
                for i in range(start, min(start + 1_000, n)):
                    await broker.publish(payloads.model(i), stream=FS_STREAM, pipeline=pipe)
                await pipe.execute()
        await redis.xgroup_create(FS_STREAM, group, id="0", mkstream=True)
        async with Meter(redis, n) as meter:
            await broker.start()
            try:
                await asyncio.wait_for(done.wait(), TIMEOUT_S)
                await wait_until(lambda: _none_pending(redis, group), interval=0.0005)
            finally:
                await broker.stop()
        return meter.result
    finally:
        await redis.aclose()


async def _none_pending(redis: Redis, group: str) -> bool:
    return not (await redis.xpending(FS_STREAM, group))["pending"]


# -- publish ------------------------------------------------------------------------------------


async def publish_raw(target: Target, payloads: Payloads, n: int) -> Result:
    """Pipelines of 100 XADDs of the v1 fields, incl. model_dump_json and a uuid4 per event."""
    await target.reset()
    redis = target.client()
    template = payloads.envelopes[0]
    try:
        async with Meter(redis, n) as meter:
            for start in range(0, n, BATCH):
                now = format_time(datetime.now(UTC))
                async with redis.pipeline(transaction=False) as pipe:
                    for i in range(start, min(start + BATCH, n)):
                        pipe.xadd(
                            STREAM,
                            {
                                "specversion": "1.0",
                                "id": str(uuid.uuid4()),
                                "source": template.source,
                                "type": template.type,
                                "time": now,
                                "datacontenttype": "application/json",
                                "dataschema": template.dataschema,
                                "data": payloads.model(i).model_dump_json(),
                            },
                        )
                    await pipe.execute()
        return meter.result
    finally:
        await redis.aclose()


async def publish_simpul(target: Target, payloads: Payloads, n: int) -> Result:
    """Publisher.publish_many of 100 contract instances: validate, encode, idempotent Lua."""
    await target.reset()
    redis = target.client()
    publisher = Publisher(redis, source=payloads.publisher.source)
    try:
        await publisher.publish_many([payloads.model(0)])  # loads the script: not timed
        await target.reset()
        async with Meter(redis, n) as meter:
            for start in range(0, n, BATCH):
                await publisher.publish_many(
                    [payloads.model(i) for i in range(start, min(start + BATCH, n))]
                )
        return meter.result
    finally:
        await redis.aclose()
