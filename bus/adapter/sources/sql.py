"""Polling a legacy SQL database: incremental by a change column or by an outbox table.

Both modes are keyset pagination over a total order, so a batch is one short query (no
transaction held open across batches, memory flat in the number of rows) and a position is just
the last row's ordering values as JSON. A high-water mark cannot see a row that commits *after*
a row later in the order was read: PostgreSQL's ``now()`` is the transaction's start and serial
ids are taken at insert, neither in commit order (measured: 4-5% of row versions lost with 8
concurrent PHP-like writers). What each mode guarantees:

* **outbox, PostgreSQL** (``by_outbox``, the default ``txid_column="txid"``): the trigger stores
  the writing transaction's id; only rows whose transaction id is below the oldest transaction
  still running (``pg_snapshot_xmin(pg_current_snapshot())``) are read, ordered by
  ``(txid, outbox_id)``. Every such transaction has finished and no new one can get a lower id,
  so nothing is skipped: every committed row version exactly once. A long transaction anywhere in
  the cluster delays reading (never loses rows). :func:`outbox_ddl` prints the table and trigger.
* **change column, PostgreSQL and other servers** (``by_change_column``, default ``settle=5``): only
  rows whose change column is older than ``settle`` seconds are read (one second more when the
  column holds whole seconds, which stand for a moment up to a second later), so a transaction that
  commits within ``settle`` seconds of stamping its rows is never skipped. The remaining hole: a
  transaction open longer than that (or a clock skew between the writers and the adapter larger than
  that). Such rows are detected after the fact, within a look-back of ten windows, and logged as
  ``source_row_committed_late`` with their count; they are not published. Like any change-column
  poller it reads states, not history: a row changed twice within a window (or between passes) is
  read in its latest version only.
* **SQLite**: one writer at a time takes ids (an outbox's) in commit order, and stamps the
  statement itself writes (``CURRENT_TIMESTAMP``), so neither needs a window; a stamp the
  application took before it wrote is not in commit order, and its row may be skipped.

Change-data-capture (:mod:`bus.adapter.sources.logical`) has none of these limits and is the default
where the DBA can enable it. Rows whose ordering columns are NULL cannot be placed in the order:
they are counted and logged as ``source_rows_unordered``, never read.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from bus.adapter.records import Position, Record, jsonable
from bus.errors import ConfigurationError, SourceError
from bus.logging import get_logger

if TYPE_CHECKING:
    from psycopg import AsyncConnection

__all__ = ["Database", "PostgresDatabase", "SqlSource", "SqliteDatabase", "outbox_ddl"]

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_log = get_logger("bus.adapter.sources.sql")
_SETTLE_S = 5.0  # the default window: PHP requests commit well within it
_LATE_LOOKBACK = 10  # windows behind the high-water mark checked for rows that committed late
_STAMP_SAMPLE = 100  # the latest stamps looked at to learn whether the column has fractions
_SEEN_PRUNE_AT = 20_000  # positions remembered in one pass before those out of the look-back go
# Transaction ids as bigint (epoch and xid), comparable with what outbox_ddl() stores.
_OLDEST_RUNNING_TXID = "pg_snapshot_xmin(pg_current_snapshot())::text::bigint"

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
        except psycopg.errors.UndefinedTable as exc:
            raise _missing_table("the PostgreSQL source", exc.diag.message_primary) from exc
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
        if isinstance(path, str) and (scheme := _url_scheme(path)):
            # A URL read as a file name fails later as "unable to open database file", with
            # the URL (its password too) in the message; say what was meant, never the URL.
            raise ConfigurationError(
                f"a SQLite source is a file path, not a {scheme}:// URL: read a PostgreSQL "
                "database with PostgresDatabase, MySQL or MariaDB with MySqlDatabase and "
                "MySqlSource (an adapter's from_env picks them by the URL's scheme)"
            )
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
            # Tuples zipped with the column names: ~0.9 µs a row less than dict(sqlite3.Row)
            # (a backfill's batch of 500: 2.6 -> 1.8 µs a row), the same dict.
            cursor = self._conn.execute(sql, params)
            names = [column[0] for column in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        except sqlite3.OperationalError as exc:
            if str(exc).startswith("no such table"):
                raise _missing_table(f"the SQLite source {self.path}", str(exc)) from exc
            raise SourceError(f"SQLite source {self.path} unreadable: {exc}") from exc


def _url_scheme(path: str) -> str | None:
    """The scheme of ``path`` if it is a URL (``mysql://...``), else None."""
    found = re.match(r"([A-Za-z][A-Za-z0-9+.-]*)://", path)
    return found[1] if found else None


def _missing_table(where: str, detail: str | None) -> ConfigurationError:
    """Not an outage to ride out by polling again: someone must create the table or fix the
    name, so the run stops with one line that says so."""
    return ConfigurationError(
        f"{where}: {detail or 'a table does not exist'}: create the table (or view), or correct "
        "the table name given to SqlSource (quoted, so case-sensitive); nothing was read"
    )


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
        committed_txid: str | None = None,
        settle: float = 0.0,
    ) -> None:
        """``committed_txid``: a column of transaction ids; only rows of finished transactions
        are read (PostgreSQL). ``settle``: read only rows whose first ordering column (a
        timestamp) is older than this many seconds."""
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
        self.committed_txid = _checked(committed_txid) if committed_txid else None
        self.settle = settle
        self._stamps_naive: bool | None = None  # learnt from the change column's values
        self._stamp_slack = timedelta(0)  # how much older a stored stamp may be than its moment
        self._seen: set[tuple[Any, ...]] | None = None  # positions behind the mark, for late rows

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
        settle: float | None = None,
        **options: Any,
    ) -> SqlSource:
        """Rows ordered by ``change_column`` then the primary key; the record key is the
        primary key unless ``key`` names the legacy id columns. ``settle`` (seconds; default
        5, 0 on SQLite): rows changed more recently wait for the next pass, so transactions
        shorter than that are never skipped (see the module's documentation)."""
        pk = [primary_key] if isinstance(primary_key, str) else list(primary_key)
        if settle is None:
            settle = 0.0 if isinstance(db, SqliteDatabase) else _SETTLE_S
        return cls(
            db,
            table=table,
            key=key or pk,
            version=version,
            order_by=[change_column, *pk],
            settle=settle,
            **options,
        )

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
        txid_column: str | None = "txid",
        **options: Any,
    ) -> SqlSource:
        """Rows of an outbox table (a copy of each changed row, appended by a trigger).
        ``name`` is the source table's, so ids match the change mode's.

        On PostgreSQL the rows are read in ``(txid_column, outbox_id)`` order, only once their
        transactions have finished (:func:`outbox_ddl` has the trigger that fills the column);
        ``txid_column=None`` polls by ``outbox_id`` alone, which skips rows whose transactions
        commit out of id order. Elsewhere the order is ``outbox_id`` (SQLite has one writer)."""
        if txid_column is not None and isinstance(db, PostgresDatabase):
            return cls(
                db,
                table=outbox_table,
                key=key,
                version=version,
                order_by=[txid_column, outbox_id],
                name=name,
                committed_txid=txid_column,
                **options,
            )
        return cls(
            db,
            table=outbox_table,
            key=key,
            version=version,
            order_by=[outbox_id],
            name=name,
            **options,
        )

    @property
    def name(self) -> str:
        return self._name

    async def batches(self, after: Position, *, size: int) -> AsyncIterator[Sequence[Record]]:
        self._check_shape(after)
        horizon = await self._horizon()
        if horizon is None:
            return  # nothing old enough to compare with yet
        await self._check_late(after)
        prune_at = _SEEN_PRUNE_AT
        while True:
            where, params = self._after(after, horizon)
            order = ", ".join(self._quoted(c) for c in self.order_by)
            table = self._quoted(self.table)
            rows = await self.db.fetch(
                f"SELECT * FROM {table} {where} ORDER BY {order} LIMIT {int(size)}", params
            )
            if not rows:
                return
            records = [self._record(row) for row in rows]
            if self._seen is not None:
                self._seen.update(tuple(r.position) for r in records)
                if len(self._seen) > prune_at and isinstance(after, list) and after:
                    # A long pass (a backfill from the start): the next pass looks back only
                    # _LATE_LOOKBACK windows behind its mark, at the latest the checkpoint of
                    # the batch before this one (`after`), so older positions can go now, or
                    # the set would grow with the table (1M rows: +180 MiB).
                    with contextlib.suppress(ValueError):
                        mark = datetime.fromisoformat(str(after[0]))
                        floor = str(_position(mark - self._look_back()))
                        self._seen = {p for p in self._seen if str(p[0]) >= floor}
                    prune_at = max(_SEEN_PRUNE_AT, 2 * len(self._seen))  # a burst: amortized
            yield records
            if len(rows) < size:
                return
            after = records[-1].position

    async def remaining(self, after: Position) -> int | None:
        horizon = await self._horizon()
        if horizon is None:
            return 0
        where, params = self._after(after, horizon)
        table = self._quoted(self.table)
        rows = await self.db.fetch(f"SELECT count(*) AS n FROM {table} {where}", params)
        unordered = " OR ".join(f"{self._quoted(c)} IS NULL" for c in self.order_by)
        lost = await self.db.fetch(f"SELECT count(*) AS n FROM {table} WHERE {unordered}", [])
        if lost[0]["n"]:
            _log.warning(
                "source_rows_unordered",
                source=self.name,
                rows=lost[0]["n"],
                columns=list(self.order_by),
            )
        return int(rows[0]["n"])

    async def _horizon(self) -> tuple[str, list[Any]] | None:
        """The conditions that keep out rows whose transactions may not all be committed:
        ("", []) when there are none, None when no row can be read yet."""
        conditions, params = [], []
        if self.committed_txid:
            conditions.append(f"{self._quoted(self.committed_txid)} < {_OLDEST_RUNNING_TXID}")
        if self.settle > 0:
            cutoff = await self._cutoff()
            if cutoff is None:
                return None
            conditions.append(f"{self._quoted(self.order_by[0])} <= {self.db.placeholder}")
            params.append(cutoff)
        return "".join(f" AND {c}" for c in conditions), params

    async def _cutoff(self) -> datetime | None:
        """Now minus the settle window, naive in ``naive_timezone`` if the column is naive."""
        if self._stamps_naive is None:
            column, table = self._quoted(self.order_by[0]), self._quoted(self.table)
            rows = await self.db.fetch(
                f"SELECT {column} AS stamp FROM {table} WHERE {column} IS NOT NULL "
                f"ORDER BY {column} DESC LIMIT {_STAMP_SAMPLE}",
                [],
            )
            if not rows:
                return None
            stamps = [row["stamp"] for row in rows]
            for stamp in stamps:
                if not isinstance(stamp, datetime):
                    raise ConfigurationError(
                        f"{self.table}.{self.order_by[0]} holds {type(stamp).__name__} values, "
                        "not timestamps: a settle window needs a timestamp change column (or "
                        "settle=0)"
                    )
            self._stamps_naive = stamps[0].tzinfo is None
            # Stamps to the second (a DATETIME, PHP's date(), ON UPDATE CURRENT_TIMESTAMP) are
            # truncated, or rounded, up to a second before the moment they stand for: measured
            # from the stored value, the window would be up to a second short of `settle`.
            if all(stamp.microsecond == 0 for stamp in stamps):
                self._stamp_slack = timedelta(seconds=1)
        cutoff = datetime.now(UTC) - timedelta(seconds=self.settle) - self._stamp_slack
        if self._stamps_naive:
            return cutoff.astimezone(self.naive_timezone).replace(tzinfo=None)
        return cutoff

    async def _check_late(self, after: Position) -> None:
        """Rows behind the high-water mark that this process has not read committed after the
        mark passed them: their transactions were longer than the settle window. Looks back
        ten windows. A process that starts from the beginning reads everything itself; one that
        resumes learns what is behind the mark on its first pass."""
        if self.settle <= 0:
            return
        if after is None:
            self._seen = set()
            return
        if not isinstance(after, list) or not after:
            return
        try:
            mark = datetime.fromisoformat(str(after[0]))
        except ValueError:
            return
        since = mark - self._look_back()
        columns = ", ".join(self._quoted(c) for c in self.order_by)
        marks = ", ".join(self.db.placeholder for _ in self.order_by)
        rows = await self.db.fetch(
            f"SELECT {columns} FROM {self._quoted(self.table)} WHERE ({columns}) <= ({marks}) "
            f"AND {self._quoted(self.order_by[0])} > {self.db.placeholder}",
            [*after, since],
        )
        behind = {tuple(_position(row[c]) for c in self.order_by) for row in rows}
        if self._seen is None:
            self._seen = behind
            return
        late = behind - self._seen
        if late:
            _log.warning(
                "source_row_committed_late", source=self.name, rows=len(late), settle_s=self.settle
            )
        floor = _position(since)
        self._seen = {p for p in self._seen | late if str(p[0]) >= str(floor)}

    def _look_back(self) -> timedelta:
        return timedelta(seconds=self.settle * _LATE_LOOKBACK)

    def _after(self, after: Position, horizon: tuple[str, list[Any]]) -> tuple[str, list[Any]]:
        present = " AND ".join(f"{self._quoted(c)} IS NOT NULL" for c in self.order_by)
        ready, params = horizon
        present += ready
        if after is None:
            return f"WHERE {present}", params
        self._check_shape(after)
        columns = ", ".join(self._quoted(c) for c in self.order_by)
        marks = ", ".join(self.db.placeholder for _ in self.order_by)
        # The first column's bound is implied by the row comparison, and it is what MariaDB
        # starts its index range at: without it, each batch read the index from the start of
        # the table up to its position (10,500 index reads for a batch of 500 halfway through
        # 20,000 rows, so 40 µs of server CPU per row; bench/analysis.md).
        first = f"{self._quoted(self.order_by[0])} >= {self.db.placeholder}"
        where = f"WHERE {present} AND {first} AND ({columns}) > ({marks})"
        return where, [*params, after[0], *after]

    def _check_shape(self, after: Position) -> None:
        if after is not None and (not isinstance(after, list) or len(after) != len(self.order_by)):
            raise ConfigurationError(
                f"position {after!r} does not fit source {self.name!r} (ordered by "
                f"{', '.join(self.order_by)}): was the checkpoint written by another source "
                "or another mode? Delete it to read from the start"
            )

    def _record(self, row: Mapping[str, Any]) -> Record:
        key = self.key
        return Record(
            key=_text(row[key[0]]) if len(key) == 1 else "/".join(_text(row[c]) for c in key),
            version=_text(row[self.version]),
            position=[_position(row[c]) for c in self.order_by],
            # A row the database driver handed over is a dict of its own: no copy.
            data=row if type(row) is dict else dict(row),
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
    if type(value) is str:  # the common cases first: twice a row
        return value
    if value is None:
        return ""
    return str(value) if isinstance(value, (int, str)) else str(jsonable(value))


def _position(value: Any) -> Any:
    if type(value) is datetime:  # a change column (MySQL, PostgreSQL): once a row, ~0.5 µs less
        return value.isoformat()
    return value if isinstance(value, (int, float, str)) else jsonable(value)


def _pg_quoted(identifier: str) -> str:
    return f'"{identifier}"'


def outbox_ddl(table: str, *, outbox: str | None = None) -> str:
    """The PostgreSQL outbox a DBA installs for ``by_outbox``: a table with the source table's
    columns after an ``outbox_id`` and the writing transaction's ``txid``, and a trigger that
    appends every inserted or updated row (``simpul adapter outbox-ddl TABLE`` prints it)."""
    outbox = outbox or f"{_checked(table)}_outbox"
    source, box = _pg_quoted(_checked(table)), _pg_quoted(_checked(outbox))
    function = _pg_quoted(f"{outbox}_append")
    return f"""-- The outbox Simpul polls with SqlSource.by_outbox(..., txid_column="txid").
CREATE TABLE {box} (
    outbox_id BIGSERIAL PRIMARY KEY,
    -- the writing transaction: rows are read only once it and every older one have finished
    txid BIGINT NOT NULL DEFAULT pg_current_xact_id()::text::bigint,
    LIKE {source}
);
CREATE INDEX ON {box} (txid, outbox_id);
CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO {box} SELECT nextval(pg_get_serial_sequence('{outbox}', 'outbox_id')),
        pg_current_xact_id()::text::bigint, NEW.*;
    RETURN NEW;
END $$;
CREATE TRIGGER {_pg_quoted(f"{outbox}_append")} AFTER INSERT OR UPDATE ON {source}
    FOR EACH ROW EXECUTE FUNCTION {function}();
"""
