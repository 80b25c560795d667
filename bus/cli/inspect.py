"""Operator commands over the bus snapshot: ``simpul status``, ``map`` and ``exporter``.

Read-only: none of them joins a consumer group, acks or changes anything in Redis. Each reads
``SIMPUL_REDIS_URL``; tables are for people, ``--json`` for machines. Exit codes: 0 fine, 1 a
threshold is breached (``status``), 2 a usage error or Redis unreachable (a message, never a
traceback).

JSON shapes (stable; fields may be added, never renamed or removed):

* ``status --json``: ``{"healthy": bool, "breaches": [Breach], "thresholds": Thresholds,
  "snapshot": BusSnapshot}`` — the models of :mod:`bus.admin.snapshots` as
  ``model_dump(mode="json")``:
  ``snapshot.streams[]`` = ``{key, aggregate, exists, registered, length, first_entry_id,
  last_entry_id, last_generated_id, first_entry_age_s, last_entry_age_s, groups[],
  dead_letters{group: n}}``, ``groups[]`` = ``{name, consumer_count, consumers[{name, pending,
  idle_s, inactive_s}], pending, oldest_pending_id, oldest_pending_age_s, last_delivered_id,
  entries_read, lag, dead_letters}``, plus ``snapshot.quarantine{adapter: n}``,
  ``redis_version``, ``reduced`` (Redis 6.2: ``lag`` / ``entries_read`` may be null),
  ``taken_at``, ``snapshot.adapters[]`` = ``{name, cdc, state, position, behind_rows,
  behind_bytes, behind_seconds, retained_bytes, read, published, duplicates, quarantined,
  skipped, last_publish_at, last_error, reported_at, age_s}`` (:class:`bus.adapter.report.
  AdapterReport`); routed delivery (decision 0011): ``snapshot.inboxes[]`` = ``{key, group,
  stream, types[], exists, length, last_generated_id, consumer_group (a group as above, or
  null), dead_letters}``, ``snapshot.intakes[]`` = ``{key, principal, exists, length, backlog,
  router_pending, router_reading, oldest_age_s, last_generated_id, dead_letters}``,
  ``snapshot.ahead_of_time[]`` = ``{key, last_generated_id, ahead_s}``; ``breaches[]`` =
  ``{kind, stream, group, adapter, principal, value, limit, message}``.
* ``map --format json``: :meth:`bus.admin.flowmap.FlowMap.to_json`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from enum import StrEnum
from functools import partial
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from redis.asyncio import Redis
from redis.exceptions import RedisError
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from bus.adapter.report import AdapterReport
from bus.admin import flowmap, inspect, snapshots
from bus.admin.exporter import BusCollector, exporter_app
from bus.admin.replication import Topology, topology
from bus.admin.thresholds import Breach, Thresholds, breaches, duration, replication_breaches, size
from bus.cli.common import AsJson, Schemas, fail, import_from_cwd, redis_url, run_with_redis
from bus.cli.contracts import load_or_warn
from bus.connection import TRANSIENT, connect, location, translate
from bus.contracts import default_registry
from bus.errors import SimpulError
from bus.http import serve
from bus.logging import get_logger
from bus.settings import Settings
from bus.specs import catalogue

_out = Console()
_err = Console(stderr=True, soft_wrap=True)
_log = get_logger("bus.cli")
T = TypeVar("T")

_LIMIT_HELP = "N, or 'off'; default from {env}"


def _limit(name: str, unit: str = "") -> Any:
    env = f"SIMPUL_STATUS_{name.upper()}"
    return typer.Option(
        f"--{name.replace('_', '-').removesuffix('-s')}",
        help=f"{unit}{_LIMIT_HELP.format(env=env)}",
        show_default=False,
    )


# -- plumbing ----------------------------------------------------------------------------------


def _run(work: Callable[[Redis], Awaitable[T]], *, url: str | None = None) -> T:
    return run_with_redis(_err, work, url=url)


def _contracts(package: str) -> None:
    """Register the contracts (their streams, owners and personal fields)."""
    load_or_warn(package, _err)


# -- status ------------------------------------------------------------------------------------


def status(
    *,
    as_json: AsJson = False,
    max_lag: Annotated[
        str | None, _limit("max_lag", "entries not yet delivered to a group; ")
    ] = None,
    max_pending_age: Annotated[
        str | None, _limit("max_pending_age_s", "seconds, oldest unacked entry; ")
    ] = None,
    max_dead_letters: Annotated[
        str | None, _limit("max_dead_letters", "dead letters per group; ")
    ] = None,
    max_quarantine: Annotated[
        str | None, _limit("max_quarantine", "records per adapter's quarantine; ")
    ] = None,
    max_consumer_idle: Annotated[
        str | None, _limit("max_consumer_idle_s", "seconds no consumer read while work waits; ")
    ] = None,
    max_silence: Annotated[
        str | None, _limit("max_silence_s", "seconds since a stream's newest event; ")
    ] = None,
    max_source_behind: Annotated[
        str | None, _limit("max_source_behind_s", "seconds a CDC adapter is behind its source; ")
    ] = None,
    max_source_behind_bytes: Annotated[
        str | None, _limit("max_source_behind_bytes", "bytes of log a CDC adapter has to publish; ")
    ] = None,
    max_source_retained_bytes: Annotated[
        str | None, _limit("max_source_retained_bytes", "bytes of log kept for a CDC adapter; ")
    ] = None,
    max_report_age: Annotated[
        str | None, _limit("max_report_age_s", "seconds since an adapter last reported; ")
    ] = None,
    max_intake_backlog: Annotated[
        str | None, _limit("max_intake_backlog", "entries of an intake not yet admitted; ")
    ] = None,
    max_ahead: Annotated[
        str | None, _limit("max_ahead_s", "seconds a stream's last id is ahead of Redis TIME; ")
    ] = None,
    topology_file: Annotated[
        Path | None,
        typer.Option(
            "--topology",
            envvar="SIMPUL_TOPOLOGY",
            dir_okay=False,
            help="the topology YAML: with `delivery: router`, every subscription's inbox and "
            "producer's intake is listed (with its types) even before it exists",
        ),
    ] = None,
    schemas: Schemas = "schemas",
) -> None:
    """The whole bus at a glance: streams, consumer groups, dead letters, quarantines, adapters.

    Exit 0 when healthy, 1 when a threshold is breached (each is printed), 2 when Redis cannot
    be reached or an option is wrong. Limits: options, else SIMPUL_STATUS_MAX_LAG (1000),
    ..._MAX_PENDING_AGE_S (600), ..._MAX_DEAD_LETTERS (0), ..._MAX_QUARANTINE (0),
    ..._MAX_CONSUMER_IDLE_S (300), ..._MAX_SILENCE_S (off), ..._MAX_SOURCE_BEHIND_S (300),
    ..._MAX_SOURCE_BEHIND_BYTES (off), ..._MAX_SOURCE_RETAINED_BYTES (1 GiB),
    ..._MAX_REPORT_AGE_S (60), ..._MAX_INTAKE_BACKLOG (1000), ..._MAX_AHEAD_S (300).

    Routed delivery (decision 0011): each subscription's inbox under its service (types, the
    stream feeding it, its group's lag, pending and dead letters), each producer's intake with
    the entries the router has not admitted yet, and every stream whose ids lie ahead of Redis
    TIME.
    """
    try:
        thresholds = Thresholds.load(
            max_lag=max_lag,
            max_pending_age_s=max_pending_age,
            max_dead_letters=max_dead_letters,
            max_quarantine=max_quarantine,
            max_consumer_idle_s=max_consumer_idle,
            max_silence_s=max_silence,
            max_source_behind_s=max_source_behind,
            max_source_behind_bytes=max_source_behind_bytes,
            max_source_retained_bytes=max_source_retained_bytes,
            max_report_age_s=max_report_age,
            max_intake_backlog=max_intake_backlog,
            max_ahead_s=max_ahead,
        )
    except SimpulError as exc:
        raise fail(_err, exc) from None
    _contracts(schemas)
    plan = _plan(topology_file)
    url = _url_or_fail()
    snap, topo = _run(partial(_snapshot_and_topology, plan=plan), url=url)
    found = breaches(snap, thresholds) + replication_breaches(topo)
    if as_json:
        print(
            json.dumps(
                {
                    "healthy": not found,
                    "breaches": [b.model_dump(mode="json") for b in found],
                    "thresholds": thresholds.model_dump(mode="json"),
                    "snapshot": snap.model_dump(mode="json"),
                    "topology": topo.model_dump(mode="json"),
                },
                indent=2,
            )
        )
    else:
        _print_status(snap, found, _where(url, topo), topo)
    if found:
        raise typer.Exit(1)


def _plan(path: Path | None) -> inspect.RoutingPlan | None:
    """The inboxes and intakes the topology names (None without one: found in Redis only)."""
    if path is None:
        return None
    try:
        import_from_cwd()
        return inspect.RoutingPlan.load(path)
    except SimpulError as exc:
        raise fail(_err, exc) from None


async def _snapshot_and_topology(
    redis: Redis, *, plan: inspect.RoutingPlan | None = None
) -> tuple[snapshots.BusSnapshot, Topology]:
    snap = await inspect.snapshot(redis, registry=default_registry, plan=plan)
    try:
        return snap, await topology(redis)
    except (RedisError, *TRANSIENT) as exc:
        raise translate(exc) from exc


def _where(url: str, topo: Topology) -> str:
    if topo.shape == "sentinel":  # the URL's host is not what answered
        return f"{topo.shards[0].master} (the master the Sentinels name)"
    return location(url)


def _print_replication(topo: Topology | None) -> None:
    """Only where there is replication to show: one server alone has none."""
    if topo is not None and (topo.shape != "single" or topo.shards[0].replicas):
        _out.print(_topology_table(topo))


def _topology_table(topo: Topology) -> Table:
    """Each master with its replicas (how far behind), then the Sentinels."""
    table = Table(title=f"Replication ({topo.shape})", title_justify="left")
    for column in ("node", "role", "state", "behind", "acked"):
        table.add_column(column)
    for shard in topo.shards:
        table.add_row(shard.master, "master", f"{shard.in_sync} in sync", "", "")
        for r in shard.replicas:
            style = None if r.in_sync else "red"
            table.add_row(
                f"  {r.address}",
                "replica",
                r.state,
                size(r.behind_bytes),
                f"{r.ack_age_s}s ago",
                style=style,
            )
    for s in topo.sentinels:
        if not s.reachable:
            table.add_row(s.address, "sentinel", "unreachable", "", "", style="red")
            continue
        quorum = "quorum ok" if s.quorum_ok else "NO QUORUM"
        table.add_row(
            s.address,
            "sentinel",
            f"{quorum} ({s.sentinels} seen, needs {s.quorum})",
            f"master {s.master}",
            f"epoch {s.config_epoch}",
            style=None if s.quorum_ok else "red",
        )
    return table


def _url_or_fail() -> str:
    try:
        return redis_url()
    except SimpulError as exc:
        raise fail(_err, exc) from None


def _print_status(
    snap: snapshots.BusSnapshot, found: list[Breach], where: str, topo: Topology | None = None
) -> None:
    existing = [s for s in snap.streams if s.exists or s.dead_letters]
    group_count = sum(len(s.groups) for s in existing)
    _out.print(
        f"[bold]Redis {snap.redis_version}[/bold] at {where}: {len(existing)} stream"
        f"{'' if len(existing) == 1 else 's'}, {group_count} consumer group"
        f"{'' if group_count == 1 else 's'}, {len(snap.quarantine)} quarantine"
        f"{'' if len(snap.quarantine) == 1 else 's'}, {len(snap.adapters)} adapter"
        f"{'' if len(snap.adapters) == 1 else 's'}"
    )
    if snap.reduced:
        _out.print(
            f"[yellow]Redis {snap.redis_version} < 7.0: reduced fields[/yellow] — consumer groups "
            "report no lag or entries read; lag is shown only where it is certain (else '?')."
        )
    _print_replication(topo)
    if snap.empty:
        registered = sum(1 for s in snap.streams if s.registered)
        _out.print(
            "No streams yet: nothing has been published"
            + (f" ({registered} registered streams are empty)." if registered else ".")
        )
    else:
        if existing:
            _out.print(_streams_table(existing, found))
        groups = _groups_table(existing, found)
        if groups is not None:
            _out.print(groups)
        if snap.quarantine:
            _out.print(_quarantine_table(snap.quarantine, found))
        if snap.adapters:
            _print_adapters(snap.adapters, found)
        _print_routed(snap, found)
        waiting = [s.aggregate for s in snap.streams if not s.exists and not s.dead_letters]
        if waiting:
            _out.print(f"[dim]No events yet on: {', '.join(waiting)}[/dim]")
    if found:
        _out.print(f"[red bold]{len(found)} problem{'' if len(found) == 1 else 's'}:[/red bold]")
        for breach in found:
            _out.print(Text(f"  ✗ {breach.message}", style="red"))
    else:
        _out.print("[green bold]healthy[/green bold]: no threshold breached")


def _status_table(title: str, *, compact: bool = False) -> Table:
    """A table of `simpul status`: titled on the left, a rule under its header; ``compact``
    (the wide ones) without padding at the edges or around empty cells."""
    return Table(
        title=title,
        title_justify="left",
        box=box.SIMPLE_HEAD,
        collapse_padding=compact,
        pad_edge=not compact,
    )


def _streams_table(streams: list[snapshots.StreamSnapshot], found: list[Breach]) -> Table:
    table = _status_table("streams")
    width = max(len(s.aggregate) for s in streams)
    table.add_column("stream", min_width=width, overflow="fold")  # never cut: it is copied
    for name in ("events", "newest event", "groups"):
        table.add_column(name, justify="right")
    silent = {b.stream for b in found if b.kind == "silence"}
    for s in streams:
        newest = "-" if s.last_entry_age_s is None else duration(s.last_entry_age_s) + " ago"
        events = str(s.length) if s.exists else "deleted"
        table.add_row(
            s.aggregate,
            events,
            newest,
            str(len(s.groups)),
            style="red" if s.aggregate in silent else "",
        )
    return table


def _groups_table(streams: list[snapshots.StreamSnapshot], found: list[Breach]) -> Table | None:
    rows: list[tuple[str, str, list[str]]] = []  # stream, group, values
    for s in streams:
        for g in s.groups:
            rows.append(
                (
                    s.aggregate,
                    g.name,
                    [
                        "?" if g.lag is None else str(g.lag),
                        str(g.pending),
                        "-" if g.oldest_pending_age_s is None else duration(g.oldest_pending_age_s),
                        str(g.consumer_count),
                        "-" if g.idle_s is None else duration(g.idle_s),
                        str(g.dead_letters),
                    ],
                )
            )
        for group, depth in s.dead_letters.items():
            if s.group(group) is None:
                rows.append((s.aggregate, f"{group} (gone)", ["", "", "", "", "", str(depth)]))
    if not rows:
        return None
    table = _status_table("consumer groups", compact=True)
    # Names are never cut: operators copy them into `simpul pending`, `simpul dlq`...
    table.add_column("stream", min_width=max(len(r[0]) for r in rows), overflow="fold")
    table.add_column("group", min_width=max(len(r[1]) for r in rows), overflow="fold")
    headers = ("lag", "pending", "oldest pending", "consumers", "last read", "dead letters")
    for i, name in enumerate(headers):  # last read: how long ago any consumer got an entry
        width = max([len(r[2][i]) for r in rows] + [len(word) for word in name.split()])
        table.add_column(name, justify="right", width=width)
    bad = {(b.stream, b.group) for b in found}
    previous = None
    for stream, group, values in rows:
        shown = "" if stream == previous else stream
        previous = stream
        name = group.removesuffix(" (gone)")
        table.add_row(shown, group, *values, style="red" if (stream, name) in bad else "")
    return table


def _quarantine_table(depths: dict[str, int], found: list[Breach]) -> Table:
    table = _status_table("quarantine")
    table.add_column("adapter")
    table.add_column("records", justify="right")
    bad = {b.adapter for b in found if b.kind == "quarantine"}
    for adapter, depth in depths.items():
        table.add_row(adapter, str(depth), style="red" if adapter in bad else "")
    return table


def _print_adapters(reports: list[AdapterReport], found: list[Breach]) -> None:
    _out.print(_adapters_table(reports, found))
    for report in reports:
        if report.last_error:
            _out.print(Text(f"  {report.name} failing: {report.last_error}", style="yellow"))


def _adapters_table(reports: list[AdapterReport], found: list[Breach]) -> Table:
    table = _status_table("adapters", compact=True)
    # Names are never cut: operators copy them into `simpul quarantine list`...
    table.add_column("adapter", min_width=max(len(r.name) for r in reports), overflow="fold")
    table.add_column("position", overflow="fold")  # the source's own notation, or the checkpoint
    for name in ("behind", "retained", "published", "last seen"):
        table.add_column(name, justify="right", no_wrap=True)
    bad = {b.adapter for b in found}
    stale = {b.adapter for b in found if b.kind == "report_stale"}
    for r in reports:
        table.add_row(
            r.name,
            r.position or "-",
            _behind(r),
            _or_dash(r.retained_bytes, size),
            str(r.published),
            _last_seen(r, stale=r.name in stale),
            style="red" if r.name in bad else "",
        )
    return table


def _behind(r: AdapterReport) -> str:
    """Everything the report knows of how far behind: ``42 s, 695 B`` (CDC), ``120 rows``."""
    parts = []
    if r.behind_seconds is not None:
        parts.append(duration(r.behind_seconds))
    if r.behind_bytes is not None:
        parts.append(size(r.behind_bytes))
    if r.behind_rows is not None:
        parts.append(f"{r.behind_rows} row{'' if r.behind_rows == 1 else 's'}")
    return ", ".join(parts) or "-"


def _or_dash(value: T | None, shown: Callable[[T], str]) -> str:
    return "-" if value is None else shown(value)


def _last_seen(report: AdapterReport, *, stale: bool) -> str:
    ago = f"{duration(report.age_s or 0.0)} ago"
    if stale:
        return f"stale, {ago}"
    return ago if report.state == "running" else f"{report.state}, {ago}"


# -- routed delivery: inboxes, intakes, ids ahead of time ------------------------------------


def _print_routed(snap: snapshots.BusSnapshot, found: list[Breach]) -> None:
    if snap.inboxes:
        _out.print(_inboxes_table(snap.inboxes, found))
    if snap.intakes:
        _out.print(_intakes_table(snap.intakes, found))
    for ahead in snap.ahead_of_time:
        _out.print(
            Text(
                f"ahead of time: {ahead.key} last id {ahead.last_generated_id}, "
                f"{duration(ahead.ahead_s)} ahead of Redis TIME",
                style="red",
            ),
            soft_wrap=True,
        )


def _inboxes_table(inboxes: list[snapshots.InboxSnapshot], found: list[Breach]) -> Table:
    """One row per subscription's inbox, under its service (routed delivery)."""
    table = _status_table("subscriptions (inboxes)", compact=True)
    # Names are never cut: operators copy them into `simpul pending`, `simpul dlq`...
    table.add_column("service", overflow="fold")
    table.add_column("types", overflow="fold")
    table.add_column("inbox", overflow="fold")
    for name in ("lag", "pending", "oldest pending", "consumers", "dead letters"):
        table.add_column(name, justify="right", no_wrap=True)
    bad = {(b.stream, b.group) for b in found}
    previous = None
    for i in inboxes:
        g = i.consumer_group
        shown = "" if i.group == previous else i.group
        previous = i.group
        table.add_row(
            shown,
            ", ".join(i.types) or "-",
            i.key if i.exists else f"{i.key} (empty)",
            "-" if g is None else "?" if g.lag is None else str(g.lag),
            "-" if g is None else str(g.pending),
            "-"
            if g is None or g.oldest_pending_age_s is None
            else duration(g.oldest_pending_age_s),
            "not started" if g is None else str(g.consumer_count),
            str(i.dead_letters),
            style="red" if (i.stream, i.group) in bad else "",
        )
    return table


