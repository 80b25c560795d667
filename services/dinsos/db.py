"""Dinsos' tables and the work each event does in one transaction (plain code of a ``Tx``).

Every function here runs inside ``Store.run`` or ``Store.once``: it reads and writes, never
awaits and never publishes. What must be published is left in the rows (``suspended_by``), so
the caller can re-read it after the commit, on the first delivery and on a retry alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from bus import Tx
from schemas.dinsos import Programme, SuspensionReason
from schemas.regions import kecamatan_of

ACTIVE, SUSPENDED = "active", "suspended"
REVERIFICATION, AREA_RECHECK = "re-verification", "area-recheck"
OPEN, CLOSED = "open", "closed"

TABLES = [
    # One row per grant. The recipient's NIK and the KK are what the programme is keyed by;
    # no name, no address, no welfare assessment (that stays in DTKS/SIKS-NG).
    """CREATE TABLE IF NOT EXISTS dinsos_grant (
        grant_no TEXT PRIMARY KEY,
        programme TEXT NOT NULL,
        recipient TEXT NOT NULL,
        kk TEXT NOT NULL,
        kelurahan TEXT NOT NULL,
        amount BIGINT NOT NULL,
        frequency TEXT NOT NULL,
        starts_on TEXT NOT NULL,
        ends_on TEXT,
        granted_on TEXT NOT NULL,
        status TEXT NOT NULL,
        reason TEXT,
        suspended_on TEXT,
        effective_from TEXT,
        suspended_by TEXT,
        last_moved_on TEXT,
        UNIQUE (programme, recipient, starts_on)
    )""",
    "CREATE INDEX IF NOT EXISTS dinsos_grant_recipient ON dinsos_grant (recipient)",
    "CREATE INDEX IF NOT EXISTS dinsos_grant_kk ON dinsos_grant (kk)",
    "CREATE INDEX IF NOT EXISTS dinsos_grant_suspended_by ON dinsos_grant (suspended_by)",
    """CREATE TABLE IF NOT EXISTS dinsos_grant_seq (
        prefix TEXT PRIMARY KEY,
        last BIGINT NOT NULL
    )""",
    # Households only of KKs that have a grant: dinsos is not a copy of the family register.
    """CREATE TABLE IF NOT EXISTS dinsos_household (
        kk TEXT PRIMARY KEY,
        card_issued_on TEXT
    )""",
    # The members as the registry lists them (the last card, plus births since): a member who
    # died stays listed until a card drops them, and the household shown leaves out the dead.
    """CREATE TABLE IF NOT EXISTS dinsos_household_member (
        kk TEXT NOT NULL,
        nik TEXT NOT NULL,
        PRIMARY KEY (kk, nik)
    )""",
    "CREATE INDEX IF NOT EXISTS dinsos_member_nik ON dinsos_household_member (nik)",
    # Deaths: the NIK, the date and the event that reported it first (the member-died
    # re-checks are that event's, whichever of the death and a card listing the person came
    # first). Deaths of people in no kept household and without a grant are forgotten after
    # ``keep_unmatched`` (they are kept only for a card or birth that arrives late).
    """CREATE TABLE IF NOT EXISTS dinsos_death (
        nik TEXT PRIMARY KEY,
        died_on TEXT NOT NULL,
        cause TEXT NOT NULL,
        remembered_on TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS dinsos_death_remembered ON dinsos_death (remembered_on)",
    """CREATE TABLE IF NOT EXISTS dinsos_recheck (
        grant_no TEXT NOT NULL,
        kind TEXT NOT NULL,
        reason TEXT NOT NULL,
        kecamatan TEXT,
        opened_on TEXT NOT NULL,
        cause TEXT NOT NULL,
        status TEXT NOT NULL,
        closed_on TEXT,
        PRIMARY KEY (grant_no, kind, cause)
    )""",
]

_TERMS = (
    "programme",
    "recipient",
    "kk",
    "kelurahan",
    "amount",
    "frequency",
    "starts_on",
    "ends_on",
    "granted_on",
)


@dataclass(frozen=True, slots=True)
class Cause:
    """The event an effect comes from (recorded with the effect) and the day it was handled."""

    event_id: str
    today: date


