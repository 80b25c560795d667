"""Routed delivery on a Redis Cluster (decision 0011): the routed ACL loaded on every master, a
producer writing its intake, the router (through the cluster client) admitting and fanning out,
a service reading its inbox as its own principal; the inboxes of one department stream spread
over the masters, each with its own hash tag."""

from __future__ import annotations

import asyncio

from redis.crc import key_slot

from bus import EventContext, Publisher, Service, keys
from bus.connection import connect
from bus.contracts import default_registry
from bus.router import Router, RouterConfig
from bus.signing import KeyRing
from bus.testing import quick_settings, wait_until
from schemas.dukcapil import CitizenDied
from tests.bus.routed import router_signer, signer
from tests.cluster.conftest import AclCluster
from tests.cluster.helpers import example

SOURCE = "urn:malangkota:dukcapil:siak"


async def test_the_router_delivers_through_a_cluster_and_inboxes_spread_over_masters(
    acl_cluster: AclCluster,
) -> None:
    topology = acl_cluster.topology
    stream = keys.stream("dukcapil.citizen")
    inboxes = [keys.inbox(stream, g) for g in ("profile", "dinsos", "bapenda", "notifier", "audit")]
    owners = set()
    with acl_cluster.admin() as operator:
        slots = operator.cluster("slots")
        for inbox in inboxes:
            slot = key_slot(inbox.encode())
            owners.add(next(s[2][1] for s in slots if s[0] <= slot <= s[1]))
    assert len(owners) > 1, "five inboxes of one stream all on one master"

    router = Router(
        connect(acl_cluster.url("router"), cluster=True),
        topology,
        default_registry,
        keyring=KeyRing(topology.signing_keys()),
        signer=router_signer(),
        config=RouterConfig(block_ms=50, lease_ms=1_000),
        replica="r1",
    )
    seen: list[str] = []
    settings = quick_settings(acl_cluster.url("svc-dinsos"), redis_cluster=True, inboxes=True)
    service = Service("dinsos", settings=settings)

    @service.on(CitizenDied)
    async def record(event: CitizenDied, ctx: EventContext) -> None:
        seen.append(ctx.event_id)

    adapter = connect(acl_cluster.url("adapter-dukcapil"), cluster=True)
    task = asyncio.create_task(router.run())
    try:
        async with service.running():
            publisher = Publisher(
                adapter,
                source=SOURCE,
                intake="adapter-dukcapil",
                signer=signer("adapter-dukcapil"),
            )
            published = [
                (await publisher.publish(example(CitizenDied, n))).event_id for n in range(5)
            ]
            await wait_until(lambda: len(seen) >= 5, timeout=20)
    finally:
        router.stop()
        await asyncio.wait_for(task, 10)
        await router.redis.aclose()
        await adapter.aclose()
    assert seen == published
