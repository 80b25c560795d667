"""``simpul audit ...``: verify the archive's hash chain, search it, backfill a service from it.

Added to ``simpul`` through the ``simpul.commands`` entry point (pyproject.toml). Exit codes: 0
fine, 1 the archive is damaged (verify) or events could not be delivered (backfill), 2 a usage
or configuration error.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from bus import TRANSIENT_REDIS_ERRORS as TRANSIENT
from bus import RedisUnavailable, Service, Settings, SimpulError, Store
from bus import configure_logging as configure
from bus.cli import fail, import_target
from services.audit.backfill import NOT_BACKFILLABLE, BackfillReport
from services.audit.service import Audit, parse_time

app = typer.Typer(
    help="The audit archive: verify its hash chain, search it, backfill a service from it.",
    no_args_is_help=True,
)
T = TypeVar("T")

Db = Annotated[
    str | None,
    typer.Option(
        "--db",
        envvar="SIMPUL_AUDIT_DB",
        help="archive database URL (default: SQLite in $SIMPUL_DATA_DIR or .simpul/audit.db)",
    ),
]
RedisUrl = Annotated[
    str | None, typer.Option("--redis-url", envvar="SIMPUL_REDIS_URL", help="Redis URL")
]
AsJson = Annotated[bool, typer.Option("--json", help="machine-readable output")]


def _out() -> Console:
    return Console(soft_wrap=True)


def _err() -> Console:
    return Console(stderr=True, soft_wrap=True)


def _settings(redis_url: str | None, as_json: bool) -> Settings:
    settings = Settings.load(**({"redis_url": redis_url} if redis_url else {}))
    configure(settings.log_level, "json" if as_json else settings.log_format)
    return settings


def _run(db: str | None, settings: Settings, work: Callable[[Audit], Awaitable[T]]) -> T:
    """Run ``work`` on the archive; SimpulErrors become a message and exit code 2."""

    async def main() -> T:
        audit = Audit(Store(db) if db else Store.for_service("audit"), settings=settings)
        try:
            return await work(audit)
        finally:
            await audit.close()

    try:
        return asyncio.run(main())
    except SimpulError as exc:
        raise fail(_err(), exc) from None
    except TRANSIENT as exc:  # Redis unreachable (the head, the streams)
        raise fail(_err(), RedisUnavailable(f"Redis is unreachable: {exc}")) from None


@contextmanager
def _bar(label: str, *, enabled: bool) -> Iterator[Callable[[int, int], None]]:
    """A progress bar on stderr (a terminal only); yields ``update(done, total)``."""
    if not enabled:
        yield lambda done, total: None
        return
    columns = (
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=_err(), transient=True) as bar:
        task = bar.add_task(label, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=max(total, done))


@app.command()
def verify(db: Db = None, redis_url: RedisUrl = None, as_json: AsJson = False) -> None:
    """Check the hash chain: altered rows, removed rows, a truncated tail.

    The tail is checked against the head kept in Redis. Exit code 1 names the first damaged
    seq. Never prints archived data.
    """
    settings = _settings(redis_url, as_json)
    interactive = _err().is_terminal and not as_json
    with _bar("verifying", enabled=interactive) as progress:
        report = _run(db, settings, lambda audit: audit.verify(progress=progress))
    if as_json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        out = _out()
        last = report.last
        span = f"seq 1 to {last.seq}" if last else "empty"
        head = "none" if report.head is None else f"seq {report.head.seq}"
        out.print(f"archive: {report.rows:,} rows ({span}); head in Redis: {head}")
        for warning in report.warnings:
            out.print(f"[yellow]warning:[/yellow] {escape(warning)}")
        if report.ok:
            out.print("[green]OK[/green]: the chain is intact")
        else:
            first = report.first
            assert first is not None
            out.print(f"[red]DAMAGED at seq {first.seq}[/red]: {escape(first.message)}")
            table = Table("seq", "problem", "detail")
            for problem in report.problems:
                table.add_row(str(problem.seq), problem.kind, escape(problem.message))
            out.print(table)
            if report.more_problems:
                out.print(f"[red]... and more (only the first {len(report.problems)} listed)")
    if not report.ok:
        raise typer.Exit(1)


@app.command()
def search(
    *,
    correlation: Annotated[
        str | None, typer.Option(help="events of one chain: its correlation id")
    ] = None,
    event_type: Annotated[
        str | None, typer.Option("--type", help="event type, e.g. dukcapil.citizen.died.v1")
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="event time from (ISO 8601, inclusive; no offset = UTC)")
    ] = None,
    until: Annotated[str | None, typer.Option(help="event time until (exclusive)")] = None,
    limit: Annotated[int, typer.Option(min=1, help="at most this many rows")] = 50,
    show_data: Annotated[
        bool,
        typer.Option(
            "--show-data",
            help="also show the data, and the subjects withheld or masked (recorded as an access; "
            "the data of specific rows is never kept)",
        ),
    ] = False,
    db: Db = None,
    redis_url: RedisUrl = None,
    as_json: AsJson = False,
) -> None:
    """List archived events matching every filter given (metadata, by event time)."""
    if not (correlation or event_type or since or until):
        _err().print("[red]error:[/red] give --correlation, --type, or --since/--until")
        raise typer.Exit(2)
    try:
        start = None if since is None else parse_time(since)
        end = None if until is None else parse_time(until)
    except ValueError as exc:
        _err().print(f"[red]error:[/red] a time is ISO 8601 (2026-11-01T08:00:00+07:00): {exc}")
        raise typer.Exit(2) from None
    settings = _settings(redis_url, as_json)

    async def work(audit: Audit) -> list[dict[str, Any]]:
        return await audit.search(
            correlation=correlation,
            event_type=event_type,
            since=start,
            until=end,
            limit=limit if show_data else limit + 1,  # an access records only rows shown
            show_data=show_data,
        )

    rows = _run(db, settings, work)
    more, rows = len(rows) > limit, rows[:limit]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    _print_rows(rows, show_data=show_data)
    note = f"; more match: raise --limit (now {limit})" if more else ""
    _out().print(f"{len(rows)} rows{note}")


def _print_rows(rows: list[dict[str, Any]], *, show_data: bool) -> None:
    shown = ("seq", "time", "type", "event_id", "source", "correlationid", "classification")
    table = Table()
    for column in (*shown, *(["data"] if show_data else [])):
        table.add_column(column, overflow="fold")  # ids and data shown whole, never cut
    for row in rows:
        cells = [escape(str(row[c])) if row[c] is not None else "" for c in shown]
        if show_data:
            data = row.get("data")
            cells.append("[dim](not kept: specific)[/dim]" if data is None else escape(data))
        table.add_row(*cells)
    _out().print(table)


@app.command()
def backfill(
    target: Annotated[
        str, typer.Argument(help="the service: MODULE:ATTRIBUTE, a Service or a function")
    ],
    *,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="count what would be delivered; deliver nothing")
    ] = False,
    force: Annotated[
        bool,
        typer.Option("--force", help="also streams the service's group already consumes"),
    ] = False,
    attempts: Annotated[int, typer.Option(min=1, help="deliveries per event")] = 3,
    db: Db = None,
    redis_url: RedisUrl = None,
    as_json: AsJson = False,
) -> None:
    """Deliver to a new service the archived events trimmed from its streams.

    Run it before the service's first start: the events older than the oldest entry still in
    each stream go to its handlers in archive order; its consumer group then takes the rest.
    """
    settings = _settings(redis_url, as_json)
    try:
        service = _load_service(target)
    except SimpulError as exc:
        raise fail(_err(), exc) from None
    service.settings = settings
    interactive = _err().is_terminal and not as_json
    with _bar(f"backfilling {service.name}", enabled=interactive) as progress:
        report = _run(
            db,
            settings,
            lambda audit: audit.backfill(
                service, dry_run=dry_run, force=force, attempts=attempts, progress=progress
            ),
        )
    if as_json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        _print_backfill(report)
    if not report.ok:
        raise typer.Exit(1)


def _load_service(target: str) -> Service:
    found = import_target(target)
    if callable(found) and not isinstance(found, Service):
        found = found()
    if not isinstance(found, Service):
        raise SimpulError(f"{target} is {type(found).__name__}, not a bus.Service")
    return found


def _print_backfill(report: BackfillReport) -> None:
    out = _out()
    verb = "would deliver" if report.dry_run else "delivered"
    table = Table("stream", "cutoff", "archived", verb, "dead-lettered", "not backfillable", "note")
    for plan in report.streams:
        note = plan.skipped or "; ".join(plan.warnings)
        table.add_row(
            plan.stream,
            plan.cutoff,
            str(plan.events),
            str(plan.events - plan.not_backfillable if report.dry_run else plan.delivered),
            str(plan.dead_lettered),
            str(plan.not_backfillable),
            escape(note),
        )
    out.print(table)
    delivered = report.events - report.not_backfillable if report.dry_run else report.delivered
    out.print(
        f"{report.service}: {verb} {delivered} archived events, "
        f"{report.dead_lettered} dead-lettered, {report.not_backfillable} not backfillable"
    )
    if report.not_backfillable:
        out.print(f"[yellow]not backfillable:[/yellow] {NOT_BACKFILLABLE}")
    for failure in report.failures:
        out.print(
            f"[red]failed[/red] seq {failure.seq} {failure.type} (event {failure.event_id}): "
            f"{failure.reason}: {escape(failure.error)}"
        )
