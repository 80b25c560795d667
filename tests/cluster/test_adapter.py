"""An adapter on a Redis Cluster: one publish_many pipeline over streams of several masters."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from redis.asyncio import Redis

from bus import Publisher, keys
from bus.adapter import Adapter, Position, Record, record_event_id
from bus.adapter.checkpoint import RedisCheckpoints
from bus.adapter.quarantine import Quarantine
from bus.admin.inspect import snapshot
from bus.contracts import Contract
from bus.local.cluster import EmbeddedCluster
from tests.cluster.helpers import MODELS, SOURCE, STREAMS, example, master_of

pytestmark = pytest.mark.slow
NAME = "cluster-adapter"
KINDS = {model.__name__: model for model in MODELS}


class ListSource:
    """Records from a list; the position is the index of the next record."""

    name = "records"

    def __init__(self, records: Sequence[Record]) -> None:
        self.records = list(records)

    async def batches(self, after: Position, *, size: int) -> AsyncIterator[Sequence[Record]]:
        start = after or 0
        for first in range(start, len(self.records), size):
            yield self.records[first : first + size]

    async def remaining(self, after: Position) -> int | None:
        return len(self.records) - (after or 0)


def mapper(record: Record) -> Contract:
    kind: Any = record.data["kind"]
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}")
    return example(KINDS[kind], int(record.data["n"]))


def records() -> list[Record]:
    kinds = [model.__name__ for model in MODELS] * 4 + ["Unknown"]
    return [
        Record(key=str(n), version="1", position=n + 1, data={"kind": kind, "n": n})
        for n, kind in enumerate(kinds)
    ]


def runner(redis: Redis) -> Adapter:
    return Adapter(
        NAME,
        source=ListSource(records()),
        mapper=mapper,
        publisher=Publisher(redis, source=SOURCE),
        checkpoints=RedisCheckpoints(redis),
        quarantine=Quarantine(redis, NAME),
        batch_size=5,
    )


async def test_an_adapter_publishes_batches_across_masters_once(
    cluster: EmbeddedCluster, cluster_redis: Redis
) -> None:
    assert len({master_of(cluster, stream) for stream in STREAMS}) == 3

    done = await runner(cluster_redis).run_once()

    assert (done.read, done.published, done.quarantined) == (13, 12, 1)
    expected = {r.key: record_event_id(SOURCE, "records", r) for r in records()[:12]}
    for index, stream in enumerate(STREAMS):
        entries: Any = await cluster_redis.xrange(stream)
        ids = [fields[b"id"].decode() for _, fields in entries]
        assert ids == [expected[str(n)] for n in range(index, 12, 3)]  # in record order
    [rejected] = await Quarantine(cluster_redis, NAME).entries()
    assert rejected.record_key == "12"
    assert rejected.problems[0].problem == "ValueError: unknown kind '***'"  # the value masked

    # Lost checkpoint: the replay adds nothing, to any stream or to the quarantine.
    await RedisCheckpoints(cluster_redis).reset(NAME)
    again = await runner(cluster_redis).run_once()
    assert (again.published, again.duplicates) == (0, 12)
    assert [await cluster_redis.xlen(stream) for stream in STREAMS] == [4, 4, 4]
    assert await Quarantine(cluster_redis, NAME).count() == 1
    assert await cluster_redis.get(keys.checkpoint(NAME)) == b"13"


async def test_status_finds_an_adapters_report_on_whichever_master_holds_it(
    cluster: EmbeddedCluster, cluster_redis: Redis
) -> None:
    await runner(cluster_redis).run_once()
    [report] = (await snapshot(cluster_redis)).adapters
    assert (report.name, report.position, report.published, report.quarantined) == (
        NAME,
        "13",
        12,
        1,
    )
    assert report.behind_rows == 0 and report.age_s is not None and report.age_s < 10
