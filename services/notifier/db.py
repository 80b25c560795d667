"""The Notifier's tables (versioned migrations: append, never edit) and its shared queries."""

from __future__ import annotations

SCHEMA = [
    # One row per NIK ever linked: its current account (NULL once unlinked), the timestamp of
    # the fact that set it (newer facts win), and the date of death if Dukcapil reported one.
    """CREATE TABLE IF NOT EXISTS notifier_link (
        nik TEXT PRIMARY KEY,
        account_id TEXT,
        changed_at TEXT NOT NULL,
        deceased_on TEXT
    )""",
    # A death of a NIK with no link row yet: the link may be handled after it (another stream;
    # a first start reads dukcapil.citizen before identity.account). Carried into the link row
    # when one is written; forgotten after KEEP_UNMATCHED otherwise.
    """CREATE TABLE IF NOT EXISTS notifier_death (
        nik TEXT PRIMARY KEY,
        died_on TEXT NOT NULL,
        remembered_on TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS notifier_death_remembered ON notifier_death (remembered_on)",
    """CREATE TABLE IF NOT EXISTS notifier_contact (
        account_id TEXT PRIMARY KEY,
        email TEXT NOT NULL,
        updated_at TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS notifier_inbox (
        account_id TEXT NOT NULL,
        event_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        title TEXT NOT NULL,
        body TEXT NOT NULL,
        occurred_at TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (account_id, event_id)
    )""",
    "CREATE INDEX IF NOT EXISTS notifier_inbox_newest ON notifier_inbox (account_id, created_at)",
    # status: pending -> sent, or pending -> no-address (the contact was removed before sending)
    """CREATE TABLE IF NOT EXISTS notifier_outbox (
        event_id TEXT NOT NULL,
        account_id TEXT NOT NULL,
        message_id TEXT NOT NULL,
        status TEXT NOT NULL,
        attempts BIGINT NOT NULL,
        last_error TEXT,
        created_at TEXT NOT NULL,
        sent_at TEXT,
        PRIMARY KEY (event_id, account_id)
    )""",
    "CREATE INDEX IF NOT EXISTS notifier_outbox_status ON notifier_outbox (status, created_at)",
    "CREATE TABLE IF NOT EXISTS notifier_counter (name TEXT PRIMARY KEY, n BIGINT NOT NULL)",
]

PENDING = """
    SELECT o.event_id, o.account_id, o.message_id, i.title, i.body, c.email
    FROM notifier_outbox o
    JOIN notifier_inbox i ON i.account_id = o.account_id AND i.event_id = o.event_id
    LEFT JOIN notifier_contact c ON c.account_id = o.account_id
    WHERE o.status = 'pending' AND o.event_id = ?
    ORDER BY o.account_id
"""
DROP_UNSENT = "DELETE FROM notifier_outbox WHERE account_id = ? AND status = 'pending'"
