"""``once=True`` across Redis outages with no process dying: an effect that ran is settled
(marker, then ack) when Redis returns, never run again."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter

import pytest

from bus import EventContext, Publisher, Service
from bus.connection import TRANSIENT, connect
from bus.local.redis import EmbeddedRedis
from bus.testing import capture_logs, quick_settings, wait_until
from schemas.dukcapil import CitizenDied
from tests.bus.delivery.helpers import GROUP, SOURCE, pending
from tests.bus.delivery.test_restart import publish_retrying

pytestmark = pytest.mark.slow

ROUNDS = 12


def killing_replica(
    server: EmbeddedRedis, consumer: str, effects: Counter[str], claim_idle_ms: int
) -> Service:
    """A replica whose effect is counted in this process, after which it kills Redis: the
    handler returns into an outage, so its ``done`` marker and its ack both fail."""
    settings = quick_settings(server.url, consumer=consumer, claim_idle_ms=claim_idle_ms)
    service = Service(GROUP, settings=settings)

    @service.on(CitizenDied, once=True)
    async def effect(event: CitizenDied, ctx: EventContext) -> None:
        effects[ctx.event_id] += 1
        if ctx.event_id.startswith("outage-") and effects[ctx.event_id] == 1:
            server.kill()

    return service


# (claim idle ms, outage s, rounds): an outage well within claim idle, where a second run can
# only come from a replica that forgot it finished; and one longer than claim idle, where the
# entry is due for a reclaim the moment Redis is back, on either replica.
OUTAGES = {"short": (3_000, 0.0, ROUNDS), "past-claim-idle": (1_000, 1.5, ROUNDS // 2)}


@pytest.mark.parametrize("outage", list(OUTAGES))
async def test_an_effect_is_not_repeated_when_redis_dies_right_after_the_handler(
    outage: str, private_redis: EmbeddedRedis
) -> None:
    claim_idle_ms, down_s, rounds = OUTAGES[outage]
    effects: Counter[str] = Counter()
    replicas = [killing_replica(private_redis, f"once-{n}", effects, claim_idle_ms) for n in (1, 2)]
    with capture_logs() as logs:
        await outages(private_redis, replicas, effects, down_s=down_s, rounds=rounds)
    marks_failed = [log for log in logs if log["event"] == "dedupe_mark_failed"]
    assert len(marks_failed) >= rounds // 2, "the outages did not hit the marker writes"
    doubled = {eid: n for eid, n in effects.items() if n > 1}
    assert not doubled, f"{len(doubled)} effects ran twice in {rounds} outages: {doubled}"


async def outages(
    server: EmbeddedRedis,
    replicas: list[Service],
    effects: Counter[str],
    *,
    down_s: float,
    rounds: int,
) -> None:
    """Each round: publish, the handler kills Redis as it returns, Redis stays down ``down_s``
    and comes back, and the round ends when nothing is pending any more."""
    redis = connect(server.url)
    publisher = Publisher(redis, source=SOURCE)
    async with contextlib.AsyncExitStack() as stack:
        for replica in replicas:
            await stack.enter_async_context(replica.running())
        for n in range(rounds):
            eid = f"outage-{n}"
            await publish_retrying(publisher, eid)
            await wait_until(lambda eid=eid: effects[eid] >= 1, timeout=30)
            await asyncio.sleep(down_s)  # the outage itself: Redis is down this long
            await asyncio.to_thread(server.start)

            async def settled() -> bool:
                with contextlib.suppress(*TRANSIENT):  # Redis may still be starting
                    return await pending(redis) == 0
                return False

            await wait_until(settled, timeout=30)
        # The replicas lived through every outage and still consume.
        await publish_retrying(publisher, "last")
        await wait_until(lambda: effects["last"] == 1, timeout=30)
        for replica in replicas:
            assert replica.health.running, replica.health.snapshot()
    await redis.aclose()
