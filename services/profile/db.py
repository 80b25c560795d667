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
    _upsert_newer(
        tx,
        "profile_family",
        {"kk": event.kk},
        {
            "head": event.head,
            "members": json.dumps(list(event.members)),
            "reason": event.reason.value,
            "issued_on": event.issued_on.isoformat(),
            "card_key": key,
        },
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
    fixed = {"application_no": application_no, "nik": nik, "kind": kind}
    _upsert_newer(tx, "profile_permit", fixed, columns)


# -- taxes ------------------------------------------------------------------------------------


def taxpayer_registered(tx: Tx, event: Registration, stamp: Stamp) -> None:
    kinds = json.dumps([kind.value for kind in event.tax_kinds])
    _upsert_newer(
        tx,
        "profile_taxpayer",
        {"npwpd": event.npwpd},
        {
            "nik": event.taxpayer.value,
            "tax_kinds": kinds,
            "registered_on": event.registered_on.isoformat(),
            "version_key": stamp.key,
        },
    )


def tax_assessed(tx: Tx, event: TaxAssessed, stamp: Stamp) -> None:
    _upsert_newer(
        tx,
        "profile_assessment",
        {"assessment_no": event.assessment_no},
        {
            "nik": event.taxpayer.value,
            "tax_kind": event.tax_kind.value,
            "nop": event.nop,
            "npwpd": event.npwpd,
            "period": event.period,
            "amount": event.amount,
            "due_on": event.due_on.isoformat(),
            "assessed_on": event.assessed_on.isoformat(),
            "version_key": stamp.key,
        },
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
    _upsert_newer(
        tx,
        "profile_grant",
        {"grant_no": event.grant_no, "nik": event.recipient, "programme": event.programme.value},
        {
            "starts_on": event.starts_on.isoformat(),
            "ends_on": ends,
            "granted_on": event.granted_on.isoformat(),
            "granted_key": stamp.key,
        },
    )


def assistance_suspended(tx: Tx, event: AssistanceSuspended, stamp: Stamp) -> None:
    _upsert_newer(
        tx,
        "profile_grant",
        {"grant_no": event.grant_no, "nik": event.recipient, "programme": event.programme.value},
        {
            "suspended_on": event.suspended_on.isoformat(),
            "effective_from": event.effective_from.isoformat(),
            "suspension_reason": event.reason.value,
            "suspended_key": stamp.key,
        },
    )


def _upsert_newer(
    tx: Tx, table: str, fixed: Mapping[str, object], columns: Mapping[str, object]
) -> None:
    """Insert the row, or on a conflict of its first column (the table's key) set ``columns``
    if this event is newer: the last of ``columns`` is the version key of the event type that
    writes them (NULL while no such event arrived). ``fixed`` columns are written only by the
    insert."""
    names = [*fixed, *columns]
    key, version = next(iter(fixed)), list(columns)[-1]
    sets = ", ".join(f"{name} = excluded.{name}" for name in columns)
    tx.execute(
        f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))}) "
        f"ON CONFLICT ({key}) DO UPDATE SET {sets} "
        f"WHERE {table}.{version} IS NULL OR {table}.{version} < excluded.{version}",
        (*fixed.values(), *columns.values()),
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
