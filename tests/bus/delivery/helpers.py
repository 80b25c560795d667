"""Shared helpers of the delivery-semantics suite: events, raw entries, Redis inspection."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from redis.asyncio import Redis

from bus import EventContext, Publisher, RedisUnavailable, Service, keys
from bus.connection import TRANSIENT
from bus.contracts import Contract
from bus.envelope import Envelope, format_time
from bus.settings import Settings
from bus.testing import wait_until
from schemas.dukcapil import CitizenDied, CitizenMoved

SOURCE = "urn:malangkota:dukcapil:siak"
GROUP = "delivery"
STREAM = CitizenDied.__contract__.stream  # simpul:{dukcapil.citizen}
NIK = "3573014506900001"  # province 35, city 73, district 01, woman born 05-06-1990, serial 1
DLQ = keys.dead_letters(STREAM, GROUP)


def died(nik: str = NIK) -> CitizenDied:
    return CitizenDied(nik=nik, date_of_death=date(2024, 3, 1), kecamatan="35.73.01")


def moved(nik: str = NIK) -> CitizenMoved:
    return CitizenMoved(
        nik=nik, address="Jl. Ijen 1", kecamatan="35.73.02", moved_on=date(2024, 3, 2)
    )


def fields_of(event: Contract, event_id: str, **changes: str) -> dict[str, str]:
    """The wire-format v1 fields of ``event`` (as the publisher writes them), with changes."""
    info = type(event).__contract__
    envelope = Envelope(
        id=event_id,
        source=SOURCE,
        type=info.event_type,
        time=format_time(datetime.now(UTC)),
        dataschema=info.dataschema,
        data=event.model_dump_json(),
    )
    return {**envelope.to_fields(), **changes}


async def publish_retrying(
    publisher: Publisher, eid: str, errors: list[Exception] | None = None
) -> None:
    """Retry the same id until Redis answers: idempotent, so a lost reply costs nothing. The
    errors retried are added to ``errors``."""
    deadline = time.monotonic() + 30
    while True:
        try:
            await publisher.publish(died(), id=eid)
            return
        except (*TRANSIENT, RedisUnavailable) as exc:
            if errors is not None:
                errors.append(exc)
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


@dataclass
class Calls:
    """What a handler saw: (event id, delivery, consumer) per call."""

    seen: list[tuple[str, int, str]] = field(default_factory=list)

    def record(self, ctx: EventContext) -> None:
        self.seen.append((ctx.event_id, ctx.delivery, ctx.consumer))

    def of(self, event_id: str) -> list[int]:
        """Deliveries with which ``event_id`` was handled, in call order."""
        return [delivery for eid, delivery, _ in self.seen if eid == event_id]

    def ids(self) -> list[str]:
        return [eid for eid, _, _ in self.seen]


def recording_service(settings: Settings, calls: Calls, name: str = GROUP) -> Service:
    """A service whose CitizenDied handler only records its calls."""
    service = Service(name, settings=settings)

    @service.on(CitizenDied)
    async def record(event: CitizenDied, ctx: EventContext) -> None:
        calls.record(ctx)

    return service


@contextlib.asynccontextmanager
async def surviving(service: Service, redis: Redis | None = None) -> AsyncIterator[Service]:
    """``service.running()`` (with ``redis``, a client of the caller's), but a failed check in
    the block is reported even when leaving the block then raises too (the consumer task died):
    its error becomes the cause, not a mask."""
    context = service.running(redis=redis)
    await context.__aenter__()
    try:
        yield service
    except Exception as failure:
        try:
            await context.__aexit__(type(failure), failure, failure.__traceback__)
        except Exception as on_exit:
            raise failure from on_exit
        raise
    await context.__aexit__(None, None, None)


async def pending(redis: Redis, stream: str = STREAM, group: str = GROUP) -> int:
    return int((await redis.xpending(stream, group))["pending"])


async def wait_pending(redis: Redis, count: int, *, timeout: float = 15.0, **where: str) -> None:
    async def settled() -> bool:
        return await pending(redis, **where) == count

    await wait_until(settled, timeout=timeout)


async def dead_letters(
    redis: Redis, stream: str = STREAM, group: str = GROUP
) -> list[dict[bytes, bytes]]:
    return [fields for _, fields in await redis.xrange(keys.dead_letters(stream, group))]


async def wait_dead_letters(
    redis: Redis, count: int, *, timeout: float = 15.0
) -> list[dict[bytes, bytes]]:
    async def enough() -> bool:
        return len(await dead_letters(redis)) >= count

    await wait_until(enough, timeout=timeout)
    return await dead_letters(redis)


async def barrier(
    publisher: Publisher, calls: Calls, event_id: str, *, timeout: float = 15.0
) -> None:
    """Publish a sentinel and wait until it is handled: everything read before it was processed."""
    await publisher.publish(died(), id=event_id)
    await wait_until(lambda: event_id in calls.ids(), timeout=timeout)


def text(fields: Mapping[bytes, bytes], name: str) -> str:
    return fields[name.encode()].decode()


def as_bytes(fields: Mapping[str, Any]) -> dict[bytes, bytes]:
    return {
        (k.encode() if isinstance(k, str) else k): (v.encode() if isinstance(v, str) else v)
        for k, v in fields.items()
    }
