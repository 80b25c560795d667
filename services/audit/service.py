"""The Audit service: the hash-chained archive of every stream entry, its checks and reads."""

from __future__ import annotations

import getpass
import importlib
import json
import pkgutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis

from bus import (
    BusFunction,
    Classification,
    ConfigurationError,
    Envelope,
    EventContext,
    Registry,
    Service,
    Settings,
    Store,
    Tx,
    connect,
    default_registry,
    entry_id_parts,
    format_time,
    get_logger,
    keys,
    mask_subject,
    mask_text,
    redis_text,
)
from services._common import Migration
from services.audit.backfill import BackfillReport
from services.audit.backfill import backfill as run_backfill
from services.audit.chain import (
    COLUMNS,
    GENESIS,
    Head,
    Report,
    Verifier,
    digest,
    row_hash,
)
from services.audit.db import DDL, INSERT, METADATA

__all__ = ["Appended", "Audit", "Head", "Report", "create", "head_key"]

_log = get_logger("services.audit")
_IDS = ("event_id", "correlationid", "causationid")  # shown as simpul tail shows them
PAGE = 1_000  # rows per read when walking the chain


def head_key() -> str:
    """Where the newest (seq, hash) of the archive is kept outside its database (a hash)."""
    return f"{keys.PREFIX}:audit:head"


def load_contracts(package: str = "schemas") -> None:
    """Import every module of ``package`` so all its contracts (and their streams) register."""
    root = importlib.import_module(package)
    for module in pkgutil.walk_packages(root.__path__, prefix=f"{package}."):
        importlib.import_module(module.name)


@dataclass(frozen=True, slots=True)
class Appended:
    """Where an entry sits in the chain; ``new`` is False when it was archived before."""

    seq: int
    hash: str
    new: bool