class GrantConflict(ValueError):
    """A grant with this number, or for this recipient, programme and start, has other terms."""


@dataclass(frozen=True, slots=True)
class Grant:
    """A grant as dinsos holds it."""

    grant_no: str
    programme: Programme
    recipient: str
    kk: str
    kelurahan: str
    amount: int
    frequency: str
    starts_on: date
    ends_on: date | None
    granted_on: date
    status: str  # "active" or "suspended"
    reason: SuspensionReason | None  # why it was suspended
    suspended_on: date | None
    effective_from: date | None

    def __repr__(self) -> str:  # never the NIK or the KK (reprs end up in logs and tracebacks)
        return f"Grant({self.grant_no}, {self.programme}, {self.status})"

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Grant:
        return cls(
            grant_no=row["grant_no"],
            programme=Programme(row["programme"]),
            recipient=row["recipient"],
            kk=row["kk"],
            kelurahan=row["kelurahan"],
            amount=int(row["amount"]),
            frequency=row["frequency"],
            starts_on=date.fromisoformat(row["starts_on"]),
            ends_on=_date(row["ends_on"]),
            granted_on=date.fromisoformat(row["granted_on"]),
            status=row["status"],
            reason=SuspensionReason(row["reason"]) if row["reason"] else None,
            suspended_on=_date(row["suspended_on"]),
            effective_from=_date(row["effective_from"]),
        )


@dataclass(frozen=True, slots=True)
class Recheck:
    """A grant marked for a caseworker: re-verification, or an area re-check after a move."""

    grant_no: str
    kind: str  # "re-verification" or "area-recheck"
    reason: str  # member-born, member-died, household-changed, kk-changed, moved,
    # recipient-employed, member-employed
    kecamatan: str | None  # the new kecamatan, for an area re-check
    opened_on: date
    status: str  # "open" or "closed"

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Recheck:
        return cls(
            row["grant_no"],
            row["kind"],
            row["reason"],
            row["kecamatan"],
            date.fromisoformat(row["opened_on"]),
            row["status"],
        )


# -- grants ------------------------------------------------------------------------------------


def record_grant(tx: Tx, terms: Mapping[str, Any], grant_no: str | None) -> Grant:
    """Store a grant, or find the same one stored before; its household gets the recipient."""
    existing = None
    if grant_no is not None:
        existing = tx.one("SELECT * FROM dinsos_grant WHERE grant_no = ?", (grant_no,))
    if existing is None:
        existing = tx.one(
            "SELECT * FROM dinsos_grant WHERE programme = ? AND recipient = ? AND starts_on = ?",
            (terms["programme"], terms["recipient"], terms["starts_on"]),
        )
    if existing is not None:
        same_no = grant_no is None or existing["grant_no"] == grant_no
        if not same_no or any(existing[name] != terms[name] for name in _TERMS):
            raise GrantConflict(
                f"grant {existing['grant_no']} exists with other terms (or for another "
                "recipient, programme or start): record a change as a new grant"
            )
        return Grant.from_row(existing)
    number = grant_no or _next_grant_no(tx, terms["programme"], terms["granted_on"][:4])
    columns = ("grant_no", *_TERMS, "status")
    tx.execute(
        f"INSERT INTO dinsos_grant ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
        (number, *(terms[name] for name in _TERMS), ACTIVE),
    )
    _ensure_household(tx, terms["kk"])
    tx.execute(
        "INSERT INTO dinsos_household_member (kk, nik) VALUES (?, ?) ON CONFLICT DO NOTHING",
        (terms["kk"], terms["recipient"]),
    )
    row = tx.one("SELECT * FROM dinsos_grant WHERE grant_no = ?", (number,))
    assert row is not None
    return Grant.from_row(row)


