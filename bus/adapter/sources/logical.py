"""Change-data-capture from PostgreSQL: every committed row change, once, in commit order.

Polling a change column or an outbox id skips rows whose transactions commit out of order
(:mod:`bus.adapter.sources.sql`). This source reads the database's own log instead, through logical
decoding: a replication slot with the ``pgoutput`` plugin over a publication of one table,
streamed on a replication connection (decision 0007, docs/adapters/cdc.md).

* **Initial snapshot.** The first run creates the slot and, in the same command, exports a
  snapshot taken exactly at the slot's starting point; the table's rows are read in that snapshot
  (as inserts), then the stream continues from that point: no gap, no double. A run that dies
  mid-snapshot keeps the slot, still at that point, reads the table again as it is now (the
  exported snapshot died with the run), then streams from the slot's start: every change
  committed after the first snapshot is published; an unread row's state *at* it, replaced
  before the restart, is the one thing skipped.
* **Stream.** Whole transactions in commit order; a record's position is (commit LSN, changes of
  that transaction done), so a resumed run skips exactly what was published. The slot is
  confirmed (and the database may recycle the WAL) only once the runner asked for the next
  batch, i.e. after the previous one is in Redis: a crash replays, never skips.
* **Changes.** Inserts and updates by default; deletes only when asked (``changes=``), and
  their record holds the replica identity of the old row (the primary key, or every column with
  ``REPLICA IDENTITY FULL``). A TOASTed column an update left unchanged is absent from ``data``.
* **Operators.** :meth:`LogicalSource.lag` reports the slot's position, the WAL not yet
  published and the WAL the slot retains; ``replication_slot_retaining_wal`` is logged when the
  retained WAL passes ``retained_wal_warning`` bytes (an abandoned slot fills the disk).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from typing import Any

import psycopg
from psycopg import errors, sql
from psycopg.adapt import Transformer
from psycopg.rows import dict_row

from bus.adapter.records import Change, Position, Record, SourceLag
from bus.adapter.sources._pgoutput import Begin, Commit, Decoder, RowChange, lsn_int, lsn_text
from bus.adapter.sources._pgsetup import (
    check_server,
    check_table,
    slot_lost,
    slot_missing,
    table_sql,
)
from bus.adapter.sources._walstream import WalStream
from bus.errors import ConfigurationError, SourceError
from bus.logging import get_logger

__all__ = ["LogicalSource"]

_log = get_logger("bus.adapter.sources.logical")
_SLOT_BUSY_WAIT_S = 10.0  # a killed reader's walsender lets go of the slot within moments
_SLOT_NAME = re.compile(r"^[a-z0-9_]{1,63}$")  # what PostgreSQL accepts
_LAG_FRESH_S = 1.0
_WARN_EVERY_S = 60.0  # replication_slot_retaining_wal, however often lag() is asked
_CATCH_UP_S = 30.0  # a pass gives up waiting for the server to reach the WAL end at its start

Row = dict[str, Any]


class LogicalSource:
    """A :class:`bus.adapter.Source` over one PostgreSQL table's committed changes."""

    poll_interval = 0.1  # a pass waits for changes itself (idle_wait): the next may start at once

    def __init__(
        self,
        conninfo: str,
        *,
        table: str,
        key: str | Sequence[str],
        version: str | None = None,
        name: str | None = None,
        slot: str | None = None,
        publication: str | None = None,
        changes: Sequence[Change] = ("insert", "update"),
        snapshot: bool = True,
        idle_wait: float = 5.0,
        retained_wal_warning: int = 1 << 30,
    ) -> None:
        self.conninfo = conninfo
        self.table = table
        self.key = (key,) if isinstance(key, str) else tuple(key)
        self.version = version  # None: a change's own LSN is its version
        self._name = name or table.rsplit(".", 1)[-1]
        self.slot = slot or f"simpul_{self._name}"
        if not _SLOT_NAME.match(self.slot):
            raise ConfigurationError(
                f"replication slot name {self.slot!r} must be lower-case letters, digits and _ "
                "(at most 63): pass slot="
            )
        self.publication = publication or self.slot
        self.changes = frozenset(changes)
        self.snapshot = snapshot
        self.idle_wait = idle_wait
        self.retained_wal_warning = retained_wal_warning
        self._sql: psycopg.AsyncConnection[Row] | None = None
        self._wal: WalStream | None = None
        self._wal_clean = False  # the last pass read nothing it did not hand out and see published
        self._wal_started = False  # streaming (not just created with a snapshot)
        self._wal_start = 0  # the new slot's starting point, after a snapshot
        self._decoder: Decoder | None = None
        self._snapshot_done = False
        self._relid = 0
        self._checked_retention = 0.0
        self._warned_at = -_WARN_EVERY_S
        self._lag: tuple[SourceLag | None, float] = (None, 0.0)

    @property
    def name(self) -> str:
        return self._name

    async def remaining(self, after: Position) -> int | None:
        return None  # the log has no row count

    async def batches(self, after: Position, *, size: int) -> AsyncIterator[Sequence[Record]]:
        try:
            kind, resume = await self._prepare(_parse(after, self.name))
            if kind == "snapshot":
                async for batch in self._snapshot(size):
                    yield batch
                resume = (self._wal_start, 0)
            elif kind == "reread":
                async for batch in self._reread(resume[0], size):
                    yield batch
            async for batch in self._stream(resume, size):
                yield batch
        except psycopg.OperationalError as exc:
            await self.close()  # both connections: the next pass reconnects
            raise SourceError(f"PostgreSQL change stream of {self.table} broke: {exc}") from exc

    async def lag(self) -> SourceLag:
        """The slot's confirmed position, WAL not yet published and WAL retained. One query on
        ``pg_replication_slots``, at most once a second: the runner may ask after every batch,
        and at a steady load that is every commit."""
        cached, at = self._lag
        if cached is not None and time.monotonic() - at < _LAG_FRESH_S:
            return cached
        lag = await self._measure_lag()
        self._lag = (lag, time.monotonic())
        return lag

    async def _measure_lag(self) -> SourceLag:
        slot = await self._slot_state()
        if slot is None:
            raise slot_missing(self.slot, self.table)
        behind, retained = slot["behind"], slot["retained"]
        overdue = time.monotonic() - self._warned_at > _WARN_EVERY_S
        if retained is not None and retained > self.retained_wal_warning and overdue:
            self._warned_at = time.monotonic()
            _log.warning(
                "replication_slot_retaining_wal",
                source=self.name,
                slot=self.slot,
                retained_bytes=retained,
                threshold_bytes=self.retained_wal_warning,
            )
        return SourceLag(
            position=str(slot["confirmed"]),
            behind_bytes=behind,
            # PostgreSQL does not say how old unpublished WAL is; only "nothing" is known.
            behind_seconds=0.0 if behind == 0 else None,
            retained_bytes=retained,
        )

    async def close(self) -> None:
        await self._drop_connections()
        conn, self._sql = self._sql, None
        if conn is not None:
            await conn.close()

    # -- setting up -------------------------------------------------------------------------

    async def _prepare(self, position: _Parsed) -> tuple[str, tuple[int, int | None]]:
        """Check the database, ensure the publication; what comes first and the position to
        stream from: ``("stream", position)``; ``("snapshot", _)`` (the slot is then created
        by :meth:`_snapshot`); ``("reread", (slot position, 0))`` when a snapshot died mid-way
        and its slot is still there."""
        if self._snapshot_done and (position is None or position[0] == "snapshot"):
            # This source read the whole table, but it held no rows, so no checkpoint says so.
            position = ("stream", self._wal_start, 0)
        conn = await self._connection()
        await check_server(conn)
        self._relid = await check_table(conn, self.table, self.key, self.changes)
        await self._ensure_publication(conn)
        slot = await self._slot_state()
        if slot is not None and slot["wal_status"] == "lost":
            raise slot_lost(self.slot, self.table)
        if position is not None and position[0] == "stream":
            if slot is None:
                raise slot_missing(self.slot, self.table)
            return "stream", (position[1], position[2])
        if position is not None and slot is not None:
            # A snapshot died mid-way. Its slot never confirms what is not published: every
            # change after its confirmed position (the snapshot's point, unless a run re-read
            # an empty table and streamed on) is still in it.
            return "reread", (lsn_int(str(slot["confirmed"])), 0)
        if self.snapshot:
            if slot is not None:  # a reset checkpoint
                _log.warning("replication_slot_recreated", source=self.name, slot=self.slot)
                await self._drop_connections()  # ours must not hold the slot
                await self._drop_slot(conn)
            return "snapshot", (0, 0)
        if slot is None:
            await conn.execute(
                "SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", [self.slot]
            )
            slot = await self._slot_state()
            assert slot is not None
        return "stream", (lsn_int(str(slot["confirmed"])), 0)

    async def _ensure_publication(self, conn: psycopg.AsyncConnection[Row]) -> None:
        cursor = await conn.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = %s) AS exists, "
            "EXISTS (SELECT 1 FROM pg_publication_rel WHERE prrelid = %s AND prpubid = "
            "(SELECT oid FROM pg_publication WHERE pubname = %s)) AS has_table",
            [self.publication, self._relid, self.publication],
        )
        found = await cursor.fetchone()
        assert found is not None
        if found["has_table"]:
            return
        if found["exists"]:
            raise ConfigurationError(
                f"publication {self.publication!r} does not include table {self.table}: "
                f"ALTER PUBLICATION {self.publication} ADD TABLE {self.table} (as its owner)"
            )
        create = sql.SQL("CREATE PUBLICATION {} FOR TABLE {} WITH (publish = {})").format(
            sql.Identifier(self.publication),
            table_sql(self.table),
            sql.Literal("insert, update, delete"),
        )
        try:
            await conn.execute(create)
        except errors.InsufficientPrivilege as exc:
            raise ConfigurationError(
                f"cannot create publication {self.publication!r} (only the owner of "
                f"{self.table} can): ask the DBA to run {create.as_string(conn)}"
            ) from exc

    async def _slot_state(self) -> Row | None:
        conn = await self._connection()
        cursor = await conn.execute(
            "SELECT confirmed_flush_lsn AS confirmed, wal_status, "
            # The insert position, not the write one: with synchronous_commit=off a commit's
            # WAL is written by the WAL writer later, and "behind" read 0 after a commit.
            "pg_wal_lsn_diff(pg_current_wal_insert_lsn(), confirmed_flush_lsn)::bigint AS behind, "
            "pg_wal_lsn_diff(pg_current_wal_insert_lsn(), restart_lsn)::bigint AS retained "
            "FROM pg_replication_slots WHERE slot_name = %s",
            [self.slot],
        )
        return await cursor.fetchone()

    async def _drop_slot(self, conn: psycopg.AsyncConnection[Row]) -> None:
        try:
            await conn.execute("SELECT pg_drop_replication_slot(%s)", [self.slot])
        except errors.ObjectInUse as exc:
            raise ConfigurationError(
                f"replication slot {self.slot!r} is in use by another connection: is another "
                f"adapter reading {self.table}? Stop it first"
            ) from exc

    # -- the snapshot ------------------------------------------------------------------------

    async def _snapshot(self, size: int) -> AsyncIterator[Sequence[Record]]:
        """The table as of the new slot's starting point; the last record's position says
        "stream from that point"."""
        await self._drop_connections()  # an earlier attempt's, if it broke off
        wal = await WalStream.connect(self.conninfo)
        self._wal, self._wal_clean = wal, False
        self._snapshot_done = False
        consistent, exported = await wal.create_slot(self.slot)
        self._wal_start = consistent
        wal.confirmed = consistent
        _log.info(
            "replication_slot_created",
            source=self.name,
            slot=self.slot,
            position=lsn_text(consistent),
        )
        async for batch in self._read_table(consistent, size, exported):
            yield batch

    async def _read_table(
        self, start: int, size: int, exported: str | None = None
    ) -> AsyncIterator[Sequence[Record]]:
        """Every row, as inserts of the snapshot taken at ``start`` (the one ``exported`` by the
        slot's creation, else the table as it is now); the last record's position says "stream
        from ``start``". Marks the snapshot done once the last row is out."""
        reader = await psycopg.AsyncConnection.connect(self.conninfo, row_factory=dict_row)
        try:
            await reader.set_isolation_level(psycopg.IsolationLevel.REPEATABLE_READ)
            await reader.set_read_only(True)
            if exported is not None:
                await reader.execute(
                    sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(exported))
                )
            async for batch in self._table_rows(reader, start, size):
                yield batch
            self._snapshot_done = True
        finally:
            await reader.close()

    async def _table_rows(
        self, reader: psycopg.AsyncConnection[Row], start: int, size: int
    ) -> AsyncIterator[Sequence[Record]]:
        cursor = reader.cursor(name="simpul_snapshot")
        await cursor.execute(sql.SQL("SELECT * FROM {}").format(table_sql(self.table)))
        at = ["snapshot", lsn_text(start), None]
        # Not the bare LSN: a change's version is its LSN, and the first change after the
        # snapshot may sit exactly at the snapshot's point.
        version = f"snapshot@{lsn_text(start)}"
        held = [self._record(row, at, "insert", version) for row in await cursor.fetchmany(size)]
        while held:
            following = await cursor.fetchmany(size)
            if not following:  # the last batch: after it, stream from the slot's start
                held[-1] = replace(held[-1], position=["stream", lsn_text(start), 0])
            yield held
            held = [self._record(row, at, "insert", version) for row in following]

    async def _reread(self, start: int, size: int) -> AsyncIterator[Sequence[Record]]:
        """The table again, after a run died in the snapshot of the slot that starts at
        ``start``: the snapshot exported there died with that run, so the rows are read as they
        are now, and the stream from ``start`` then brings every change committed since. Rows
        unchanged since map to the ids they had (duplicates); a changed row is published in its
        current version, then its changes follow; only an unread row's state *at* ``start``,
        replaced before this run, is not published."""
        await self._drop_connections()
        self._wal_start = start
        self._snapshot_done = False
        _log.warning(
            "replication_snapshot_resumed",
            source=self.name,
            slot=self.slot,
            position=lsn_text(start),
        )
        async for batch in self._read_table(start, size):
            yield batch

    # -- the stream --------------------------------------------------------------------------

    async def _stream(
        self, resume: tuple[int, int | None], size: int
    ) -> AsyncIterator[Sequence[Record]]:
        wal = await self._start()
        # A pass publishes at least what was committed before it began: run_once() and
        # `--once` mean "everything so far", and tests can rely on it.
        target = await self._wal_end()
        deadline = time.monotonic() + _CATCH_UP_S
        decoder = self._decoder
        assert decoder is not None, "_start() made it"
        batch: list[Record] = []
        begin: Begin | None = None
        index = 0
        safe_end = wal.confirmed  # end of the last transaction wholly handled
        while True:
            await self._check_retention()
            wal.idle = begin is None and not batch
            # Inside a transaction, wait for its end: a checkpoint falls between transactions
            # unless one is bigger than a batch.
            behind = wal.sent < target and time.monotonic() < deadline
            data = await wal.read(self._wait(begin, batch, behind))
            if data is None:
                if batch:
                    yield batch
                    batch = []
                    wal.confirmed = max(wal.confirmed, safe_end)
                    await wal.send_status()
                    continue
                if behind:  # ask the server how far it got; it answers with a keepalive
                    await wal.send_status(reply=True)
                    continue
                await wal.send_status()
                self._wal_clean = True
                return
            message = decoder.decode(data.payload)
            if isinstance(message, Begin):
                begin, index = message, 0
            elif isinstance(message, RowChange) and begin is not None:
                index += 1
                record = self._change(message, begin, index, data.lsn, resume)
                if record is not None:
                    batch.append(record)
                if len(batch) >= size:  # a big transaction: hand it out in parts
                    yield batch
                    batch = []
                    wal.confirmed = max(wal.confirmed, safe_end)
            elif isinstance(message, Commit) and begin is not None:
                if batch and batch[-1].position[1] == lsn_text(begin.final_lsn):
                    batch[-1] = replace(batch[-1], position=["stream", batch[-1].position[1], None])
                begin, safe_end = None, message.end_lsn
                if not batch:
                    wal.confirmed = max(wal.confirmed, safe_end)
                elif len(batch) >= size:
                    yield batch
                    batch = []
                    wal.confirmed = max(wal.confirmed, safe_end)
                    await wal.send_status()

    async def _start(self) -> WalStream:
        if self._wal is not None and self._wal_clean:
            self._wal_clean = False
            return self._wal  # streaming since the last pass, which published all it read
        if self._wal is not None and self._wal_started:
            await self._drop_connections()  # a pass broke off: resume from the slot instead
        deadline = time.monotonic() + _SLOT_BUSY_WAIT_S
        while True:
            wal = self._wal = self._wal or await WalStream.connect(self.conninfo)
            try:
                await wal.start(self.slot, self.publication)
                break
            except psycopg.OperationalError as exc:
                # A killed reader's walsender holds the slot until it notices: moments.
                if "is active for PID" not in str(exc) or time.monotonic() > deadline:
                    raise
            await self._drop_connections()
            await asyncio.sleep(0.2)
        self._wal_started = True
        # pgoutput describes a table once per connection: the decoder lives as long as it.
        self._decoder = Decoder(Transformer(wal.conn))
        slot = await self._slot_state()
        if slot is not None:
            wal.confirmed = max(wal.confirmed, lsn_int(str(slot["confirmed"])))
        return wal

    def _wait(self, begin: Begin | None, batch: list[Record], behind: bool) -> float | None:
        if begin is not None:
            return None  # until the transaction's end
        if batch:
            return 0.0  # publish it unless more is already there
        return 0.05 if behind else self.idle_wait

    async def _wal_end(self) -> int:
        conn = await self._connection()
        cursor = await conn.execute("SELECT pg_current_wal_insert_lsn()::text AS lsn")
        found = await cursor.fetchone()
        assert found is not None
        return lsn_int(found["lsn"])

    def _change(
        self,
        change: RowChange,
        begin: Begin,
        index: int,
        lsn: int,
        resume: tuple[int, int | None],
    ) -> Record | None:
        if change.relation != self._relid or change.change not in self.changes:
            return None
        commit = begin.final_lsn
        done_lsn, done_changes = resume
        if commit < done_lsn or (
            commit == done_lsn and (done_changes is None or index <= done_changes)
        ):
            return None  # published before a restart
        version = None if change.change != "delete" else f"deleted@{lsn_text(lsn)}"
        position = ["stream", lsn_text(commit), index]
        record = self._record(change.row, position, change.change, version or lsn_text(lsn))
        return replace(record, time=begin.time)

    def _record(self, row: Row, position: list[Any], change: Change, lsn: str) -> Record:
        version = lsn
        if self.version is not None and change != "delete":
            value = row.get(self.version)
            version = "" if value is None else str(value)
        return Record(
            key="/".join("" if row.get(c) is None else str(row[c]) for c in self.key),
            version=version,
            position=position,
            data=row,
            change=change,
        )

    async def _check_retention(self) -> None:
        if time.monotonic() - self._checked_retention < _WARN_EVERY_S:
            return
        self._checked_retention = time.monotonic()
        await self._measure_lag()

    async def _connection(self) -> psycopg.AsyncConnection[Row]:
        if self._sql is None or self._sql.closed:
            self._sql = await psycopg.AsyncConnection.connect(
                self.conninfo, autocommit=True, row_factory=dict_row
            )
        return self._sql

    async def _drop_connections(self) -> None:
        wal, self._wal = self._wal, None
        self._wal_clean = self._wal_started = False
        if wal is not None:
            await wal.close()


_Parsed = tuple[str, int, int | None] | None  # ("stream" | "snapshot", LSN, changes done)


def _parse(after: Position, source: str) -> _Parsed:
    if after is None:
        return None
    if isinstance(after, list) and len(after) == 3 and after[0] in ("stream", "snapshot"):
        return after[0], lsn_int(after[1]), after[2]
    raise ConfigurationError(
        f"position {after!r} does not fit change-data-capture source {source!r}: was the "
        "checkpoint written by another source?"
    )