class Audit:
    """The archive and the ``audit`` service that fills it.

    ``store``: ``SIMPUL_AUDIT_DB`` (SQLite in ``.simpul/audit.db`` by default). ``streams``: the
    streams to archive (default: the stream of every contract of ``registry``; with the default
    registry every module of ``schemas`` is imported first, so that no type is mistaken for
    one without a contract). ``redis``: the client for the head
    (default: one on ``settings.redis_url``, opened when first needed).
    """

    def __init__(
        self,
        store: Store | None = None,
        *,
        settings: Settings | None = None,
        registry: Registry = default_registry,
        streams: Iterable[str] | None = None,
        redis: Redis | None = None,
    ) -> None:
        if registry is default_registry:  # every contract known: streams, classifications
            load_contracts()
        self.store = store or Store.for_service("audit")
        self.registry = registry
        self.service = Service("audit", settings=settings, registry=registry)
        self.service.on_every(streams=streams)(self.archive)
        self.service.on_startup(self.open)
        self.service.on_shutdown(self.close)
        self._redis = redis
        self._own_redis = False
        self._head_script: BusFunction | None = None
        self._migration = Migration(self.store, DDL)

    # -- lifecycle ---------------------------------------------------------------------------

    async def open(self) -> None:
        """Create the tables if missing (and connect to Redis for the head)."""
        await self._migration()
        self._client()

    async def close(self) -> None:
        await self.store.close()
        if self._own_redis and self._redis is not None:
            await self._redis.aclose()
            self._redis, self._head_script = None, None

    # -- the handler -------------------------------------------------------------------------

    async def archive(self, envelope: Envelope, ctx: EventContext) -> None:
        """``on_every`` handler: append the entry (once), then move the head in Redis."""
        appended = await self.append(envelope, stream=ctx.stream, entry_id=ctx.entry_id)
        await self._move_head(appended)
        if appended.new:
            _log.debug(
                "event_archived",
                seq=appended.seq,
                stream=ctx.stream,
                entry_id=ctx.entry_id,
                event_id=envelope.id,
            )

    async def append(self, envelope: Envelope, *, stream: str, entry_id: str) -> Appended:
        """Append one stream entry to the chain; a second call for the same entry appends
        nothing and returns where it already is. Serial across replicas: SQLite's
        ``BEGIN IMMEDIATE`` and PostgreSQL's table lock let one append run at a time."""
        await self.open()
        record = self._record(envelope, stream, entry_id)
        return await self.store.run(lambda tx: _append(tx, record))

    def classification(self, event_type: str) -> Classification:
        """The contract's classification; a type without a contract counts as specific."""
        if event_type not in self.registry:
            return Classification.SPECIFIC
        return self.registry.resolve(event_type).__contract__.classification

    def _subject_shown(self, row: Mapping[str, Any]) -> str | None:
        """A row's subject without a recorded access: none for a specific row (who a row of
        children's or health data is about is itself specific), masked where the contract says
        the subject identifies a person (bapenda's NPWPD), else 16-digit runs masked."""
        if row["classification"] == Classification.SPECIFIC.value:
            return None
        event_type = row["type"]
        contract = (
            self.registry.resolve(event_type).__contract__ if event_type in self.registry else None
        )
        return mask_subject(row["subject"], contract)

    def _record(self, envelope: Envelope, stream: str, entry_id: str) -> dict[str, Any]:
        classification = self.classification(envelope.type)
        ms, seq = entry_id_parts(entry_id)
        extensions = envelope.extensions
        return {
            "stream": stream,
            "entry_id": entry_id,
            "entry_ms": ms,
            "entry_seq": seq,
            "event_id": envelope.id,
            "type": envelope.type,
            "source": envelope.source,
            "time": envelope.time,
            "time_utc": format_time(envelope.timestamp),
            "subject": envelope.subject,
            "correlationid": envelope.correlationid,
            "causationid": envelope.causationid,
            "traceparent": envelope.traceparent,
            "dataschema": envelope.dataschema,
            "signature": envelope.signature,
            "signer": envelope.signer,
            "extensions": json.dumps(dict(extensions), sort_keys=True) if extensions else None,
            "classification": classification.value,
            "data": None if classification is Classification.SPECIFIC else envelope.data,
            "data_digest": digest(envelope.data),
        }

    # -- the head in Redis -------------------------------------------------------------------

    def _client(self) -> Redis | None:
        if self._redis is None:
            url = self.service.settings.redis_url
            if url is None:
                return None
            self._redis = connect(url, client_name="simpul:audit")
            self._own_redis = True
        return self._redis

    async def _move_head(self, appended: Appended) -> None:
        redis = self._client()
        if redis is None:
            raise ConfigurationError("the audit service needs Redis for its head")
        if self._head_script is None:
            self._head_script = BusFunction(redis, "audit_head")  # bus/audit_head.lua
        await self._head_script(keys=[head_key()], args=[appended.seq, appended.hash])

    async def head(self) -> Head | None:
        """The newest (seq, hash) kept in Redis, or None (no Redis, or nothing archived)."""
        redis = self._client()
        if redis is None:
            return None
        seq, hash_ = await redis.hmget(head_key(), ["seq", "hash"])
        if seq is None or hash_ is None:
            return None
        return Head(int(seq), redis_text(hash_))

    # -- read methods ------------------------------------------------------------------------

    async def count(self) -> int:
        await self.open()
        return int(await self.store.run(lambda tx: tx.value("SELECT COUNT(*) FROM audit_log")))

    async def verify(self, *, progress: Callable[[int, int], None] | None = None) -> Report:
        """Walk the chain and compare its end with the head in Redis.

        ``progress(rows checked, rows at the start)`` is called after each page. The head is
        read first: rows appended meanwhile are newer than it and never look like truncation.
        """
        await self.open()
        head = await self.head()
        verifier = Verifier(head)
        total = await self.count()
        last = 0
        while True:
            rows = await self.rows("1 = 1", (), after=last, limit=PAGE)
            verifier.feed(rows)
            if progress is not None:
                progress(verifier.report.rows, total)
            if len(rows) < PAGE:
                break
            last = int(rows[-1]["seq"])
        report = verifier.finish()
        if self._client() is None:
            report.warnings = [
                "no Redis configured: the head was not compared, so removal of the newest rows "
                "(truncation) cannot be detected"
            ]
        _log.info(
            "audit_verified",
            rows=report.rows,
            ok=report.ok,
            problems=len(report.problems),
            first_problem_seq=report.first.seq if report.first else None,
        )
        return report

    async def search(
        self,
        *,
        correlation: str | None = None,
        event_type: str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        limit: int = 100,
        show_data: bool = False,
        actor: str | None = None,
    ) -> list[dict[str, Any]]:
        """Archived entries matching every filter given, by event time, at most ``limit``.

        ``correlation`` matches the events of one chain (its correlation id, and the first event,
        whose id it is); ``since`` is inclusive, ``until`` exclusive, both on the event's time
        (a time without offset is UTC). Rows hold the metadata, but for the ``subject`` of
        specific rows (e.g. a child's pseudonym), which is None, and a subject that identifies
        a person (bapenda's NPWPD), which is masked. ``show_data=True`` adds ``data`` — never
        for specific rows, whose data is not kept — and those subjects, and records the access
        in ``audit_access`` (``actor``: the operator, default the OS user).
        """
        await self.open()
        where: list[str] = []
        params: list[Any] = []
        if correlation:
            where.append("(correlationid = ? OR event_id = ?)")
            params += [correlation, correlation]
        if event_type:
            where.append("type = ?")
            params.append(event_type)
        if since is not None:
            where.append("time_utc >= ?")
            params.append(format_time(parse_time(since)))
        if until is not None:
            where.append("time_utc < ?")
            params.append(format_time(parse_time(until)))
        columns = (*METADATA, "data") if show_data else METADATA
        sql = (
            f"SELECT {', '.join(columns)} FROM audit_log"
            + (f" WHERE {' AND '.join(where)}" if where else "")
            + " ORDER BY time_utc, seq LIMIT ?"
        )
        filters = {
            "correlation": correlation,
            "type": event_type,
            "since": None if since is None else format_time(parse_time(since)),
            "until": None if until is None else format_time(parse_time(until)),
            "limit": limit,
        }

        def read(tx: Tx) -> list[dict[str, Any]]:
            rows = tx.all(sql, (*params, max(0, limit)))
            if not show_data:  # who a row is about is shown on a recorded access only
                for row in rows:
                    row["subject"] = self._subject_shown(row)
                    for name in _IDS:  # a producer's choice: one may be built from a NIK
                        row[name] = mask_text(row[name]) if row[name] is not None else None
            if show_data:
                tx.execute(
                    "INSERT INTO audit_access (at, actor, action, filter, rows) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (_now(), who, "show_data", json.dumps(filters, sort_keys=True), len(rows)),
                )
            return rows

        who = actor or _user()
        rows = await self.store.run(read)
        if show_data:
            _log.warning(
                "audit_data_shown",
                actor=who,
                rows=len(rows),
                seqs=[row["seq"] for row in rows[:50]],
            )
        return rows

    async def backfill(
        self,
        service: Service,
        *,
        dry_run: bool = False,
        force: bool = False,
        attempts: int = 3,
        progress: Callable[[int, int], None] | None = None,
    ) -> BackfillReport:
        """Deliver to ``service`` the archived events trimmed from its streams
        (:func:`services.audit.backfill.backfill`); run it before the service's first start."""
        return await run_backfill(
            self, service, dry_run=dry_run, force=force, attempts=attempts, progress=progress
        )

    async def accesses(self) -> list[dict[str, Any]]:
        """The recorded accesses to archived data, oldest first."""
        await self.open()
        return await self.store.run(
            lambda tx: tx.all(
                "SELECT at, actor, action, filter, rows FROM audit_access ORDER BY at"
            )
        )

    async def rows(
        self, sql_where: str, params: Sequence[Any], *, after: int, limit: int
    ) -> list[dict[str, Any]]:
        """Full rows with ``seq > after`` matching a WHERE clause, by seq (for backfill)."""
        await self.open()
        return await self.store.run(
            lambda tx: tx.all(
                f"SELECT {', '.join(COLUMNS)} FROM audit_log WHERE seq > ? AND ({sql_where}) "
                "ORDER BY seq LIMIT ?",
                (after, *params, limit),
            )
        )

    async def tally(self, sql_where: str, params: Sequence[Any]) -> tuple[int, int]:
        """(rows matching, of which metadata-only) for a WHERE clause (for backfill)."""
        await self.open()
        row = await self.store.run(
            lambda tx: tx.one(
                "SELECT COUNT(*) AS n, COALESCE(SUM(CASE WHEN data IS NULL THEN 1 ELSE 0 END), 0)"
                f" AS thin FROM audit_log WHERE {sql_where}",
                tuple(params),
            )
        )
        assert row is not None
        return int(row["n"]), int(row["thin"])


