"""Dinkes' tables and the work of a birth in one transaction (plain code of a ``Tx``).

Only the child's pseudonym (``child_ref``) is kept: never the NIK, the KK, the birth date as a
field, the kelurahan or anything of the birth record.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from bus import Tx
from schemas.dinkes import ScheduledDose, Vaccine

TABLES = [
    """CREATE TABLE IF NOT EXISTS dinkes_schedule (
        child_ref TEXT PRIMARY KEY,
        puskesmas TEXT NOT NULL,
        scheduled_on TEXT NOT NULL,
        cause TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS dinkes_schedule_cause ON dinkes_schedule (cause)",
    """CREATE TABLE IF NOT EXISTS dinkes_dose (
        child_ref TEXT NOT NULL,
        position BIGINT NOT NULL,
        vaccine TEXT NOT NULL,
        dose BIGINT NOT NULL,
        due_on TEXT NOT NULL,
        PRIMARY KEY (child_ref, position)
    )""",
]


@dataclass(frozen=True, slots=True)
class Schedule:
    """A child's routine immunisation schedule at a puskesmas."""

    child_ref: str
    puskesmas: str
    scheduled_on: date
    doses: tuple[ScheduledDose, ...]  # in order of due date


def open_schedule(tx: Tx, schedule: Schedule, cause: str) -> bool:
    """Store the schedule unless the child has one (e.g. a birth registered twice)."""
    child_ref = schedule.child_ref
    # Skips a conflict instead of failing on it: PostgreSQL's unique violation message quotes
    # the key (the child's pseudonym), and error messages end up in dead letters.
    if not tx.execute(
        "INSERT INTO dinkes_schedule (child_ref, puskesmas, scheduled_on, cause) "
        "VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
        (child_ref, schedule.puskesmas, schedule.scheduled_on.isoformat(), cause),
    ):
        return False
    tx.executemany(
        "INSERT INTO dinkes_dose (child_ref, position, vaccine, dose, due_on) "
        "VALUES (?, ?, ?, ?, ?)",
        [
            (child_ref, n, d.vaccine.value, d.dose, d.due_on.isoformat())
            for n, d in enumerate(schedule.doses)
        ],
    )
    return True


def schedule_of(tx: Tx, child_ref: str) -> Schedule | None:
    return _find(tx, "SELECT * FROM dinkes_schedule WHERE child_ref = ?", child_ref)


def opened_by(tx: Tx, cause: str) -> Schedule | None:
    """The schedule an event opened: what it must publish, on every delivery."""
    return _find(tx, "SELECT * FROM dinkes_schedule WHERE cause = ?", cause)


def _find(tx: Tx, sql: str, key: str) -> Schedule | None:
    row = tx.one(sql, (key,))
    if row is None:
        return None
    doses = tx.all(
        "SELECT vaccine, dose, due_on FROM dinkes_dose WHERE child_ref = ? ORDER BY position",
        (row["child_ref"],),
    )
    return Schedule(
        child_ref=row["child_ref"],
        puskesmas=row["puskesmas"],
        scheduled_on=date.fromisoformat(row["scheduled_on"]),
        doses=tuple(
            ScheduledDose(
                vaccine=Vaccine(d["vaccine"]),
                dose=int(d["dose"]),
                due_on=date.fromisoformat(d["due_on"]),
            )
            for d in doses
        ),
    )
