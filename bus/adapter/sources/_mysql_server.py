"""What the binlog source asks of the MySQL/MariaDB server besides the stream itself.

The checks that turn a server that cannot feed change-data-capture into one clear error naming
the setting or grant to change, the binlog's current end, its files, and the consistent
snapshot of a table together with the binlog position it was taken at.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pymysql

from bus.adapter.sources.mysql import MySqlDatabase, source_error, where
from bus.errors import ConfigurationError, SourceError

if TYPE_CHECKING:
    from asyncmy.connection import Connection

__all__ = ["Server", "Snapshot", "binlog_missing"]

Row = dict[str, Any]
_PURGED = 1236  # ER_MASTER_FATAL_ERROR_READING_BINLOG: the file or position is gone
_DENIED = {1045, 1227}
_PARSE_ERROR = 1064  # ER_PARSE_ERROR: what MySQL 8.4 answers SHOW MASTER STATUS
# SHOW GRANTS spells these differently across versions (MariaDB 10.5+ renamed REPLICATION
# CLIENT to BINLOG MONITOR and accepts REPLICA for SLAVE).
_STREAM_GRANTS = ("REPLICATION SLAVE", "REPLICATION REPLICA", "ALL PRIVILEGES")
_STATUS_GRANTS = ("REPLICATION CLIENT", "BINLOG MONITOR", "SUPER", "ALL PRIVILEGES")
_MY_CNF = "in my.cnf under [mysqld], then restart the server"


def binlog_missing(
    source: str, position: Mapping[str, Any], settings: Mapping[str, Any]
) -> Exception:
    return ConfigurationError(
        f"binlog source {source}: the server {where(settings)} no longer has binlog file "
        f"{position.get('file')} (purged past the checkpoint {position.get('file')}:"
        f"{position.get('pos')}); changes after it are lost to this reader. Raise "
        "binlog_expire_logs_seconds, then take a new snapshot: `simpul checkpoint reset` of "
        "this adapter (its events are republished under the same ids, duplicates dropped)"
    )


def _code(error: BaseException | None) -> int | None:
    """The server's error number of a driver error, if it has one."""
    args = error.args if error is not None else ()
    return args[0] if args and isinstance(args[0], int) else None


class Server(MySqlDatabase):
    """A control connection (asyncmy) to the server the binlog is read from: the polling
    source's connection (its fetch, columns and reconnect), with the binlog's questions."""

    def __init__(self, settings: Mapping[str, Any]) -> None:
        self.settings = dict(settings)
        self._conn: Connection | None = None

    @property
    def replication_settings(self) -> dict[str, Any]:
        """PyMySQL's keywords for mysql-replication's connections."""
        keys = ("host", "port", "user", "password", "charset")
        return {k: self.settings[k] for k in keys}

    async def check_binlog(self) -> None:
        """ConfigurationError naming the setting or grant change-data-capture lacks."""
        names = "@@log_bin AS log_bin, @@binlog_format AS format, @@binlog_row_image AS image"
        found = (await self.fetch(f"SELECT {names}"))[0]
        if not int(found["log_bin"]):
            raise ConfigurationError(
                f"the binary log is off on {where(self.settings)} (log_bin=OFF): change-data-"
                f"capture reads it. Set log_bin=mysql-bin, server_id=1, binlog_format=ROW, "
                f"binlog_row_image=FULL {_MY_CNF}"
            )
        if str(found["format"]).upper() != "ROW":
            raise ConfigurationError(
                f"binlog_format is {found['format']} on {where(self.settings)}, and change-data-"
                f"capture needs the rows: set binlog_format=ROW {_MY_CNF} (or SET GLOBAL "
                "binlog_format=ROW; sessions opened before keep the old format)"
            )
        if str(found["image"]).upper() != "FULL":
            raise ConfigurationError(
                f"binlog_row_image is {found['image']} on {where(self.settings)}: updates and "
                f"deletes would carry only some columns. Set binlog_row_image=FULL {_MY_CNF}"
            )
        grants = " ".join(str(next(iter(r.values()))) for r in await self.fetch("SHOW GRANTS"))
        for needed, spellings in (
            ("REPLICATION SLAVE", _STREAM_GRANTS),
            ("REPLICATION CLIENT", _STATUS_GRANTS),
        ):
            if not any(s in grants.upper() for s in spellings):
                raise ConfigurationError(
                    f"user {self.settings['user']!r} lacks the {needed} grant on "
                    f"{where(self.settings)}: GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* "
                    f"TO '{self.settings['user']}'@'<host>' (and SELECT on the table)"
                )

    async def binlog_end(self) -> tuple[str, int]:
        rows = await self._binlog_status()
        return str(rows[0]["File"]), int(rows[0]["Position"])

    async def _binlog_status(self) -> list[Row]:
        try:
            rows = await self.fetch("SHOW MASTER STATUS")
        except SourceError as exc:
            if _code(exc.__cause__) != _PARSE_ERROR:  # a lost connection, not an unknown name
                raise
            rows = await self.fetch("SHOW BINARY LOG STATUS")  # MySQL 8.4 knows only this one
        if not rows:
            raise ConfigurationError(
                f"the binary log is off on {where(self.settings)} (log_bin=OFF): set log_bin "
                f"{_MY_CNF}"
            )
        return rows

    async def binlog_files(self) -> list[tuple[str, int]]:
        rows = await self.fetch("SHOW BINARY LOGS")
        return [(str(r["Log_name"]), int(r["File_size"])) for r in rows]

    async def binlog_purged(self, file: str) -> bool:
        return file not in {name for name, _ in await self.binlog_files()}

    async def bytes_after(self, file: str, pos: int) -> int:
        total = 0
        for name, size in await self.binlog_files():
            if name == file:
                total += max(0, size - pos)
            elif name > file:
                total += size
        return total

    def translate(self, error: BaseException, source: str) -> Exception:
        """The reader thread's error as the error an operator acts on."""
        code = _code(error)
        if code == _PURGED:
            return ConfigurationError(
                f"binlog source {source}: the server cannot send the binlog from the checkpoint "
                f"({error.args[1]}): was the file purged? Take a new snapshot (reset the "
                "adapter's checkpoint) and raise binlog_expire_logs_seconds"
            )
        if code in _DENIED:
            return ConfigurationError(
                f"binlog source {source}: {error.args[1]} — GRANT REPLICATION SLAVE, "
                f"REPLICATION CLIENT ON *.* TO '{self.settings['user']}'@'<host>'"
            )
        if isinstance(error, ConfigurationError | SourceError):
            return error
        if isinstance(error, pymysql.err.MySQLError) and len(error.args) > 1:
            detail = str(error.args[1])  # the server's or the driver's message
        else:  # e.g. a decoding error, whose text quotes row values (personal data): never
            detail = f"{type(error).__name__} while reading the binlog (values withheld)"
        return SourceError(f"binlog source {source} at {where(self.settings)}: {detail}")

    @contextlib.asynccontextmanager
    async def snapshot(self, *, locked: bool = False) -> AsyncIterator[Snapshot]:
        """A connection holding one consistent snapshot, with the binlog position it sees
        (``locked``: MySQL's way, under FLUSH TABLES WITH READ LOCK, on any server)."""
        import asyncmy  # noqa: PLC0415

        conn = await asyncmy.connect(**self.settings, autocommit=False)
        try:
            snap = Snapshot(conn, self.settings)
            await snap.begin(locked=locked)
            yield snap
        finally:
            with contextlib.suppress(Exception):
                await conn.rollback()
            conn.close()


