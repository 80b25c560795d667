"""A service's own SQL store: SQLite by default, PostgreSQL when configured.

Services keep what they learned from the bus in their own database. Delivery is at least once,
so the store carries a *transactional inbox*: :meth:`Store.once` runs the effect and records
the event id in the same transaction, and a redelivered event finds its id there and changes
nothing. A crash between the two cannot happen: there is one commit.

    store = Store.for_service("bapenda")            # SIMPUL_BAPENDA_DB, else SQLite in .simpul/
    await store.migrate([
        "CREATE TABLE taxpayer (...)",                           # version 1
        ["ALTER TABLE taxpayer ADD COLUMN npwp TEXT",            # version 2: two statements,
         "CREATE INDEX taxpayer_npwp ON taxpayer (npwp)"],       # one transaction
    ])

    @service.on(PermitIssued)
    async def register(event: PermitIssued, ctx: EventContext) -> None:
        await store.once(ctx.event_id, lambda tx: tx.execute("INSERT ...", (...)))

Migrations are versioned: the n-th item of the list is version n of the owner's schema, applied
once, in order, each in one transaction with its row in ``simpul_schema``; a store at start
applies only the versions it has not seen. Append new versions; never edit or reorder applied ones.

Write SQL with ``?`` placeholders and portable types (TEXT, BIGINT); the PostgreSQL dialect
rewrites the placeholders (not a ``?`` inside a string literal, a quoted name or a comment).
All calls run on one thread per store, so a handler never blocks the event loop on the database
and SQLite's connection stays on the thread that opened it.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import unquote, urlsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict
from pydantic import Field

from bus.errors import ConfigurationError, DependencyUnavailable, SimpulError
from bus.logging import get_logger
from bus.settings import ComponentSettings

__all__ = ["Store", "StoreError", "StoreUnavailable", "Tx"]

T = TypeVar("T")
Dialect = Literal["sqlite", "postgresql"]
Params = Sequence[Any]

_INBOX = "CREATE TABLE IF NOT EXISTS simpul_inbox ( key TEXT PRIMARY KEY, handled_at TEXT NOT NULL)"
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS simpul_schema (scope TEXT NOT NULL, version INTEGER NOT NULL, "
    "applied_at TEXT NOT NULL, PRIMARY KEY (scope, version))"
)
_MIGRATION_LOCK = 0x53494D50  # "SIMP": PostgreSQL advisory lock held while one replica migrates
Migration = str | Sequence[str]
_ENV_NAME = re.compile(r"[^A-Z0-9]+")
_SERIAL_ATTEMPTS = 5  # PostgreSQL: runs of a transaction that lost a serialization conflict
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*$")
_log = get_logger("bus.store")
_PASSWORDS = re.compile(r"^[^:/]+://[^:@/]*:([^@/]*)@|[?&]password=([^&]*)")


class StoreUnavailable(DependencyUnavailable):
    """The database could not be reached or refused the connection (worth retrying: a handler
    failing with it keeps its event pending until the database is back)."""


class StoreError(SimpulError):
    """The database refused a statement (a constraint, a type); the message quotes no values."""


class Tx:
    """One transaction. Rows come back as dicts keyed by column name."""

    def __init__(self, cursor: Any, dialect: Dialect) -> None:
        self._cursor = cursor
        self.dialect: Dialect = dialect

    def execute(self, sql: str, params: Params = ()) -> int:
        """Run one statement; return the number of rows it changed."""
        self._cursor.execute(self._sql(sql), tuple(params))
        return int(self._cursor.rowcount)

    def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        self._cursor.executemany(self._sql(sql), [tuple(row) for row in rows])

    def all(self, sql: str, params: Params = ()) -> list[dict[str, Any]]:
        self._cursor.execute(self._sql(sql), tuple(params))
        names = [column[0] for column in self._cursor.description or ()]
        return [dict(zip(names, row, strict=True)) for row in self._cursor.fetchall()]

    def one(self, sql: str, params: Params = ()) -> dict[str, Any] | None:
        rows = self.all(sql, params)
        return rows[0] if rows else None

    def value(self, sql: str, params: Params = ()) -> Any:
        """The first column of the first row, or None."""
        row = self.one(sql, params)
        return None if row is None else next(iter(row.values()))

    def _sql(self, sql: str) -> str:
        return _psycopg_placeholders(sql) if self.dialect == "postgresql" else sql


class StoreSettings(ComponentSettings):
    """A service's database: ``SIMPUL_<NAME>_DB`` (the prefix is the service's, given to
    :meth:`load` as ``_env_prefix``), else its SQLite file in ``SIMPUL_DATA_DIR``."""

    db: str | None = None
    data_dir: str = Field(default=".simpul", validation_alias="SIMPUL_DATA_DIR")


class Store:
    """A SQLite file or a PostgreSQL database, used from one worker thread."""

    def __init__(self, url: str, *, scope: str | None = None) -> None:
        """``scope``: the owner's name (a service), so several owners may share one database:
        their tables are their own, and their :meth:`once` keys are kept apart by it."""
        self.url = url
        self.scope = scope
        self.dialect: Dialect = _dialect(url)
        if self.dialect == "postgresql":
            _check_postgres_url(url)
        self._conn: Any = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="simpul-store")
        self._closed = False

    @classmethod
    def for_service(cls, name: str, *, data_dir: str | None = None) -> Store:
        """``SIMPUL_<NAME>_DB`` if set (``postgresql://...`` or ``sqlite:///path``), else a
        SQLite file ``<data dir>/<name>.db`` (data dir: ``SIMPUL_DATA_DIR``, else ``.simpul``)."""
        read = StoreSettings.load(_env_prefix=f"SIMPUL_{_ENV_NAME.sub('_', name.upper())}_")
        if read.db:
            return cls(read.db, scope=name)
        folder = Path(data_dir or read.data_dir)
        return cls(f"sqlite:///{folder / f'{name}.db'}", scope=name)

    def __repr__(self) -> str:  # never the password of a PostgreSQL URL
        if self.dialect == "sqlite":
            return f"Store(sqlite:{_sqlite_path(self.url)})"
        parts = urlsplit(self.url)
        where = f"{parts.hostname}{parts.path}"
        return f"Store({self.dialect}:{where})"

    async def migrate(self, migrations: Sequence[Migration]) -> list[int]:
        """Bring the owner's schema to the last of ``migrations`` (version n is the n-th item: a
        statement, or a list of statements applied together). Each version missing from
        ``simpul_schema`` runs once, in order, in one transaction with its row there; concurrent
        replicas wait for each other (SQLite's write lock, a PostgreSQL advisory lock) and find
        the versions applied. Returns the versions this call applied.

        A database at a later version than ``migrations`` knows (a newer replica migrated it)
        is left alone, with a warning.
        """
        scope = self.scope or ""
        steps = [[m] if isinstance(m, str) else list(m) for m in migrations]

        def versions() -> list[int]:  # on the store's thread
            self._run(_own_tables)
            applied = [
                version
                for version, statements in enumerate(steps, start=1)
                if self._run(partial(_apply_version, scope, version, statements))
            ]
            newest = self._run(partial(_newest_version, scope))
            if newest > len(steps):
                _log.warning(
                    "store_schema_newer", store=repr(self), version=newest, known=len(steps)
                )
            return applied

        if self.dialect == "sqlite":
            return await self._call(versions)  # each version: BEGIN IMMEDIATE, one writer
        return await self._call(partial(self._locked, versions))

    async def schema_version(self) -> int:
        """The owner's last applied migration (0: none)."""
        scope = self.scope or ""

        def read(tx: Tx) -> int:
            tx.execute(_SCHEMA)
            return _newest_version(scope, tx)

        return await self.run(read)

    async def run(self, work: Callable[[Tx], T]) -> T:
        """Run ``work`` in one transaction on the store's thread: commit, or roll back on error.

        ``work`` is plain (not async) code: it talks to the database and nothing else — on
        PostgreSQL (SERIALIZABLE) it runs again when a concurrent transaction won a conflict.
        """
        return await self._call(partial(self._run, work))

    async def _call(self, step: Callable[[], T]) -> T:
        if self._closed:
            raise StoreUnavailable(f"{self!r} is closed")
        return await asyncio.get_running_loop().run_in_executor(self._thread, step)

    async def once(self, key: str, work: Callable[[Tx], T]) -> T | None:
        """Run ``work`` unless ``key`` (an event id, or event id + purpose) was done before.

        The key is recorded in the same transaction as the work: either both happen or neither.
        Returns ``work``'s result, or None when the key was already done.
        """
        if self.scope:
            key = f"{self.scope}/{key}"

        def guarded(tx: Tx) -> T | None:
            if tx.one("SELECT 1 AS done FROM simpul_inbox WHERE key = ?", (key,)) is not None:
                return None
            result = work(tx)
            tx.execute(
                "INSERT INTO simpul_inbox (key, handled_at) VALUES (?, ?)", (key, _now_text())
            )
            return result

        return await self.run(guarded)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._thread, self._disconnect)
        self._thread.shutdown(wait=True)

    # -- on the store's thread -------------------------------------------------------------

    def _run(self, work: Callable[[Tx], T]) -> T:
        for attempt in range(1, _SERIAL_ATTEMPTS + 1):
            try:
                conn = self._connection()
                if self.dialect == "sqlite":
                    return self._run_sqlite(conn, work)
                return self._run_postgres(conn, work)
            except psycopg.OperationalError as exc:
                # SQLSTATE class 40 (serialization failure, deadlock): a concurrent replica's
                # transaction won; run ours again on the state it left (work is database
                # calls only, so re-running it is safe). Anything else: the database is gone.
                if not (exc.sqlstate or "").startswith("40"):
                    self._disconnect()  # reconnect on the next call
                    problem = _masked(_first_line(exc), self.url)
                    raise StoreUnavailable(f"{self!r}: {type(exc).__name__}: {problem}") from exc
                if attempt == _SERIAL_ATTEMPTS:
                    raise StoreUnavailable(
                        f"{self!r}: transaction kept conflicting with concurrent ones "
                        f"({_SERIAL_ATTEMPTS} attempts)"
                    ) from None
            except Exception as exc:
                if not _is_transient(exc):
                    raise _without_row_values(exc) from None
                self._disconnect()  # reconnect on the next call
                problem = _masked(_first_line(exc), self.url)
                raise StoreUnavailable(f"{self!r}: {type(exc).__name__}: {problem}") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _locked(self, work: Callable[[], T]) -> T:
        """PostgreSQL: ``work`` (transactions) under a session advisory lock taken before them,
        so their snapshots see what the previous holder committed."""
        try:
            conn = self._connection()
            conn.execute("SELECT pg_advisory_lock(%s)", (_MIGRATION_LOCK,))
        except psycopg.OperationalError as exc:
            self._disconnect()
            problem = _masked(_first_line(exc), self.url)
            raise StoreUnavailable(f"{self!r}: {type(exc).__name__}: {problem}") from exc
        try:
            return work()
        finally:
            if self._conn is conn:  # a lost connection released the lock with it
                with contextlib.suppress(psycopg.Error):
                    conn.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK,))

    def _run_sqlite(self, conn: sqlite3.Connection, work: Callable[[Tx], T]) -> T:
        cursor = conn.cursor()
        # IMMEDIATE: take the write lock at the start, so concurrent replicas queue instead of
        # failing with "database is locked" halfway through a transaction.
        cursor.execute("BEGIN IMMEDIATE")
        try:
            result = work(Tx(cursor, "sqlite"))
        except BaseException:
            conn.rollback()
            raise
        conn.commit()
        return result

    def _run_postgres(self, conn: Any, work: Callable[[Tx], T]) -> T:
        with conn.transaction(), conn.cursor() as cursor:
            return work(Tx(cursor, "postgresql"))

    def _connection(self) -> Any:
        if self._conn is not None:
            return self._conn
        if self.dialect == "sqlite":
            path = _sqlite_path(self.url)
            if path != ":memory:":
                try:
                    Path(path).parent.mkdir(parents=True, exist_ok=True)
                except OSError as exc:  # a folder not mounted yet, a full disk: an outage
                    raise StoreUnavailable(
                        f"cannot create the folder of {self!r}: {type(exc).__name__}"
                    ) from None
            conn = sqlite3.connect(path, timeout=30.0, isolation_level=None)
            _wal(conn)
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            self._conn = conn
        else:
            try:
                pg = psycopg.connect(self.url, autocommit=True, connect_timeout=10)
                # SERIALIZABLE, as SQLite's single writer is: a handler that reads a row and
                # writes it back cannot lose a concurrent replica's update (READ COMMITTED could).
                pg.isolation_level = psycopg.IsolationLevel.SERIALIZABLE
                self._conn = pg
            except psycopg.OperationalError as exc:
                problem = _masked(_first_line(exc), self.url)
                raise StoreUnavailable(f"cannot connect to {self!r}: {problem}") from None
        return self._conn

    def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # already broken: nothing to release
                conn.close()


