"""The operator's view of routed delivery (decision 0011), on a real Redis with the routed ACL:
``simpul status`` (table and JSON), the snapshot behind it and the exporter show each
subscription's inbox under its service (types, its group's lag, pending and dead letters),
each producer's intake with the entries the router has not admitted yet, and streams whose ids
lie ahead of Redis TIME. Read as the read-only operator, the exporter's and status's user."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest
from redis.asyncio import Redis
from typer.testing import CliRunner

from bus import Publisher, keys
from bus.admin.exporter import BusCollector
from bus.admin.inspect import Inspector, RoutingPlan, snapshot
from bus.admin.thresholds import Thresholds, breaches
from bus.cli.app import app
from bus.contracts import default_registry
from bus.testing import wait_until
from schemas.dukcapil import CitizenDied
from tests.bus.routed import (
    ADMIN,
    TOPOLOGY,
    RoutedServer,
    routed_document,
    running,
    signer,
)

CITIZEN = keys.stream("dukcapil.citizen")
DINSOS = keys.inbox(CITIZEN, "dinsos")
FAR_FUTURE = "4102444800000-0"  # 2100-01-01
READONLY = "operator-readonly"
DIED = CitizenDied.__contract__.event_type


def died() -> CitizenDied:
    return CitizenDied.model_validate(
        {"nik": "3573014506900001", "date_of_death": "2024-03-01", "kecamatan": "35.73.01"}
    )


async def _routed_bus(routed: RoutedServer) -> None:
    """Three deaths routed to every subscriber; dinsos read two (pending) and dead-lettered
    nothing yet; then, with the router stopped, five more deaths wait in the producer's intake;
    adapter-bapenda's intake got an explicit far-future id."""
    admin = routed.connect(ADMIN)
    client = routed.connect("adapter-dukcapil")
    dukcapil = Publisher(
        client, source="urn:x", signer=signer("adapter-dukcapil"), intake="adapter-dukcapil"
    )
    async with running(routed.router()):
        for n in range(3):
            await dukcapil.publish(died(), id=f"d-{n}")

        async def forwarded() -> bool:
            return bool(await admin.xlen(DINSOS) == 3)

        await wait_until(forwarded, timeout=30)
    dinsos = routed.connect("svc-dinsos")
    await dinsos.xgroup_create(DINSOS, "dinsos", id="0")
    await dinsos.xreadgroup("dinsos", "dinsos-1", {DINSOS: ">"}, count=2)
    for n in range(3, 8):
        await dukcapil.publish(died(), id=f"d-{n}")
    await admin.xadd(keys.intake("adapter-bapenda"), {"type": "x"}, id=FAR_FUTURE)
    for redis in (admin, client, dinsos):
        await redis.aclose()


async def test_the_snapshot_shows_inboxes_under_their_subscription_and_intake_backlogs(
    routed: RoutedServer,
) -> None:
    await _routed_bus(routed)
    readonly = routed.connect(READONLY)
    snap = await snapshot(readonly, registry=default_registry, plan=RoutingPlan.of(TOPOLOGY))
    inbox = next(i for i in snap.inboxes if i.key == DINSOS)
    assert (inbox.group, inbox.stream, inbox.exists, inbox.length) == (
        "dinsos",
        "dukcapil.citizen",
        True,
        3,
    )
    assert DIED in inbox.types
    assert inbox.consumer_group is not None
    assert (inbox.consumer_group.pending, inbox.consumer_group.lag) == (2, 1)
    assert inbox.consumer_group.consumer_count == 1
    assert inbox.dead_letters == 0
    # Another subscriber of deaths has its inbox filled but never started: no group yet.
    audit = next(i for i in snap.inboxes if i.key == keys.inbox(CITIZEN, "audit"))
    assert (audit.length, audit.consumer_group) == (3, None)
    # An inbox the topology names that the router never wrote is listed, empty.
    planned = RoutingPlan.of(TOPOLOGY).inboxes
    empty = [i for i in snap.inboxes if not i.exists]
    assert empty and all(i.key in planned and i.length == 0 for i in empty)
    intakes = {i.principal: i for i in snap.intakes}
    assert set(intakes) == set(RoutingPlan.of(TOPOLOGY).intakes)
    dukcapil = intakes["adapter-dukcapil"]
    assert (dukcapil.backlog, dukcapil.router_reading, dukcapil.router_pending) == (5, True, 0)
    assert dukcapil.oldest_age_s is not None
    assert [a.key for a in snap.ahead_of_time] == [keys.intake("adapter-bapenda")]
    assert snap.ahead_of_time[0].ahead_s > 60 * 365 * 24 * 3600
    # Without a plan, what Redis holds is found all the same (types unknown).
    found = await snapshot(readonly, registry=default_registry)
    assert {i.key for i in found.inboxes} == {i.key for i in snap.inboxes if i.exists}
    assert next(i for i in found.inboxes if i.key == DINSOS).types == []
    assert {i.principal for i in found.intakes} == set(intakes)  # the router created them all

    problems = breaches(snap, Thresholds.load(max_intake_backlog=4))
    kinds = {(b.kind, b.principal or b.stream) for b in problems}
    assert ("intake_backlog", "adapter-dukcapil") in kinds
    assert ("ahead_of_time", keys.intake("adapter-bapenda")) in kinds
    assert not breaches(snap, Thresholds.load(max_intake_backlog=5, max_ahead_s="off"))
    # The service group on its inbox is held to the same limits as a group on a stream.
    strict = breaches(snap, Thresholds.load(max_lag=0, max_pending_age_s=0, max_ahead_s="off"))
    mine = {b.kind: b for b in strict if b.group == "dinsos" and b.stream == "dukcapil.citizen"}
    assert set(mine) == {"lag", "pending_age"}
    assert mine["lag"].message == "inbox of dinsos on dukcapil.citizen lags 1 entries (max 0)"
    await readonly.aclose()


