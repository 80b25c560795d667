"""Bapenda's tables and the work each event does in one transaction (plain code of a ``Tx``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from bus import Tx
from schemas.bapenda import TaxKind
from services.bapenda.rules import npwpd_for

OPEN = "open"
DEATH = "death"
SITE_FIELDS = ("street", "rt", "rw", "kelurahan", "kecamatan")

TABLES = [
    # One row per taxpayer (NPWPD): the identifier, the taxes registered, where bills go.
    """CREATE TABLE IF NOT EXISTS bapenda_taxpayer (
        npwpd TEXT PRIMARY KEY,
        scheme TEXT NOT NULL,
        identifier TEXT NOT NULL,
        tax_kinds TEXT NOT NULL,
        registered_on TEXT NOT NULL,
        billing_street TEXT NOT NULL,
        billing_rt TEXT,
        billing_rw TEXT,
        billing_kelurahan TEXT,
        billing_kecamatan TEXT NOT NULL,
        billing_as_of TEXT NOT NULL,
        UNIQUE (scheme, identifier)
    )""",
    # One row per permit that registered (or added to) a taxpayer: the taxed site.
    """CREATE TABLE IF NOT EXISTS bapenda_permit (
        permit_no TEXT PRIMARY KEY,
        npwpd TEXT NOT NULL,
        kind TEXT NOT NULL,
        site_street TEXT NOT NULL,
        site_rt TEXT NOT NULL,
        site_rw TEXT NOT NULL,
        site_kelurahan TEXT NOT NULL,
        site_kecamatan TEXT NOT NULL,
        issued_on TEXT NOT NULL,
        tax_kinds TEXT NOT NULL,
        registered_on TEXT NOT NULL,
        announced BIGINT NOT NULL,
        cause TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS bapenda_permit_npwpd ON bapenda_permit (npwpd)",
    """CREATE TABLE IF NOT EXISTS bapenda_review (
        npwpd TEXT NOT NULL,
        reason TEXT NOT NULL,
        since TEXT NOT NULL,
        opened_on TEXT NOT NULL,
        cause TEXT NOT NULL,
        status TEXT NOT NULL,
        PRIMARY KEY (npwpd, reason, cause)
    )""",
    # What dukcapil said about a NIK without a registration: its latest move and its death,
    # applied if a permit registers the person later (the permit and dukcapil's events travel
    # on different streams, in any order). Only the street line, the kecamatan and the dates;
    # forgotten once applied, or ``keep_unmatched`` after it was last told.
    """CREATE TABLE IF NOT EXISTS bapenda_unmatched (
        nik TEXT PRIMARY KEY,
        moved_on TEXT,
        street TEXT,
        kecamatan TEXT,
        died_on TEXT,
        death_cause TEXT,
        remembered_on TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS bapenda_unmatched_remembered ON bapenda_unmatched (remembered_on)",
]


@dataclass(frozen=True, slots=True)
class BillingAddress:
    """Where a taxpayer's bills go. A move reported by dukcapil carries the street and the
    kecamatan only: rt, rw and kelurahan are then unknown (None)."""

    street: str
    rt: str | None
    rw: str | None
    kelurahan: str | None
    kecamatan: str
    as_of: date  # the date of the fact it comes from: a permit's issue, a move

    def __repr__(self) -> str:  # never the street (reprs end up in logs and tracebacks)
        return f"BillingAddress(kecamatan={self.kecamatan}, as_of={self.as_of})"


@dataclass(frozen=True, slots=True)
class TaxpayerRecord:
    """A registered local taxpayer."""

    npwpd: str
    scheme: str  # "nik" or "nib"
    value: str  # the NIK or NIB
    tax_kinds: tuple[TaxKind, ...]
    registered_on: date
    billing: BillingAddress
    permits: tuple[str, ...]  # numbers of the permits that registered it, oldest first

    def __repr__(self) -> str:  # never the identifier
        return f"TaxpayerRecord({self.npwpd}, {self.scheme}, {len(self.permits)} permits)"


@dataclass(frozen=True, slots=True)
class Review:
    """A taxpayer's status to be reviewed by an officer (e.g. after the taxpayer's death)."""

    npwpd: str
    reason: str  # "death"
    since: date  # the date of the fact (the death)
    opened_on: date
    status: str  # "open"


@dataclass(frozen=True, slots=True)
class Permit:
    """What ``dpmptsp.permit.issued`` tells bapenda, flattened for storing."""

    permit_no: str
    kind: str
    scheme: str
    value: str
    site: Mapping[str, str]  # street, rt, rw, kelurahan, kecamatan
    issued_on: date


# -- writes ------------------------------------------------------------------------------------


class RegistrationRace(RuntimeError):
    """Another replica took the derived NPWPD meanwhile: the retry derives the next one."""


def register(tx: Tx, permit: Permit, taxes: tuple[TaxKind, ...], cause: str, today: date) -> str:
    """Register the permit's holder for ``taxes``: a new NPWPD, or the kinds added to the
    holder's existing one (one NPWPD per taxpayer). Returns what happened.

    Inserts skip conflicts instead of failing on them: a unique violation's message on
    PostgreSQL quotes the key (a NIK), and error messages end up in dead letters.
    """
    if tx.one("SELECT 1 AS known FROM bapenda_permit WHERE permit_no = ?", (permit.permit_no,)):
        return "known-permit"  # the same permit again (e.g. republished): nothing new
    row = _registration_of(tx, permit)
    npwpd = None if row is not None else _insert_taxpayer(tx, permit, taxes, today)
    if npwpd is not None:
        kinds, outcome = list(taxes), "registered"
    else:
        row = row or _registration_of(tx, permit)  # another replica registered it meanwhile
        if row is None:
            raise RegistrationRace("the derived NPWPD was taken by a concurrent registration")
        npwpd, kinds = row["npwpd"], _split(row["tax_kinds"])
        added = [t for t in taxes if t not in kinds]
        kinds += added
        outcome = "kinds-added" if added else "site-added"
        tx.execute(
            "UPDATE bapenda_taxpayer SET tax_kinds = ? WHERE npwpd = ?", (_join(kinds), npwpd)
        )
    if outcome == "registered" and permit.scheme == "nik":
        _apply_unmatched(tx, npwpd, permit, today)
    inserted = tx.execute(
        "INSERT INTO bapenda_permit (permit_no, npwpd, kind, site_street, site_rt, site_rw, "
        "site_kelurahan, site_kecamatan, issued_on, tax_kinds, registered_on, announced, cause) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        (
            permit.permit_no,
            npwpd,
            permit.kind,
            *(permit.site[k] for k in SITE_FIELDS),
            permit.issued_on.isoformat(),
            _join(kinds),
            today.isoformat(),
            int(outcome != "site-added"),
            cause,
        ),
    )
    return outcome if inserted else "known-permit"


def _registration_of(tx: Tx, permit: Permit) -> dict[str, Any] | None:
    return tx.one(
        "SELECT npwpd, tax_kinds FROM bapenda_taxpayer WHERE scheme = ? AND identifier = ?",
        (permit.scheme, permit.value),
    )


def _insert_taxpayer(tx: Tx, permit: Permit, taxes: tuple[TaxKind, ...], today: date) -> str | None:
    """A new taxpayer with the permit's site as billing address; None if it conflicted."""
    npwpd, site = _free_npwpd(tx, permit), permit.site
    inserted = tx.execute(
        "INSERT INTO bapenda_taxpayer (npwpd, scheme, identifier, tax_kinds, registered_on, "
        "billing_street, billing_rt, billing_rw, billing_kelurahan, billing_kecamatan, "
        "billing_as_of) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        (
            npwpd,
            permit.scheme,
            permit.value,
            _join(list(taxes)),
            today.isoformat(),
            site["street"],
            site["rt"],
            site["rw"],
            site["kelurahan"],
            site["kecamatan"],
            permit.issued_on.isoformat(),
        ),
    )
    return npwpd if inserted else None