def _own_tables(tx: Tx) -> None:
    tx.execute(_INBOX)
    tx.execute(_SCHEMA)


def _apply_version(scope: str, version: int, statements: Sequence[str], tx: Tx) -> bool:
    """Apply one version unless ``simpul_schema`` has it; say whether it ran."""
    found = "SELECT 1 AS done FROM simpul_schema WHERE scope = ? AND version = ?"
    if tx.one(found, (scope, version)) is not None:
        return False
    for sql in statements:
        tx.execute(sql)
    tx.execute(
        "INSERT INTO simpul_schema (scope, version, applied_at) VALUES (?, ?, ?)",
        (scope, version, _now_text()),
    )
    return True


def _newest_version(scope: str, tx: Tx) -> int:
    found = tx.value("SELECT MAX(version) FROM simpul_schema WHERE scope = ?", (scope,))
    return int(found or 0)


def _psycopg_placeholders(sql: str) -> str:
    """``sql`` for psycopg: each ``?`` outside string literals, quoted names, dollar-quoted
    bodies and comments becomes ``%s``; every ``%`` is doubled (psycopg reads a ``%`` anywhere
    as the start of a placeholder, a literal one in ``LIKE 'a%'`` included)."""
    out: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        char = sql[i]
        if char == "?":
            out.append("%s")
            i += 1
            continue
        if char in "'\"":
            escapes = char == "'" and i > 0 and sql[i - 1] in "eE" and not _word(sql, i - 2)
            end = _quoted_end(sql, i, char, backslash=escapes)
        elif sql.startswith("--", i):
            end = sql.find("\n", i)
            end = n if end < 0 else end + 1
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            end = n if end < 0 else end + 2
        elif char == "$" and (tag := _DOLLAR_TAG.match(sql, i)) and not _word(sql, i - 1):
            close = sql.find(tag[0], tag.end())
            end = n if close < 0 else close + len(tag[0])
        else:
            out.append("%%" if char == "%" else char)
            i += 1
            continue
        out.append(sql[i:end].replace("%", "%%"))  # verbatim, but psycopg still reads its %
        i = end
    return "".join(out)


