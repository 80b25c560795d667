"""The PostgreSQL change-data-capture source on a real server: changes, snapshot, lag, errors."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from redis.asyncio import Redis

from adapters.dukcapil.fixtures import rows
from bus.adapter import Record
from bus.adapter.sources.logical import LogicalSource
from bus.errors import ConfigurationError
from bus.local.postgres import EmbeddedPostgres
from bus.testing import capture_logs
from tests.adapters import siak_cdc
from tests.adapters.test_dukcapil import load_postgres
from tests.adapters.writers import assert_each_version_once_latest_last, published
from tests.adapters.writers import write_concurrently as write


@pytest.fixture
def slot(postgres_url: str) -> Iterator[str]:
    yield from siak_cdc.slot_fixture(postgres_url)


async def read_all(source: LogicalSource, after: object = None) -> list[Record]:
    records: list[Record] = []
    async for batch in source.batches(after, size=100):
        records += batch
    return records


def execute(url: str, *statements: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)  # type: ignore[arg-type]


async def test_changes_are_typed_records_in_commit_order_and_deletes_only_when_asked(
    postgres_url: str, slot: str
) -> None:
    execute(
        postgres_url,
        "CREATE TABLE izin (id int PRIMARY KEY, versi int, nama text, "
        "tanggal date, biaya numeric(12,2), kode text[], catatan text)",
    )
    source = LogicalSource(
        postgres_url,
        table="izin",
        key="id",
        version="versi",
        slot=slot,
        changes=("insert", "update", "delete"),
        idle_wait=0.0,
    )
    try:
        assert await read_all(source) == []  # the snapshot of an empty table
        execute(
            postgres_url,
            "INSERT INTO izin VALUES (1, 1, 'Toko ''Sumber'' Rejeki', '2026-03-01', 150000.50, "
            "'{\"a,b\",NULL}', NULL)",
            "UPDATE izin SET versi = 2, nama = 'Toko Baru' WHERE id = 1",
            "DELETE FROM izin WHERE id = 1",
        )
        changes = await read_all(source, ["stream", "0/0", 0])
    finally:
        await source.close()
    assert [(r.change, r.key, r.version[:8]) for r in changes] == [
        ("insert", "1", "1"),
        ("update", "1", "2"),
        ("delete", "1", "deleted@"),
    ]
    inserted = changes[0].data
    assert inserted["nama"] == "Toko 'Sumber' Rejeki"
    assert str(inserted["tanggal"]) == "2026-03-01" and str(inserted["biaya"]) == "150000.50"
    assert inserted["kode"] == ["a,b", None] and inserted["catatan"] is None
    assert changes[2].data["id"] == 1, "a delete carries the old row's key"


async def test_a_transaction_bigger_than_a_batch_resumes_inside_it_exactly(
    postgres_url: str, slot: str
) -> None:
    execute(postgres_url, "CREATE TABLE izin (id int PRIMARY KEY)")
    source = LogicalSource(postgres_url, table="izin", key="id", slot=slot, idle_wait=0.0)
    await read_all(source)
    execute(postgres_url, "INSERT INTO izin SELECT generate_series(1, 250)")  # one transaction
    reading = source.batches(["stream", "0/0", 0], size=100)
    first = await anext(reading)  # published, then the adapter dies
    await reading.aclose()
    await source.close()
    assert first[-1].position[2] == 100, "a position inside the transaction"
    again = LogicalSource(postgres_url, table="izin", key="id", slot=slot, idle_wait=0.0)
    try:
        rest = await read_all(again, first[-1].position)
    finally:
        await again.close()
    assert [int(r.key) for r in rest] == list(range(101, 251))
    assert rest[-1].position[2] is None, "the transaction's end"


async def test_deletes_are_not_records_unless_asked(postgres_url: str, slot: str) -> None:
    execute(postgres_url, "CREATE TABLE izin (id int PRIMARY KEY, nama text)")
    source = LogicalSource(postgres_url, table="izin", key="id", slot=slot, idle_wait=0.0)
    try:
        await read_all(source)
        execute(postgres_url, "INSERT INTO izin VALUES (1, 'a')", "DELETE FROM izin")
        assert [r.change for r in await read_all(source, ["stream", "0/0", 0])] == ["insert"]
    finally:
        await source.close()


async def test_an_update_leaving_a_toasted_column_alone_has_no_value_for_it(
    postgres_url: str, slot: str
) -> None:
    execute(postgres_url, "CREATE TABLE berkas (id int PRIMARY KEY, versi int, isi text)")
    source = LogicalSource(
        postgres_url, table="berkas", key="id", version="versi", slot=slot, idle_wait=0.0
    )
    try:
        await read_all(source)
        execute(
            postgres_url,  # ~1 MB that does not compress: stored out of line (TOAST)
            "INSERT INTO berkas SELECT 1, 1, string_agg(md5(n::text), '') "
            "FROM generate_series(1, 32000) AS n",
            "UPDATE berkas SET versi = 2",
        )
        inserted, updated = await read_all(source, ["stream", "0/0", 0])
    finally:
        await source.close()
    assert len(inserted.data["isi"]) == 32 * 32000
    assert updated.data == {"id": 1, "versi": 2}, "the unchanged TOASTed value is not in the log"


async def test_the_snapshot_and_the_stream_meet_without_gap_or_double_under_concurrent_writes(
    postgres_url: str, slot: str, redis: Redis
) -> None:
    load_postgres(postgres_url, list(rows(300, seed=3, first_id=900_000)))
    runner = siak_cdc.adapter(redis, postgres_url, slot, idle_wait=0.2)
    writing = asyncio.create_task(write(postgres_url, writers=4, transactions=60, seed=9))
    await asyncio.sleep(0.3)  # the snapshot is taken while they write
    stop = asyncio.Event()
    following = asyncio.create_task(runner.run(poll_interval=0.05, stop=stop))
    committed = await writing
    await asyncio.sleep(0.3)
    stop.set()
    await following
    await runner.run_once()
    await runner.source.close()  # type: ignore[attr-defined]
    committed += [(r["id_peristiwa"], 1) for r in rows(300, seed=3, first_id=900_000)]
    stream = await published(redis, committed)
    # A row updated before the snapshot shows only its version at the snapshot: the
    # snapshot is the table's state, the stream every change after it.
    assert len(stream) == len(set(stream)) and (-1, -1) not in stream
    latest = {}
    for key, versi in committed:
        latest[key] = max(versi, latest.get(key, 0))
    assert {(k, v) for k, v in latest.items()} <= set(stream), "a row's latest version is missing"
    after_snapshot = [v for v in committed if v in set(stream)]
    assert_each_version_once_latest_last([v for v in stream if v in after_snapshot], after_snapshot)


async def test_a_run_that_dies_mid_snapshot_publishes_every_change_after_the_first_snapshot(
    postgres_url: str, slot: str
) -> None:
    """The snapshot's first batch is published, the run dies; rows already read and rows not
    yet read are then updated twice each. The restart reads the table again and streams the
    first snapshot's slot: every version committed after the first snapshot is published; only
    an unread row's state *at* the first snapshot, replaced before the restart, is not."""
    load_postgres(postgres_url, list(rows(300, seed=3, first_id=1)))
    source = siak_cdc.source(postgres_url, slot)
    reading = source.batches(None, size=100)
    first = await anext(reading)  # published, then the adapter dies
    await reading.aclose()
    await source.close()
    read_first = {r.key for r in first}
    done, not_yet = sorted(read_first, key=int)[5], "250"
    assert not_yet not in read_first
    execute(
        postgres_url,
        *(
            f"UPDATE peristiwa SET versi = {v} WHERE id_peristiwa = {key}"
            for key in (done, not_yet)
            for v in (2, 3)
        ),
    )
    again = siak_cdc.source(postgres_url, slot)
    try:
        rest = await read_all(again, first[-1].position)
    finally:
        await again.close()
    published = {(r.key, r.version) for r in [*first, *rest]}
    assert {(done, "2"), (done, "3"), (not_yet, "2"), (not_yet, "3")} <= published
    assert {r.key for r in [*first, *rest]} == {str(n) for n in range(1, 301)}
    assert rest[-1].position[0] == "stream", "caught up: the checkpoint is in the stream"


