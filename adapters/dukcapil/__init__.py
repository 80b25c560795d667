"""Civil registry (SIAK) adapter: legacy birth, death and move records -> dukcapil events.

The mapping is the whole adapter: a legacy row in, a validated contract out. Column names are
SIAK's (Indonesian); see :mod:`adapters.dukcapil.schema` for the table. The event id comes from
(source URN, table, ``id_peristiwa``, ``versi``): a corrected record (``versi`` + 1) is a new
event, a replayed one is not.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import timedelta, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict
from redis.asyncio import Redis

from bus import ComponentSettings, ConfigurationError, Contract, Publisher, Signer, event_id
from bus.adapter import (
    Adapter,
    BinlogSource,
    Database,
    LogicalSource,
    MySqlDatabase,
    MySqlSource,
    PostgresDatabase,
    ProgressHook,
    Quarantine,
    Record,
    RedisCheckpoints,
    Source,
    SqliteDatabase,
    SqlSource,
    is_mysql_url,
)
from schemas.common import pseudonym
from schemas.dukcapil import CitizenBorn, CitizenDied, CitizenMoved

__all__ = ["NAME", "SOURCE", "TABLE", "SiakMapper", "adapter", "cdc_source", "map_record", "source"]

NAME = "dukcapil-siak"  # the adapter's name: its checkpoint and its quarantine
SOURCE = "urn:malangkota:dukcapil:siak"
TABLE = "peristiwa"
WIB = timezone(timedelta(hours=7), "WIB")  # SIAK writes local time; Indonesia has no DST
PSEUDONYM_KEY_ENV = "SIMPUL_PSEUDONYM_KEY"

Row = Mapping[str, Any]


class SiakMapper:
    """One SIAK row -> its dukcapil contract, by ``jenis_peristiwa``.

    Births carry the child as a keyed pseudonym (children's data is specific personal data),
    so the mapper needs the city's pseudonym key.
    """

    def __init__(self, pseudonym_key: bytes | None) -> None:
        if pseudonym_key is not None and len(pseudonym_key) < 16:
            raise ConfigurationError("the pseudonym key must be at least 16 bytes")
        self._key = pseudonym_key
        self._by_kind: dict[str, Callable[[Row], Contract]] = {
            "LAHIR": self.born,
            "KEMATIAN": self.died,
            "PINDAH": self.moved,
        }

    def __call__(self, record: Record) -> Contract:
        return self.map(record.data)

    def map(self, row: Row) -> Contract:
        kind = row.get("jenis_peristiwa")
        try:
            mapping = self._by_kind[str(kind).strip().upper()]
        except KeyError:
            known = ", ".join(self._by_kind)
            raise ValueError(f"unknown jenis_peristiwa {kind!r} (expected {known})") from None
        return mapping(row)

    def born(self, row: Row) -> CitizenBorn:
        if self._key is None:  # a configuration problem, not the row's: stop, don't quarantine
            raise ConfigurationError(
                f"births need the city's pseudonym key: set {PSEUDONYM_KEY_ENV} (16+ bytes)"
            )
        nik = row["nik"]
        return CitizenBorn.parse(
            {
                "child_ref": pseudonym(self._key, "nik", nik) if isinstance(nik, str) else None,
                "nik": nik,
                "kk": row["no_kk"],
                "born_on": row["tgl_lahir"],
                "kelurahan": row["kode_kelurahan"],
                "registered_on": row["tgl_lapor"],
            }
        )

    def died(self, row: Row) -> CitizenDied:
        return CitizenDied.parse(
            {
                "nik": row["nik"],
                "date_of_death": row["tgl_peristiwa"],
                "kecamatan": row["kode_kecamatan"],
            }
        )

    def moved(self, row: Row) -> CitizenMoved:
        return CitizenMoved.parse(
            {
                "nik": row["nik"],
                "address": row["alamat"],
                "kecamatan": row["kode_kecamatan"],
                "moved_on": row["tgl_peristiwa"],
            }
        )


def pseudonym_key_from_env() -> bytes | None:
    """The city's pseudonym key from SIMPUL_PSEUDONYM_KEY; None if unset (births then fail)."""
    return DukcapilSettings.load().key


def map_record(row: Row, *, pseudonym_key: bytes | None = None) -> tuple[Contract, str]:
    """One SIAK row -> (event, event id). Raises ContractViolation or ValueError for a row
    that won't map. The id is the one the :func:`adapter` publishes the row under."""
    mapper = SiakMapper(pseudonym_key or pseudonym_key_from_env())
    return mapper.map(row), event_id(SOURCE, TABLE, row["id_peristiwa"], row["versi"])


_COMMON: dict[str, Any] = {"version": "versi", "time_column": "updated_at", "naive_timezone": WIB}


def source(db: Database | str | Path, *, outbox: bool = False) -> SqlSource:
    """The SIAK events by polling: a ``postgresql://`` or ``mysql://`` URL, a SQLite file, or a
    Database; by the change column, or by the trigger-filled outbox."""
    common = _COMMON
    kind: type[SqlSource] = SqlSource
    if isinstance(db, str) and is_mysql_url(db):
        db, kind = MySqlDatabase(db), MySqlSource
    elif isinstance(db, Path) or (isinstance(db, str) and not db.startswith("postgres")):
        db = SqliteDatabase(db)
    elif isinstance(db, str):
        db = PostgresDatabase(db)
    if outbox:
        return kind.by_outbox(
            db,
            outbox_table=f"{TABLE}_outbox",
            outbox_id="no_outbox",
            key="id_peristiwa",
            name=TABLE,
            **common,
        )
    return kind.by_change_column(
        db,
        table=TABLE,
        change_column="updated_at",
        primary_key="no_urut",
        key="id_peristiwa",
        **common,
    )


def cdc_source(url: str, **options: Any) -> LogicalSource | BinlogSource:
    """The SIAK events by change-data-capture: every committed insert and update of
    ``peristiwa``, after a snapshot of the rows there — from a ``postgresql://`` URL by logical
    decoding (docs/adapters/cdc.md), from a ``mysql://`` URL by the row binlog
    (docs/adapters/mysql.md)."""
    if is_mysql_url(url):
        return BinlogSource(url, table=TABLE, key="id_peristiwa", **_COMMON, **options)
    if not url.startswith("postgres"):
        raise ConfigurationError(
            "change-data-capture reads a database's log: give a postgresql:// or mysql:// URL"
        )
    return LogicalSource(url, table=TABLE, key="id_peristiwa", version="versi", **options)


def adapter(
    redis: Redis,
    db: Database | str | Path,
    *,
    pseudonym_key: bytes | None,
    outbox: bool = False,
    cdc: bool = False,
    batch_size: int = 500,
    on_progress: ProgressHook | None = None,
    signer: Signer | Literal["environment"] | None = "environment",
) -> Adapter:
    """The SIAK adapter, wired: source (CDC, outbox or change column), mapper, publisher,
    checkpoints and quarantine."""
    read: Source = cdc_source(str(db)) if cdc else source(db, outbox=outbox)
    return Adapter(
        NAME,
        source=read,
        mapper=SiakMapper(pseudonym_key),
        publisher=Publisher(redis, source=SOURCE, signer=signer),
        checkpoints=RedisCheckpoints(redis),
        quarantine=Quarantine(redis, NAME),
        batch_size=batch_size,
        on_progress=on_progress,
    )


DB_ENV = "SIMPUL_DUKCAPIL_DB"


class DukcapilSettings(ComponentSettings):
    """The adapter's knobs, from ``SIMPUL_DUKCAPIL_*`` (and the city's ``SIMPUL_PSEUDONYM_KEY``)."""

    model_config = SettingsConfigDict(env_prefix="SIMPUL_DUKCAPIL_")

    db: str | None = Field(default=None, description="the SIAK database: URL or SQLite file")
    outbox: bool = Field(default=False, description="read the trigger-filled outbox")
    cdc: bool = Field(default=False, description="read the database's log (logical/binlog)")
    pseudonym_key: SecretStr | None = Field(
        default=None,
        validation_alias=PSEUDONYM_KEY_ENV,
        description="the city's key for child pseudonyms (births)",
    )

    @property
    def key(self) -> bytes | None:
        return self.pseudonym_key.get_secret_value().encode() if self.pseudonym_key else None


def from_env(redis: Redis) -> Adapter:
    """The adapter as ``simpul adapter run adapters.dukcapil:from_env`` builds it.

    SIMPUL_DUKCAPIL_DB: a ``postgresql://`` or ``mysql://`` URL or a SQLite file of the SIAK
    database; SIMPUL_DUKCAPIL_CDC=1 reads the database's log (PostgreSQL logical decoding, or a
    MySQL/MariaDB row binlog), or SIMPUL_DUKCAPIL_OUTBOX=1 the trigger-filled outbox, instead
    of the change column;
    SIMPUL_PSEUDONYM_KEY: the city's key for child pseudonyms (births).
    """
    settings = DukcapilSettings.load()
    db = settings.db
    if not db:
        raise ConfigurationError(
            f"set {DB_ENV} to the SIAK database (postgresql:// or mysql:// URL, or a file)"
        )
    return adapter(redis, db, pseudonym_key=settings.key, outbox=settings.outbox, cdc=settings.cdc)
