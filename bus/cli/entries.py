"""Operator commands that read entries: ``simpul tail`` and ``simpul pending``.

Read-only: neither joins a consumer group, acks or changes anything in Redis. Each reads
``SIMPUL_REDIS_URL``; tables are for people, ``--json`` for machines. Exit codes: 0 fine, 2 a
usage error or Redis unreachable (a message, never a traceback).

JSON shapes (stable; fields may be added, never renamed or removed):

* ``tail --json``: one JSON object per line, :func:`bus.admin.entries.decode_entry`.
* ``pending --json``: ``{"stream", "group", "total", "entries": [{entry_id, consumer, idle_s,
  deliveries, age_s, exists, type}]}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer
from redis.asyncio import Redis
from rich.console import Console
from rich.table import Table
from rich.text import Text

from bus.admin import streams
from bus.admin.entries import PendingEntry, decode_entry, pending_entries
from bus.admin.thresholds import duration
from bus.cli.common import AsJson, Schemas, fail, run_with_redis
from bus.cli.contracts import load_or_warn
from bus.connection import TRANSIENT
from bus.contracts import default_registry
from bus.decoding import text as _text
from bus.errors import ConfigurationError, SimpulError
from bus.logging import get_logger, os_user

_out = Console()
_err = Console(stderr=True, soft_wrap=True)
_log = get_logger("bus.cli")
T = TypeVar("T")

Stream = Annotated[
    str,
    typer.Argument(help="aggregate (dukcapil.citizen), event type, or key (simpul:{...})"),
]


def _run(work: Callable[[Redis], Awaitable[T]]) -> T:
    return run_with_redis(_err, work)


# -- tail --------------------------------------------------------------------------------------


def tail(
    stream: Stream,
    group: Annotated[
        str | None,
        typer.Option(help="show what this group has not been delivered yet (read-only)"),
    ] = None,
    *,
    count: Annotated[int, typer.Option(min=0, max=10_000, help="entries to show")] = 10,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="keep showing new events")] = False,
    reveal: Annotated[bool, typer.Option(help="show personal fields unmasked (logged)")] = False,
    as_json: AsJson = False,
    schemas: Schemas = "schemas",
) -> None:
    """The newest events of a stream, decoded, personal fields masked (unless --reveal).

    Never joins a group or acks: --follow reads with XREAD BLOCK; Ctrl-C stops it (exit 0).
    """
    try:
        key = streams.resolve_stream(stream)
    except SimpulError as exc:
        raise fail(_err, exc) from None
    load_or_warn(schemas, _err)
    if reveal:
        _log.warning(
            "tail_revealed", stream=key, group=group, count=count, follow=follow, by=os_user()
        )

    def show(entries: list[tuple[Any, Any]]) -> str | None:
        last = None
        for entry_id, raw in entries:
            last = _text(entry_id)
            event = decode_entry(key, last, raw, registry=default_registry, reveal=reveal)
            _print_event(event, as_json=as_json)
        return last

    async def work(redis: Redis) -> None:
        registered = key in {m.__contract__.stream for m in default_registry}
        if not await streams.stream_exists(redis, key):
            if not registered:
                raise ConfigurationError(await _unknown_stream(redis, key))
            if group is not None:
                raise ConfigurationError(f"no consumer group {group!r} on {key} (no events yet)")
            if not follow:
                _err.print(f"no events yet on {key}")
                return
        entries, start = await _first_entries(redis, key, group, count)
        start = show(entries) or start
        if follow:
            await _follow(redis, key, start, show)

    _run(work)


async def _first_entries(
    redis: Redis, key: str, group: str | None, count: int
) -> tuple[list[tuple[Any, Any]], str]:
    """The entries to show first, and the id to follow from after them."""
    entries: Any
    if group is not None:
        after = await _group_position(redis, key, group)
        start = f"({after}" if after != "0-0" else "-"
        entries = await redis.xrange(key, min=start, count=count) if count else []
        return list(entries), after
    newest: Any = await redis.xrevrange(key, count=count) if count else []
    entries = list(reversed(newest or []))
    if entries:
        return entries, _text(entries[-1][0])
    if not await streams.stream_exists(redis, key):
        return [], "0-0"
    info: Any = await redis.xinfo_stream(key)
    return [], _text(info.get("last-generated-id") or "0-0")


async def _follow(
    redis: Redis, key: str, start: str, show: Callable[[list[tuple[Any, Any]]], str | None]
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    _err.print(f"following {key} (Ctrl-C stops)")
    last = start
    try:
        while not stop.is_set():
            read = asyncio.ensure_future(redis.xread({key: last}, count=100, block=1000))
            halt = asyncio.ensure_future(stop.wait())
            done, _ = await asyncio.wait({read, halt}, return_when=asyncio.FIRST_COMPLETED)
            if read not in done:
                read.cancel()
                with contextlib.suppress(asyncio.CancelledError, *TRANSIENT):
                    await read
                break
            halt.cancel()
            reply: Any = read.result() or []
            for _, entries in reply:
                last = show(list(entries)) or last
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def _group_position(redis: Redis, key: str, group: str) -> str:
    groups = {_text(g["name"]): g for g in await redis.xinfo_groups(key)}
    if group not in groups:
        known = ", ".join(sorted(groups)) or "none"
        raise ConfigurationError(f"no consumer group {group!r} on {key} (groups: {known})")
    return _text(groups[group].get("last-delivered-id") or "0-0")


async def _unknown_stream(redis: Redis, key: str) -> str:
    known = (
        ", ".join(k[len("simpul:{") : -1] for k in await streams.stream_keys(redis)) or "none yet"
    )
    return f"no stream {key} in Redis and no contract declares it (streams: {known})"


def _print_event(event: dict[str, Any], *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(event, ensure_ascii=False), flush=True)
        return
    line = Text()
    line.append(event["entry_id"], style="dim")
    if "error" in event:
        line.append(f"  {event['error']}", style="yellow")
        _out.print(line, soft_wrap=True)
        if event.get("fields"):
            _out.print(Text("    " + json.dumps(event["fields"], ensure_ascii=False)))
    else:
        line.append(f"  {event['time']}  ")
        line.append(event["type"], style="bold" if event["known_type"] else "bold yellow")
        line.append(f"  id={event['id']}  source={event['source']}", style="dim")
        for name in ("subject", "correlationid", "causationid"):
            if event.get(name):
                line.append(f"  {name}={event[name]}", style="dim")
        _out.print(line, soft_wrap=True)
        data = event["data"]
        text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
        _out.print(Text(f"    {text}"), soft_wrap=True)
    sys.stdout.flush()


# -- pending -----------------------------------------------------------------------------------


def pending(
    stream: Stream,
    group: Annotated[str, typer.Argument(help="the consumer group (the service's name)")],
    count: Annotated[int, typer.Option(min=1, max=10_000, help="oldest entries to show")] = 20,
    as_json: AsJson = False,
) -> None:
    """Entries delivered to GROUP and not acked: consumer, idle, deliveries, type, and whether
    the entry still exists (trimmed or deleted while pending means it is lost)."""
    try:
        key = streams.resolve_stream(stream)
    except SimpulError as exc:
        raise fail(_err, exc) from None

    async def work(redis: Redis) -> tuple[int, list[PendingEntry]]:
        if not await streams.stream_exists(redis, key):
            raise ConfigurationError(await _unknown_stream(redis, key))
        entries = await pending_entries(redis, key, group, count=count)
        total = int((await redis.xpending(key, group))["pending"])
        return total, entries

    total, entries = _run(work)
    if as_json:
        print(
            json.dumps(
                {
                    "stream": key,
                    "group": group,
                    "total": total,
                    "entries": [e.model_dump(mode="json") for e in entries],
                },
                indent=2,
            )
        )
        return
    table = Table(
        title=f"pending of {group} on {key}: {len(entries)} of {total} shown, oldest first",
        title_justify="left",
    )
    table.add_column("entry", no_wrap=True)
    for name in ("consumer", "idle", "deliveries", "age", "type", "entry exists"):
        table.add_column(name, justify="right" if name in ("idle", "deliveries", "age") else "left")
    for e in entries:
        table.add_row(
            e.entry_id,
            e.consumer,
            duration(e.idle_s),
            str(e.deliveries),
            duration(e.age_s),
            e.type or "-",
            "yes" if e.exists else "[red]gone[/red]",
        )
    _out.print(table)
    gone = sum(not e.exists for e in entries)
    if gone:
        _out.print(
            f"[red]{gone} pending entr{'y' if gone == 1 else 'ies'} no longer exist"
            f"{'s' if gone == 1 else ''}[/red]: trimmed or deleted while pending, the "
            f"event{' was' if gone == 1 else 's were'} lost before {group} processed "
            f"{'it' if gone == 1 else 'them'} (retention too short?)",
            soft_wrap=True,
        )
