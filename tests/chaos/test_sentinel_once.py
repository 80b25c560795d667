"""Scenario 6b: the master of a Sentinel group dies right after a ``once`` handler returned.

``once=True`` (bus.dedupe) promises a handler's effect is not repeated on redelivery. A
failover promotes a replica that may lack the newest writes: if it lacks the ``done`` marker
(and the ack) of an event whose effect happened, the redelivered entry would run the handler
again. So the marker is WAITed for before the entry is acked, and the lease before the
handler runs.

To make the replicas miss exactly the marker and the ack, the handler freezes both replicas
(SIGSTOP) and drops their links on the master as its effect's last step: the marker and the
ack then reach the master only, as when a master dies with its replicas a moment behind.
The master is SIGKILLed once the entry is acked there, the replicas resumed, and the Sentinels
promote one of them. Without the WAIT behind the marker, the promoted replica hands the entry
back still pending, with this consumer's lease and no marker, and the reclaim runs the
handler a second time (measured before the fix: two effects). With it, the marker was not
confirmed (NotDurable), the consumer remembers the event, writes the marker on the new master
and acks the redelivery without running the handler.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis as SyncRedis
from redis.exceptions import ResponseError

from bus import EventContext, Publisher, Service, keys
from bus.connection import connect
from bus.errors import NotDurable
from bus.local.redis import EmbeddedRedis
from bus.local.sentinel import EmbeddedSentinelGroup
from bus.testing import capture_logs, quick_settings, wait_until
from schemas.dukcapil import CitizenDied
from tests.chaos.producer import died

pytestmark = [pytest.mark.slow, pytest.mark.chaos]

GROUP = "dinsos"
SOURCE = "urn:malangkota:dukcapil:siak"
STREAM = CitizenDied.__contract__.stream


@pytest.fixture
def group(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[EmbeddedSentinelGroup]:
    # min-replicas-to-write 0: the master stands for one whose replicas lag by less than
    # min-replicas-max-lag when it dies, so it takes the marker and the ack (with 1, the
    # dropped links would make it refuse them at once, which is not the case tested).
    with EmbeddedSentinelGroup(tmp_path / "group", min_replicas_to_write=0) as started:
        for name, value in started.environment().items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("SIMPUL_REDIS_WAIT_TIMEOUT_MS", "500")
        yield started


async def test_master_killed_right_after_a_once_handler_returns_runs_its_effect_once(
    group: EmbeddedSentinelGroup,
) -> None:
    effects: Counter[str] = Counter()
    frozen: list[EmbeddedRedis] = []
    old = group.master()
    service = Service(GROUP, settings=quick_settings(group.url, consumer="c1"))

    @service.on(CitizenDied, once=True)
    async def pay_out(event: CitizenDied, ctx: EventContext) -> None:
        effects[ctx.event_id] += 1  # the effect: not idempotent on its own
        if not frozen:  # the first event's marker and ack will reach the master only
            await asyncio.to_thread(cut_replicas_off, group, frozen)

    redis = connect(group.url)
    publisher = Publisher(redis, source=SOURCE, signer=None)
    try:
        await publisher.publish(died(1), id="e-1")
        with capture_logs() as logs:
            async with service.running():
                with SyncRedis(old.host, old.port) as master:
                    await wait_until(lambda: acked(master), timeout=10)
                old.kill()  # the ack is taken: the master goes before any replica has it
                for replica in frozen:
                    replica.resume()
                new = await asyncio.to_thread(group.wait_new_master, old)
                with SyncRedis(new.host, new.port) as promoted:
                    await wait_until(lambda: acked(promoted), timeout=30)
                    assert promoted.get(keys.done(STREAM, GROUP, "e-1")) == b"done"
                # and the service goes on; a publish right after the failover may find no
                # replica confirming yet (NotDurable): retried as the error says, idempotently
                for attempt in range(20):
                    try:
                        await publisher.publish(died(2), id="e-2")
                        break
                    except NotDurable:
                        assert attempt < 19, "no replica confirmed a publish for 20 tries"
                        await asyncio.sleep(0.5)
                await wait_until(lambda: effects["e-2"] == 1, timeout=30)
    finally:
        for replica in frozen:
            if replica.pid is not None:
                replica.resume()
        await redis.aclose()
    assert effects == {"e-1": 1, "e-2": 1}
    [unconfirmed] = [line for line in logs if line["event"] == "dedupe_mark_failed"]
    assert "only 0 of the 1 replicas" in unconfirmed["error"]


def cut_replicas_off(group: EmbeddedSentinelGroup, frozen: list[EmbeddedRedis]) -> None:
    """Freeze the replicas, then drop their links on the master: what the master writes next
    reaches neither (on loopback, a frozen replica would still find the bytes already sent in
    its socket buffer when it resumes; a dropped link sends nothing more)."""
    master = group.master()
    frozen.extend(group.replicas())
    for replica in frozen:
        replica.pause()
    with SyncRedis(master.host, master.port) as client:
        client.client_kill_filter(_type="replica")


def acked(server: SyncRedis) -> bool:
    """The group read the stream's entries and has none pending."""
    try:
        [info] = [g for g in server.xinfo_groups(STREAM) if g["name"] == GROUP.encode()]
    except (ResponseError, ValueError):  # no stream or group (yet) on this server
        return False
    return bool(info["pending"] == 0 and info["last-delivered-id"] != b"0-0")
