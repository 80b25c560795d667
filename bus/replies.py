"""Stream replies (XREADGROUP, XREAD, XRANGE, XCLAIM, ...) decoded without losing a field.

redis-py turns an entry's field list into a dict, so a field name that appears twice keeps
only its last value: an entry with ``id`` twice would be handled under the second id, and its
dead letter would lose a field. The wire format says a name appears at most once and such an
entry is undecodable (docs/wire-format.md, section 1); these parsers keep the map every caller
uses and, only when a name repeats, the reply's full field list beside it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["EntryFields", "field_pairs", "install", "repeated_names"]

Pairs = list[tuple[bytes, bytes]]


class EntryFields(dict[bytes, bytes]):
    """An entry's fields: a map (the last value of a repeated name wins, as in redis-py) and,
    when a name repeats, ``pairs``: every field and value in the order Redis stored them."""

    pairs: Pairs | None = None  # a class default: no per-entry cost when no name repeats

    @classmethod
    def of(cls, flat: list[bytes]) -> EntryFields:
        items = iter(flat)
        fields = cls(zip(items, items, strict=False))
        if 2 * len(fields) != len(flat):  # a name repeats (or an odd list: keep it as it is)
            items = iter(flat)
            fields.pairs = list(zip(items, items, strict=False))
        return fields


def field_pairs(raw: Any) -> Any:
    """Every field/value pair of an entry, in order: repeated names included."""
    pairs = getattr(raw, "pairs", None)
    return pairs if pairs is not None else raw.items()


def repeated_names(raw: Any) -> list[str]:
    """The field names that appear more than once in an entry (none for a plain mapping)."""
    pairs = getattr(raw, "pairs", None)
    if pairs is None:
        return []
    seen: set[bytes] = set()
    repeated: list[str] = []
    for name, _ in pairs:
        text = name.decode(errors="replace") if isinstance(name, bytes) else str(name)
        if name in seen and text not in repeated:
            repeated.append(text)
        seen.add(name)
    return repeated


def _entries(response: Any, **options: Any) -> Any:
    if response is None:
        return None
    return [
        (entry[0], EntryFields.of(entry[1]), *entry[2:]) if entry is not None else (None, None)
        for entry in response
    ]


def _read(response: Any, **options: Any) -> Any:
    """XREAD and XREADGROUP, in redis-py's RESP2 shape ``[[stream, entries], ...]`` whatever
    the protocol (RESP3 answers a map of streams)."""
    if not response:
        return []
    streams = response.items() if isinstance(response, dict) else response
    return [[stream, _entries(entries)] for stream, entries in streams]


def _claim(response: Any, **options: Any) -> Any:
    if options.get("parse_justid", False):
        return response
    return _entries(response)


def _autoclaim(response: Any, **options: Any) -> Any:
    if options.get("parse_justid", False):
        return response[1]
    response[1] = _entries(response[1])
    return response


_PARSERS: dict[str, Callable[..., Any]] = {
    "XREAD": _read,
    "XREADGROUP": _read,
    "XRANGE": _entries,
    "XREVRANGE": _entries,
    "XCLAIM": _claim,
    "XAUTOCLAIM": _autoclaim,
}


class _Client(Protocol):
    def set_response_callback(self, command: str, callback: Callable[..., Any]) -> None: ...


def install(client: _Client) -> None:
    """Make ``client`` (a Redis or RedisCluster) parse stream replies with these parsers."""
    for command, parser in _PARSERS.items():
        client.set_response_callback(command, parser)
