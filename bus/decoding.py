"""Redis replies as text: one rule for every reader of replies.

redis-py answers bytes (the clients do not set ``decode_responses``). Bytes are decoded as UTF-8
with undecodable bytes replaced, so a malformed key, field or value never crashes the reader
that shows or compares it; a missing value (None) is the empty string.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["text", "texts"]


def text(value: Any) -> str:
    """``b"abc"`` -> ``"abc"``; ``None`` -> ``""``; anything else as ``str()`` gives it."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return "" if value is None else str(value)


def texts(raw: Mapping[Any, Any]) -> dict[str, str]:
    """A hash or stream entry's fields with keys and values as :func:`text`."""
    return {text(k): text(v) for k, v in raw.items()}