class Snapshot:
    """One REPEATABLE READ transaction and the binlog position at which it sees the data."""

    def __init__(self, conn: Connection, settings: Mapping[str, Any]) -> None:
        self.conn = conn
        self.settings = settings
        self.position: dict[str, Any] = {}

    async def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        from asyncmy import errors  # noqa: PLC0415
        from asyncmy.cursors import DictCursor  # noqa: PLC0415

        try:
            async with self.conn.cursor(DictCursor) as cursor:
                await cursor.execute(sql, tuple(params) or None)
                rows: list[Row] = await cursor.fetchall()
                return rows
        except (errors.OperationalError, errors.ProgrammingError, OSError) as exc:
            raise source_error(exc, self.settings) from exc

    async def begin(self, *, locked: bool = False) -> None:
        """Start the snapshot and learn its binlog position: from the server where it reports
        it (MariaDB), else (MySQL, or ``locked``) under a brief global read lock."""
        await self._rows("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        if not locked:
            await self._rows("START TRANSACTION WITH CONSISTENT SNAPSHOT")
            # MariaDB reports the binlog position its consistent snapshot corresponds to.
            found = await self._rows("SHOW STATUS LIKE 'binlog_snapshot_%'")
            status = {r["Variable_name"]: r["Value"] for r in found}
            if status.get("Binlog_snapshot_file"):
                file, pos = status["Binlog_snapshot_file"], status["Binlog_snapshot_position"]
                self.position = {"file": str(file), "pos": int(pos), "gtid": None}
                return
            await self.conn.rollback()
        # MySQL has no such status: hold every commit back while the snapshot starts.
        await self._rows("FLUSH TABLES WITH READ LOCK")
        try:
            await self._rows("START TRANSACTION WITH CONSISTENT SNAPSHOT")
            rows = await self._rows("SHOW MASTER STATUS")
            self.position = {
                "file": str(rows[0]["File"]),
                "pos": int(rows[0]["Position"]),
                "gtid": None,
            }
        finally:
            await self._rows("UNLOCK TABLES")

    async def rows(
        self, table: str, primary: Sequence[str], after: Sequence[Any] | None, limit: int
    ) -> list[Row]:
        order = ", ".join(f"`{c}`" for c in primary)
        where_ = ""
        if after is not None:
            where_ = f"WHERE ({order}) > ({', '.join(['%s'] * len(primary))})"
        return await self._rows(
            f"SELECT * FROM `{table}` {where_} ORDER BY {order} LIMIT {int(limit)}",
            list(after or ()),
        )
