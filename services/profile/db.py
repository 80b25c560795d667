"""The profile's tables and how each event changes them (plain functions of a transaction).

Events of different streams arrive in any order, so no write depends on what arrived before:

* a value that can be superseded carries a *version key* and is only overwritten by a larger
  one. Addresses and family cards are versioned by the date of the fact (a later ``moved_on``
  wins, not the later-arriving event), corrections of the same fact by the time the source
  system recorded it (the envelope's ``time``), then by event id, so ties resolve the same way
  everywhere;
* an application, assessment or grant is one row merged from its events: each event type
  fills its own columns, and the status is derived when the row is read;
* payments are kept by their own key and matched to their assessment when read, so a payment
  may arrive before the assessment it settles;
* account links are kept as facts and replayed in time order when read (see ``links``).

Keys are ISO dates and UTC times of fixed width, so they compare as text in SQLite and
PostgreSQL alike.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime

from bus import Tx, format_time
from schemas.bapenda import PaymentReceived, TaxAssessed
from schemas.dinsos import AssistanceSuspended
from schemas.dpmptsp import PermitRejected
from schemas.dukcapil import CitizenDied, CitizenMoved, FamilyCardIssued
from schemas.identity import AccountLinked, AccountUnlinked
from schemas.regions import kecamatan_of
from services._common import utc_text
from services.profile.projections import Birth, Grant, IssuedPermit, PermitApplication, Registration
from services.profile.ratelimit import TABLE as RATE_TABLE

TABLES = [
    # One row per NIK the civil registry told us about. No name, no birth date: data
    # minimisation, see the package docstring.
    """CREATE TABLE IF NOT EXISTS profile_person (
        nik TEXT PRIMARY KEY,
        died_on TEXT, died_key TEXT,
        street TEXT, rt TEXT, rw TEXT, kelurahan TEXT, kecamatan TEXT,
        address_since TEXT, address_source TEXT, address_key TEXT,
        kk TEXT, kk_since TEXT, kk_key TEXT
    )""",
    # The latest card of each family card number.
    """CREATE TABLE IF NOT EXISTS profile_family (
        kk TEXT PRIMARY KEY, head TEXT NOT NULL, members TEXT NOT NULL, reason TEXT NOT NULL,
        issued_on TEXT NOT NULL, card_key TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS profile_permit (
        application_no TEXT PRIMARY KEY, nik TEXT NOT NULL, kind TEXT NOT NULL,
        applied_on TEXT, applied_key TEXT,
        permit_no TEXT, issued_on TEXT, valid_until TEXT, issued_key TEXT,
        rejected_on TEXT, rejection_reason TEXT, rejected_key TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS profile_permit_by_nik ON profile_permit (nik)",
    """CREATE TABLE IF NOT EXISTS profile_taxpayer (
        npwpd TEXT PRIMARY KEY, nik TEXT NOT NULL, tax_kinds TEXT NOT NULL,
        registered_on TEXT NOT NULL, version_key TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS profile_taxpayer_by_nik ON profile_taxpayer (nik)",
    """CREATE TABLE IF NOT EXISTS profile_assessment (
        assessment_no TEXT PRIMARY KEY, nik TEXT NOT NULL, tax_kind TEXT NOT NULL, nop TEXT,
        npwpd TEXT, period TEXT NOT NULL, amount BIGINT NOT NULL, due_on TEXT NOT NULL,
        assessed_on TEXT NOT NULL, version_key TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS profile_assessment_by_nik ON profile_assessment (nik)",
    """CREATE TABLE IF NOT EXISTS profile_payment (
        assessment_no TEXT NOT NULL, payment_ref TEXT NOT NULL, nik TEXT NOT NULL,
        tax_kind TEXT NOT NULL, amount BIGINT NOT NULL, paid_at TEXT NOT NULL,
        PRIMARY KEY (assessment_no, payment_ref)
    )""",
    "CREATE INDEX IF NOT EXISTS profile_payment_by_nik ON profile_payment (nik)",
    # No amount: what a household receives stays with dinsos.
    """CREATE TABLE IF NOT EXISTS profile_grant (
        grant_no TEXT PRIMARY KEY, nik TEXT NOT NULL, programme TEXT NOT NULL,
        starts_on TEXT, ends_on TEXT, granted_on TEXT, granted_key TEXT,
        suspended_on TEXT, effective_from TEXT, suspension_reason TEXT, suspended_key TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS profile_grant_by_nik ON profile_grant (nik)",
    """CREATE TABLE IF NOT EXISTS profile_account_fact (
        event_id TEXT PRIMARY KEY, kind TEXT NOT NULL, account_id TEXT NOT NULL,
        nik TEXT NOT NULL, at TEXT NOT NULL, verification TEXT, reason TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS profile_account_fact_by_nik ON profile_account_fact (nik)",
    "CREATE INDEX IF NOT EXISTS profile_account_fact_by_account "
    "ON profile_account_fact (account_id)",
    # Who looked up whom (UU PDP: record of processing). The subject is a pseudonym.
    """CREATE TABLE IF NOT EXISTS profile_access (
        id TEXT PRIMARY KEY, at TEXT NOT NULL, caller TEXT NOT NULL, lookup TEXT NOT NULL,
        subject TEXT, outcome BIGINT NOT NULL, sections TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS profile_access_by_at ON profile_access (at)",
]

# Versioned migrations (bus.store): version n is the n-th item. Append; never edit or reorder.
MIGRATIONS: list[list[str]] = [
    [*TABLES, RATE_TABLE],  # 1: the tables as they were when versioning began
]

# Rank of the sources of an address or family card number given on the same day: a family
# card is the most complete statement of an address, a birth only gives the kelurahan.
_BIRTH, _MOVE, _CARD = 0, 1, 2


@dataclass(frozen=True, slots=True)
class Stamp:
    """What orders two facts of the same kind: when the source recorded it, the event id."""

    recorded: str  # UTC, fixed width
    event_id: str

    @classmethod
    def of(cls, recorded: datetime, event_id: str) -> Stamp:
        return cls(format_time(recorded), event_id)

    @property
    def key(self) -> str:
        return f"{self.recorded}|{self.event_id}"

    def dated(self, day: date, rank: int) -> str:
        """A key ordered by the fact's own date first."""
        return f"{day.isoformat()}|{rank}|{self.key}"


# -- civil registry ---------------------------------------------------------------------------


def born(tx: Tx, event: Birth, stamp: Stamp) -> None:
    # The birth date and the child's pseudonym are not kept: the profile needs to know that
    # the child is registered and in which family, not when it was born.
    key = stamp.dated(event.registered_on, _BIRTH)
    _ensure_person(tx, event.nik)
    _set_address(
        tx,
        event.nik,
        key,
        event.registered_on,
        "birth",
        kelurahan=event.kelurahan,
        kecamatan=kecamatan_of(event.kelurahan),
    )
    _set_kk(tx, event.nik, event.kk, event.registered_on, key)


def died(tx: Tx, event: CitizenDied, stamp: Stamp) -> None:
    _ensure_person(tx, event.nik)
    tx.execute(
        "UPDATE profile_person SET died_on = ?, died_key = ? "
        "WHERE nik = ? AND (died_key IS NULL OR died_key < ?)",
        (event.date_of_death.isoformat(), stamp.key, event.nik, stamp.key),
    )


def moved(tx: Tx, event: CitizenMoved, stamp: Stamp) -> None:
    _ensure_person(tx, event.nik)
    _set_address(
        tx,
        event.nik,
        stamp.dated(event.moved_on, _MOVE),
        event.moved_on,
        "move",
        street=event.address,
        kecamatan=event.kecamatan,
    )


def family_card(tx: Tx, event: FamilyCardIssued, stamp: Stamp) -> None:
    key = stamp.dated(event.issued_on, _CARD)
    where = event.address
    for nik in event.members:
        _ensure_person(tx, nik)
        _set_address(
            tx,
            nik,
            key,
            event.issued_on,
            "family-card",
            street=where.street,
            rt=where.rt,
            rw=where.rw,
            kelurahan=where.kelurahan,
            kecamatan=where.kecamatan,
        )
        _set_kk(tx, nik, event.kk, event.issued_on, key)
    values = (
        event.kk,
        event.head,
        json.dumps(list(event.members)),
        event.reason.value,
        event.issued_on.isoformat(),
        key,
    )
    tx.execute(
        "INSERT INTO profile_family (kk, head, members, reason, issued_on, card_key) "
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (kk) DO UPDATE SET head = excluded.head, "
        "members = excluded.members, reason = excluded.reason, issued_on = excluded.issued_on, "
        "card_key = excluded.card_key WHERE profile_family.card_key < excluded.card_key",
        values,
    )


def _ensure_person(tx: Tx, nik: str) -> None:
    tx.execute("INSERT INTO profile_person (nik) VALUES (?) ON CONFLICT (nik) DO NOTHING", (nik,))


def _set_address(
    tx: Tx,
    nik: str,
    key: str,
    since: date,
    source: str,
    *,
    street: str | None = None,
    rt: str | None = None,
    rw: str | None = None,
    kelurahan: str | None = None,
    kecamatan: str,
) -> None:
    tx.execute(
        "UPDATE profile_person SET street = ?, rt = ?, rw = ?, kelurahan = ?, kecamatan = ?, "
        "address_since = ?, address_source = ?, address_key = ? "
        "WHERE nik = ? AND (address_key IS NULL OR address_key < ?)",
        (street, rt, rw, kelurahan, kecamatan, since.isoformat(), source, key, nik, key),
    )


def _set_kk(tx: Tx, nik: str, kk: str, since: date, key: str) -> None:
    tx.execute(
        "UPDATE profile_person SET kk = ?, kk_since = ?, kk_key = ? "
        "WHERE nik = ? AND (kk_key IS NULL OR kk_key < ?)",
        (kk, since.isoformat(), key, nik, key),
    )


# -- permits ----------------------------------------------------------------------------------

_PERMIT_INSERT = "INSERT INTO profile_permit (application_no, nik, kind, {cols}) VALUES ({marks}) "
_PERMIT_UPDATE = (
    "ON CONFLICT (application_no) DO UPDATE SET {sets} "
    "WHERE profile_permit.{key} IS NULL OR profile_permit.{key} < excluded.{key}"
)


def permit_applied(tx: Tx, event: PermitApplication, stamp: Stamp) -> None:
    columns = {"applied_on": event.applied_on.isoformat(), "applied_key": stamp.key}
    _merge_permit(tx, event.application_no, event.applicant.value, event.kind.value, columns)


def permit_issued(tx: Tx, event: IssuedPermit, stamp: Stamp) -> None:
    until = event.valid_until.isoformat() if event.valid_until else None
    _merge_permit(
        tx,
        event.application_no,
        event.applicant.value,
        event.kind.value,
        {
            "permit_no": event.permit_no,
            "issued_on": event.issued_on.isoformat(),
            "valid_until": until,
            "issued_key": stamp.key,
        },
    )


def permit_rejected(tx: Tx, event: PermitRejected, stamp: Stamp) -> None:
    _merge_permit(
        tx,
        event.application_no,
        event.applicant.value,
        event.kind.value,
        {
            "rejected_on": event.rejected_on.isoformat(),
            "rejection_reason": event.reason,
            "rejected_key": stamp.key,
        },
    )


def _merge_permit(
    tx: Tx, application_no: str, nik: str, kind: str, columns: Mapping[str, str | None]
) -> None:
    """Insert the application or fill this event type's columns, if this event is newer."""
    names = list(columns)
    key = names[-1]  # each event type's version key is its last column
    sql = _PERMIT_INSERT.format(
        cols=", ".join(names), marks=", ".join("?" * (3 + len(names)))
    ) + _PERMIT_UPDATE.format(sets=", ".join(f"{n} = excluded.{n}" for n in names), key=key)
    tx.execute(sql, (application_no, nik, kind, *columns.values()))


# -- taxes ------------------------------------------------------------------------------------


def taxpayer_registered(tx: Tx, event: Registration, stamp: Stamp) -> None:
    kinds = json.dumps([kind.value for kind in event.tax_kinds])
    tx.execute(
        "INSERT INTO profile_taxpayer (npwpd, nik, tax_kinds, registered_on, version_key) "
        "VALUES (?, ?, ?, ?, ?) ON CONFLICT (npwpd) DO UPDATE SET nik = excluded.nik, "
        "tax_kinds = excluded.tax_kinds, registered_on = excluded.registered_on, "
        "version_key = excluded.version_key "
        "WHERE profile_taxpayer.version_key < excluded.version_key",
        (event.npwpd, event.taxpayer.value, kinds, event.registered_on.isoformat(), stamp.key),
    )


def tax_assessed(tx: Tx, event: TaxAssessed, stamp: Stamp) -> None:
    tx.execute(
        "INSERT INTO profile_assessment (assessment_no, nik, tax_kind, nop, npwpd, period, "
        "amount, due_on, assessed_on, version_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (assessment_no) DO UPDATE SET nik = excluded.nik, "
        "tax_kind = excluded.tax_kind, nop = excluded.nop, npwpd = excluded.npwpd, "
        "period = excluded.period, amount = excluded.amount, due_on = excluded.due_on, "
        "assessed_on = excluded.assessed_on, version_key = excluded.version_key "
        "WHERE profile_assessment.version_key < excluded.version_key",
        (
            event.assessment_no,
            event.taxpayer.value,
            event.tax_kind.value,
            event.nop,
            event.npwpd,
            event.period,
            event.amount,
            event.due_on.isoformat(),
            event.assessed_on.isoformat(),
            stamp.key,
        ),
    )


def payment_received(tx: Tx, event: PaymentReceived, stamp: Stamp) -> None:
    # A payment is a fact of its own (its reference at the bank): the same payment told twice
    # under different event ids still counts once.
    tx.execute(
        "INSERT INTO profile_payment (assessment_no, payment_ref, nik, tax_kind, amount, "
        "paid_at) VALUES (?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (assessment_no, payment_ref) DO NOTHING",
        (
            event.assessment_no,
            event.payment_ref,
            event.taxpayer.value,
            event.tax_kind.value,
            event.amount,
            format_time(event.paid_at),
        ),
    )


# -- social assistance ------------------------------------------------------------------------


def assistance_granted(tx: Tx, event: Grant, stamp: Stamp) -> None:
    ends = event.ends_on.isoformat() if event.ends_on else None
    tx.execute(
        "INSERT INTO profile_grant (grant_no, nik, programme, starts_on, ends_on, granted_on, "
        "granted_key) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (grant_no) DO UPDATE SET "
        "starts_on = excluded.starts_on, ends_on = excluded.ends_on, "
        "granted_on = excluded.granted_on, granted_key = excluded.granted_key "
        "WHERE profile_grant.granted_key IS NULL "
        "OR profile_grant.granted_key < excluded.granted_key",
        (
            event.grant_no,
            event.recipient,
            event.programme.value,
            event.starts_on.isoformat(),
            ends,
            event.granted_on.isoformat(),
            stamp.key,
        ),
    )


def assistance_suspended(tx: Tx, event: AssistanceSuspended, stamp: Stamp) -> None:
    tx.execute(
        "INSERT INTO profile_grant (grant_no, nik, programme, suspended_on, effective_from, "
        "suspension_reason, suspended_key) VALUES (?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (grant_no) DO UPDATE SET suspended_on = excluded.suspended_on, "
        "effective_from = excluded.effective_from, "
        "suspension_reason = excluded.suspension_reason, suspended_key = excluded.suspended_key "
        "WHERE profile_grant.suspended_key IS NULL "
        "OR profile_grant.suspended_key < excluded.suspended_key",
        (
            event.grant_no,
            event.recipient,
            event.programme.value,
            event.suspended_on.isoformat(),
            event.effective_from.isoformat(),
            event.reason.value,
            stamp.key,
        ),
    )


# -- accounts ---------------------------------------------------------------------------------


def account_linked(tx: Tx, event: AccountLinked, stamp: Stamp) -> None:
    _account_fact(
        tx,
        stamp.event_id,
        "linked",
        account_id=str(event.account_id),
        nik=event.nik,
        at=event.linked_at,
        verification=event.verification.value,
    )


def account_unlinked(tx: Tx, event: AccountUnlinked, stamp: Stamp) -> None:
    _account_fact(
        tx,
        stamp.event_id,
        "unlinked",
        account_id=str(event.account_id),
        nik=event.nik,
        at=event.unlinked_at,
        reason=event.reason.value,
    )


def _account_fact(
    tx: Tx,
    event_id: str,
    kind: str,
    *,
    account_id: str,
    nik: str,
    at: datetime,
    verification: str | None = None,
    reason: str | None = None,
) -> None:
    tx.execute(
        "INSERT INTO profile_account_fact (event_id, kind, account_id, nik, at, verification, "
        "reason) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING",
        (event_id, kind, account_id, nik, utc_text(at), verification, reason),
    )