_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$")


def _word(sql: str, i: int) -> bool:
    """Whether ``sql[i]`` is part of a name (so a quote or ``$`` after it starts nothing)."""
    return i >= 0 and (sql[i].isalnum() or sql[i] in "_$")


def _quoted_end(sql: str, start: int, quote: str, *, backslash: bool) -> int:
    """The index after the literal opened at ``start`` (a doubled quote stays inside; with
    ``backslash``, E'...' strings, so does an escaped one). Unclosed: the end of ``sql``."""
    i = start + 1
    while i < len(sql):
        if backslash and sql[i] == "\\":
            i += 2
            continue
        if sql[i] == quote:
            if sql.startswith(quote * 2, i):
                i += 2
                continue
            return i + 1
        i += 1
    return len(sql)


def _without_row_values(exc: Exception) -> Exception:
    """A database error without the values it quotes: PostgreSQL's DETAIL repeats the row or
    the key ("Failing row contains (...)"), which holds personal data and would travel into
    logs and dead letters. Keep the SQLSTATE and the primary message, which name the
    constraint, table and column only."""
    if isinstance(exc, psycopg.Error):
        primary = exc.diag.message_primary or type(exc).__name__
        return StoreError(f"{type(exc).__name__} ({exc.sqlstate}): {primary}")
    return exc