async def test_lag_reports_the_slot_and_warns_when_it_retains_too_much_wal(
    postgres_url: str, slot: str
) -> None:
    load_postgres(postgres_url, [])
    source = siak_cdc.source(postgres_url, slot, retained_wal_warning=1)
    try:
        with capture_logs() as logs:
            await read_all(source)  # checks the slot once a minute while it streams
            execute(postgres_url, "CREATE TABLE sampah AS SELECT generate_series(1, 1000) AS n")
            lag = await source.lag()
            await source.lag()
    finally:
        await source.close()
    assert lag.position.count("/") == 1
    assert lag.behind_bytes is not None and lag.behind_bytes > 0, "the WAL moved on"
    assert lag.retained_bytes is not None and lag.retained_bytes >= lag.behind_bytes
    warnings = [e for e in logs if e["event"] == "replication_slot_retaining_wal"]
    assert len(warnings) == 1, "once a minute, however often asked"
    assert warnings[0]["slot"] == slot and warnings[0]["threshold_bytes"] == 1


async def test_a_table_without_primary_key_or_replica_identity_is_refused(
    postgres_url: str, slot: str
) -> None:
    execute(postgres_url, "CREATE TABLE tanpa_kunci (id int, nama text)")
    source = LogicalSource(postgres_url, table="tanpa_kunci", key="id", slot=slot)
    with pytest.raises(ConfigurationError, match="REPLICA IDENTITY FULL"):
        await read_all(source)
    await source.close()