def announcement(tx: Tx, cause: str) -> dict[str, Any] | None:
    """The registration an event made and must publish (on every delivery), if any."""
    return tx.one(
        "SELECT p.*, t.scheme, t.identifier FROM bapenda_permit p "
        "JOIN bapenda_taxpayer t ON t.npwpd = p.npwpd WHERE p.cause = ? AND p.announced = 1",
        (cause,),
    )


def move(
    tx: Tx, nik: str, street: str, kecamatan: str, moved_on: date, *, today: date
) -> tuple[int, int, bool]:
    """New billing address of the person's taxpayer registrations, unless one of a later
    date is there already; without a registration, the move is remembered (the latest one).
    Returns (updated, left as newer, remembered)."""
    updated = _bill_to_move(tx, nik, street, kecamatan, moved_on)
    newer = tx.value(
        "SELECT COUNT(*) FROM bapenda_taxpayer "
        "WHERE scheme = 'nik' AND identifier = ? AND billing_as_of > ?",
        (nik, moved_on.isoformat()),
    )
    if updated or newer:
        return updated, int(newer or 0), False
    # Nobody registered: remember it, unless a later move is remembered already.
    tx.execute(
        "INSERT INTO bapenda_unmatched (nik, moved_on, street, kecamatan, remembered_on) "
        "VALUES (?, ?, ?, ?, ?) ON CONFLICT (nik) DO UPDATE SET moved_on = excluded.moved_on, "
        "street = excluded.street, kecamatan = excluded.kecamatan, "
        "remembered_on = excluded.remembered_on "
        "WHERE bapenda_unmatched.moved_on IS NULL "
        "OR bapenda_unmatched.moved_on <= excluded.moved_on",
        (nik, moved_on.isoformat(), street, kecamatan, today.isoformat()),
    )
    return 0, 0, True


