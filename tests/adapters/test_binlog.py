"""Change-data-capture from the MariaDB row binlog against polling, on the SIAK table.

Polling by a change column skips a row whose transaction commits after a later row was read:
the first test pins that hole down with one deterministic interleaving, and shows the binlog
source delivering both rows. Then many writers whose transactions commit out of order against
their ids and stamps: every committed row version reaches the bus exactly once, in order per
row; a snapshot taken while writers run joins the stream without a gap or a double.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest
from redis.asyncio import Redis

from adapters import dukcapil
from adapters.dukcapil.fixtures import as_params, rows
from adapters.dukcapil.schema import insert_sql
from bus import keys
from bus.adapter import Adapter, Record
from bus.adapter.checkpoint import RedisCheckpoints
from bus.adapter.sources.binlog import BinlogSource
from bus.publisher import event_id
from bus.testing import wait_until
from tests.adapters.contract import create_mysql, insert_mysql
from tests.adapters.test_dukcapil import KEY
from tests.conftest import mysql_connect

STREAM = keys.stream("dukcapil.citizen")


def expected_id(id_peristiwa: int, versi: int) -> str:
    return event_id(dukcapil.SOURCE, dukcapil.TABLE, id_peristiwa, versi)


async def published(redis: Redis) -> list[str]:
    return [f[b"id"].decode() for _, f in await redis.xrange(STREAM)]


def siak(redis: Redis, url: str, *, binlog: bool) -> Adapter:
    return dukcapil.adapter(redis, url, pseudonym_key=KEY, cdc=binlog)


async def test_polling_skips_a_row_whose_transaction_commits_late_and_the_binlog_does_not(
    mysql_url: str, redis: Redis
) -> None:
    create_mysql(mysql_url)
    first, second = rows(2, seed=5)
    second["updated_at"] = first["updated_at"] + timedelta(seconds=1)
    polling, binlog = siak(redis, mysql_url, binlog=False), siak(redis, mysql_url, binlog=True)
    binlog.name = "dukcapil-siak-binlog"  # its own checkpoint beside the poller's
    await binlog.run_once()  # an empty table: the stream starts here

    slow = mysql_connect(mysql_url, autocommit=False)
    with slow, slow.cursor() as a:
        a.execute(insert_sql("mysql"), as_params(first, "mysql"))  # no_urut 1, open
        insert_mysql(mysql_url, [second])  # no_urut 2, later stamp, commits first
        await polling.run_once()
        slow.commit()
    await polling.run_once()
    await binlog.run_once()

    ids = await published(redis)
    late, early = expected_id(first["id_peristiwa"], 1), expected_id(second["id_peristiwa"], 1)
    assert ids.count(early) == 1
    assert ids.count(late) == 1, "the binlog source delivers the late commit"
    assert polling.progress.read == 1, "polling read only the row that committed first"
    assert polling.progress.position == [second["updated_at"].isoformat(), 2]
    await binlog.source.close()  # type: ignore[attr-defined]
    await polling.source.close()  # type: ignore[attr-defined]


@dataclass
class Writers:
    """Writer threads, each committing transactions of an insert and maybe an update of one of
    its earlier rows, with think time between the statements: ids and stamps are taken at the
    first statement, commits land in another order."""

    url: str
    count: int
    per_writer: int
    committed: list[tuple[int, int]] = field(default_factory=list)  # (id_peristiwa, versi)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self) -> None:
        threads = [threading.Thread(target=self._write, args=(w,)) for w in range(self.count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def _write(self, writer: int) -> None:
        rng = random.Random(writer)
        mine: dict[int, tuple[int, int]] = {}  # id_peristiwa -> (no_urut, versi), committed
        data = rows(self.per_writer, seed=writer, first_id=(writer + 1) * 100_000)
        conn = mysql_connect(self.url, autocommit=False)
        with conn, conn.cursor() as cursor:
            for row in data:
                row["updated_at"] = datetime.now()
                cursor.execute(insert_sql("mysql"), as_params(row, "mysql"))
                done = {row["id_peristiwa"]: (cursor.lastrowid, 1)}
                time.sleep(rng.uniform(0, 0.01))
                if mine and rng.random() < 0.5:
                    target = rng.choice(list(mine))
                    no_urut, versi = mine[target]
                    cursor.execute(
                        "UPDATE peristiwa SET versi = versi + 1, alamat = %s, updated_at = %s "
                        "WHERE no_urut = %s",
                        (f"Jl. Kawi No. {rng.randint(1, 99)}, Malang", datetime.now(), no_urut),
                    )
                    done[target] = (no_urut, versi + 1)
                    time.sleep(rng.uniform(0, 0.01))
                conn.commit()
                mine.update(done)
                with self.lock:
                    self.committed += [(key, versi) for key, (_, versi) in done.items()]


async def test_the_binlog_source_publishes_every_committed_row_version_of_concurrent_writers_once(
    mysql_url: str, redis: Redis
) -> None:
    create_mysql(mysql_url)
    adapter = siak(redis, mysql_url, binlog=True)
    stop = asyncio.Event()
    running = asyncio.create_task(adapter.run(poll_interval=0.0, stop=stop))
    writers = Writers(mysql_url, count=8, per_writer=100)
    await asyncio.to_thread(writers.run)

    expected = {expected_id(k, v): (k, v) for k, v in writers.committed}
    assert len(expected) == len(writers.committed) > 1_000

    async def all_there() -> bool:
        return await redis.xlen(STREAM) >= len(expected)

    await wait_until(all_there, timeout=60)
    stop.set()
    await running
    await adapter.source.close()  # type: ignore[attr-defined]

    ids = await published(redis)
    assert len(ids) == len(set(ids)) == len(expected), "each row version once"
    assert set(ids) == set(expected)
    versions: dict[int, list[int]] = defaultdict(list)
    for id in ids:
        key, versi = expected[id]
        versions[key].append(versi)
    assert all(v == sorted(v) for v in versions.values()), "order per row kept"
    assert adapter.progress.quarantined == 0


async def test_a_snapshot_taken_while_writers_commit_joins_the_stream_without_gap_or_double(
    mysql_url: str, redis: Redis
) -> None:
    create_mysql(mysql_url)
    existing = list(rows(3_000, seed=7, first_id=1))
    insert_mysql(mysql_url, existing)
    writers = Writers(mysql_url, count=4, per_writer=50)
    writing = asyncio.create_task(asyncio.to_thread(writers.run))
    adapter = siak(redis, mysql_url, binlog=True)
    adapter.batch_size = 100  # a snapshot of 30 batches, while the writers commit
    await adapter.run_once()
    await writing
    await adapter.run_once()
    await adapter.source.close()  # type: ignore[attr-defined]

    expected = {expected_id(r["id_peristiwa"], 1) for r in existing}
    expected |= {expected_id(k, v) for k, v in writers.committed}
    ids = await published(redis)
    assert len(ids) == len(set(ids)) == len(expected)
    assert set(ids) == expected


async def test_mysqls_locked_snapshot_joins_the_stream_without_gap_or_double(
    mysql_url: str, redis: Redis
) -> None:
    """MySQL reports no snapshot position: the source takes it under FLUSH TABLES WITH READ
    LOCK. No MySQL server here (Debian ships MariaDB only), so that path runs on MariaDB,
    forced by ``locked_snapshot``, with writers committing during the snapshot."""
    create_mysql(mysql_url)
    existing = list(rows(1_500, seed=11, first_id=1))
    insert_mysql(mysql_url, existing)
    writers = Writers(mysql_url, count=4, per_writer=40)
    writing = asyncio.create_task(asyncio.to_thread(writers.run))
    adapter = siak(redis, mysql_url, binlog=True)
    source: Any = adapter.source
    source.locked_snapshot = True
    adapter.batch_size = 100
    try:
        await adapter.run_once()
        await writing
        await adapter.run_once()
    finally:
        await source.close()

    expected = {expected_id(r["id_peristiwa"], 1) for r in existing}
    expected |= {expected_id(k, v) for k, v in writers.committed}
    ids = await published(redis)
    assert len(ids) == len(set(ids)) == len(expected)
    assert set(ids) == expected


async def test_lag_reports_the_position_and_the_binlog_not_yet_read(
    mysql_url: str, redis: Redis
) -> None:
    create_mysql(mysql_url)
    insert_mysql(mysql_url, list(rows(5, seed=8)))
    adapter = siak(redis, mysql_url, binlog=True)
    source: Any = adapter.source
    try:
        await adapter.run_once()
        insert_mysql(mysql_url, list(rows(5, seed=9, first_id=100)))  # then once more
        await adapter.run_once()
        caught_up = await source.lag()
        insert_mysql(mysql_url, list(rows(3, seed=10, first_id=200)))
        behind = await source.lag()
    finally:
        await source.close()
    checkpoint = adapter.progress.position
    assert caught_up.position.startswith(f"{checkpoint['file']}:{checkpoint['pos']}")
    assert caught_up.behind_bytes == 0
    assert caught_up.behind_seconds == 0.0
    assert behind.behind_bytes is not None
    assert behind.behind_bytes > 0


async def test_a_checkpoint_holding_only_a_gtid_resumes_after_that_transaction(
    mysql_url: str, redis: Redis
) -> None:
    """What an operator writes after a failover: the GTID of the last published transaction,
    which means the same on every server of the topology (file and offset do not)."""
    create_mysql(mysql_url)
    insert_mysql(mysql_url, list(rows(1, seed=8)))
    adapter = siak(redis, mysql_url, binlog=True)
    source: Any = adapter.source
    try:
        await adapter.run_once()  # the snapshot
        insert_mysql(mysql_url, list(rows(4, seed=9, first_id=100)))
        await adapter.run_once()  # one transaction from the stream
        gtid = adapter.progress.position["gtid"]
        assert gtid
        await RedisCheckpoints(redis).save(adapter.name, {"gtid": gtid})
        later = list(rows(3, seed=10, first_id=200))
        insert_mysql(mysql_url, later)
        await adapter.run_once()
    finally:
        await source.close()
    ids = await published(redis)
    assert len(ids) == len(set(ids)) == 8
    assert set(ids[-3:]) == {expected_id(r["id_peristiwa"], 1) for r in later}
    assert adapter.progress.duplicates == 0, "nothing before the GTID was read again"


async def read(source: BinlogSource, after: Any, size: int) -> list[list[Record]]:
    return [list(batch) async for batch in source.batches(after, size=size)]


async def test_deletes_are_records_only_when_asked_and_have_an_id_of_their_own(
    mysql_url: str,
) -> None:
    create_mysql(mysql_url)
    insert_mysql(mysql_url, list(rows(1, seed=8, first_id=7)))
    asked = BinlogSource(
        mysql_url,
        table="peristiwa",
        key="id_peristiwa",
        version="versi",
        changes=("insert", "update", "delete"),
        wait=0.1,
    )
    default = BinlogSource(
        mysql_url, table="peristiwa", key="id_peristiwa", version="versi", wait=0.1
    )
    try:
        start = {s: (await read(s, None, 10))[-1][-1].position for s in (asked, default)}
        with mysql_connect(mysql_url) as conn, conn.cursor() as cursor:
            cursor.execute("UPDATE peristiwa SET versi = 2 WHERE id_peristiwa = 7")
            cursor.execute("DELETE FROM peristiwa WHERE id_peristiwa = 7")
        seen = {s: [r for b in await read(s, start[s], 10) for r in b] for s in (asked, default)}
    finally:
        await asked.close()
        await default.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("binlog-")], "stopped"
    assert [(r.change, r.version) for r in seen[asked]] == [
        ("update", "2"),
        ("delete", "2/deleted"),
    ]
    assert seen[asked][1].data["nik"], "a delete carries the row as it was"
    assert [(r.change, r.version) for r in seen[default]] == [("update", "2")]


async def test_a_transaction_larger_than_a_batch_is_never_checkpointed_inside(
    mysql_url: str,
) -> None:
    create_mysql(mysql_url)
    source = BinlogSource(
        mysql_url, table="peristiwa", key="id_peristiwa", version="versi", wait=0.1
    )
    try:
        assert await read(source, None, 10) == []  # an empty table: no snapshot rows
        insert_mysql(mysql_url, list(rows(25, seed=8)))  # one transaction
        batches = await read(source, None, 10)
    finally:
        await source.close()
    assert [len(b) for b in batches] == [10, 10, 5]
    records = [r for b in batches for r in b]
    before, end = records[0].position, records[-1].position
    assert all(r.position == before for r in records[:-1]), "a crash mid-way replays it all"
    assert (end["file"], end["pos"]) > (before["file"], before["pos"])
    assert end["gtid"] != before["gtid"]


class Crash(Exception):
    pass


async def test_a_snapshot_cut_short_by_a_crash_resumes_after_its_last_published_key(
    mysql_url: str, redis: Redis
) -> None:
    """The resumed snapshot reads the rest in a new snapshot, the stream starts where the first
    one did: every change after the first snapshot is published once. A row still unread whose
    first-snapshot state was replaced before the resume misses that state (its later versions
    are all published)."""
    create_mysql(mysql_url)
    insert_mysql(mysql_url, list(rows(1_000, seed=7, first_id=1)))
    crashed = siak(redis, mysql_url, binlog=True)
    crashed.batch_size = 100
    batches = 0

    def crash_after_three(_: object) -> None:
        nonlocal batches
        batches += 1
        if batches == 4:  # the first report is the pass's start, then one per batch
            raise Crash  # the process dies right after a checkpoint

    crashed.on_progress = crash_after_three
    with pytest.raises(Crash):
        await crashed.run_once()
    await crashed.source.close()  # type: ignore[attr-defined]
    checkpoint = await RedisCheckpoints(redis).load(crashed.name)
    (last_key,) = checkpoint["snapshot"]
    assert last_key == 300

    with mysql_connect(mysql_url) as conn, conn.cursor() as cursor:  # while the adapter is down
        cursor.execute("UPDATE peristiwa SET versi = 2 WHERE no_urut % 10 = 0")
        cursor.execute("UPDATE peristiwa SET versi = 3 WHERE no_urut % 20 = 0")
    new = list(rows(50, seed=9, first_id=5_000))
    insert_mysql(mysql_url, new)
    restarted = siak(redis, mysql_url, binlog=True)
    await restarted.run_once()
    await restarted.source.close()  # type: ignore[attr-defined]

    expected = {expected_id(r["id_peristiwa"], 1) for r in new}
    for no_urut in range(1, 1_001):
        final = 3 if no_urut % 20 == 0 else 2 if no_urut % 10 == 0 else 1
        # An unread row updated while the adapter was down misses its first-snapshot state only:
        # its updates come from the stream (which starts where the first snapshot did).
        first = 1 if no_urut <= last_key or final == 1 else 2
        expected |= {expected_id(no_urut, v) for v in range(first, final + 1)}
    ids = await published(redis)
    assert len(ids) == len(set(ids)) == len(expected)
    assert set(ids) == expected


async def test_the_reader_thread_hands_over_at_most_its_bound_and_nothing_is_lost(
    mysql_url: str, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The thread reads the binlog faster than the adapter publishes: a backlog must wait in the
    server's binlog, not in memory (a 10^6-row backlog grew the adapter to 790 MiB)."""
    from bus.adapter.sources import _binlog_reader  # noqa: PLC0415 - the bound under test

    monkeypatch.setattr(_binlog_reader, "QUEUED_MAX", 4)  # rows
    create_mysql(mysql_url)
    adapter = siak(redis, mysql_url, binlog=True)
    await adapter.run_once()  # an empty table: the stream starts here
    data = list(rows(40, seed=9))
    for row in data:  # one transaction of one row each: 40 rows to hand over
        insert_mysql(mysql_url, [row])
    source = adapter.source
    assert isinstance(source, BinlogSource)
    queued: list[int] = []

    async def watch() -> None:
        while True:
            queued.append(source._queue.qsize())
            await asyncio.sleep(0.001)

    watcher = asyncio.create_task(watch())
    try:
        await adapter.run_once()
    finally:
        watcher.cancel()
        await source.close()
    assert sorted(await published(redis)) == sorted(
        expected_id(r["id_peristiwa"], r["versi"]) for r in data
    )
    assert max(queued) <= 4
