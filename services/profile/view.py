"""A person's profile assembled from the tables: one section per department's facts.

Everything that depends on the order facts arrived in is decided here from the facts' own
dates: a permit's status, what an assessment still owes, whether a grant pays, which account
links are open. Plain functions of a transaction, like the writes.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any

from bus import Tx
from services.profile.links import Fact, Link, replay

Section = Any  # a JSON value


def person(tx: Tx, nik: str, today: date) -> dict[str, Any] | None:
    """Every section of the profile of ``nik``, or None if no department told us about it."""
    row = tx.one("SELECT * FROM profile_person WHERE nik = ?", (nik,))
    permits = tx.all("SELECT * FROM profile_permit WHERE nik = ? ORDER BY application_no", (nik,))
    taxpayers = tx.all("SELECT * FROM profile_taxpayer WHERE nik = ? ORDER BY npwpd", (nik,))
    assessments = tx.all(
        "SELECT * FROM profile_assessment WHERE nik = ? ORDER BY assessment_no", (nik,)
    )
    payments = tx.all(
        "SELECT * FROM profile_payment WHERE nik = ? OR assessment_no IN "
        "(SELECT assessment_no FROM profile_assessment WHERE nik = ?) "
        "ORDER BY assessment_no, paid_at, payment_ref",
        (nik, nik),
    )
    grants = tx.all("SELECT * FROM profile_grant WHERE nik = ? ORDER BY grant_no", (nik,))
    links = links_of(tx, nik)
    if not (row or permits or taxpayers or assessments or payments or grants or links):
        return None
    died_on = row["died_on"] if row else None
    return {
        "nik": nik,
        "sections": {
            "registry": _registry(row),
            "address": _address(row),
            "family": _family(tx, nik, row),
            "permits": [_permit(p) for p in permits],
            "tax": _tax(taxpayers, assessments, payments),
            "assistance": [_grant(g, today) for g in grants],
            "accounts": _accounts(links, died_on),
        },
    }


def holder_of(tx: Tx, account_id: str) -> str | None:
    """The NIK ``account_id`` is linked to now (a dead person's links are closed), or None."""
    candidates = tx.all(
        "SELECT DISTINCT nik FROM profile_account_fact WHERE account_id = ? ORDER BY nik",
        (account_id,),
    )
    for candidate in candidates:
        nik = candidate["nik"]
        if tx.value("SELECT died_on FROM profile_person WHERE nik = ?", (nik,)) is not None:
            continue
        if any(link.open and link.account_id == account_id for link in links_of(tx, nik)):
            return str(nik)
    return None


def links_of(tx: Tx, nik: str) -> list[Link]:
    """The links of ``nik``, replayed from every fact that can open or close them: those of the
    NIK and those of every account it was ever linked to (an account linked to another NIK
    is no longer this one's)."""
    rows = tx.all(
        "SELECT * FROM profile_account_fact WHERE nik = ? OR account_id IN "
        "(SELECT account_id FROM profile_account_fact WHERE nik = ?)",
        (nik, nik),
    )
    return [link for link in replay(Fact.from_row(r) for r in rows) if link.nik == nik]


def _registry(row: dict[str, Any] | None) -> Section:
    if row is None:  # only other departments know this NIK (e.g. registered before the bus)
        return {"status": "unknown", "died_on": None}
    status = "deceased" if row["died_on"] else "registered"
    return {"status": status, "died_on": row["died_on"]}


def _address(row: dict[str, Any] | None) -> Section:
    if row is None or row["address_since"] is None:
        return None
    names = ("street", "rt", "rw", "kelurahan", "kecamatan")
    return {
        **{name: row[name] for name in names},
        "since": row["address_since"],
        "source": row["address_source"],
    }


def _family(tx: Tx, nik: str, row: dict[str, Any] | None) -> Section:
    if row is None or row["kk"] is None:
        return None
    card = tx.one("SELECT * FROM profile_family WHERE kk = ?", (row["kk"],))
    if card is None:  # known from a birth; the card itself has not reached us
        return {"kk": row["kk"], "since": row["kk_since"], "card": None}
    members: list[str] = json.loads(card["members"])
    return {
        "kk": row["kk"],
        "since": row["kk_since"],
        "card": {
            "issued_on": card["issued_on"],
            "reason": card["reason"],
            "head": card["head"] == nik,
            "listed": nik in members,  # false: a card from before they joined, or after they left
            "members": members,
        },
    }


def _permit(row: dict[str, Any]) -> Section:
    decisions = [(row["issued_on"], 1, "issued"), (row["rejected_on"], 0, "rejected")]
    made = [d for d in decisions if d[0] is not None]
    status = max(made)[2] if made else "applied"  # the later decision; same day: issued
    return {
        "application_no": row["application_no"],
        "kind": row["kind"],
        "status": status,
        "permit_no": row["permit_no"],
        "applied_on": row["applied_on"],
        "issued_on": row["issued_on"],
        "valid_until": row["valid_until"],
        "rejected_on": row["rejected_on"],
        "rejection_reason": row["rejection_reason"],
    }


def _tax(
    taxpayers: list[dict[str, Any]],
    assessments: list[dict[str, Any]],
    payments: list[dict[str, Any]],
) -> Section:
    paid: dict[str, list[dict[str, Any]]] = {}
    for payment in payments:
        paid.setdefault(payment["assessment_no"], []).append(payment)
    listed = [_assessment(a, paid.pop(a["assessment_no"], [])) for a in assessments]
    # Payments whose assessment has not reached us yet (another stream, another order).
    listed += [_unmatched(number, rows) for number, rows in sorted(paid.items())]
    return {
        "npwpd": [
            {
                "npwpd": t["npwpd"],
                "tax_kinds": json.loads(t["tax_kinds"]),
                "registered_on": t["registered_on"],
            }
            for t in taxpayers
        ],
        "assessments": listed,
    }


def _assessment(row: dict[str, Any], payments: list[dict[str, Any]]) -> Section:
    due, paid = int(row["amount"]), sum(int(p["amount"]) for p in payments)
    status = "paid" if paid >= due else "partly-paid" if paid else "due"
    return {
        "assessment_no": row["assessment_no"],
        "tax_kind": row["tax_kind"],
        "period": row["period"],
        "nop": row["nop"],
        "npwpd": row["npwpd"],
        "amount_due": due,
        "amount_paid": paid,
        "outstanding": max(due - paid, 0),
        "status": status,
        "due_on": row["due_on"],
        "assessed_on": row["assessed_on"],
        "last_paid_at": max((p["paid_at"] for p in payments), default=None),
    }


def _unmatched(number: str, payments: list[dict[str, Any]]) -> Section:
    return {
        "assessment_no": number,
        "tax_kind": payments[0]["tax_kind"],
        "period": None,
        "nop": None,
        "npwpd": None,
        "amount_due": None,
        "amount_paid": sum(int(p["amount"]) for p in payments),
        "outstanding": None,
        "status": "assessment-pending",
        "due_on": None,
        "assessed_on": None,
        "last_paid_at": max(p["paid_at"] for p in payments),
    }


def _grant(row: dict[str, Any], today: date) -> Section:
    suspended = row["suspended_on"] is not None and (
        row["granted_on"] is None or row["suspended_on"] >= row["granted_on"]
    )  # a grant decided after its suspension reinstates it
    if suspended:
        status = "suspended"
    elif row["ends_on"] is not None and row["ends_on"] < today.isoformat():
        status = "ended"
    else:
        status = "active"
    return {
        "grant_no": row["grant_no"],
        "programme": row["programme"],
        "status": status,
        "starts_on": row["starts_on"],
        "ends_on": row["ends_on"],
        "granted_on": row["granted_on"],
        "suspended_on": row["suspended_on"],
        "suspended_from": row["effective_from"],
        "suspension_reason": row["suspension_reason"],
    }


def _accounts(links: list[Link], died_on: str | None) -> Section:
    shown = [_link(link, died_on) for link in reversed(links)]  # newest first
    current = next((s["account_id"] for s in shown if s["status"] == "open"), None)
    return {"current": current, "links": shown}


def _link(link: Link, died_on: str | None) -> Section:
    reason = link.closed_reason
    if reason is None and died_on is not None:
        reason = "death"  # identity has not closed it yet: a dead person has no account
    return {
        "account_id": link.account_id,
        "status": "open" if reason is None else "closed",
        "verification": link.verification,
        "linked_at": _text(link.linked_at),
        "closed_at": _text(link.closed_at),
        "closed_reason": reason,
    }


def _text(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()