def open_death_reviews(tx: Tx, nik: str, died_on: date, cause: str, today: date) -> int:
    """A status review per registration of the person, unless one is open already; without a
    registration, the death is remembered (the first report of it)."""
    rows = tx.all(
        "SELECT npwpd FROM bapenda_taxpayer WHERE scheme = 'nik' AND identifier = ?", (nik,)
    )
    if not rows:
        tx.execute(
            "INSERT INTO bapenda_unmatched (nik, died_on, death_cause, remembered_on) "
            "VALUES (?, ?, ?, ?) ON CONFLICT (nik) DO UPDATE SET died_on = excluded.died_on, "
            "death_cause = excluded.death_cause, remembered_on = excluded.remembered_on "
            "WHERE bapenda_unmatched.died_on IS NULL",
            (nik, died_on.isoformat(), cause, today.isoformat()),
        )
        return 0
    return sum(_open_death_review(tx, row["npwpd"], died_on, cause, today) for row in rows)


def _open_death_review(tx: Tx, npwpd: str, died_on: date, cause: str, today: date) -> int:
    if tx.one(
        "SELECT 1 AS open FROM bapenda_review WHERE npwpd = ? AND reason = ? AND status = ?",
        (npwpd, DEATH, OPEN),
    ):
        return 0
    return tx.execute(
        "INSERT INTO bapenda_review (npwpd, reason, since, opened_on, cause, status) "
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        (npwpd, DEATH, died_on.isoformat(), today.isoformat(), cause, OPEN),
    )


def _bill_to_move(tx: Tx, nik: str, street: str, kecamatan: str, moved_on: date) -> int:
    return tx.execute(
        "UPDATE bapenda_taxpayer SET billing_street = ?, billing_rt = NULL, billing_rw = NULL, "
        "billing_kelurahan = NULL, billing_kecamatan = ?, billing_as_of = ? "
        "WHERE scheme = 'nik' AND identifier = ? AND billing_as_of <= ?",
        (street, kecamatan, moved_on.isoformat(), nik, moved_on.isoformat()),
    )