async def test_deletes_keyed_by_a_column_outside_the_replica_identity_are_refused(
    postgres_url: str, slot: str
) -> None:
    load_postgres(postgres_url, [])
    source = siak_cdc.source(postgres_url, slot, changes=("insert", "delete"))
    with pytest.raises(ConfigurationError, match="REPLICA IDENTITY FULL"):
        await read_all(source)
    await source.close()


async def test_a_missing_slot_with_a_stream_checkpoint_says_rows_may_be_lost(
    postgres_url: str, slot: str
) -> None:
    load_postgres(postgres_url, [])
    source = siak_cdc.source(postgres_url, slot)
    with pytest.raises(ConfigurationError, match=r"does not exist.*may be lost.*checkpoint"):
        await read_all(source, ["stream", "0/1000", None])
    await source.close()


async def test_a_user_without_replication_is_told_which_attribute_is_missing(
    postgres_url: str, slot: str
) -> None:
    load_postgres(postgres_url, [])
    role = f"pembaca_{uuid.uuid4().hex[:8]}"
    execute(postgres_url, f"CREATE ROLE {role} LOGIN", f"GRANT SELECT ON peristiwa TO {role}")
    parts = urlsplit(postgres_url)
    url = urlunsplit(parts._replace(netloc=f"{role}@{parts.hostname}:{parts.port}"))
    source = siak_cdc.source(url, slot)
    try:
        with pytest.raises(ConfigurationError, match="REPLICATION"):
            await read_all(source)
    finally:
        await source.close()
        execute(postgres_url, f"REVOKE ALL ON peristiwa FROM {role}", f"DROP ROLE {role}")


@pytest.mark.slow
async def test_a_server_without_logical_decoding_names_wal_level() -> None:
    with EmbeddedPostgres(wal_level="replica") as server:
        execute(server.url, "CREATE TABLE t (id int PRIMARY KEY)")
        source = LogicalSource(server.url, table="t", key="id")
        with pytest.raises(ConfigurationError, match="wal_level=logical"):
            await read_all(source)
        await source.close()


@pytest.mark.slow
async def test_a_slot_invalidated_by_max_slot_wal_keep_size_says_rows_may_have_been_lost() -> None:
    with EmbeddedPostgres() as server:
        keep = "ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'"
        execute(server.url, "CREATE TABLE t (id int PRIMARY KEY)", keep, "SELECT pg_reload_conf()")
        source = LogicalSource(server.url, table="t", key="id", idle_wait=0.0)
        await read_all(source)
        await source.close()
        for n in range(3):  # three WAL segments the slot holds on to, then a checkpoint
            execute(server.url, f"INSERT INTO t VALUES ({n})", "SELECT pg_switch_wal()")
        execute(server.url, "CHECKPOINT")
        with pytest.raises(ConfigurationError, match=r"invalidated.*max_slot_wal_keep_size"):
            await read_all(source, ["stream", "0/0", 0])
        await source.close()


def test_a_slot_name_postgresql_would_refuse_is_refused_up_front() -> None:
    with pytest.raises(ConfigurationError, match="slot="):
        LogicalSource("postgresql://unused", table="Peristiwa", key="id")
