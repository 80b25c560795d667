"""Account links ("one user, one account") rebuilt from the identity facts, in their own order.

The identity service publishes ``linked`` and ``unlinked`` facts, each with the time it
happened. They may reach the profile in any order (a retry, a replica), so the profile keeps
the facts and replays them sorted by that time: the same facts always give the same links.

Rules of the replay:

* a NIK is linked to at most one account, and an account to at most one NIK: linking closes
  any open link of either (reason ``relinked``), even before the matching ``unlinked`` fact
  arrives;
* ``unlinked`` closes the open link of that pair; with none open it changes nothing;
* at equal times an ``unlinked`` comes first (identity unlinks the old account, then links);
* linking a pair that is already open changes nothing (a re-verification).

A person's death closes their open links too; that is applied by the view, which knows it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal


@dataclass(frozen=True, slots=True)
class Fact:
    """One identity event as stored."""

    event_id: str
    kind: Literal["linked", "unlinked"]
    account_id: str
    nik: str
    at: datetime
    verification: str | None = None
    reason: str | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Fact:
        return cls(
            event_id=row["event_id"],
            kind=row["kind"],
            account_id=row["account_id"],
            nik=row["nik"],
            at=datetime.fromisoformat(row["at"]),
            verification=row["verification"],
            reason=row["reason"],
        )


@dataclass(slots=True)
class Link:
    """One link of a NIK to an account, open or closed."""

    account_id: str
    nik: str
    linked_at: datetime
    verification: str | None
    closed_at: datetime | None = None
    closed_reason: str | None = None

    @property
    def open(self) -> bool:
        return self.closed_reason is None


def replay(facts: Iterable[Fact]) -> list[Link]:
    """Every link the facts describe, oldest first."""
    links: list[Link] = []
    live: dict[tuple[str, str], Link] = {}
    for fact in sorted(facts, key=_order):
        pair = (fact.account_id, fact.nik)
        if fact.kind == "unlinked":
            link = live.pop(pair, None)
            if link is not None:
                link.closed_at, link.closed_reason = fact.at, fact.reason
            continue
        if pair in live:
            continue
        for other in [p for p in live if p[0] == fact.account_id or p[1] == fact.nik]:
            closed = live.pop(other)
            closed.closed_at, closed.closed_reason = fact.at, "relinked"
        link = Link(fact.account_id, fact.nik, fact.at, fact.verification)
        links.append(link)
        live[pair] = link
    return links


def _order(fact: Fact) -> tuple[datetime, int, str]:
    return (fact.at, 0 if fact.kind == "unlinked" else 1, fact.event_id)
