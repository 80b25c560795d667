"""Property: no entry, however malformed, crashes the service or stays pending."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from bus import EventContext, Publisher, Service
from bus.testing import quick_settings, wait_until
from schemas.dukcapil import CitizenDied
from tests.bus.delivery.helpers import (
    GROUP,
    STREAM,
    as_bytes,
    dead_letters,
    died,
    fields_of,
    wait_pending,
)

junk_entries = st.dictionaries(
    st.binary(max_size=24), st.binary(max_size=64), min_size=1, max_size=12
)
# (XADD needs at least one field, so "0 fields" cannot be written to a stream at all.)


@st.composite
def mutated_envelopes(draw: st.DrawFn) -> dict[bytes, bytes]:
    """A valid CitizenDied entry with one field removed or replaced by random bytes."""
    fields = as_bytes(fields_of(died(), f"fuzz-{draw(st.uuids())}"))
    name = draw(st.sampled_from(sorted(fields)))
    if draw(st.booleans()):
        del fields[name]
    else:
        fields[name] = draw(st.binary(max_size=64))
    return fields


@dataclass
class Fuzzed:
    redis: Redis
    publisher: Publisher
    service: Service
    handled_entries: list[str] = field(default_factory=list)
    handled_events: list[str] = field(default_factory=list)
    sentinels: itertools.count[int] = field(default_factory=itertools.count)


@pytest.fixture
async def fuzzed(redis: Redis, redis_url: str, publisher: Publisher) -> AsyncIterator[Fuzzed]:
    """One service consuming across all examples (each example only adds entries)."""
    service = Service(GROUP, settings=quick_settings(redis_url, consumer="fuzz-1"))
    state = Fuzzed(redis, publisher, service)

    @service.on(CitizenDied)
    async def record(event: CitizenDied, ctx: EventContext) -> None:
        state.handled_entries.append(ctx.entry_id)
        state.handled_events.append(ctx.event_id)

    async with service.running():
        yield state


@settings(
    max_examples=25,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(entries=st.lists(st.one_of(junk_entries, mutated_envelopes()), min_size=1, max_size=6))
async def test_junk_entries_never_crash_the_service(
    fuzzed: Fuzzed, entries: list[dict[bytes, bytes]]
) -> None:
    redis, service = fuzzed.redis, fuzzed.service
    written = [(await redis.xadd(STREAM, entry)).decode() for entry in entries]
    sentinel = f"sentinel-{next(fuzzed.sentinels)}"
    await fuzzed.publisher.publish(died(), id=sentinel)
    await wait_until(
        lambda: sentinel in fuzzed.handled_events or not service.health.running, timeout=15
    )
    assert service.health.running, f"the consumer loop died: {service.health.snapshot()}"
    await wait_pending(redis, 0)
    dead = {d[b"dlq.entry"].decode() for d in await dead_letters(redis)}
    for entry_id in written:
        assert entry_id in dead or entry_id in fuzzed.handled_entries, f"entry {entry_id} vanished"
