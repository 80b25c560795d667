"""The thread that reads a MySQL/MariaDB row binlog (mysql-replication is synchronous PyMySQL).

:class:`BinlogReader` connects as a replica from a transaction boundary, groups row events into
the transactions that committed them, and hands each finished transaction to the event loop
with ``call_soon_threadsafe`` (the loop's queue is only ever touched from the loop). It never
hands over part of a transaction, so a position it reports is always a commit boundary.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.event import (
    FormatDescriptionEvent,
    GtidEvent,
    HeartbeatLogEvent,
    MariadbBinLogCheckPointEvent,
    MariadbGtidEvent,
    MariadbGtidListEvent,
    QueryEvent,
    RotateEvent,
    StopEvent,
    XidEvent,
)
from pymysqlreplication.row_event import DeleteRowsEvent, RowsEvent, UpdateRowsEvent, WriteRowsEvent

from bus.adapter.records import Change
from bus.errors import SourceError

__all__ = ["BinlogPosition", "BinlogReader", "Failed", "RowChange", "Transaction", "Upto"]

BinlogPosition = tuple[str, int]  # (file, offset): compares in binlog order


def _encoding(name: str | None) -> str | None:
    """mysql-replication decodes latin1 as strict cp1252, which fails on the five bytes cp1252
    leaves undefined — and UTF-8 stored in latin1 columns is full of them. Decoded as ISO-8859-1
    instead (every byte maps), the text is undone byte for byte by _mysql_legacy.legacy_text."""
    if name is not None and name.lower() in ("latin1", "cp1252"):  # MySQL's name, Python's
        return "latin-1"
    encoding: str | None = _library_encoding(name)
    return encoding


_library_encoding = RowsEvent.charset_to_encoding
RowsEvent.charset_to_encoding = staticmethod(_encoding)


QUEUED_MAX = 5_000
"""Rows the reader thread may hand over before the loop takes them (a position counts as one; a
transaction larger than this goes alone)."""


@dataclass(frozen=True, slots=True)
class RowChange:
    change: Change
    values: Mapping[str, Any]  # the row after an insert or update, before a delete
    time: datetime  # when the transaction committed (second resolution)


@dataclass(frozen=True, slots=True)
class Transaction:
    """One committed transaction's changes to the table, and where the binlog is after it."""

    rows: list[RowChange]
    end: dict[str, Any]  # {"file", "pos", "gtid"}: the position after the commit
    upto: BinlogPosition


@dataclass(frozen=True, slots=True)
class Upto:
    """The reader got this far without a change to the table. ``idle``: the server had nothing
    more to send (a heartbeat), so everything committed so far has been read."""

    upto: BinlogPosition
    end: dict[str, Any] | None  # a commit boundary, when it is one
    idle: bool = False


@dataclass(frozen=True, slots=True)
class Failed:
    error: BaseException


Item = Transaction | Upto | Failed


@dataclass
class _Open:
    rows: list[RowChange] = field(default_factory=list)
    gtid: str | None = None


