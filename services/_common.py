"""What the services share: Kota Malang's clock, UTC times as text, bearer tokens, migrations.

One definition of each, so that the services cannot drift apart (a "today" in another time
zone, a timestamp text of another width that no longer sorts, a token check that is not
constant-time).
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta, timezone

from bus import Store

__all__ = [
    "WIB",
    "Migration",
    "bearer_token",
    "now_text",
    "same_token",
    "today_in_malang",
    "utc_text",
]

WIB = timezone(timedelta(hours=7), "WIB")
"""Kota Malang's time zone: UTC+7 all year (Indonesia has no daylight saving)."""


def today_in_malang() -> date:
    """The date in Kota Malang now: the date of the services' decisions."""
    return datetime.now(WIB).date()


def utc_text(moment: datetime) -> str:
    """``moment`` (aware) as fixed-width UTC text with microseconds, so that comparing the
    texts compares the times (``2026-11-30T01:02:03.000004+00:00``)."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def now_text() -> str:
    """The current time as :func:`utc_text`."""
    return utc_text(datetime.now(UTC))


def bearer_token(headers: Mapping[str, str]) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (scheme in any case, spaces
    around the token ignored), or None when there is no such header or the token is empty."""
    scheme, _, token = headers.get("authorization", "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def same_token(presented: str, expected: bytes) -> bool:
    """Whether ``presented`` is ``expected``, in constant time (no timing hint of how close)."""
    return hmac.compare_digest(presented.encode(), expected)


class Migration:
    """A service's tables, created once per instance: ``await migration()`` at start and before
    each read (reads may come before the service runs, e.g. in tests and the demo)."""

    def __init__(self, store: Store, statements: Sequence[str]) -> None:
        self.store = store
        self.statements = list(statements)
        self.done = False

    async def __call__(self) -> None:
        if not self.done:
            await self.store.migrate(self.statements)
            self.done = True
