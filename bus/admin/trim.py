"""Trimming streams (``simpul trim``).

(``XGROUP SETID``) to an id, a time or ``$``/``0``, saying how many entries the group will read
again or skip. :func:`plan_trim`/:func:`trim` delete entries older than an age (``XTRIM MINID``);
before Redis 8.2 trimming ignores consumer groups, so :func:`trim` refuses — atomically, in the
trimming script — while a group has not read, or still holds pending, an entry that would go.

"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from bus import keys
from bus.admin.positions import _count, _count_pending, _ms, _time_of
from bus.admin.streams import UnknownStream, _groups, stream_key
from bus.connection import TRANSIENT, simpul_error
from bus.entry_ids import MAX_SEQ as _MAX_SEQ
from bus.errors import SimpulError
from bus.functions import BusFunction
from bus.logging import get_logger, os_user
from bus.publisher import Retention

__all__ = [
    "GroupLoss",
    "TrimPlan",
    "TrimRefused",
    "plan_trim",
    "retention_age",
    "trim",
]

_log = get_logger("bus.admin.trim")


class TrimRefused(SimpulError):
    """Trimming would take entries a group has not read yet or still holds pending."""

    def __init__(self, stream: str, group: str, why: str) -> None:
        self.stream, self.group, self.why = stream, group, why
        what = "has not read" if why == "unread" else "still holds pending"
        super().__init__(
            f"group {group} {what} entries of {stream} that trimming would delete; "
            "nothing trimmed (force to trim anyway: those events are then lost for it)"
        )


# -- trimming ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GroupLoss:
    """What trimming takes from one group: entries it has not read, or holds pending."""

    group: str
    unread: int
    pending: int


@dataclass(frozen=True, slots=True)
class TrimPlan:
    stream: str
    minid: str  # entries with smaller ids go
    cutoff: str  # the same as a time
    entries: int
    losses: tuple[GroupLoss, ...]  # groups that would lose entries they have not processed

    @property
    def safe(self) -> bool:
        return not self.losses

    def as_dict(self) -> dict[str, Any]:
        return {
            "stream": self.stream,
            "minid": self.minid,
            "cutoff": self.cutoff,
            "entries": self.entries,
            "safe": self.safe,
            "losses": [
                {"group": x.group, "unread": x.unread, "pending": x.pending} for x in self.losses
            ],
        }


def retention_age(retention: Retention, stream: str) -> timedelta | None:
    """The age ``retention`` keeps entries of ``stream`` for (None: kept for ever)."""
    aggregate = stream[len(keys.PREFIX) + 2 : -1]
    return retention.per_aggregate.get(aggregate, retention.default)


async def plan_trim(
    redis: Redis, stream: str, *, older_than: timedelta, now: datetime | None = None
) -> TrimPlan:
    """Plan deleting the entries of ``stream`` recorded more than ``older_than`` ago, and say
    which groups would lose entries they have not read or still hold pending."""
    stream = stream_key(stream)
    cutoff = _ms((now or datetime.now(UTC)) - older_than)
    minid, below = f"{cutoff}-0", f"{cutoff - 1}-{_MAX_SEQ}"
    try:
        if not await redis.exists(stream):
            raise UnknownStream(f"unknown stream {stream}")
        entries = await _count(redis, stream, "-", below)
        losses = []
        for info in await _groups(redis, stream) if entries else []:
            name = info["name"].decode()
            last = info["last-delivered-id"].decode()
            unread = await _count(redis, stream, last, below)
            pending = await _count_pending(redis, stream, name, "-", below)
            if unread or pending:
                losses.append(GroupLoss(name, unread, pending))
    except TRANSIENT as exc:
        raise simpul_error(exc) from exc
    return TrimPlan(stream, minid, _time_of(minid), entries, tuple(losses))


async def trim(redis: Redis, plan: TrimPlan, *, force: bool = False) -> int:
    """Trim as planned; returns how many entries went. Unless ``force``, raises TrimRefused —
    checked in the trimming script itself, so a group that fell behind after the plan counts —
    when a group has not read, or holds pending, an entry that would go."""
    try:
        trimming = BusFunction(redis, "trim")  # bus/trim.lua
        reply = await trimming(keys=[plan.stream], args=[plan.minid, "1" if force else "0"])
    except TRANSIENT as exc:
        raise simpul_error(exc) from exc
    except ResponseError as exc:
        if "no such key" in str(exc).lower():
            raise UnknownStream(f"stream {plan.stream} vanished meanwhile") from exc
        raise
    if int(reply[0]) == 0:
        raise TrimRefused(plan.stream, reply[1].decode(), reply[2].decode())
    _log.warning(
        "stream_trimmed",
        stream=plan.stream,
        minid=plan.minid,
        entries=int(reply[1]),
        forced=force and not plan.safe,
        by=os_user(),
    )
    return int(reply[1])