def _next_grant_no(tx: Tx, programme: str, year: str) -> str:
    """``DINSOS/<PROGRAMME>/<year of decision>/<serial>``: a serial, not a hash of the NIK (an
    unkeyed hash of a NIK can be reversed by trying every NIK, and a grant number is printed)."""
    prefix = f"DINSOS/{programme.upper()}/{year}"
    if tx.execute("UPDATE dinsos_grant_seq SET last = last + 1 WHERE prefix = ?", (prefix,)) == 0:
        tx.execute("INSERT INTO dinsos_grant_seq (prefix, last) VALUES (?, 1)", (prefix,))
    serial = int(tx.value("SELECT last FROM dinsos_grant_seq WHERE prefix = ?", (prefix,)))
    return f"{prefix}/{serial:06d}"


def grants_of(tx: Tx, recipient: str) -> list[Grant]:
    rows = tx.all("SELECT * FROM dinsos_grant WHERE recipient = ? ORDER BY grant_no", (recipient,))
    return [Grant.from_row(row) for row in rows]


def suspended_by(tx: Tx, cause: str) -> list[Grant]:
    """The grants an event suspended: what it must publish, on every delivery."""
    rows = tx.all("SELECT * FROM dinsos_grant WHERE suspended_by = ? ORDER BY grant_no", (cause,))
    return [Grant.from_row(row) for row in rows]


# -- dukcapil events ---------------------------------------------------------------------------


def apply_death(tx: Tx, nik: str, died_on: date, cause: Cause) -> tuple[int, int]:
    """Suspend the person's active grants, remember the death, and mark the grants of the
    households listing the person for re-verification. Returns (grants suspended, re-checks
    opened)."""
    suspended = 0
    for row in tx.all(
        "SELECT grant_no, starts_on, ends_on FROM dinsos_grant WHERE recipient = ? AND status = ?",
        (nik, ACTIVE),
    ):
        effective = effective_from_death(died_on, date.fromisoformat(row["starts_on"]))
        ends_on = _date(row["ends_on"])
        if ends_on is not None and ends_on < effective:
            continue  # it ended before the death took effect: nothing left to stop
        suspended += tx.execute(
            "UPDATE dinsos_grant SET status = ?, reason = ?, suspended_on = ?, "
            "effective_from = ?, suspended_by = ? WHERE grant_no = ?",
            (
                SUSPENDED,
                SuspensionReason.DEATH.value,
                cause.today.isoformat(),
                effective.isoformat(),
                cause.event_id,
                row["grant_no"],
            ),
        )
    tx.execute(
        "INSERT INTO dinsos_death (nik, died_on, cause, remembered_on) VALUES (?, ?, ?, ?) "
        "ON CONFLICT DO NOTHING",  # a second report (a correction): the first one stands
        (nik, died_on.isoformat(), cause.event_id, cause.today.isoformat()),
    )
    households = [
        r["kk"] for r in tx.all("SELECT kk FROM dinsos_household_member WHERE nik = ?", (nik,))
    ]
    rechecks = sum(_member_died(tx, kk, nik, cause.today) for kk in households)
    return suspended, rechecks


def forget_unmatched_deaths(tx: Tx, before: date) -> int:
    """Forget the deaths remembered before ``before`` of people listed in no kept household and
    holding no grant: kept only for a card or birth listing them that arrives late."""
    return tx.execute(
        "DELETE FROM dinsos_death WHERE remembered_on < ? "
        "AND NOT EXISTS (SELECT 1 FROM dinsos_household_member m WHERE m.nik = dinsos_death.nik) "
        "AND NOT EXISTS (SELECT 1 FROM dinsos_grant g WHERE g.recipient = dinsos_death.nik)",
        (before.isoformat(),),
    )


def effective_from_death(died_on: date, starts_on: date) -> date:
    """The first day nothing is paid: the day after the death (a late report thus shows what
    was paid too much), and never before the grant started."""
    return max(died_on + timedelta(days=1), starts_on)


def apply_birth(tx: Tx, kk: str, child: str, cause: Cause) -> int:
    """Add the child to a household dinsos keeps; its grants need re-verification."""
    if tx.one("SELECT 1 AS known FROM dinsos_household WHERE kk = ?", (kk,)) is None:
        return 0  # a family without assistance: dinsos keeps nothing of it
    tx.execute(
        "INSERT INTO dinsos_household_member (kk, nik) VALUES (?, ?) ON CONFLICT DO NOTHING",
        (kk, child),
    )
    opened = sum(
        _open(tx, grant_no, cause, kind=REVERIFICATION, reason="member-born")
        for grant_no in _active_grants_of_household(tx, kk)
    )
    return opened + _member_died(tx, kk, child, cause.today)  # an infant death reported first