def _intakes_table(intakes: list[snapshots.IntakeSnapshot], found: list[Breach]) -> Table:
    """One row per producer's intake: what the router has not admitted yet, what it refused."""
    table = _status_table("intakes (router lag)", compact=True)
    table.add_column("producer", overflow="fold")
    for name in ("not admitted", "oldest", "refused"):
        table.add_column(name, justify="right", no_wrap=True)
    bad = {b.principal for b in found if b.kind == "intake_backlog"}
    bad |= {b.stream for b in found if b.kind == "ahead_of_time"}
    for i in intakes:
        backlog = str(i.backlog) + ("" if i.router_reading or not i.exists else " (no router)")
        table.add_row(
            i.principal,
            backlog,
            "-" if i.oldest_age_s is None else duration(i.oldest_age_s),
            str(i.dead_letters),
            style="red" if i.principal in bad or i.key in bad else "",
        )
    return table


# -- map ---------------------------------------------------------------------------------------


class MapFormat(StrEnum):
    SVG = "svg"
    HTML = "html"
    JSON = "json"


def map_(
    format_: Annotated[MapFormat, typer.Option("--format", help="svg, html or json")] = (
        MapFormat.SVG
    ),
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="file to write (default: stdout)")
    ] = None,
    services: Annotated[
        str, typer.Option("--services", help="package holding the services")
    ] = "services",
    schemas: Schemas = "schemas",
    title: Annotated[str, typer.Option(help="title of the map")] = "Simpul flow map",
) -> None:
    """The flow map: departments -> event types -> consuming services.

    Types and owners from the contracts, consumers from the services' code and from the consumer
    groups present in Redis (SIMPUL_REDIS_URL); without Redis, from the code only.
    """
    _contracts(schemas)
    handled: dict[str, set[str]] | None
    try:
        handled = catalogue.handled(catalogue.find_services(services))
    except Exception as exc:  # a broken services package: map what Redis shows
        _err.print(f"[yellow]warning:[/yellow] services from code unavailable: {exc}")
        handled = None
    groups, source = _live_groups()
    flow = flowmap.build(default_registry, handled, groups, source=source)
    if format_ is MapFormat.JSON:
        text = json.dumps(flow.to_json(), indent=2) + "\n"
    elif format_ is MapFormat.HTML:
        text = flowmap.render_html(flow, title=title, generated_at=datetime.now(UTC))
    else:
        text = flowmap.render_svg(flow, title=title)
    if output is None:
        sys.stdout.write(text)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise fail(_err, SimpulError(f"cannot write {output}: {exc.strerror or exc}")) from None
    _err.print(f"wrote {output} ({len(flow.types)} event types, {len(flow.services)} services)")


