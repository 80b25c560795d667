"""A pending entry deleted before its retry, reclaimed under a service's own rendered ACL user.

The sweep used to ask ``XRANGE`` whether an entry it could not claim still existed; the
rendered ACLs do not grant services ``XRANGE``, so Redis refused it and the consume loop died.
The claim script (bus/claim.lua) now tells "gone" from "claimed by another" itself. The bus is
the shipped one: routed, the service reading its inbox, the router forwarding into it.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis import Redis as SyncRedis
from redis.asyncio import Redis
from redis.exceptions import NoPermissionError

from bus import EventContext, Publisher, Service, functions, keys
from bus.access import acl
from bus.access.topology import contracts as registry
from bus.access.topology import load_topology
from bus.connection import connect
from bus.contracts import default_registry
from bus.local.redis import find_redis_server, free_port
from bus.router import Router, RouterConfig
from bus.testing import capture_logs, quick_settings, wait_until
from schemas.dukcapil import CitizenDied
from tests.bus.delivery.helpers import SOURCE, died
from tests.bus.routed import router_signer, running

ROOT = Path(__file__).parents[3]
SERVICE, GROUP, ADAPTER, ADMIN = "svc-dinsos", "dinsos", "adapter-dukcapil", "operator"
STREAM = keys.inbox(CitizenDied.__contract__.stream, GROUP)  # what svc-dinsos consumes


def _version(binary: str) -> tuple[int, int]:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True).stdout
    match = re.search(r"\bv=(\d+)\.(\d+)", out)
    assert match, out
    return (int(match[1]), int(match[2]))


@pytest.fixture
def acl_server(tmp_path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """A private redis-server started with the ACL file rendered from deploy/."""
    binary = find_redis_server()
    if _version(binary) < (7, 0):
        pytest.skip("ACL selectors need Redis >= 7.0; only the bundled 6.2 server was found")
    topology = load_topology(ROOT / "deploy/topology.yaml", registry=registry())
    assert topology.routed
    secrets = acl.passwords(topology, acl.read_env_file(ROOT / "deploy/dev.env"))
    (tmp_path / "users.acl").write_text(acl.render(topology, secrets))
    port = free_port()
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
            "--aclfile",
            str(tmp_path / "users.acl"),
            "--logfile",
            str(tmp_path / "redis.log"),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        with SyncRedis(port=port, username=ADMIN, password=secrets[ADMIN]) as admin:
            deadline = time.monotonic() + 10
            while True:
                try:
                    admin.ping()
                    break
                except Exception:
                    assert proc.poll() is None and time.monotonic() < deadline, "no redis"
                    time.sleep(0.02)
            functions.load_sync(admin)  # as `simpul functions load` (or `simpul acl apply`) does
        yield port, secrets
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
async def admin(acl_server: tuple[int, dict[str, str]]) -> AsyncIterator[Redis]:
    port, secrets = acl_server
    client = connect(f"redis://{ADMIN}:{secrets[ADMIN]}@127.0.0.1:{port}/0")
    yield client
    await client.aclose()


async def test_a_pending_entry_deleted_before_its_retry_is_logged_lost_and_the_loop_goes_on(
    acl_server: tuple[int, dict[str, str]], admin: Redis
) -> None:
    port, secrets = acl_server

    def url(principal: str) -> str:
        return f"redis://{principal}:{secrets[principal]}@127.0.0.1:{port}/0"

    service_user = connect(url(SERVICE))
    with pytest.raises(NoPermissionError):  # the premise: services may not XRANGE
        await service_user.xrange(STREAM, "-", "+", count=1)
    await service_user.aclose()

    # A failed first attempt is retried after 2 s (its idle time is set to claim_idle - 2 s):
    # a window in which the entry is deleted, so the sweep meets it pending, idle and gone.
    settings = quick_settings(
        url(SERVICE),
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

    producer = connect(url(ADAPTER))
    publisher = Publisher(producer, source=SOURCE, intake=ADAPTER)
    router = Router(
        connect(url("router")),
        load_topology(ROOT / "deploy/topology.yaml", registry=registry()),
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
