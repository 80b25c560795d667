"""A logical replication connection to PostgreSQL: create a slot, stream from it, confirm.

psycopg 3 opens replication connections (``replication=database``) and runs replication commands
such as ``CREATE_REPLICATION_SLOT``, but has no API for the streaming ``START_REPLICATION``
(COPY BOTH). Its libpq layer (``connection.pgconn``) does: this module speaks the little of the
streaming protocol a reader needs on top of it — XLogData and keepalives in, standby status
updates out. See https://www.postgresql.org/docs/15/protocol-replication.html
"""

from __future__ import annotations

import asyncio
import struct
import time
from dataclasses import dataclass

import psycopg
from psycopg import pq, sql

from bus.adapter.sources._pgoutput import lsn_int, lsn_text

__all__ = ["WalData", "WalStream"]

_EPOCH_OFFSET_US = 946_684_800_000_000  # 2000-01-01 (PostgreSQL's epoch) in Unix microseconds
_STATUS_EVERY_S = 10.0  # well inside wal_sender_timeout (60 s by default)


@dataclass(frozen=True, slots=True)
class WalData:
    lsn: int  # where the message's WAL starts (a row change's own LSN)
    payload: bytes


class WalStream:
    """One replication connection; :meth:`read` answers keepalives with :attr:`confirmed`."""

    def __init__(self, conn: psycopg.AsyncConnection[tuple[object, ...]]) -> None:
        self.conn = conn
        self.confirmed = 0  # the LSN reported as flushed: the slot may free WAL before it
        self.idle = False  # set by the reader: nothing received is unpublished or mid-transaction
        self.sent = 0  # how far the server has decoded and sent (messages and keepalives)
        self._last_status = 0.0

    @classmethod
    async def connect(cls, conninfo: str) -> WalStream:
        conn = await psycopg.AsyncConnection.connect(
            conninfo, replication="database", autocommit=True
        )
        return cls(conn)

    async def create_slot(self, slot: str) -> tuple[int, str]:
        """A new ``pgoutput`` slot and the name of a snapshot exported at its consistent point:
        valid until this connection runs its next command."""
        command = sql.SQL("CREATE_REPLICATION_SLOT {} LOGICAL pgoutput EXPORT_SNAPSHOT")
        cursor = await self.conn.execute(command.format(sql.Identifier(slot)))
        row = await cursor.fetchone()
        assert row is not None, "CREATE_REPLICATION_SLOT answers one row"
        return lsn_int(str(row[1])), str(row[2])

    async def start(self, slot: str, publication: str) -> None:
        """Stream from the slot's confirmed position (the server resends what is after it)."""
        options = sql.SQL("(proto_version '1', publication_names {})").format(
            sql.Literal(publication)
        )
        command = sql.SQL("START_REPLICATION SLOT {} LOGICAL 0/0 ").format(sql.Identifier(slot))
        pgconn = self.conn.pgconn
        pgconn.send_query((command + options).as_bytes(self.conn))
        await self._flush()
        while True:
            pgconn.consume_input()
            if not pgconn.is_busy():
                break
            await _readable(pgconn.socket, None)
        result = pgconn.get_result()
        if result is None or result.status != pq.ExecStatus.COPY_BOTH:
            message = result.error_field(pq.DiagnosticField.MESSAGE_PRIMARY) if result else b""
            raise psycopg.OperationalError((message or b"START_REPLICATION failed").decode())

    async def read(self, timeout: float | None) -> WalData | None:
        """The next change message, or None when none came within ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pgconn = self.conn.pgconn
        while True:
            size, buffer = pgconn.get_copy_data(1)
            if size == 0:  # read what the socket holds before deciding there is nothing
                pgconn.consume_input()
                size, buffer = pgconn.get_copy_data(1)
            if size > 0:
                data = bytes(buffer)
                if data[:1] == b"w":
                    start, _end, _sent = struct.unpack_from("!QQq", data, 1)
                    self.sent = max(self.sent, start)
                    return WalData(start, data[25:])
                if data[:1] == b"k":
                    wal_end, _sent, reply = struct.unpack_from("!Qq?", data, 1)
                    self.sent = max(self.sent, wal_end)
                    if self.idle:  # nothing of ours before wal_end is left unpublished
                        self.confirmed = max(self.confirmed, wal_end)
                    if reply:
                        await self.send_status()
                continue
            if size < 0:
                result = pgconn.get_result()
                message = b""
                if result is not None:
                    message = result.error_field(pq.DiagnosticField.MESSAGE_PRIMARY) or b""
                raise psycopg.OperationalError(
                    f"replication stream ended: {message.decode() or 'server closed it'}"
                )
            if time.monotonic() - self._last_status > _STATUS_EVERY_S:
                await self.send_status()
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return None
            await _readable(pgconn.socket, min(left or _STATUS_EVERY_S, _STATUS_EVERY_S))
            pgconn.consume_input()

    async def send_status(self, *, reply: bool = False) -> None:
        """Tell the server the slot may forget everything before :attr:`confirmed`; with
        ``reply``, ask for a keepalive saying how far it has sent (:attr:`sent`)."""
        now_us = int(time.time() * 1_000_000) - _EPOCH_OFFSET_US
        lsn = self.confirmed
        status = struct.pack("!QQQqB", lsn, lsn, lsn, now_us, int(reply))
        self.conn.pgconn.put_copy_data(b"r" + status)
        await self._flush()
        self._last_status = time.monotonic()

    def position(self) -> str:
        return lsn_text(self.confirmed)

    async def close(self) -> None:
        await self.conn.close()

    async def _flush(self) -> None:
        pgconn = self.conn.pgconn
        while pgconn.flush() == 1:
            await _writable(pgconn.socket)


async def _readable(fd: int, timeout: float | None) -> None:
    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    loop.add_reader(fd, _set, ready)
    try:
        await asyncio.wait_for(ready, timeout)
    except TimeoutError:
        pass
    finally:
        loop.remove_reader(fd)


async def _writable(fd: int) -> None:
    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    loop.add_writer(fd, _set, ready)
    try:
        await ready
    finally:
        loop.remove_writer(fd)


def _set(ready: asyncio.Future[None]) -> None:
    if not ready.done():  # the fd may signal again before the waiter runs
        ready.set_result(None)
