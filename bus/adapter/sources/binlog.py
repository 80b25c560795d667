"""Change-data-capture from a MySQL/MariaDB row binlog: every committed row version, once.

Polling by a change column or an auto-increment id skips, for ever, a row whose transaction
commits after a row with a later stamp was read (4-5 % of row versions with 8 concurrent
writers). The binlog has no such hole: it is the server's own record of every commit, in commit
order. :class:`BinlogSource` reads it as a replica would (mysql-replication, in a thread) and
turns each row change of one table into a :class:`bus.adapter.Record` with ``change`` set.

Positions are commit boundaries: ``{"file", "pos", "gtid"}`` after the last transaction a
record belongs to. A transaction larger than a batch is split, but every record of it but the
last carries the position *before* the transaction, so a checkpoint never lands inside one: a
crash replays the whole transaction, and its deterministic event ids make the replay a no-op.

A table that already holds rows is read first in one consistent snapshot taken together with its
binlog position (MariaDB: ``START TRANSACTION WITH CONSISTENT SNAPSHOT`` and
``binlog_snapshot_file/position``), then the binlog is streamed from exactly there: no gap, no
double. A snapshot interrupted by a crash goes on from the last key published, in a new snapshot,
while the stream still starts from the first snapshot's position: rows changed in between come
both ways with the same (key, version), hence the same event id, and are published once; an
unread row's first-snapshot state that was replaced before the restart is the one thing skipped.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime, tzinfo
from typing import Any

from bus.adapter.records import Change, Position, Record, SourceLag, jsonable
from bus.adapter.sources._binlog_reader import (
    BinlogPosition,
    BinlogReader,
    Failed,
    Item,
    RowChange,
    Transaction,
    Upto,
)
from bus.adapter.sources._mysql_legacy import LegacyColumns
from bus.adapter.sources._mysql_server import Server, binlog_missing
from bus.adapter.sources.mysql import connection_settings
from bus.adapter.sources.sql import _checked  # one rule for identifiers in SQL text
from bus.errors import ConfigurationError, SourceError
from bus.logging import get_logger

__all__ = ["BinlogSource"]

_log = get_logger("bus.adapter.sources.binlog")
_STALL_S = 30.0  # no word from the reader thread for this long while behind: report it


class BinlogSource:
    """A :class:`bus.adapter.Source` over one table's row changes in a MySQL/MariaDB binlog.

    ``version`` names the column that identifies a row's state (bumped on every change); a
    delete's version is that value with ``/deleted`` appended, so it is an event id of its own.
    ``changes`` says which kinds become records (deletes only when asked). ``wait`` is how long
    a pass waits for a first change when there is none, so ``simpul adapter run`` starts the next
    pass at once (``poll_interval`` 0) and a commit is published within milliseconds, without a
    busy loop.
    """

    poll_interval = 0.0  # a pass waits up to ``wait`` for a change: the next may start at once

    def __init__(
        self,
        url: str,
        *,
        table: str,
        key: str | Sequence[str],
        version: str,
        name: str | None = None,
        changes: Sequence[Change] = ("insert", "update"),
        time_column: str | None = None,
        naive_timezone: tzinfo = UTC,
        server_id: int | None = None,
        wait: float = 1.0,
        locked_snapshot: bool = False,
    ) -> None:
        """``locked_snapshot``: learn the initial snapshot's binlog position as on MySQL (under
        FLUSH TABLES WITH READ LOCK, which needs the RELOAD grant) even where the server reports
        it (MariaDB); the tests run MySQL's path on MariaDB with it."""
        self.settings = connection_settings(url)
        for identifier in (table, *([key] if isinstance(key, str) else key), version):
            _checked(identifier)
        self.server = Server(self.settings)
        self.table = table
        self.key = (key,) if isinstance(key, str) else tuple(key)
        self.version = version
        self._name = name or table
        self.changes = frozenset(changes)
        self.time_column = time_column
        self.naive_timezone = naive_timezone
        # A replica's id must be unique among the server's replicas (a second connection with
        # the same id makes the server drop the first): one of its own for each reader, far
        # above the small ids DBAs give real replicas.
        self.server_id = server_id or random.randrange(1_000_000_000, 2**32 - 1)
        self.wait = wait
        self.locked_snapshot = locked_snapshot
        self._columns: LegacyColumns | None = None
        self._reader: BinlogReader | None = None
        self._queue: asyncio.Queue[Item] = asyncio.Queue()
        self._upto: BinlogPosition = ("", 0)
        self._idle = False  # the reader's last word was a heartbeat: nothing more to read
        self._given: Position = None  # the last position handed out: the runner's checkpoint
        self._pending: list[Record] = []  # read, not yet handed out
        self._last: Position = None  # the commit boundary after the last transaction read
        self._snapshot_start: dict[str, Any] = {}  # where the stream takes over from a snapshot

    @property
    def name(self) -> str:
        return self._name

    async def remaining(self, after: Position) -> int | None:
        return None

    async def close(self) -> None:
        await self._stop_reader()
        await self.server.close()

    async def batches(self, after: Position, *, size: int) -> AsyncIterator[Sequence[Record]]:
        snapshot_read = False
        if self._columns is None:
            await self.server.check_binlog()
            self._columns = await self.server.columns(self.table)
        if self._reader is None or not self._reader.alive or after != self._given:
            await self._stop_reader()
            self._given = after
            start = after
            if after is None or "snapshot" in after:
                async for records in self._snapshot(after, size):
                    self._given = records[-1].position
                    snapshot_read = True
                    yield records
                start = self._snapshot_start
            await self._start_reader(start)
        async for records in self._stream(size, idle=not snapshot_read):
            yield records

    async def lag(self) -> SourceLag:
        """Where the source is, how many binlog bytes follow, how old the oldest change read
        but not handed out is (0 when there is none)."""
        given = self._given if isinstance(self._given, dict) else {}
        file, pos = given.get("file", self._upto[0]), int(given.get("pos", self._upto[1]))
        behind = await self.server.bytes_after(file, pos) if file else None
        oldest = self._pending[0].time if self._pending else None
        age = max(0.0, time.time() - oldest.timestamp()) if oldest else 0.0
        text = f"{file}:{pos}" + (f" (gtid {given['gtid']})" if given.get("gtid") else "")
        return SourceLag(position=text, behind_bytes=behind, behind_seconds=age)

    # The snapshot.

    async def _snapshot(self, after: Position, size: int) -> AsyncIterator[list[Record]]:
        assert self._columns is not None
        primary = self._columns.primary_key
        if not primary:
            raise ConfigurationError(
                f"table {self.table!r} has no primary key: the initial snapshot reads it in "
                "primary-key order; add one (or a unique auto-increment column)"
            )
        async with self.server.snapshot(locked=self.locked_snapshot) as snap:
            origin = (
                {"file": after["file"], "pos": after["pos"], "gtid": after.get("gtid")}
                if after is not None
                else snap.position
            )
            self._snapshot_start = origin
            last = list(after["snapshot"]) if after is not None else None
            while True:
                rows = await snap.rows(self.table, primary, last, size + 1)
                done = len(rows) <= size
                rows = rows[:size]
                positions: list[Position] = [
                    {**origin, "snapshot": [_plain(row[c]) for c in primary]} for row in rows
                ]
                if rows and done:  # the last row: the stream takes over from here
                    positions[-1] = dict(origin)
                if rows:
                    yield [
                        self._record(self._columns.decode(row), None, at)
                        for row, at in zip(rows, positions, strict=True)
                    ]
                if done:
                    return
                last = [_plain(rows[-1][c]) for c in primary]

    # The stream.

    async def _start_reader(self, start: Mapping[str, Any]) -> None:
        if "file" in start and await self.server.binlog_purged(start["file"]):
            raise binlog_missing(self.name, start, self.settings)
        self._queue = asyncio.Queue()
        self._pending = []
        self._last = dict(start)
        self._upto = (start.get("file", ""), int(start.get("pos", 0)))
        self._idle = False
        self._reader = BinlogReader(
            self.server.replication_settings,
            server_id=self.server_id,
            schema=self.settings["database"],
            table=self.table,
            start=start,
            deliver=self._queue.put_nowait,
            loop=asyncio.get_running_loop(),
        )
        self._reader.start()
        _log.info("binlog_stream_started", source=self.name, position=_where(start))

    async def _stop_reader(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            await asyncio.to_thread(reader.stop)

    async def _stream(self, size: int, *, idle: bool) -> AsyncIterator[list[Record]]:
        """Hand out what was committed up to the binlog's end as of now, in batches of at most
        ``size``; when there was nothing, wait up to ``wait`` seconds for a first change."""
        target = await self.server.binlog_end()
        self._idle = False  # only a heartbeat after ``target`` was taken says it was all read
        loop = asyncio.get_running_loop()
        idle_until = loop.time() + (self.wait if idle else 0.0)
        handed = False
        while True:
            caught_up = (self._upto >= target or self._idle) and self._queue.empty()
            if self._pending and (len(self._pending) >= size or caught_up):
                batch, self._pending = self._pending[:size], self._pending[size:]
                self._given = batch[-1].position
                handed = True
                yield batch
                continue
            if caught_up and (handed or loop.time() >= idle_until):
                return
            timeout = max(0.0, idle_until - loop.time()) if caught_up else _STALL_S
            try:
                item = await asyncio.wait_for(self._queue.get(), timeout)
                if self._reader is not None:
                    self._reader.taken(item)
            except TimeoutError:
                if not caught_up:
                    raise SourceError(
                        f"binlog source {self.name}: no progress for {_STALL_S:.0f} s at "
                        f"{self._upto[0]}:{self._upto[1]} while the server is at "
                        f"{target[0]}:{target[1]}"
                    ) from None
                continue
            self._take(item)

    def _take(self, item: Item) -> None:
        if isinstance(item, Failed):
            self._reader = None
            raise self.server.translate(item.error, self.name)
        self._upto = item.upto
        self._idle = isinstance(item, Upto) and item.idle
        if isinstance(item, Upto):
            self._last = item.end or self._last
            return
        self._pending += self._records(item)
        self._last = item.end

    def _records(self, txn: Transaction) -> list[Record]:
        """The transaction's records: the last carries its end position, the others the
        position before it, so no checkpoint lands inside it."""
        assert self._columns is not None
        wanted = [r for r in txn.rows if r.change in self.changes]
        positions = [self._last] * (len(wanted) - 1) + [txn.end]
        return [
            self._record(self._columns.decode(r.values), r, at)
            for r, at in zip(wanted, positions, strict=False)
        ]

    def _record(self, row: Mapping[str, Any], change: RowChange | None, at: Position) -> Record:
        version = _text(row.get(self.version))
        if change is not None and change.change == "delete" and version:
            version = f"{version}/deleted"
        return Record(
            key="/".join(_text(row.get(c)) for c in self.key),
            version=version,
            position=at,
            data=dict(row),
            time=self._time(row, change),
            change=change.change if change is not None else None,
        )

    def _time(self, row: Mapping[str, Any], change: RowChange | None) -> datetime | None:
        if self.time_column is not None:
            value = row.get(self.time_column)
            if isinstance(value, datetime):
                return value if value.tzinfo else value.replace(tzinfo=self.naive_timezone)
            return None
        return change.time if change is not None else None


def _text(value: Any) -> str:
    if value is None:
        return ""
    return str(value) if isinstance(value, int | str) else str(jsonable(value))


def _where(position: Mapping[str, Any]) -> str:
    if "file" in position:
        return f"{position['file']}:{position['pos']}"
    return f"gtid {position.get('gtid')}"


def _plain(value: Any) -> Any:
    return value if isinstance(value, int | float | str) else jsonable(value)
