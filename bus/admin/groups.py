"""Moving a consumer group's position (``simpul group reset``).


**Groups and trimming.** :func:`plan_reset`/:func:`reset_group` move a group's position

"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from bus.admin.positions import Position, _count, _count_pending, parse_position
from bus.admin.streams import UnknownGroup, UnknownStream, _groups, stream_key
from bus.connection import TRANSIENT, simpul_error
from bus.entry_ids import parts as _id_key
from bus.logging import get_logger, os_user

__all__ = [
    "ResetPlan",
    "plan_reset",
    "reset_group",
]

_log = get_logger("bus.admin.groups")

# -- group positions -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ResetPlan:
    """What moving a group's position does. Counts are of entries in the stream now."""

    stream: str
    group: str
    current: str  # the group's last-delivered-id now
    target: str  # the id it will be set to (entries after it are delivered)
    reread: int  # entries the group read already and will be delivered again
    skipped: int  # entries the group has not read yet and will never get
    pending: int  # entries pending in the group (they stay pending and are retried as usual)
    pending_reread: int  # of those, entries after the target: delivered again as new
    asked: str  # what the operator asked for ($, 0, an id, a time)
    applied: bool = False

    def warnings(self) -> list[str]:
        notes = []
        if self.reread:
            notes.append(
                f"{self.reread} entries already delivered to {self.group} will be delivered "
                "again: handlers must tolerate it (once=True ones skip events they completed)"
            )
        if self.skipped:
            notes.append(
                f"{self.skipped} entries {self.group} has not read yet will be skipped: it "
                "never handles them"
            )
        if self.pending:
            notes.append(
                f"{self.pending} entries pending in {self.group} stay pending and are still "
                "retried (and dead-lettered after max deliveries)"
                + (
                    f"; {self.pending_reread} of them lie after the new position and are also "
                    "delivered again as new entries (their delivery count restarts at 1)"
                    if self.pending_reread
                    else ""
                )
            )
        if not (self.reread or self.skipped):
            notes.append("no entry is delivered again or skipped")
        return notes

    def as_dict(self) -> dict[str, Any]:
        return {
            "stream": self.stream,
            "group": self.group,
            "asked": self.asked,
            "current": self.current,
            "target": self.target,
            "reread": self.reread,
            "skipped": self.skipped,
            "pending": self.pending,
            "pending_reread": self.pending_reread,
            "applied": self.applied,
            "warnings": self.warnings(),
        }


async def plan_reset(
    redis: Redis, stream: str, group: str, to: str | Position, *, now: datetime | None = None
) -> ResetPlan:
    """Plan moving ``group`` of ``stream`` to ``to`` (see :func:`parse_position`). A time means:
    every entry recorded at or after it is delivered (again); the group is set to the last
    entry before it."""
    stream = stream_key(stream)
    position = parse_position(to, now=now) if isinstance(to, str) else to
    try:
        if not await redis.exists(stream):
            raise UnknownStream(f"unknown stream {stream}")
        groups = {info["name"].decode(): info for info in await _groups(redis, stream)}
        if group not in groups:
            raise UnknownGroup(
                f"unknown group {group!r} on {stream} (groups: {', '.join(groups) or 'none'})"
            )
        current = groups[group]["last-delivered-id"].decode()
        if position.at_ms is not None:
            before: Any = await redis.xrevrange(stream, max=f"({position.at_ms}-0", count=1)
            target = before[0][0].decode() if before else "0-0"
        elif position.entry_id == "$":
            info: Any = await redis.xinfo_stream(stream)
            target = info["last-generated-id"].decode()
        else:
            target = str(position.entry_id)
        low, high = sorted((current, target), key=_id_key)
        moved = await _count(redis, stream, low, high)
        pending = int((await redis.xpending(stream, group))["pending"])
        pending_reread = (
            await _count_pending(redis, stream, group, f"({target}", "+") if pending else 0
        )
    except TRANSIENT as exc:
        raise simpul_error(exc) from exc
    backwards = _id_key(target) < _id_key(current)
    return ResetPlan(
        stream,
        group,
        current,
        target,
        reread=moved if backwards else 0,
        skipped=0 if backwards else moved,
        pending=pending,
        pending_reread=pending_reread,
        asked=position.describe(),
    )


async def reset_group(redis: Redis, plan: ResetPlan) -> ResetPlan:
    """Apply ``plan`` (``XGROUP SETID``); returns it marked applied."""
    try:
        await redis.xgroup_setid(plan.stream, plan.group, plan.target)
    except TRANSIENT as exc:
        raise simpul_error(exc) from exc
    except ResponseError as exc:
        if "NOGROUP" in str(exc):
            raise UnknownGroup(f"group {plan.group} of {plan.stream} vanished meanwhile") from exc
        raise
    _log.warning(
        "group_reset",
        stream=plan.stream,
        group=plan.group,
        previous=plan.current,
        position=plan.target,
        reread=plan.reread,
        skipped=plan.skipped,
        by=os_user(),
    )
    return replace(plan, applied=True)