def apply_family_card(
    tx: Tx, kk: str, members: tuple[str, ...], issued_on: date, cause: Cause
) -> int | None:
    """Take the card's members as the household's, if dinsos keeps it (a grant names the KK or
    a member receives assistance) and the card is not older than the last one applied.

    Grants decided before the card whose household it changes, and grants of members now on
    another card, are marked for re-verification; a member newly listed whose death dinsos
    already knows (the death overtook the card) re-verifies them as the death would have
    (``member-died``, of the death's event). None: the card was not for dinsos."""
    marks = ",".join("?" * len(members))
    recipients = {
        r["grant_no"]: r["kk"]
        for r in tx.all(
            f"SELECT grant_no, kk FROM dinsos_grant WHERE status = ? AND recipient IN ({marks})",
            (ACTIVE, *members),
        )
    }
    household = tx.one("SELECT card_issued_on FROM dinsos_household WHERE kk = ?", (kk,))
    if household is None and not recipients:
        return None
    last = None if household is None else household["card_issued_on"]
    if last is not None and issued_on < date.fromisoformat(last):
        return None  # an older card arriving late: the newer one stands
    _ensure_household(tx, kk)
    tx.execute(
        "UPDATE dinsos_household SET card_issued_on = ? WHERE kk = ?", (issued_on.isoformat(), kk)
    )
    before = {
        r["nik"] for r in tx.all("SELECT nik FROM dinsos_household_member WHERE kk = ?", (kk,))
    }
    tx.execute("DELETE FROM dinsos_household_member WHERE kk = ?", (kk,))
    tx.executemany(
        "INSERT INTO dinsos_household_member (kk, nik) VALUES (?, ?) ON CONFLICT DO NOTHING",
        [(kk, m) for m in members],
    )
    opened = 0
    if before != set(members):
        for row in tx.all(
            "SELECT grant_no FROM dinsos_grant WHERE kk = ? AND status = ? AND granted_on < ?",
            (kk, ACTIVE, issued_on.isoformat()),
        ):
            opened += _open(
                tx, row["grant_no"], cause, kind=REVERIFICATION, reason="household-changed"
            )
    for grant_no, grant_kk in recipients.items():
        if grant_kk != kk:
            opened += _open(tx, grant_no, cause, kind=REVERIFICATION, reason="kk-changed")
    for member in sorted(set(members) - before):
        opened += _member_died(tx, kk, member, cause.today)
    return opened


def apply_move(tx: Tx, nik: str, kecamatan: str, moved_on: date, cause: Cause) -> tuple[int, int]:
    """Area re-check of the person's active grants administered in another kecamatan; a move
    back into the grant's kecamatan closes an open one. A move older than one already seen
    changes nothing. Returns (re-checks opened, closed)."""
    opened = closed = 0
    for row in tx.all(
        "SELECT grant_no, kelurahan, last_moved_on FROM dinsos_grant "
        "WHERE recipient = ? AND status = ?",
        (nik, ACTIVE),
    ):
        grant_no, last = row["grant_no"], row["last_moved_on"]
        if last is not None and moved_on < date.fromisoformat(last):
            continue
        tx.execute(
            "UPDATE dinsos_grant SET last_moved_on = ? WHERE grant_no = ?",
            (moved_on.isoformat(), grant_no),
        )
        closed += tx.execute(
            "UPDATE dinsos_recheck SET status = ?, closed_on = ? "
            "WHERE grant_no = ? AND kind = ? AND status = ?",
            (CLOSED, cause.today.isoformat(), grant_no, AREA_RECHECK, OPEN),
        )
        if kecamatan_of(row["kelurahan"]) != kecamatan:
            opened += _open(
                tx, grant_no, cause, kind=AREA_RECHECK, reason="moved", kecamatan=kecamatan
            )
    return opened, closed


# -- disnaker events ---------------------------------------------------------------------------


