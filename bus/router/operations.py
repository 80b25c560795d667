"""The router's operator commands (decision 0011): far-future ids on a stream
(:func:`ahead_of_time`), a producer's fresh intake (:func:`reset_intake`), the migration from
shared groups to inboxes (:func:`migrate`) and the backfill of a new subscription
(:func:`backfill`). The trim of an acked inbox (``trim_inbox``) lives in bus.router.common:
the replicas run it too."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError, WatchError

from bus import keys
from bus.errors import ConfigurationError
from bus.logging import get_logger
from bus.router.common import Route, _after, _id_key, _text

if TYPE_CHECKING:
    from bus.router.engine import Router

_log = get_logger("bus.router")


# -- far-future entry ids -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AheadOfTime:
    """A stream whose last-generated id lies ahead of Redis's clock."""

    stream: str
    last_id: str
    ahead_s: float


async def ahead_of_time(
    redis: Redis, streams: Sequence[str], *, tolerance: timedelta = timedelta(minutes=5)
) -> list[AheadOfTime]:
    """The streams whose ``last-generated-id`` is more than ``tolerance`` ahead of ``TIME``: an
    explicit far-future (or the maximum) id was added to them, so every later ``*`` id lies
    there too (or every later add fails)."""
    seconds, micros = await redis.time()
    now_ms = int(seconds) * 1000 + int(micros) // 1000
    found = []
    for stream in streams:
        try:
            info = await redis.xinfo_stream(stream)
        except ResponseError:
            continue
        last = _text(info["last-generated-id"])
        ms = int(last.split("-")[0])
        ahead_ms = ms - now_ms
        if ahead_ms > tolerance.total_seconds() * 1000:
            found.append(AheadOfTime(stream, last, ahead_ms / 1000))
    return found


@dataclass(frozen=True, slots=True)
class IntakeReset:
    """What :func:`reset_intake` did."""

    intake: str
    moved: int
    last_id_before: str


async def reset_intake(
    redis: Redis,
    principal: str,
    *,
    hold_ms: int = 60_000,
    attempts: int = 20,
    dry_run: bool = False,
) -> IntakeReset:
    """Give a producer a fresh intake (as the admin): the entries the router has not settled yet
    (pending or never read) move, in order, to a new stream with server-generated ids, which
    takes the intake's name; the router's group starts at its beginning. Router replicas stand
    off while it runs (it holds their lease). Recovers an intake wedged by a far-future or
    maximum explicit id; the department stream and every other intake are untouched.

    The producer may go on publishing meanwhile (an intake ahead of time still takes entries):
    the copy, the delete and the rename are one transaction that runs only if the intake did
    not change since it was read (WATCH), else it is read again — an entry added during the
    reset is never dropped with the old stream. After ``attempts`` changes in a row it gives up
    with nothing changed and says to stop the producer first. ``dry_run``: what would move,
    read without the lease; nothing changes."""
    intake = keys.intake(principal)
    if dry_run:
        plan = await _plan(redis, intake)
        if plan is None:
            return IntakeReset(intake, 0, "0-0")
        keep, last_before = plan
        return IntakeReset(intake, len(keep), last_before)
    lease = keys.router_lease(intake)
    holder = f"reset-intake-{time.time_ns()}"
    # Take the lease from whoever has it; a router replica renewing meanwhile finds it taken.
    await redis.set(lease, holder, px=hold_ms)
    try:
        for _ in range(attempts):
            async with redis.pipeline(transaction=True) as pipe:
                await pipe.watch(intake)
                plan = await _plan(redis, intake)
                if plan is None:
                    return IntakeReset(intake, 0, "0-0")
                keep, last_before = plan
                fresh = f"{intake}:reset"
                pipe.multi()  # type: ignore[no-untyped-call]
                pipe.delete(fresh)
                for _, fields in keep:
                    pipe.xadd(fresh, fields)  # type: ignore[arg-type]
                pipe.xgroup_create(fresh, keys.ROUTER_GROUP, id="0", mkstream=True)
                pipe.delete(intake)
                pipe.rename(fresh, intake)
                try:
                    await pipe.execute()
                except WatchError:  # the producer added (or something trimmed) meanwhile
                    continue
            _log.warning("intake_reset", intake=intake, moved=len(keep), last_id_before=last_before)
            return IntakeReset(intake, len(keep), last_before)
    finally:
        await redis.delete(lease)
    raise ConfigurationError(
        f"{intake} changed {attempts} times while it was being read (its producer publishes "
        f"fast): stop {principal}'s adapter, then run the reset again. Nothing changed"
    )


