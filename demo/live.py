"""The demo's live view: how far the router and each service have read, refreshed while the day
plays (``python -m demo``)."""

from __future__ import annotations

import asyncio
import contextlib

from redis.asyncio import Redis
from rich.live import Live
from rich.table import Table

from bus import keys


async def flow(redis: Redis) -> list[tuple[str, int, dict[str, tuple[int, int]]]]:
    """Per department stream: length, and per group (lag, pending): the router's on the
    stream itself, each service's on its inbox of that stream."""
    rows: dict[str, tuple[int, dict[str, tuple[int, int]]]] = {}
    async for key in redis.scan_iter(match="simpul:*", count=1000, _type="stream"):
        name = key.decode()
        inbox = keys.inbox_of(name)
        if inbox is None and not keys.is_stream(name):
            continue  # an intake, dead letters
        stream = inbox[0] if inbox else name
        length, groups = rows.get(stream, (0, {}))
        if inbox is None:
            length = int((await redis.xinfo_stream(name))["length"])
        for g in await redis.xinfo_groups(name):
            groups[g["name"].decode()] = (int(g.get("lag") or 0), int(g["pending"]))
        rows[stream] = (length, groups)
    return sorted((stream, length, groups) for stream, (length, groups) in rows.items())


async def settled(redis: Redis) -> bool:
    """Every group of every intake (the router's), department stream (the router's) and inbox
    (its service's) read everything and holds nothing pending."""
    found = False
    async for key in redis.scan_iter(match="simpul:*", count=1000, _type="stream"):
        name = key.decode()
        if not (keys.is_stream(name) or keys.is_inbox(name) or keys.intake_owner(name)):
            continue
        found = True
        last = (await redis.xinfo_stream(name))["last-generated-id"]
        groups = await redis.xinfo_groups(name)
        if not groups:
            return False
        for g in groups:
            if g["last-delivered-id"] != last or g["pending"]:
                return False
    return found


def live_table(rows: list[tuple[str, int, dict[str, tuple[int, int]]]], stage: str) -> Table:
    table = Table(title=f"Simpul — {stage}", title_justify="left")
    table.add_column("stream")
    table.add_column("events", justify="right")
    table.add_column("router, then each service's inbox (pending)")
    for stream, length, groups in rows:
        table.add_row(
            stream,
            str(length),
            ", ".join(f"{g} ({p})" if p else g for g, (_, p) in sorted(groups.items())),
        )
    return table


async def watch(redis: Redis, live: Live, stage: list[str], done: asyncio.Event) -> None:
    """Refresh the live table until ``done``. It is stopped by ``done``, not cancelled:
    redis-py 8.1 can lose a cancellation that lands inside a command, and the task then hangs."""
    while not done.is_set():
        live.update(live_table(await flow(redis), stage[0]))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), 0.25)