def _live_groups() -> tuple[dict[str, list[str]] | None, str]:
    try:
        url = Settings.load().redis_url
    except SimpulError:
        url = None
    if url is None:
        _err.print("[yellow]note:[/yellow] SIMPUL_REDIS_URL unset: the map is from the code only")
        return None, ""

    async def take() -> snapshots.BusSnapshot:
        redis = connect(url, block_ms=0)
        try:
            return await inspect.snapshot(redis, registry=default_registry)
        except TRANSIENT as exc:
            raise translate(exc) from None
        finally:
            with contextlib.suppress(Exception):
                await redis.aclose()

    try:
        snap = asyncio.run(take())
    except SimpulError as exc:
        _err.print(
            f"[yellow]note:[/yellow] Redis at {location(url)} unavailable ({type(exc).__name__}): "
            "the map is from the code only"
        )
        return None, ""
    return flowmap.live_groups(snap), f"Redis {snap.redis_version} at {location(url)}"


# -- exporter ----------------------------------------------------------------------------------


def exporter(
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="port to listen on")] = 9464,
    interval: Annotated[
        float, typer.Option(min=0, help="seconds a snapshot is reused by further scrapes")
    ] = 5.0,
    schemas: Schemas = "schemas",
) -> None:
    """Serve Prometheus metrics of the whole bus on /metrics (and /healthz) until SIGTERM.

    Each scrape takes a fresh snapshot of Redis (reused for --interval seconds); while Redis is
    down the exporter keeps serving, with simpul_redis_up 0. Metrics: see
    bus.admin.exporter.METRICS.
    """
    _contracts(schemas)
    url = _url_or_fail()

    async def work() -> None:
        redis = connect(url, block_ms=0, client_name="simpul:exporter")
        inspector = inspect.Inspector(redis, registry=default_registry)
        collector = BusCollector(inspector, interval_s=interval)
        try:
            _err.print(f"serving http://{host}:{port}/metrics for Redis at {location(url)}")
            await serve(exporter_app(collector), host=host, port=port)
        finally:
            with contextlib.suppress(Exception):
                await redis.aclose()

    try:
        asyncio.run(work())
    except SimpulError as exc:
        raise fail(_err, exc) from None
