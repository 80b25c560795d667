"""Positions in a stream: durations, times and entry ids, and counting the entries between two."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from redis.asyncio import Redis

from bus.entry_ids import parts as _id_key
from bus.errors import ConfigurationError

__all__ = [
    "Position",
    "parse_duration",
    "parse_position",
]

_PAGE = 1000  # entries per XRANGE / XPENDING page when counting

# -- durations, times, positions -----------------------------------------------------------------

_UNITS = {"w": 604_800_000, "d": 86_400_000, "h": 3_600_000, "m": 60_000, "s": 1_000, "ms": 1}
_DURATION = re.compile(r"(\d+)\s*(ms|w|d|h|m|s)")


def parse_duration(text: str) -> timedelta:
    """``30d``, ``2h``, ``90m``, ``1h30m``, ``1w``, ``45s``, ``500ms`` -> a positive timedelta."""
    compact = text.strip().lower()
    parts = _DURATION.findall(compact)
    if not compact or "".join(f"{n}{u}" for n, u in parts) != compact.replace(" ", ""):
        raise ConfigurationError(
            f"{text!r} is not a duration: write e.g. 30d, 12h, 90m, 1h30m, 1w, 45s"
        )
    total = sum(int(n) * _UNITS[u] for n, u in parts)
    if total <= 0:
        raise ConfigurationError(f"duration {text!r} must be positive")
    return timedelta(milliseconds=total)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _ms(moment: datetime) -> int:
    """Milliseconds since the epoch, exactly (no float rounding: ids are compared exactly)."""
    return (moment - _EPOCH) // timedelta(milliseconds=1)


@dataclass(frozen=True, slots=True)
class Position:
    """Where a group should be set: an entry id, or a time (the entries from then on)."""

    entry_id: str | None = None  # "0-0", "$" or "<ms>-<seq>"
    at_ms: int | None = None  # deliver every entry recorded at or after this time

    def describe(self) -> str:
        if self.at_ms is not None:
            return datetime.fromtimestamp(self.at_ms / 1000, UTC).isoformat(timespec="milliseconds")
        return str(self.entry_id)


_ENTRY_ID = re.compile(r"^(\d+)(?:-(\d+))?$")


def parse_position(text: str, *, now: datetime | None = None) -> Position:
    """``$`` (the end), ``0`` (the start), an entry id (``1796132045036-0``), a time with an
    offset (``2026-11-30T08:00+07:00``) or an age (``2h ago``)."""
    value = text.strip()
    if value == "$":
        return Position(entry_id="$")
    if value in ("0", "0-0"):
        return Position(entry_id="0-0")
    match = _ENTRY_ID.match(value)
    if match:
        return Position(entry_id=f"{match[1]}-{match[2] or 0}")
    if value.lower().endswith(" ago"):
        age = parse_duration(value[:-4])
        return Position(at_ms=_ms((now or datetime.now(UTC)) - age))
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ConfigurationError(
            f"{text!r} is not a position: give $, 0, an entry id (1796132045036-0), a time with "
            "an offset (2026-11-30T08:00+07:00) or an age (2h ago)"
        ) from None
    if moment.tzinfo is None:
        raise ConfigurationError(
            f"time {text!r} has no offset: write e.g. 2026-11-30T08:00+07:00 (WIB) or ...Z (UTC)"
        )
    return Position(at_ms=_ms(moment))


def _time_of(entry_id: str) -> str:
    ms = _id_key(entry_id)[0]
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


async def _count(redis: Redis, stream: str, low: str, high: str) -> int:
    """Entries of ``stream`` with ``low`` < id <= ``high`` (ids; "-" and "+" allowed)."""
    if low != "-" and high != "+" and _id_key(low) >= _id_key(high):
        return 0
    start = "-" if low == "-" else f"({low}"
    total = 0
    while True:
        page: Any = await redis.xrange(stream, min=start, max=high, count=_PAGE)
        total += len(page)
        if len(page) < _PAGE:
            return total
        start = f"({page[-1][0].decode()}"


async def _count_pending(redis: Redis, stream: str, group: str, low: str, high: str) -> int:
    """Pending entries of ``group`` with ids in [``low``, ``high``] ("(" prefixes allowed)."""
    total, start = 0, low
    while True:
        rows: Any = await redis.xpending_range(stream, group, min=start, max=high, count=_PAGE)
        total += len(rows)
        if len(rows) < _PAGE:
            return total
        start = f"({rows[-1]['message_id'].decode()}"