async def _plan(
    redis: Redis, intake: str
) -> tuple[list[tuple[bytes, dict[bytes, bytes]]], str] | None:
    """What a reset of ``intake`` moves (its unsettled entries, in order) and the intake's last
    id as it stands; None when there is no intake."""
    try:
        info = await redis.xinfo_stream(intake)
    except ResponseError:
        return None
    keep = await _unsettled(redis, intake)
    return keep, _text(info["last-generated-id"])


async def _unsettled(redis: Redis, intake: str) -> list[tuple[bytes, dict[bytes, bytes]]]:
    """The intake's entries the router has not settled: pending with its group, or after
    what the group was last delivered."""
    groups = {_text(g["name"]): g for g in await redis.xinfo_groups(intake)}
    router = groups.get(keys.ROUTER_GROUP)
    delivered = _text(router["last-delivered-id"]) if router else "0-0"
    pending: set[bytes] = set()
    if router and int(router["pending"]):
        items: Any = await redis.xpending_range(
            intake, keys.ROUTER_GROUP, min="-", max="+", count=1_000_000
        )
        for item in items:
            pending.add(item["message_id"])
    return [
        (entry_id, fields)
        async for entry_id, fields in _scan(redis, intake)
        if entry_id in pending or _after(entry_id.decode(), delivered)
    ]


async def _scan(redis: Redis, stream: str, count: int = 500) -> Any:
    start = "-"
    while True:
        batch: Any = await redis.xrange(stream, min=start, max="+", count=count)
        for entry_id, fields in batch:
            yield entry_id, fields
        if len(batch) < count:
            return
        start = "(" + batch[-1][0].decode()


# -- migration from shared groups, backfill of a new subscription ----------------------------


@dataclass
class Migration:
    """What :func:`migrate` did: per inbox, how many entries it wrote (and ``done`` markers)."""

    positions: dict[str, str] = field(default_factory=dict)  # stream -> router group start
    copied: dict[str, int] = field(default_factory=dict)  # inbox -> entries written
    markers: int = 0


async def migrate(router: Router, *, hold_ms: int = 120_000) -> Migration:
    """Move a running bus from shared groups on the department streams to inboxes (decision
    0011, "Migration"). ``router`` must be built on an admin connection; the services must be
    stopped (their groups' positions frozen) and no router running. For each department
    stream: the router's group is created at the stream's current end R; for each of its
    subscriptions whose service group exists there, the group's pending entries and every
    entry after its last-delivered id up to R are written to its inbox, in id order, as the
    router writes (its high-water mark advances with them); the group's ``done`` markers of
    those events are copied, so a ``once`` handler that ran but was not acked does not run
    again. A stream already migrated
    (the router's group exists) is left alone."""
    report = Migration()
    redis = router.redis
    for stream, by_type in sorted(router.routes.items()):
        lease = keys.router_lease(stream)
        await redis.set(lease, "migrate", px=hold_ms)
        try:
            await _migrate_stream(router, stream, by_type, report)
        finally:
            await redis.delete(lease)
    return report


