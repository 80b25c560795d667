"""The side effect of the chaos consumers: one row per handled event, in the service's store.

The row is written through the transactional inbox (``Store.once``): the row and the event id
commit together, so a redelivery after a SIGKILL between commit and ack finds the id and adds
nothing. The table has no unique constraint of its own on purpose — a second row for one event
would be recorded, and the checker would count it as a duplicate effect.

Rows are numbered in commit order (SQLite has one writer at a time; BEGIN IMMEDIATE makes
replicas queue), which is the order in which the effects became visible: per-subject order
inversions are judged on it.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from bus.store import Tx

__all__ = ["TABLES", "Effect", "read", "record"]

TABLES = [
    """CREATE TABLE IF NOT EXISTS chaos_effect (
        n INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id TEXT NOT NULL,
        subject TEXT,
        consumer TEXT NOT NULL,
        entry_id TEXT NOT NULL
    )""",
]


@dataclass(frozen=True, slots=True)
class Effect:
    """One committed effect; ``order`` is its position in commit order."""

    event_id: str
    subject: str | None
    consumer: str
    order: int


def record(tx: Tx, *, event_id: str, subject: str | None, consumer: str, entry_id: str) -> None:
    tx.execute(
        "INSERT INTO chaos_effect (event_id, subject, consumer, entry_id) VALUES (?, ?, ?, ?)",
        (event_id, subject, consumer, entry_id),
    )


def read(path: str | Path) -> list[Effect]:
    """Every effect in the store at ``path``, in commit order (none if nothing ran yet)."""
    if not Path(path).exists():
        return []
    with closing(sqlite3.connect(path, timeout=30.0)) as conn:
        try:
            rows = conn.execute(
                "SELECT event_id, subject, consumer, n FROM chaos_effect ORDER BY n"
            ).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []
            raise
    return [Effect(event_id, subject, consumer, n) for event_id, subject, consumer, n in rows]
