"""Polling a legacy MySQL or MariaDB database (most PHP department apps), through asyncmy.

:class:`MySqlSource` is :class:`bus.adapter.sources.sql.SqlSource` with MySQL's quoting and the
legacy value decoding of :mod:`bus.adapter.sources._mysql_legacy` (latin1 columns holding UTF-8,
zero dates, ZEROFILL ids, TINYINT(1) booleans). By a change column it polls with the settle window
(rows of transactions open longer than it are skipped, logged as ``source_row_committed_late``); by
an outbox id alone, a row whose transaction commits after a later id was read is skipped, for ever.
Where the DBA can enable the row binlog, read it with
:class:`bus.adapter.sources.binlog.BinlogSource` instead (docs/adapters/mysql.md). Decision 0006
records why asyncmy.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from bus.adapter.records import Position, Record
from bus.adapter.sources._mysql_legacy import COLUMNS_SQL, LegacyColumns, columns_from
from bus.adapter.sources.sql import SqlSource
from bus.errors import ConfigurationError, SourceError

if TYPE_CHECKING:
    from asyncmy.connection import Connection

__all__ = ["MySqlDatabase", "MySqlSource", "connection_settings", "is_mysql_url"]

Row = dict[str, Any]
_SCHEMES = ("mysql", "mariadb")
# Server error codes (https://mariadb.com/kb/en/mariadb-error-codes/) and what they mean to us.
_ACCESS_DENIED = {1044, 1045, 1142, 1143, 1227}
_NO_SUCH_TABLE = {1146}
_UNKNOWN_DATABASE = {1049}


def is_mysql_url(url: str) -> bool:
    return urlsplit(url).scheme in _SCHEMES


def connection_settings(url: str) -> dict[str, Any]:
    """``mysql://user:password@host:port/database`` (or ``mariadb://``) as connect() keywords
    that asyncmy and PyMySQL share. The connection is utf8mb4: see _mysql_legacy for latin1."""
    parts = urlsplit(url)
    if parts.scheme not in _SCHEMES:
        raise ConfigurationError(
            f"a MySQL URL starts with mysql:// or mariadb://, not {parts.scheme}://"
        )
    database = parts.path.lstrip("/")
    if not database:
        raise ConfigurationError(
            f"the MySQL URL for {parts.hostname}:{parts.port or 3306} names no database: "
            "add it as the path (mysql://user@host:3306/database)"
        )
    return {
        "host": parts.hostname or "127.0.0.1",
        "port": parts.port or 3306,
        "user": unquote(parts.username or "root"),
        "password": unquote(parts.password or ""),
        "database": unquote(database),
        "charset": "utf8mb4",
    }


def where(settings: Mapping[str, Any]) -> str:
    """The server and database, for error messages (never the password)."""
    return f"{settings['user']}@{settings['host']}:{settings['port']}/{settings['database']}"


def source_error(exc: Exception, settings: Mapping[str, Any]) -> Exception:
    """A driver error as the Simpul error naming what to do about it."""
    code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
    message = exc.args[1] if len(exc.args) > 1 else str(exc)
    if code in _ACCESS_DENIED:
        return ConfigurationError(
            f"MySQL refused {where(settings)}: {message} — grant the adapter's user what it "
            "needs (SELECT on the table; REPLICATION SLAVE, REPLICATION CLIENT for the binlog)"
        )
    if code in _UNKNOWN_DATABASE:
        return ConfigurationError(f"MySQL has no database {settings['database']!r}: {message}")
    if code in _NO_SUCH_TABLE:
        return SourceError(f"MySQL source {where(settings)}: {message} (check the table name)")
    return SourceError(f"MySQL source {where(settings)} unavailable: {message}")


class MySqlDatabase:
    """MySQL/MariaDB through asyncmy, autocommit: every batch is its own snapshot."""

    placeholder = "%s"
    quote = "`"

    def __init__(self, url: str) -> None:
        self.settings = connection_settings(url)
        self._conn: Connection | None = None

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        from asyncmy import errors  # noqa: PLC0415 - optional dependency, only for MySQL
        from asyncmy.cursors import DictCursor  # noqa: PLC0415

        try:
            conn = await self._connection()
            async with conn.cursor(DictCursor) as cursor:
                await cursor.execute(sql, tuple(params) or None)
                rows: list[Row] = await cursor.fetchall()
                return rows
        except (errors.OperationalError, errors.ProgrammingError, OSError) as exc:
            await self.close()  # reconnect on the next batch
            raise source_error(exc, self.settings) from exc

    async def columns(self, table: str) -> LegacyColumns:
        """The table's columns, to decode legacy values; SourceError if there is no table."""
        rows = await self.fetch(COLUMNS_SQL, (self.settings["database"], table))
        if not rows:
            raise SourceError(
                f"MySQL source {where(self.settings)} has no table {table!r} (or this user "
                "may not see it): check the name and the user's SELECT grant"
            )
        return columns_from(rows)

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    async def _connection(self) -> Connection:
        if self._conn is None:
            try:
                import asyncmy  # noqa: PLC0415
            except ImportError as exc:
                raise ConfigurationError(
                    "reading MySQL needs asyncmy: pip install 'asyncmy>=0.2.10'"
                ) from exc
            self._conn = await asyncmy.connect(**self.settings, autocommit=True)
        return self._conn


class MySqlSource(SqlSource):
    """A :class:`SqlSource` over a MySQL table whose rows are decoded as the legacy app meant
    them (:mod:`bus.adapter.sources._mysql_legacy`)."""

    db: MySqlDatabase

    def __init__(self, db: MySqlDatabase, **options: Any) -> None:
        super().__init__(db, **options)
        self._columns: LegacyColumns | None = None

    async def batches(self, after: Position, *, size: int) -> AsyncIterator[Sequence[Record]]:
        if self._columns is None:
            self._columns = await self.db.columns(self.table)
        async for records in super().batches(after, size=size):
            yield records

    def _record(self, row: Mapping[str, Any]) -> Record:
        decoded = self._columns.decode(row) if self._columns is not None else row
        return super()._record(decoded)

    async def close(self) -> None:
        await self.db.close()