def _append(tx: Tx, record: dict[str, Any]) -> Appended:
    if tx.dialect == "postgresql":  # one append at a time across replicas (SQLite: IMMEDIATE)
        tx.execute("LOCK TABLE audit_log IN SHARE ROW EXCLUSIVE MODE")
    known = tx.one(
        "SELECT seq, hash FROM audit_log WHERE stream = ? AND entry_id = ?",
        (record["stream"], record["entry_id"]),
    )
    if known is not None:  # a redelivery: archived already
        return Appended(int(known["seq"]), str(known["hash"]), new=False)
    last = tx.one("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
    seq = 1 if last is None else int(last["seq"]) + 1
    prev = GENESIS if last is None else str(last["hash"])
    row = {**record, "seq": seq, "archived_at": _now(), "prev_hash": prev}
    row["hash"] = row_hash(prev, row)
    tx.execute(INSERT, [row[name] for name in COLUMNS])
    return Appended(seq, row["hash"], new=True)


def parse_time(value: datetime | str) -> datetime:
    """A datetime, or ISO 8601 text (a date alone is midnight); without an offset it is UTC."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _now() -> str:
    return format_time(datetime.now(UTC))


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in this environment (containers)
        return "unknown"


def create() -> Service:
    """What ``simpul run services.audit:create`` runs."""
    return Audit().service
