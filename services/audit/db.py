"""The Audit archive's tables (versioned migrations: append, never edit) and columns."""

from __future__ import annotations

from services.audit.chain import COLUMNS

DDL = [
    """CREATE TABLE IF NOT EXISTS audit_log (
        seq BIGINT PRIMARY KEY,
        stream TEXT NOT NULL,
        entry_id TEXT NOT NULL,
        entry_ms BIGINT NOT NULL,
        entry_seq BIGINT NOT NULL,
        event_id TEXT NOT NULL,
        type TEXT NOT NULL,
        source TEXT NOT NULL,
        time TEXT NOT NULL,
        time_utc TEXT NOT NULL,
        subject TEXT,
        correlationid TEXT,
        causationid TEXT,
        traceparent TEXT,
        dataschema TEXT NOT NULL,
        signature TEXT,
        signer TEXT,
        extensions TEXT,
        classification TEXT NOT NULL,
        data TEXT,
        data_digest TEXT NOT NULL,
        archived_at TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL,
        UNIQUE (stream, entry_id)
    )""",
    "CREATE INDEX IF NOT EXISTS audit_log_correlation ON audit_log (correlationid)",
    "CREATE INDEX IF NOT EXISTS audit_log_event ON audit_log (event_id)",
    "CREATE INDEX IF NOT EXISTS audit_log_type ON audit_log (type, time_utc)",
    "CREATE INDEX IF NOT EXISTS audit_log_time ON audit_log (time_utc)",
    "CREATE INDEX IF NOT EXISTS audit_log_entry ON audit_log (stream, entry_ms, entry_seq)",
    """CREATE TABLE IF NOT EXISTS audit_access (
        at TEXT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        filter TEXT NOT NULL,
        rows BIGINT NOT NULL
    )""",
]
INSERT = f"INSERT INTO audit_log ({', '.join(COLUMNS)}) VALUES ({', '.join('?' for _ in COLUMNS)})"
# What search shows: everything but the data and the chain.
METADATA = (
    "seq",
    "stream",
    "entry_id",
    "event_id",
    "type",
    "source",
    "time",
    "subject",
    "correlationid",
    "causationid",
    "signer",
    "classification",
    "data_digest",
    "archived_at",
)
