"""A settlement that Redis refused (an outage) is written when Redis is back — even one with no
ack in it (only retries, e.g. once leases no replica confirmed during a failover): its empty
ack must not become an ``XACK`` without ids, which Redis answers with an error that ended the
consumer (``consumer_crashed``: "wrong number of arguments for 'xack' command")."""

from __future__ import annotations

import pytest

from bus.connection import connect
from bus.health import Health
from bus.local.redis import EmbeddedRedis
from bus.logging import get_logger
from bus.settle import Settlement, Settler
from bus.testing import capture_logs

pytestmark = pytest.mark.slow

STREAM = "simpul:{test.settle}"
GROUP = "g"


async def test_a_refused_settlement_without_acks_leaves_no_empty_ack_behind(
    private_redis: EmbeddedRedis,
) -> None:
    redis = connect(private_redis.url)
    try:
        await redis.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
        entry = (await redis.xadd(STREAM, {"x": "1"})).decode()
        await redis.xreadgroup(GROUP, "c", {STREAM: ">"})
        settler = Settler(
            redis,
            group=GROUP,
            consumer="c",
            health=Health(stale_after_s=30.0),
            log=get_logger("bus.consumer"),
        )
        private_redis.kill()
        with capture_logs() as logs:
            await settler.settle(STREAM, Settlement(retries=[(entry, 0, 0)]))
        assert [line["event"] for line in logs] == ["settle_failed"]
        private_redis.restart()
        await settler.ack_leftovers()  # raised ResponseError before
        [pending] = await redis.xpending_range(STREAM, GROUP, min="-", max="+", count=10)
        assert pending["message_id"].decode() == entry  # still pending: nothing was acked
    finally:
        await redis.aclose()