def test_status_lists_subscriptions_intakes_and_ids_ahead_of_time(
    routed: RoutedServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asyncio.run(_routed_bus(routed))
    topology = tmp_path / "topology.yaml"
    topology.write_text(yaml.safe_dump(routed_document(), sort_keys=False))
    monkeypatch.setenv("SIMPUL_REDIS_URL", routed.url(READONLY))
    runner = CliRunner()
    args = ["status", "--topology", str(topology), "--max-intake-backlog", "4"]
    table = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert table.exit_code == 1, table.output
    assert "subscriptions (inboxes)" in table.output
    assert "intakes (router lag)" in table.output
    row = next(line for line in table.output.splitlines() if DINSOS in line)
    # lag 1, pending 2, the oldest pending's age, 1 consumer, 0 dead letters
    assert re.search(rf"{re.escape(DINSOS)}\s+1\s+2\s+[\d.]+ s\s+1\s+0\s*$", row), row
    assert "intake of adapter-dukcapil: 5 entries not yet admitted" in table.output
    assert f"ahead of time: {keys.intake('adapter-bapenda')}" in table.output

    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 1, result.output
    report = json.loads(result.output)
    inbox = next(i for i in report["snapshot"]["inboxes"] if i["key"] == DINSOS)
    assert inbox["group"] == "dinsos" and DIED in inbox["types"]
    assert (inbox["consumer_group"]["pending"], inbox["consumer_group"]["lag"]) == (2, 1)
    intake = next(i for i in report["snapshot"]["intakes"] if i["principal"] == "adapter-dukcapil")
    assert intake["backlog"] == 5
    assert report["snapshot"]["ahead_of_time"][0]["key"] == keys.intake("adapter-bapenda")
    assert {b["kind"] for b in report["breaches"]} >= {"intake_backlog", "ahead_of_time"}

    healthy = runner.invoke(
        app, [*args[:3], "--max-intake-backlog", "5", "--max-ahead", "off", "--json"]
    )
    assert healthy.exit_code == 0, healthy.output


async def test_the_exporter_serves_inbox_lag_and_pending_and_intake_backlog(
    routed: RoutedServer,
) -> None:
    await _routed_bus(routed)
    readonly: Redis = routed.connect(READONLY)
    collector = BusCollector(Inspector(readonly, registry=default_registry), interval_s=0)
    await collector.refresh()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    text = generate_latest(registry).decode()
    labels = 'group="dinsos",stream="dukcapil.citizen"'
    assert f"simpul_inbox_lag{{{labels}}} 1.0" in text
    assert f"simpul_inbox_pending{{{labels}}} 2.0" in text
    assert f"simpul_inbox_dead_letters{{{labels}}} 0.0" in text
    assert 'simpul_intake_backlog{principal="adapter-dukcapil"} 5.0' in text
    assert 'simpul_intake_dead_letters{principal="adapter-dukcapil"} 0.0' in text
    # audit's inbox has no group yet: no lag or pending is invented for it
    assert 'simpul_inbox_pending{group="audit"' not in text
    await readonly.aclose()