async def _migrate_stream(
    router: Router, stream: str, by_type: Mapping[str, list[Route]], report: Migration
) -> None:
    redis = router.redis
    try:
        info: Any = await redis.xinfo_stream(stream)
        end = _text(info["last-generated-id"])
    except ResponseError:  # no stream yet: nothing to copy
        end = "0-0"
    try:
        await redis.xgroup_create(stream, keys.ROUTER_GROUP, id=end, mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" in str(exc):
            return  # migrated before
        raise
    report.positions[stream] = end
    groups = {_text(g["name"]): g for g in await redis.xinfo_groups(stream)}
    routes = {r.group: r for rs in by_type.values() for r in rs}
    for group, route in sorted(routes.items()):
        found = groups.get(group)
        if found is None:
            continue  # never consumed: the inbox starts with what the router forwards
        types = {t: r for t, rs in by_type.items() for r in rs if r.group == group}
        copied, markers = await _copy(router, stream, route, types=types, group=found, end=end)
        report.copied[route.inbox] = copied
        report.markers += markers


async def _copy(
    router: Router, stream: str, route: Route, *, types: Mapping[str, Route], group: Any, end: str
) -> tuple[int, int]:
    """``types``: each event type routed to this group, with its route (its disclosure)."""
    redis = router.redis
    wanted: dict[bytes, dict[bytes, bytes]] = {}
    if int(group["pending"]):
        items: Any = await redis.xpending_range(
            stream, route.group, min="-", max="+", count=1_000_000
        )
        for item in items:
            entry: Any = await redis.xrange(stream, min=item["message_id"], max=item["message_id"])
            if entry:
                wanted[entry[0][0]] = entry[0][1]
    start = "(" + _text(group["last-delivered-id"])
    async for entry_id, fields in _scan_from(redis, stream, start, end):
        wanted[entry_id] = fields
    calls, events = [], []
    for entry_id in sorted(wanted, key=lambda e: _id_key(e.decode())):
        fields = wanted[entry_id]
        typed = types.get(fields.get(b"type", b"").decode(errors="replace"))
        if typed is None or not router._genuine(stream, entry_id, fields):
            continue  # not this group's, or no producer's event: the fan-out withheld it too
        event_id = fields.get(b"id", b"").decode(errors="replace") or entry_id.decode()
        calls.append((entry_id, router._forward(fields, typed, entry_id.decode())))
        events.append(event_id)
    written = await router._forward_all(route.inbox, calls)  # none at or below its mark
    markers = 0
    for event_id in events:
        old = keys.done(stream, route.group, event_id)
        value, ttl = await redis.get(old), await redis.pttl(old)
        if value == b"done":
            await redis.set(
                keys.done(route.inbox, route.group, event_id),
                value,
                px=ttl if ttl > 0 else router.config.dedupe_ttl_ms,
            )
            markers += 1
    return written, markers


async def backfill(router: Router, stream: str, group: str, *, after: str = "0-0") -> int:
    """Write the entries of ``stream`` after ``after`` up to the router's position on it into
    ``group``'s inbox (a subscription added later). Run it with the routers stopped, before
    they start with the new topology: their writes would otherwise interleave with these."""
    routes = {r.group: r for rs in router.routes.get(stream, {}).values() for r in rs}
    route = routes.get(group)
    if route is None:
        raise ValueError(f"group {group} has no subscription on {stream} in the topology")
    groups = {_text(g["name"]): g for g in await router.redis.xinfo_groups(stream)}
    mine = groups.get(keys.ROUTER_GROUP)
    end = _text(mine["last-delivered-id"]) if mine else "0-0"
    types = {t: r for t, rs in router.routes[stream].items() for r in rs if r.group == group}
    fake = {"pending": 0, "last-delivered-id": after}
    copied, _ = await _copy(router, stream, route, types=types, group=fake, end=end)
    return copied


async def _scan_from(redis: Redis, stream: str, start: str, end: str, count: int = 500) -> Any:
    if _id_key(end) == (0, 0):
        return
    while True:
        batch: Any = await redis.xrange(stream, min=start, max=end, count=count)
        for entry_id, fields in batch:
            yield entry_id, fields
        if len(batch) < count:
            return
        start = "(" + batch[-1][0].decode()
