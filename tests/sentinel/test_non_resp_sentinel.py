"""A Sentinel address answered by something that does not speak RESP (a gateway answering an
address it cannot route, in HTTP): the master lookup moves on to the next Sentinel."""

from __future__ import annotations

from redis import Redis as SyncRedis

from bus import Publisher
from bus.connection import connect
from bus.local.sentinel import MASTER_NAME, EmbeddedSentinelGroup
from bus.sentinel import RedisSentinels
from schemas.dukcapil import CitizenDied
from tests.bus.delivery.test_wrong_endpoint import Gateway
from tests.chaos.producer import died

SOURCE = "urn:malangkota:dukcapil:siak"
STREAM = CitizenDied.__contract__.stream


async def test_a_sentinel_answering_in_http_is_skipped_for_the_next_one(
    group: EmbeddedSentinelGroup,
) -> None:
    # The gateway only answers (HTTP 400), never forwards: its upstream is not used.
    async with Gateway(group.url).serving() as gateway:
        first = gateway.url.removeprefix("redis://")
        sentinels = RedisSentinels.parse(f"{first},{group.sentinel_addresses}", master=MASTER_NAME)
        assert sentinels.addresses[0][1] != group.sentinels[0].port
        redis = connect(group.url, sentinels=sentinels)
        try:
            # No retry: the lookup itself must get past the gateway, in this one publish.
            published = await Publisher(redis, source=SOURCE, signer=None).publish(
                died(1), id="e-1"
            )
        finally:
            await redis.aclose()
        assert gateway.answers >= 1, "the first Sentinel asked was not the gateway"
    assert not published.duplicate
    master = group.master()
    with SyncRedis(master.host, master.port) as client:
        assert client.xlen(STREAM) == 1