def _dialect(url: str) -> Dialect:
    scheme, colon, _ = url.partition(":")
    scheme = scheme.lower()
    if scheme == "sqlite":
        if not url.startswith("sqlite:///"):
            raise ConfigurationError(
                f"a SQLite store URL is sqlite:///relative/path.db or sqlite:////absolute/path.db, "
                f"not {url.split('?', 1)[0]!r}"
            )
        return "sqlite"
    if scheme in ("postgresql", "postgres"):
        return "postgresql"
    # Never echo more than a scheme: a libpq keyword string ("host=... password=...") is no URL.
    shown = f"{scheme}://" if colon and _SCHEME.match(scheme) else "a string without a scheme"
    raise ConfigurationError(
        f"a store URL starts with sqlite:/// or postgresql://, not {shown} "
        "(set SIMPUL_<SERVICE>_DB)"
    )


def _check_postgres_url(url: str) -> None:
    """A malformed URL is a configuration mistake, found at once rather than at first use."""
    try:
        params = conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:  # libpq may quote the URL, password included
        problem = _masked(_first_line(exc), url)
        raise ConfigurationError(f"invalid PostgreSQL store URL: {problem}") from None
    for port in str(params.get("port") or "").split(","):
        if port and not (port.isdigit() and 0 < int(port) <= 65535):
            raise ConfigurationError(
                f"invalid PostgreSQL store URL: port {port!r} is not a number from 1 to 65535"
            )


def _masked(text: str, url: str) -> str:
    """``text`` without the password(s) of ``url``, as written or percent-decoded."""
    for match in _PASSWORDS.finditer(url):
        secret = match[1] or match[2]
        if secret:
            for form in (secret, unquote(secret)):
                text = text.replace(form, "***")
    return text


def _sqlite_path(url: str) -> str:
    return url[len("sqlite:///") :].split("?", 1)[0] or ":memory:"


def _is_transient(exc: BaseException) -> bool:
    """A lost or locked database (worth retrying), not a mistake in the SQL."""
    if isinstance(exc, sqlite3.OperationalError):
        return any(word in str(exc) for word in ("locked", "unable to open", "disk I/O"))
    return isinstance(exc, psycopg.OperationalError)


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _now_text() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _wal(conn: sqlite3.Connection, attempts: int = 100) -> None:
    """Switch a new SQLite file to WAL. The switch needs the file to itself and SQLite does not
    wait for that (no busy handler): two replicas opening a new file together would see
    "database is locked". Try again for up to ~5 s; after the first switch it is a no-op."""
    for attempt in range(attempts):
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.05)
