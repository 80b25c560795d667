"""A pending entry deleted before its retry, reclaimed under a service's own rendered ACL user.

The sweep used to ask ``XRANGE`` whether an entry it could not claim still existed; the
rendered ACLs do not grant services ``XRANGE``, so Redis refused it and the consume loop died.
The claim script (bus/claim.lua) now tells "gone" from "claimed by another" itself. The bus is
the shipped one: routed, the service reading its inbox, the router forwarding into it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import NoPermissionError

from bus import EventContext, Publisher, Service, keys
from bus.contracts import default_registry
from bus.router import Router, RouterConfig
from bus.testing import capture_logs, quick_settings, wait_until
from schemas.dukcapil import CitizenDied
from tests.bus.delivery.helpers import SOURCE, died
from tests.bus.routed import ADMIN, TOPOLOGY, RoutedServer, router_signer, running

SERVICE, GROUP, ADAPTER = "svc-dinsos", "dinsos", "adapter-dukcapil"
STREAM = keys.inbox(CitizenDied.__contract__.stream, GROUP)  # what svc-dinsos consumes


@pytest.fixture
async def admin(routed: RoutedServer) -> AsyncIterator[Redis]:
    client = routed.connect(ADMIN)
    yield client
    await client.aclose()


async def test_a_pending_entry_deleted_before_its_retry_is_logged_lost_and_the_loop_goes_on(
    routed: RoutedServer, admin: Redis
) -> None:
    service_user = routed.connect(SERVICE)
    with pytest.raises(NoPermissionError):  # the premise: services may not XRANGE
        await service_user.xrange(STREAM, "-", "+", count=1)
    await service_user.aclose()

    # A failed first attempt is retried after 2 s (its idle time is set to claim_idle - 2 s):
    # a window in which the entry is deleted, so the sweep meets it pending, idle and gone.
    settings = quick_settings(
        routed.url(SERVICE),
        consumer="lost-1",
        claim_idle_ms=3_000,
        retry_backoff_ms=2_000,
        retry_backoff_max_ms=2_000,
        inboxes=True,
    )
    service = Service(GROUP, source="urn:malangkota:dinsos:bansos", settings=settings)
    handled: list[tuple[str, int]] = []

    @service.on(CitizenDied)
    async def on_died(event: CitizenDied, ctx: EventContext) -> None:
        handled.append((ctx.event_id, ctx.delivery))
        if ctx.event_id == "doomed":
            raise RuntimeError("the first attempt fails")

    producer = routed.connect(ADAPTER)
    publisher = Publisher(producer, source=SOURCE, intake=ADAPTER)
    router = Router(
        routed.connect("router"),
        TOPOLOGY,
        default_registry,
        keyring=None,  # the tests' events are unsigned (SIMPUL_SIGNATURES=off)
        signer=router_signer(),
        config=RouterConfig(block_ms=50, lease_ms=1_000),
    )

    async def idle_pending() -> list[Any]:
        rows: list[Any] = await admin.xpending_range(STREAM, GROUP, min="-", max="+", count=10)
        return [r for r in rows if r["time_since_delivered"] >= 500]  # backoff reset applied

    async def settled_as_retry() -> bool:
        return bool(await idle_pending())

    try:
        with capture_logs() as logs:
            async with running(router), service.running():
                await publisher.publish(died(), id="doomed")
                # Settled as a retry: pending, its idle time moved forward by the backoff.
                await wait_until(settled_as_retry, timeout=20)
                [row] = await idle_pending()
                doomed = row["message_id"].decode()
                [(_, fields)] = await admin.xrange(STREAM, doomed, doomed)
                assert fields[b"id"] == b"doomed"
                assert await admin.xdel(STREAM, doomed) == 1

                async def lost() -> bool:
                    return any(log["event"] == "pending_entries_lost" for log in logs)

                await wait_until(lost, timeout=20)
                # The loop keeps running: a later event is handled.
                await publisher.publish(died(), id="after")
                await wait_until(lambda: ("after", 1) in handled, timeout=20)
                assert await admin.xpending(STREAM, GROUP) == {
                    "pending": 0,
                    "min": None,
                    "max": None,
                    "consumers": [],
                }
    finally:
        await producer.aclose()
    assert handled == [("doomed", 1), ("after", 1)]
    [gone] = [log for log in logs if log["event"] == "pending_entries_lost"]
    assert gone["stream"] == STREAM and gone["entry_ids"] == [doomed]
    assert not [log for log in logs if "permission" in str(log).lower()]