class BinlogReader:
    """Streams one schema's row events from ``start`` in a daemon thread until :meth:`stop`."""

    def __init__(
        self,
        settings: Mapping[str, Any],
        *,
        server_id: int,
        schema: str,
        table: str,
        start: Mapping[str, Any],
        deliver: Callable[[Item], None],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.settings = dict(settings)
        self.server_id = server_id
        self.schema, self.table = schema, table
        self.start_position = dict(start)
        self._deliver, self._loop = deliver, loop
        self._stopping = threading.Event()
        # Backpressure: the thread reads faster than the adapter publishes, so without a bound
        # a backlog (a snapshot's worth of changes, an outage of Redis) would pile up in memory.
        self._queued = 0  # rows handed over and not yet taken: at most QUEUED_MAX
        self._room = threading.Condition()
        self._stream: BinLogStreamReader | None = None
        self._thread = threading.Thread(target=self._run, name=f"binlog-{table}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the thread to stop; it sees the request at the next event or heartbeat."""
        self._stopping.set()
        self._thread.join(timeout)

    def taken(self, item: Item) -> None:
        """The loop took ``item`` off its queue: room for the thread to hand over more."""
        with self._room:
            self._queued -= _weight(item)
            self._room.notify()

    def _post(self, item: Item) -> None:
        weight = _weight(item)
        with self._room:
            while self._queued and self._queued + weight > QUEUED_MAX:
                if self._stopping.is_set():
                    return  # nobody will take it
                self._room.wait(0.5)
            self._queued += weight
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody is waiting any more
            self._loop.call_soon_threadsafe(self._deliver, item)

    def _run(self) -> None:
        try:
            self._read()
        except BaseException as exc:  # handed to the loop, which raises it in batches()
            self._post(Failed(exc))
        finally:
            if self._stream is not None:
                with contextlib.suppress(Exception):
                    self._stream.close()

    def _open(self) -> BinLogStreamReader:
        start = self.start_position
        resume: dict[str, Any]
        if "file" in start:
            resume = {
                "log_file": start["file"],
                "log_pos": int(start["pos"]),
                "resume_stream": True,
            }
        else:  # a GTID alone (after a failover): MariaDB finds the transaction that follows it
            resume = {"auto_position": start["gtid"], "is_mariadb": True}
        return BinLogStreamReader(
            connection_settings=self.settings,
            server_id=self.server_id,
            blocking=True,
            slave_heartbeat=0.5,  # wakes the thread when idle, so stop() is seen
            only_schemas=[self.schema],
            # Every event that moves the position is reported, so "read up to the binlog's end"
            # can be told even when the file ends in bookkeeping events (after a restart).
            only_events=[
                MariadbGtidEvent,
                GtidEvent,
                QueryEvent,
                XidEvent,
                RotateEvent,
                HeartbeatLogEvent,
                WriteRowsEvent,
                UpdateRowsEvent,
                DeleteRowsEvent,
                FormatDescriptionEvent,
                MariadbGtidListEvent,
                MariadbBinLogCheckPointEvent,
                StopEvent,
            ],
            **resume,
        )

    def _read(self) -> None:
        self._stream = stream = self._open()
        last_gtid = self.start_position.get("gtid")
        open_: _Open | None = None
        while not self._stopping.is_set():
            event = stream.fetchone()
            if event is None:
                raise SourceError("the server ended the binlog stream")
            upto: BinlogPosition = (str(stream.log_file), int(stream.log_pos))
            if isinstance(event, HeartbeatLogEvent):
                self._post(Upto(upto, None, idle=open_ is None))
                continue
            if isinstance(event, MariadbGtidEvent | GtidEvent):
                open_ = _Open(gtid=str(event.gtid))
                continue
            if isinstance(event, WriteRowsEvent | UpdateRowsEvent | DeleteRowsEvent):
                if open_ is not None and event.table == self.table:
                    open_.rows += _changes(event)
                continue
            ends = isinstance(event, XidEvent) or (
                isinstance(event, QueryEvent) and _query(event) != "BEGIN"
            )
            if not ends or open_ is None:
                self._post(Upto(upto, None))
                continue
            last_gtid = open_.gtid or last_gtid
            end = {"file": upto[0], "pos": upto[1], "gtid": last_gtid}
            self._post(Transaction(open_.rows, end, upto) if open_.rows else Upto(upto, end))
            open_ = None


def _weight(item: Item) -> int:
    return max(1, len(item.rows)) if isinstance(item, Transaction) else 1


def _query(event: QueryEvent) -> str:
    query = event.query
    text = query.decode(errors="replace") if isinstance(query, bytes) else str(query)
    return text.strip().upper()


def _changes(event: WriteRowsEvent | UpdateRowsEvent | DeleteRowsEvent) -> list[RowChange]:
    time = datetime.fromtimestamp(event.timestamp, UTC)
    if isinstance(event, UpdateRowsEvent):
        return [RowChange("update", row["after_values"], time) for row in event.rows]
    change: Change = "insert" if isinstance(event, WriteRowsEvent) else "delete"
    return [RowChange(change, row["values"], time) for row in event.rows]