def _apply_unmatched(tx: Tx, npwpd: str, permit: Permit, today: date) -> None:
    """A person registered now: what dukcapil told before about them takes effect as if it
    had come after the registration (a move from before the permit leaves the site)."""
    told = tx.one("SELECT * FROM bapenda_unmatched WHERE nik = ?", (permit.value,))
    if told is None:
        return
    if told["moved_on"] is not None:
        moved_on = date.fromisoformat(told["moved_on"])
        _bill_to_move(tx, permit.value, told["street"], told["kecamatan"], moved_on)
    if told["died_on"] is not None:  # the review is the death event's, as if it came later
        died_on = date.fromisoformat(told["died_on"])
        _open_death_review(tx, npwpd, died_on, told["death_cause"], today)
    tx.execute("DELETE FROM bapenda_unmatched WHERE nik = ?", (permit.value,))


def forget_unmatched(tx: Tx, before: date) -> int:
    """Forget what was last told before ``before`` about NIKs no permit has registered."""
    return tx.execute(
        "DELETE FROM bapenda_unmatched WHERE remembered_on < ?", (before.isoformat(),)
    )


# -- reads -------------------------------------------------------------------------------------


def taxpayer_of(tx: Tx, permit_no: str) -> TaxpayerRecord | None:
    npwpd = tx.value("SELECT npwpd FROM bapenda_permit WHERE permit_no = ?", (permit_no,))
    return None if npwpd is None else _taxpayer(tx, npwpd)


def taxpayers_by(tx: Tx, scheme: str, value: str) -> list[TaxpayerRecord]:
    rows = tx.all(
        "SELECT npwpd FROM bapenda_taxpayer WHERE scheme = ? AND identifier = ? ORDER BY npwpd",
        (scheme, value),
    )
    return [t for r in rows if (t := _taxpayer(tx, r["npwpd"])) is not None]


def billing_address(tx: Tx, npwpd: str) -> BillingAddress | None:
    row = tx.one("SELECT * FROM bapenda_taxpayer WHERE npwpd = ?", (npwpd,))
    return None if row is None else _billing(row)


def open_reviews(tx: Tx, npwpd: str | None) -> list[Review]:
    sql, params = "SELECT * FROM bapenda_review WHERE status = ?", [OPEN]
    if npwpd is not None:
        sql, params = sql + " AND npwpd = ?", [*params, npwpd]
    rows = tx.all(sql + " ORDER BY opened_on, npwpd", params)
    return [
        Review(
            r["npwpd"],
            r["reason"],
            date.fromisoformat(r["since"]),
            date.fromisoformat(r["opened_on"]),
            r["status"],
        )
        for r in rows
    ]


# -- helpers -----------------------------------------------------------------------------------


def _free_npwpd(tx: Tx, permit: Permit) -> str:
    attempt = 0
    while True:
        npwpd = npwpd_for(permit.permit_no, permit.scheme, permit.site["kecamatan"], attempt)
        if tx.one("SELECT 1 AS taken FROM bapenda_taxpayer WHERE npwpd = ?", (npwpd,)) is None:
            return npwpd
        attempt += 1  # a hash collision with another permit's number: deterministic next


def _taxpayer(tx: Tx, npwpd: str) -> TaxpayerRecord | None:
    row = tx.one("SELECT * FROM bapenda_taxpayer WHERE npwpd = ?", (npwpd,))
    if row is None:
        return None
    permits = tx.all(
        "SELECT permit_no FROM bapenda_permit WHERE npwpd = ? ORDER BY issued_on, permit_no",
        (npwpd,),
    )
    return TaxpayerRecord(
        npwpd=row["npwpd"],
        scheme=row["scheme"],
        value=row["identifier"],
        tax_kinds=tuple(_split(row["tax_kinds"])),
        registered_on=date.fromisoformat(row["registered_on"]),
        billing=_billing(row),
        permits=tuple(p["permit_no"] for p in permits),
    )


def _billing(row: Mapping[str, Any]) -> BillingAddress:
    return BillingAddress(
        street=row["billing_street"],
        rt=row["billing_rt"],
        rw=row["billing_rw"],
        kelurahan=row["billing_kelurahan"],
        kecamatan=row["billing_kecamatan"],
        as_of=date.fromisoformat(row["billing_as_of"]),
    )


def _join(kinds: list[TaxKind]) -> str:
    return ",".join(kind.value for kind in kinds)


def _split(text: str) -> list[TaxKind]:
    return [TaxKind(kind) for kind in text.split(",") if kind]
