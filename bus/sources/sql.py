"""Polling a legacy SQL database: incremental by a change column or by an outbox table.

Both modes are keyset pagination over a total order, so a batch is one short query (no
transaction held open across batches, memory flat in the number of rows) and a position is just
the last row's ordering values as JSON:

* change column: ``ORDER BY updated_at, <primary key>`` — the key breaks ties between rows
  changed in the same instant;
* outbox: ``ORDER BY outbox_id`` over a table a trigger appends a copy of each inserted or
  updated row to.

What a high-water mark cannot see: a row whose transaction commits *after* a row with a later
``updated_at`` (or outbox id) was already read is skipped. Legacy apps that write in short
single-row transactions are safe in practice; where long concurrent transactions write the
table, poll with a lag or wait for the change-data-capture source (not built yet). Rows whose
ordering columns are NULL cannot be placed in the order: they are counted and logged as
``source_rows_unordered``, never read.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from bus.adapter import Position, Record, jsonable
from bus.errors import ConfigurationError, SourceError
from bus.logging import get_logger

if TYPE_CHECKING:
    from psycopg import AsyncConnection

__all__ = ["Database", "PostgresDatabase", "SqlSource", "SqliteDatabase"]

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_log = get_logger("bus.sources.sql")

Row = dict[str, Any]


class Database(Protocol):
    """The little a source needs of a database driver: run one query, get rows as dicts."""

    placeholder: str  # "%s" (psycopg) or "?" (sqlite3)
    quote: str  # what encloses an identifier: '"' (SQL standard) or "`" (MySQL)

    async def fetch(self, sql: str, params: Sequence[Any]) -> list[Row]: ...

    async def close(self) -> None: ...


class PostgresDatabase:
    """PostgreSQL through psycopg 3 (async), autocommit: every batch is its own snapshot."""

    placeholder = "%s"
    quote = '"'

    def __init__(self, conninfo: str) -> None:
        self.conninfo = conninfo
        self._conn: AsyncConnection[Row] | None = None

    async def fetch(self, sql: str, params: Sequence[Any]) -> list[Row]:
        import psycopg  # noqa: PLC0415 - optional dependency, needed only for PostgreSQL

        try:
            conn = await self._connection()
            async with conn.cursor() as cursor:
                await cursor.execute(sql, params)
                return await cursor.fetchall()
        except psycopg.OperationalError as exc:
            await self.close()  # reconnect on the next batch
            raise SourceError(f"PostgreSQL source unavailable: {exc}") from exc

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()

    async def _connection(self) -> AsyncConnection[Row]:
        if self._conn is None:
            try:
                import psycopg  # noqa: PLC0415
                from psycopg.rows import dict_row  # noqa: PLC0415
            except ImportError as exc:
                raise ConfigurationError(
                    "reading PostgreSQL needs psycopg 3: pip install 'psycopg[binary]>=3.2'"
                ) from exc
            self._conn = await psycopg.AsyncConnection.connect(
                self.conninfo, autocommit=True, row_factory=dict_row
            )
        return self._conn


class SqliteDatabase:
    """SQLite through the standard library, read-only, each query in a worker thread."""

    placeholder = "?"
    quote = '"'

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()  # one sqlite3 connection: one query at a time

    async def fetch(self, sql: str, params: Sequence[Any]) -> list[Row]:
        async with self._lock:
            return await asyncio.to_thread(self._fetch, sql, params)

    async def close(self) -> None:
        async with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                conn.close()

    def _fetch(self, sql: str, params: Sequence[Any]) -> list[Row]:
        try:
            if self._conn is None:
                uri = f"{self.path.resolve().as_uri()}?mode=ro"
                self._conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
                self._conn.row_factory = sqlite3.Row
            return [dict(row) for row in self._conn.execute(sql, params).fetchall()]
        except sqlite3.OperationalError as exc:
            raise SourceError(f"SQLite source {self.path} unreadable: {exc}") from exc


class SqlSource:
    """A :class:`bus.adapter.Source` over one table (or view), in keyset-paginated batches."""

    def __init__(
        self,
        db: Database,
        *,
        table: str,
        key: str | Sequence[str],
        version: str,
        order_by: Sequence[str],
        name: str | None = None,
        time_column: str | None = None,
        naive_timezone: tzinfo = UTC,
    ) -> None:
        self.db = db
        self.table = _checked(table)
        self.key = tuple(_checked(c) for c in ([key] if isinstance(key, str) else key))
        self.version = _checked(version)
        self.order_by = tuple(_checked(c) for c in order_by)
        if not self.key or not self.order_by:
            raise ConfigurationError(f"{table}: a SQL source needs key and order_by columns")
        self._name = name or table
        self.time_column = _checked(time_column) if time_column else None
        self.naive_timezone = naive_timezone

    @classmethod
    def by_change_column(
        cls,
        db: Database,
        *,
        table: str,
        change_column: str,
        primary_key: str | Sequence[str],
        version: str,
        key: str | Sequence[str] | None = None,
        **options: Any,
    ) -> SqlSource:
        """Rows ordered by ``change_column`` then the primary key; the record key is the
        primary key unless ``key`` names the legacy id columns."""
        pk = [primary_key] if isinstance(primary_key, str) else list(primary_key)
        return cls(db, table=table, key=key or pk, version=version,
                   order_by=[change_column, *pk], **options)  # fmt: skip

    @classmethod
    def by_outbox(
        cls,
        db: Database,
        *,
        outbox_table: str,
        outbox_id: str,
        key: str | Sequence[str],
        version: str,
        name: str,
        **options: Any,
    ) -> SqlSource:
        """Rows of an outbox table (a copy of each changed row, appended by a trigger) in
        ``outbox_id`` order. ``name`` is the source table's, so ids match the change mode's."""
        return cls(db, table=outbox_table, key=key, version=version, order_by=[outbox_id],
                   name=name, **options)  # fmt: skip

    @property
    def name(self) -> str:
        return self._name

    async def batches(self, after: Position, *, size: int) -> AsyncIterator[Sequence[Record]]:
        while True:
            where, params = self._after(after)
            order = ", ".join(self._quoted(c) for c in self.order_by)
            table = self._quoted(self.table)
            rows = await self.db.fetch(
                f"SELECT * FROM {table} {where} ORDER BY {order} LIMIT {int(size)}", params
            )
            if not rows:
                return
            records = [self._record(row) for row in rows]
            yield records
            if len(rows) < size:
                return
            after = records[-1].position

    async def remaining(self, after: Position) -> int | None:
        where, params = self._after(after)
        table = self._quoted(self.table)
        rows = await self.db.fetch(f"SELECT count(*) AS n FROM {table} {where}", params)
        unordered = " OR ".join(f"{self._quoted(c)} IS NULL" for c in self.order_by)
        lost = await self.db.fetch(f"SELECT count(*) AS n FROM {table} WHERE {unordered}", [])
        if lost[0]["n"]:
            _log.warning("source_rows_unordered", source=self.name, rows=lost[0]["n"],
                         columns=list(self.order_by))  # fmt: skip
        return int(rows[0]["n"])

    def _after(self, after: Position) -> tuple[str, list[Any]]:
        present = " AND ".join(f"{self._quoted(c)} IS NOT NULL" for c in self.order_by)
        if after is None:
            return f"WHERE {present}", []
        if not isinstance(after, list) or len(after) != len(self.order_by):
            raise ConfigurationError(
                f"position {after!r} does not fit source {self.name!r} (ordered by "
                f"{', '.join(self.order_by)}): was the checkpoint written by another source?"
            )
        columns = ", ".join(self._quoted(c) for c in self.order_by)
        marks = ", ".join(self.db.placeholder for _ in self.order_by)
        return f"WHERE {present} AND ({columns}) > ({marks})", list(after)

    def _record(self, row: Mapping[str, Any]) -> Record:
        return Record(
            key="/".join(_text(row[c]) for c in self.key),
            version=_text(row[self.version]),
            position=[_position(row[c]) for c in self.order_by],
            data=dict(row),
            time=self._time(row[self.time_column]) if self.time_column else None,
        )

    def _quoted(self, identifier: str) -> str:
        return f"{self.db.quote}{identifier}{self.db.quote}"

    def _time(self, value: Any) -> datetime | None:
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value)
            except ValueError:
                return None  # the event is stamped when published instead
        if not isinstance(value, datetime):
            return None
        return value if value.tzinfo else value.replace(tzinfo=self.naive_timezone)


def _checked(identifier: str) -> str:
    """Table and column names are configuration, but they end up in SQL text: allow plain
    identifiers only."""
    if not _IDENTIFIER.match(identifier):
        raise ConfigurationError(
            f"{identifier!r} is not a plain SQL identifier (letters, digits, _): create a view "
            "with plain names over the legacy table and read that"
        )
    return identifier


def _text(value: Any) -> str:
    """A key or version as text; NULL becomes "" so the runner quarantines the record."""
    if value is None:
        return ""
    return str(value) if isinstance(value, int | str) else str(jsonable(value))


def _position(value: Any) -> Any:
    return value if isinstance(value, int | float | str) else jsonable(value)
