"""Entries a consumer group never read that are gone from its stream: found and reported.

Redis trims streams by length or age without asking the consumer groups (before 8.2), and a
group deleted by mistake is recreated at ``0``: both can lose entries nobody handled. Redis
cannot say so by itself once the group is new, so each consumer keeps a *cursor* per stream
and group — the group's last-delivered id and entries-read counter, copied from
``XINFO GROUPS`` on every reclaim sweep into ``keys.cursor(stream, group)`` — and compares:

* the group's own position with the stream's first entry: a group whose last-delivered id is
  older than the first entry that is left, with fewer entries read than the stream added up to
  there, lost the difference (trimmed while its consumers were down);
* the cursor with a group that restarted behind it (deleted and recreated): the entries after
  the cursor that are no longer in the stream were trimmed before the new group could read them.

Counts come from Redis 7's ``entries-added``/``entries-read`` counters. Without them (Redis
6.2, or an entries-read Redis can no longer tell, e.g. after ``XGROUP SETID`` without
``ENTRIESREAD``) nothing can be told apart from ids alone — entries trimmed after they were read
look the same — so no gap is reported then (docs/delivery.md says so). A gap is reported once:
the cursor then moves past it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from bus import keys
from bus.decoding import text as _text
from bus.entry_ids import parts_or_zero as _id

__all__ = ["Gap", "check"]


@dataclass(frozen=True)
class Gap:
    """``lost`` entries of ``stream`` that ``group`` never read, between the ids ``after`` and
    ``before`` (exclusive), are gone."""

    stream: str
    group: str
    after: str
    before: str
    lost: int

    def describe(self) -> str:
        return (
            f"{self.lost} entries of {self.stream} between {self.after} and {self.before} were "
            f"trimmed or deleted before group {self.group} read them"
        )


@dataclass(frozen=True)
class _Cursor:
    """Entries up to ``id`` (``read`` of them, None: unknown) are accounted for."""

    id: str
    read: int | None


async def check(redis: Redis, stream: str, group: str) -> Gap | None:
    """Compare ``group``'s position with ``stream`` and its cursor; move the cursor.

    Call it right after creating the group (before reading) and then now and then. Returns
    the gap found, if any. A missing stream or group is no gap. The first check of a group
    (no cursor yet) only records where it stands: history trimmed before a service existed is
    not its loss (the audit archive backfills it)."""
    try:
        info = await redis.xinfo_stream(stream)
        groups = await redis.xinfo_groups(stream)
    except ResponseError as exc:
        if "no such key" in str(exc).lower():
            return None
        raise
    ours = next((g for g in groups if _text(g.get("name")) == group), None)
    if ours is None:
        return None
    key = keys.cursor(stream, group)
    saved = _load(await redis.hgetall(key))
    state = _State.of(info, ours)
    gap = state.gap(stream, group, saved) if saved is not None else None
    cursor = state.next_cursor(saved, gap)
    if cursor != saved:
        read = "" if cursor.read is None else str(cursor.read)
        await redis.hset(key, mapping={"id": cursor.id, "read": read})
    return gap


@dataclass(frozen=True)
class _State:
    first: str | None  # the first entry left in the stream
    added: int | None  # entries ever added (Redis 7)
    length: int
    last: str  # the group's last-delivered id
    read: int | None  # the group's entries-read (Redis 7; None when Redis cannot tell)

    @classmethod
    def of(cls, info: dict[str, Any], ours: dict[str, Any]) -> _State:
        first_entry = info.get("first-entry")
        added, read = info.get("entries-added"), ours.get("entries-read")
        return cls(
            first=_text(first_entry[0]) if first_entry else None,
            added=None if added is None else int(added),
            length=int(info.get("length") or 0),
            last=_text(ours.get("last-delivered-id")) or "0-0",
            read=None if read is None else int(read),
        )

    def gap(self, stream: str, group: str, cursor: _Cursor) -> Gap | None:
        if self.first is None or self.added is None:
            return None  # empty stream, or Redis 6.2: nothing to count with
        # Where the group stands: its own position, or the cursor if it restarted behind it.
        position, counted = (
            (cursor.id, cursor.read) if _id(cursor.id) > _id(self.last) else (self.last, self.read)
        )
        if counted is None or _id(position) >= _id(self.first):
            return None
        # After `position`: added - counted entries; still in the stream: all `length` (the
        # first one left is newer than position). The rest were trimmed or deleted unread.
        lost = self.added - counted - self.length
        return Gap(stream, group, position, self.first, lost) if lost > 0 else None

    def next_cursor(self, saved: _Cursor | None, gap: Gap | None) -> _Cursor:
        if (
            (gap is not None or saved is None)
            and self.first is not None
            and self.added is not None
            and _id(self.last) < _id(self.first)
        ):
            # Everything before the first entry is accounted for (handled, reported, or history
            # older than the group): count it so it is never reported (again).
            return _Cursor(self.first, self.added - self.length)
        if saved is not None and _id(self.last) < _id(saved.id):
            return saved  # a group behind its cursor catches up first
        return _Cursor(self.last, self.read)


def _load(saved: Mapping[Any, Any]) -> _Cursor | None:
    entry_id, read = _text(saved.get(b"id")), _text(saved.get(b"read"))
    if not entry_id:
        return None
    return _Cursor(entry_id, int(read) if read.isdigit() else None)
