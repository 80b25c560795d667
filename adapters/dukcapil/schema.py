"""A SIAK-like legacy table of civil-registry events, for PostgreSQL and SQLite.

Like many legacy registries, ``peristiwa`` has a surrogate row number (``no_urut``), a business
id (``id_peristiwa``) that the application — not the database — keeps unique, a version bumped
on every correction (``versi``) and a local-time (WIB) ``updated_at``. ``peristiwa_outbox`` is
the outbox variant: a trigger appends a copy of every inserted or updated row (on PostgreSQL
with the writing transaction's id, so the adapter reads only finished transactions).
"""

from __future__ import annotations

from typing import Literal

Dialect = Literal["postgresql", "sqlite", "mysql"]

# Every column but the surrogate row number, in table order.
COLUMNS = (
    "id_peristiwa",
    "versi",
    "jenis_peristiwa",
    "nik",
    "no_kk",
    "nama_lengkap",
    "tgl_lahir",
    "jenis_kelamin",
    "alamat",
    "kode_kecamatan",
    "kode_kelurahan",
    "tgl_peristiwa",
    "tgl_lapor",
    "updated_at",
)

_BODY = """
    id_peristiwa    BIGINT,         -- the registry's id of the event; not constrained (legacy)
    versi           INTEGER,        -- bumped by every correction of the record
    jenis_peristiwa VARCHAR(20),    -- LAHIR | KEMATIAN | PINDAH
    nik             VARCHAR(16),
    no_kk           VARCHAR(16),
    nama_lengkap    VARCHAR(100),
    tgl_lahir       DATE,
    jenis_kelamin   CHAR(1),        -- L | P
    alamat          VARCHAR(200),
    kode_kecamatan  VARCHAR(8),     -- Kemendagri, e.g. 35.73.05
    kode_kelurahan  VARCHAR(13),    -- Kemendagri, e.g. 35.73.05.1001
    tgl_peristiwa   DATE,
    tgl_lapor       DATE,           -- when it was reported to the registry
    updated_at      TIMESTAMP       -- local time (WIB), as the application writes it
"""

_POSTGRESQL = f"""
CREATE TABLE peristiwa (no_urut BIGSERIAL PRIMARY KEY, {_BODY});
CREATE INDEX peristiwa_perubahan ON peristiwa (updated_at, no_urut);
CREATE TABLE peristiwa_outbox (no_outbox BIGSERIAL PRIMARY KEY, no_urut BIGINT,
    -- the writing transaction, read once finished (bus.adapter.sources.sql.outbox_ddl explains)
    txid BIGINT NOT NULL DEFAULT pg_current_xact_id()::text::bigint, {_BODY});
CREATE INDEX peristiwa_outbox_urutan ON peristiwa_outbox (txid, no_outbox);
CREATE FUNCTION peristiwa_ke_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO peristiwa_outbox (no_urut, {", ".join(COLUMNS)})
    VALUES (NEW.no_urut, {", ".join(f"NEW.{c}" for c in COLUMNS)});
    RETURN NEW;
END $$;
CREATE TRIGGER peristiwa_outbox AFTER INSERT OR UPDATE ON peristiwa
    FOR EACH ROW EXECUTE FUNCTION peristiwa_ke_outbox();
"""

_SQLITE_COPY = f"""
    INSERT INTO peristiwa_outbox (no_urut, {", ".join(COLUMNS)})
    VALUES (NEW.no_urut, {", ".join(f"NEW.{c}" for c in COLUMNS)});
"""
_SQLITE = f"""
CREATE TABLE peristiwa (no_urut INTEGER PRIMARY KEY AUTOINCREMENT, {_BODY});
CREATE INDEX peristiwa_perubahan ON peristiwa (updated_at, no_urut);
CREATE TABLE peristiwa_outbox (no_outbox INTEGER PRIMARY KEY AUTOINCREMENT, no_urut INTEGER,
    {_BODY});
CREATE TRIGGER peristiwa_outbox_insert AFTER INSERT ON peristiwa BEGIN {_SQLITE_COPY} END;
CREATE TRIGGER peristiwa_outbox_update AFTER UPDATE ON peristiwa BEGIN {_SQLITE_COPY} END;
"""


_MYSQL_COPY = f"""
    INSERT INTO peristiwa_outbox (no_urut, {", ".join(COLUMNS)})
    VALUES (NEW.no_urut, {", ".join(f"NEW.{c}" for c in COLUMNS)})
"""
# The PHP application's table: InnoDB, as a MySQL-era SIAK would have it (DATETIME(6) so that
# the synthetic data's microseconds survive).
_MYSQL = f"""
CREATE TABLE peristiwa (no_urut BIGINT AUTO_INCREMENT PRIMARY KEY,
    {_BODY.replace("TIMESTAMP", "DATETIME(6)")}) ENGINE=InnoDB;
CREATE INDEX peristiwa_perubahan ON peristiwa (updated_at, no_urut);
CREATE TABLE peristiwa_outbox (no_outbox BIGINT AUTO_INCREMENT PRIMARY KEY, no_urut BIGINT,
    {_BODY.replace("TIMESTAMP", "DATETIME(6)")}) ENGINE=InnoDB;
CREATE TRIGGER peristiwa_outbox_insert AFTER INSERT ON peristiwa FOR EACH ROW {_MYSQL_COPY};
CREATE TRIGGER peristiwa_outbox_update AFTER UPDATE ON peristiwa FOR EACH ROW {_MYSQL_COPY};
"""


def ddl(dialect: Dialect) -> str:
    """The statements that create the legacy tables (``;``-separated; run as a script)."""
    return {"postgresql": _POSTGRESQL, "sqlite": _SQLITE, "mysql": _MYSQL}[dialect]


def insert_sql(dialect: Dialect) -> str:
    """One parameterised INSERT of a row given as a tuple in :data:`COLUMNS` order."""
    mark = "?" if dialect == "sqlite" else "%s"
    return (
        f"INSERT INTO peristiwa ({', '.join(COLUMNS)}) VALUES ({', '.join([mark] * len(COLUMNS))})"
    )
