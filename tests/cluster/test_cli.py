"""``simpul status`` and ``simpul dlq`` against a Redis Cluster, as an operator runs them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
from redis.asyncio import Redis
from typer.testing import CliRunner

from bus import EventContext, Publisher, Service, keys
from bus.adapter import Problem, Record, Rejected
from bus.adapter.quarantine import Quarantine
from bus.cli.app import app
from bus.connection import connect
from bus.contracts import Contract
from bus.local.cluster import EmbeddedCluster
from bus.testing import quick_settings, wait_until
from schemas.bapenda import PaymentReceived
from schemas.dukcapil import CitizenDied
from tests.cluster.helpers import MODELS, SOURCE, STREAMS, example, master_of

pytestmark = pytest.mark.slow
runner = CliRunner()
T = TypeVar("T")


def simpul(*args: str) -> Any:
    return runner.invoke(app, list(args))


def on_cluster(url: str, work: Callable[[Redis], Awaitable[T]]) -> T:
    """Run ``work`` with a cluster client of its own (the CLI runs its own event loops)."""

    async def main() -> T:
        redis = connect(url)
        try:
            return await work(redis)
        finally:
            await redis.aclose()

    return asyncio.run(main())


async def lay_out(redis: Redis) -> None:
    """Three streams on three masters; group audit reads them all and holds one entry of each;
    group dinsos has caught up on the first; adapter siak has a quarantined record."""
    publisher = Publisher(redis, source=SOURCE)
    for model in MODELS:
        await publisher.publish_many([example(model, 0), example(model, 1)])
    for stream in STREAMS:
        await redis.xgroup_create(stream, "audit", id="0")
        await redis.xreadgroup("audit", "audit-1", {stream: ">"}, count=1)
    await redis.xgroup_create(STREAMS[0], "dinsos", id="$")
    record = Record(key="r1", version="1", position=1, data={"kind": "?"})
    await Quarantine(redis, "siak").add([Rejected(SOURCE, "ev-1", record, [Problem("kind", "?")])])


def test_status_json_lists_every_stream_and_group_of_every_master(
    cluster: EmbeddedCluster, cluster_url: str
) -> None:
    on_cluster(cluster_url, lay_out)

    result = simpul("status", "--json")

    assert result.exit_code in (0, 1), result.output  # 1: a threshold is breached
    snapshot = json.loads(result.stdout)["snapshot"]
    streams = {s["key"]: s for s in snapshot["streams"]}
    assert len({master_of(cluster, stream) for stream in STREAMS}) == 3
    for stream in STREAMS:
        found = streams[stream]
        assert found["exists"] and found["length"] == 2
        groups = {g["name"]: g for g in found["groups"]}
        assert groups["audit"]["pending"] == 1 and groups["audit"]["lag"] == 1
    first = {g["name"]: g for g in streams[STREAMS[0]]["groups"]}
    assert set(first) == {"audit", "dinsos"} and first["dinsos"]["lag"] == 0
    assert snapshot["quarantine"] == {"siak": 1}
    # Discovery walked the keyspace of every master (one SCAN each at least), then 2 pipelines.
    assert snapshot["round_trips"] >= len(cluster.nodes) + 2


async def dead_letter_on_two_masters(redis: Redis, url: str) -> None:
    service = Service("dinsos", settings=quick_settings(url, max_deliveries=1))
    for model in (CitizenDied, PaymentReceived):

        @service.on(model)
        async def refuse(event: Contract, ctx: EventContext) -> None:
            raise RuntimeError("the assistance register is locked")

    publisher = Publisher(redis, source=SOURCE)
    async with service.running():
        await publisher.publish(example(CitizenDied), id="death-1")
        await publisher.publish(example(PaymentReceived), id="payment-1")
        await wait_until(lambda: dead_letters_present(redis), timeout=15)


async def dead_letters_present(redis: Redis) -> bool:
    lengths = [await redis.xlen(keys.dead_letters(s, "dinsos")) for s in (STREAMS[0], STREAMS[2])]
    return lengths == [1, 1]


async def handle_replayed(redis: Redis, url: str) -> set[str]:
    handled: set[str] = set()
    service = Service("dinsos", settings=quick_settings(url))
    for model in (CitizenDied, PaymentReceived):

        @service.on(model)
        async def accept(event: Contract, ctx: EventContext) -> None:
            handled.add(ctx.event_id)

    async with service.running():
        await wait_until(lambda: len(handled) == 2, timeout=15)
    return handled


def test_dlq_list_and_replay_across_masters(cluster: EmbeddedCluster, cluster_url: str) -> None:
    on_cluster(cluster_url, lambda redis: dead_letter_on_two_masters(redis, cluster_url))
    dlqs = [keys.dead_letters(STREAMS[0], "dinsos"), keys.dead_letters(STREAMS[2], "dinsos")]
    assert master_of(cluster, dlqs[0]) != master_of(cluster, dlqs[1])

    listed = simpul("dlq", "list", "--json")
    assert listed.exit_code == 0, listed.output
    body = json.loads(listed.stdout)
    assert body["total"] == 2
    assert {(q["stream"], q["group"]) for q in body["queues"]} == {
        (STREAMS[0], "dinsos"),
        (STREAMS[2], "dinsos"),
    }
    assert {d["reason"] for d in body["dead_letters"]} == {"handler_failed"}

    replayed = simpul("dlq", "replay", "--yes", "--json")
    assert replayed.exit_code == 0, replayed.output
    assert json.loads(replayed.stdout)["counts"] == {"replayed": 2}
    assert json.loads(simpul("dlq", "list", "--json").stdout)["total"] == 0

    handled = on_cluster(cluster_url, lambda redis: handle_replayed(redis, cluster_url))
    assert handled == {"death-1", "payment-1"}
