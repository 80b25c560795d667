"""Stream entry ids (``<ms>-<seq>``): the arithmetic every reader of a stream needs, in one place.

Ids compare as pairs of numbers, never as strings (``"9-0" > "10-0"`` as text). The sequence of
an id is at most ``2**64 - 1``; the id after that is the next millisecond's first.
"""

from __future__ import annotations

import time

__all__ = ["MAX_SEQ", "ZERO", "after", "age_s", "parts", "parts_or_zero"]

MAX_SEQ = 2**64 - 1
ZERO = (0, 0)


def parts(entry_id: str) -> tuple[int, int]:
    """``"1700000000000-3"`` -> ``(1700000000000, 3)``; ``"5"`` -> ``(5, 0)``. Raises ValueError
    for what is not an id."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def parts_or_zero(entry_id: str) -> tuple[int, int]:
    """:func:`parts`, or ``(0, 0)`` (before every entry) for what is not an id."""
    try:
        return parts(entry_id)
    except ValueError:
        return ZERO


def after(entry_id: str) -> str:
    """The smallest id greater than ``entry_id``."""
    ms, seq = parts(entry_id)
    return f"{ms + 1}-0" if seq == MAX_SEQ else f"{ms}-{seq + 1}"


def age_s(entry_id: str, now_ms: int | None = None) -> float:
    """Seconds since the id's millisecond timestamp (never negative; ``now_ms`` defaults to this
    machine's clock)."""
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    return max(0.0, (now - parts_or_zero(entry_id)[0]) / 1000)