def apply_placement(tx: Tx, nik: str, placed_on: date, cause: Cause) -> int:
    """Re-verify the means of the households dinsos keeps when one of their people found work:
    the person's own active grants (``recipient-employed``) and those of every household
    listing the person (``member-employed``), unless the grant ended before the first day of
    work. A grant with that re-verification still open is not marked again: a corrected
    placement is a new event of the same fact. Returns the re-checks opened."""
    opened = 0
    for row in tx.all(
        "SELECT grant_no, recipient FROM dinsos_grant WHERE status = ? "
        "AND (ends_on IS NULL OR ends_on >= ?) AND (recipient = ? OR kk IN "
        "(SELECT kk FROM dinsos_household_member WHERE nik = ?)) ORDER BY grant_no",
        (ACTIVE, placed_on.isoformat(), nik, nik),
    ):
        reason = "recipient-employed" if row["recipient"] == nik else "member-employed"
        already = tx.one(
            "SELECT 1 AS open FROM dinsos_recheck WHERE grant_no = ? AND kind = ? "
            "AND reason = ? AND status = ?",
            (row["grant_no"], REVERIFICATION, reason, OPEN),
        )
        if already is None:
            opened += _open(tx, row["grant_no"], cause, kind=REVERIFICATION, reason=reason)
    return opened


# -- reads -------------------------------------------------------------------------------------


def household(tx: Tx, kk: str) -> list[str]:
    """The living members: those listed, but for the ones dinsos knows died (whatever the
    card's date: a card issued after a death but before it was registered still lists them)."""
    rows = tx.all(
        "SELECT nik FROM dinsos_household_member m WHERE kk = ? "
        "AND NOT EXISTS (SELECT 1 FROM dinsos_death d WHERE d.nik = m.nik) ORDER BY nik",
        (kk,),
    )
    return [row["nik"] for row in rows]


def rechecks(tx: Tx, grant_no: str | None, status: str | None) -> list[Recheck]:
    where, params = [], []
    if grant_no is not None:
        where.append("grant_no = ?")
        params.append(grant_no)
    if status is not None:
        where.append("status = ?")
        params.append(status)
    sql = "SELECT * FROM dinsos_recheck"
    if where:
        sql += " WHERE " + " AND ".join(where)
    return [Recheck.from_row(r) for r in tx.all(sql + " ORDER BY opened_on, grant_no", params)]


# -- helpers -----------------------------------------------------------------------------------


def _ensure_household(tx: Tx, kk: str) -> None:
    tx.execute("INSERT INTO dinsos_household (kk) VALUES (?) ON CONFLICT DO NOTHING", (kk,))


def _member_died(tx: Tx, kk: str, nik: str, today: date) -> int:
    """If ``nik``, listed in household ``kk``, is known dead: re-verify the household's other
    active grants, as of the event that reported the death (so the death and a late card
    listing the person open the same re-checks, whichever is handled first)."""
    death = tx.value("SELECT cause FROM dinsos_death WHERE nik = ?", (nik,))
    if death is None:
        return 0
    reported = Cause(str(death), today)
    return sum(
        _open(tx, grant_no, reported, kind=REVERIFICATION, reason="member-died")
        for grant_no in _active_grants_of_household(tx, kk, except_recipient=nik)
    )


def _active_grants_of_household(tx: Tx, kk: str, except_recipient: str = "") -> list[str]:
    rows = tx.all(
        "SELECT grant_no FROM dinsos_grant WHERE kk = ? AND status = ? AND recipient <> ?",
        (kk, ACTIVE, except_recipient),
    )
    return [row["grant_no"] for row in rows]


def _open(
    tx: Tx, grant_no: str, cause: Cause, *, kind: str, reason: str, kecamatan: str | None = None
) -> int:
    return tx.execute(
        "INSERT INTO dinsos_recheck (grant_no, kind, reason, kecamatan, opened_on, cause, status) "
        "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        (grant_no, kind, reason, kecamatan, cause.today.isoformat(), cause.event_id, OPEN),
    )


def _date(value: str | None) -> date | None:
    return None if value is None else date.fromisoformat(value)
