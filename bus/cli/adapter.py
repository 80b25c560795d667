"""``simpul adapter run|new|serve|checkpoint`` and ``simpul quarantine ...``: run adapters, see
where they are, fix what they rejected."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from redis.asyncio import Redis
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from bus.adapter.checkpoint import RedisCheckpoints
from bus.adapter.quarantine import Quarantine, QuarantineEntry
from bus.adapter.records import Progress as Counts
from bus.adapter.runner import Adapter
from bus.adapter.scaffold import KINDS
from bus.adapter.scaffold import plan as plan_scaffold
from bus.adapter.scaffold import write as write_scaffold
from bus.adapter.sources.sql import outbox_ddl
from bus.adapter.sources.webhook import Webhook, serve
from bus.cli.common import AsJson, fail, import_target, not_on_path_hint, run_with_redis
from bus.errors import SimpulError
from bus.logging import configure, get_logger, os_user
from bus.privacy import mask_value, shape
from bus.settings import Settings

adapter_app = typer.Typer(help="Run an adapter (legacy app -> events).", no_args_is_help=True)
quarantine_app = typer.Typer(help="Records adapters could not map.", no_args_is_help=True)
_out = Console()
_err = Console(stderr=True, soft_wrap=True)
T = TypeVar("T")
_log = get_logger("bus.cli")

Target = Annotated[str, typer.Argument(help="MODULE:FACTORY, a callable (redis) -> Adapter")]


def _run(work: Callable[[Redis], Awaitable[T]]) -> T:
    return run_with_redis(_err, work)


def _made(target: str, redis: Redis) -> object:
    factory = import_target(target)
    return factory(redis) if callable(factory) else factory


def _build(target: str, redis: Redis) -> Adapter:
    adapter = _made(target, redis)
    if not isinstance(adapter, Adapter):
        raise SimpulError(f"{target} gave {type(adapter).__name__}, not a bus.adapter.Adapter")
    return adapter


def _rejecting(target: str, redis: Redis) -> Adapter | Webhook:
    """What `quarantine retry` needs: an adapter or a webhook (mapper, publisher, quarantine)."""
    made = _made(target, redis)
    if not isinstance(made, Adapter | Webhook):
        raise SimpulError(f"{target} gave {type(made).__name__}, not an Adapter or a Webhook")
    return made


@adapter_app.command("serve")
def serve_(
    target: Annotated[str, typer.Argument(help="MODULE:FACTORY, a callable (redis) -> Webhook")],
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8080,
    path: Annotated[str, typer.Option(help="the path the legacy app POSTs to")] = "/",
) -> None:
    """Serve a webhook adapter until Ctrl-C / SIGTERM (requests in flight finish first)."""
    settings = Settings.load()
    configure(settings.log_level, settings.log_format)

    async def work(redis: Redis) -> None:
        webhook = _made(target, redis)
        if not isinstance(webhook, Webhook):
            raise SimpulError(f"{target} gave {type(webhook).__name__}, not a Webhook")
        _err.print(f"{webhook.name}: POST http://{host}:{port}{path}  (health: /healthz)")
        if webhook.open:
            _log.warning("webhook_without_token", adapter=webhook.name, host=host, port=port)
            _err.print(
                f"[yellow]warning:[/yellow] {webhook.name} has no token: anyone who reaches "
                f"{host}:{port} can publish its records; give the Webhook a token (16+ "
                "characters) that the legacy application sends as Authorization: Bearer"
            )
        await serve(webhook.app(path=path), host=host, port=port)

    _run(work)


@adapter_app.command("run")
def run(
    target: Target,
    once: Annotated[bool, typer.Option("--once", help="one pass (a backfill), then exit")] = False,
    poll: Annotated[
        float | None,
        typer.Option(help="seconds between passes [default: the source's, 5 s when polling]"),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Publish what the source has after the checkpoint; keep polling unless --once.

    A change-data-capture source waits for changes itself, so it starts its next pass at once.
    """
    settings = Settings.load()
    configure(settings.log_level, "json" if as_json else settings.log_format)

    async def work(redis: Redis) -> Counts | None:
        adapter = _build(target, redis)
        with _progress_bar(adapter, enabled=sys.stderr.isatty() and not as_json):
            if once:
                return await adapter.run_once()
            stop = asyncio.Event()
            for sig in (signal.SIGINT, signal.SIGTERM):
                asyncio.get_running_loop().add_signal_handler(sig, stop.set)
            interval = poll if poll is not None else _source_interval(adapter)
            await adapter.run(poll_interval=interval, stop=stop)
            return None

    counts = _run(work)
    if counts is not None:
        summary = {k: v for k, v in asdict(counts).items() if k != "position"}
        if as_json:
            print(json.dumps(summary))
        else:
            _err.print(", ".join(f"{k} {v}" for k, v in summary.items() if v is not None))


def _source_interval(adapter: Adapter) -> float:
    interval = getattr(adapter.source, "poll_interval", 5.0)
    return float(interval) if isinstance(interval, int | float) else 5.0


@adapter_app.command("outbox-ddl")
def outbox_ddl_(
    table: Annotated[str, typer.Argument(help="the legacy table whose changes to copy")],
    outbox: Annotated[str | None, typer.Option(help="outbox table [default: TABLE_outbox]")] = None,
) -> None:
    """Print the PostgreSQL outbox table and trigger for commit-safe polling (for the DBA)."""
    try:
        typer.echo(outbox_ddl(table, outbox=outbox))
    except SimpulError as exc:
        raise fail(_err, exc) from None


@adapter_app.command("new")
def new(
    dept: Annotated[str, typer.Argument(help="department code, e.g. dinsos")],
    kind: Annotated[str, typer.Option(help=f"source kind: {', '.join(KINDS)}")] = "sql",
    dir_: Annotated[str, typer.Option("--dir", help="folder of the adapter packages")] = "adapters",
    tests: Annotated[str, typer.Option(help="folder of the adapter tests")] = "tests/adapters",
) -> None:
    """Write an adapter skeleton (adapters/DEPT/) and its test; never overwrites a file."""
    try:
        scaffold = plan_scaffold(dept, kind, root=Path(), adapters_dir=dir_, tests_dir=tests)
        written = write_scaffold(scaffold)
    except SimpulError as exc:
        raise fail(_err, exc) from None
    for path in written:
        typer.echo(f"created {path}")
    mapped = scaffold.contract or "nothing yet (TODO: no contract in schemas/)"
    typer.echo(f"\nThe skeleton maps to {mapped}. Next:")
    for number, step in enumerate(scaffold.next_steps(), start=1):
        typer.echo(f"  {number}. {step}")
    if hint := not_on_path_hint():
        typer.echo(f"\n{hint}")


class _progress_bar:  # noqa: N801 - used as a context manager, reads as a function
    """A rich progress bar fed by the adapter's progress hook (only on a terminal)."""

    def __init__(self, adapter: Adapter, *, enabled: bool) -> None:
        self.adapter, self.enabled = adapter, enabled
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[note]}"),
            TimeRemainingColumn(),
        )
        self.bar = Progress(*columns, console=_err)
        self.task = self.bar.add_task(adapter.name, total=None, note="")

    def __enter__(self) -> None:
        if self.enabled:
            self.bar.start()
            self.adapter.on_progress = self.update

    def __exit__(self, *_: object) -> None:
        if self.enabled:
            self.bar.stop()

    def update(self, counts: Counts) -> None:
        note = f"{counts.published} new, {counts.duplicates} dup, {counts.quarantined} quarantined"
        self.bar.update(self.task, completed=counts.read, total=counts.total, note=note)


@quarantine_app.command("list")
def list_(
    adapter: Annotated[str, typer.Argument(help="adapter name, e.g. dukcapil-siak")],
    after: Annotated[str, typer.Option(help="list entries after this entry id")] = "-",
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 100,
    as_json: AsJson = False,
) -> None:
    """Quarantined records: key, version and what was wrong (no record contents)."""
    entries = _run(lambda redis: Quarantine(redis, adapter).entries(after=after, limit=limit))
    rows = [_summary(e) for e in entries]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table(title=f"quarantine of {adapter}: {len(rows)} shown")
    table.add_column("entry", no_wrap=True)  # copied into `simpul quarantine show`: never cut
    for column in ("record", "version", "problems", "quarantined at"):
        table.add_column(column)
    for row in rows:
        problems = "; ".join(f"{p['field']}: {p['problem']}" for p in row["problems"])
        table.add_row(
            row["entry_id"], row["record_key"], row["record_version"], problems, row["time"]
        )
    _out.print(table)


@quarantine_app.command()
def show(
    adapter: Annotated[str, typer.Argument(help="adapter name")],
    entry_id: Annotated[str, typer.Argument(help="entry id from `simpul quarantine list`")],
    reveal: Annotated[bool, typer.Option(help="show identifiers unmasked")] = False,
    as_json: AsJson = False,
) -> None:
    """One quarantined record. Values show as their shape ("15 digits") unless --reveal."""
    entry = _run(lambda redis: Quarantine(redis, adapter).show(entry_id))
    if entry is None:
        raise fail(_err, SimpulError(f"no entry {entry_id} in the quarantine of {adapter}"))
    raw = json.loads(entry.raw)
    if reveal:
        _log.warning("quarantine_revealed", adapter=adapter, entry_id=entry_id, by=os_user())
    else:
        raw = {column: shape(value) for column, value in raw.items()}
    detail = {**_summary(entry), "source": entry.source, "raw": raw}
    if as_json:
        print(json.dumps(detail, indent=2))
        return
    _out.print_json(data=detail)


@quarantine_app.command()
def retry(
    target: Target,
    entry_id: Annotated[str | None, typer.Argument(help="one entry; omit with --all")] = None,
    all_: Annotated[bool, typer.Option("--all", help="retry every entry")] = False,
    as_json: AsJson = False,
) -> None:
    """Map quarantined records again with the adapter's current mapper; publish what maps now."""
    if (entry_id is None) == (not all_):
        raise fail(_err, SimpulError("give one ENTRY_ID or --all"))

    async def work(redis: Redis) -> list[dict[str, Any]]:
        adapter = _rejecting(target, redis)
        quarantine = adapter.quarantine
        if all_:
            outcomes = await quarantine.retry_all(
                mapper=adapter.mapper, publisher=adapter.publisher
            )
        else:
            entry = await quarantine.show(entry_id or "")
            if entry is None:
                raise SimpulError(f"no entry {entry_id} in the quarantine of {adapter.name}")
            outcomes = [
                await quarantine.retry(entry, mapper=adapter.mapper, publisher=adapter.publisher)
            ]
        return [asdict(o) for o in outcomes]

    outcomes = _run(work)
    if as_json:
        print(json.dumps(outcomes, indent=2))
    else:
        for outcome in outcomes:
            if not outcome["published"]:
                problems = "; ".join(f"{p['field']}: {p['problem']}" for p in outcome["problems"])
                _err.print(f"{outcome['entry_id']} still fails: {problems}")
        published = sum(o["published"] for o in outcomes)
        _err.print(f"{published} published, {len(outcomes) - published} still failing")
    if any(not o["published"] for o in outcomes):
        raise typer.Exit(1)


@quarantine_app.command()
def discard(
    adapter: Annotated[str, typer.Argument(help="adapter name")],
    entry_id: Annotated[str, typer.Argument(help="entry id from `simpul quarantine list`")],
    as_json: AsJson = False,
) -> None:
    """Drop one entry for good: a record that should never become an event (a test row, a
    duplicate the application corrected). It is not published; list and retry no longer see it."""

    async def work(redis: Redis) -> dict[str, Any]:
        quarantine = Quarantine(redis, adapter)
        entry = await quarantine.show(entry_id)
        if entry is None:
            raise SimpulError(
                f"no entry {entry_id} in the quarantine of {adapter}: "
                f"`simpul quarantine list {adapter}` shows its entries"
            )
        await quarantine.discard(entry)
        _log.info(
            "quarantine_discarded", adapter=adapter, entry_id=entry_id, record_key=entry.record_key
        )
        return _summary(entry)

    discarded = _run(work)
    if as_json:
        print(json.dumps({"discarded": discarded}, indent=2))
    else:
        _err.print(f"discarded {entry_id} (record {discarded['record_key']}) from {adapter}")


checkpoint_app = typer.Typer(
    help="Where an adapter resumes: show it, or reset it to read the source again.",
    no_args_is_help=True,
)
adapter_app.add_typer(checkpoint_app, name="checkpoint")
AdapterName = Annotated[str, typer.Argument(help="adapter name, e.g. dukcapil-siak")]


@checkpoint_app.command("show")
def checkpoint_show(adapter: AdapterName, as_json: AsJson = False) -> None:
    """The source position after the last batch the adapter published (none: from the start)."""
    position = _shown_position(_run(lambda redis: RedisCheckpoints(redis).load(adapter)))
    if as_json:
        print(json.dumps({"adapter": adapter, "position": position}, indent=2))
    elif position is None:
        _out.print(f"{adapter}: no checkpoint; the next run reads the source from the start")
    else:
        # markup off: the position is the source's data, never rich styles
        _out.print(f"{adapter} resumes after position {json.dumps(position)}", markup=False)


def _shown_position(position: Any) -> Any:
    """A position as operators see it: a record's key in it (a legacy table keyed by NIK) with
    its 16-digit runs masked, as ``simpul status`` shows it."""
    if isinstance(position, list):
        return [_shown_position(part) for part in position]
    if isinstance(position, dict):
        return {name: _shown_position(part) for name, part in position.items()}
    return mask_value(position)


@checkpoint_app.command("reset")
def checkpoint_reset(
    adapter: AdapterName,
    yes: Annotated[bool, typer.Option("--yes", help="reset without asking")] = False,
    as_json: AsJson = False,
) -> None:
    """Forget the position: the next run reads the whole source again. Events still remembered
    by id are not published twice; ones older than SIMPUL_DEDUPE_TTL_MS (7 days) are."""
    if not yes:
        if as_json or not sys.stdin.isatty():
            raise fail(
                _err,
                SimpulError(
                    "resetting a checkpoint re-reads the whole source: add --yes to confirm"
                ),
            )
        typer.confirm(f"{adapter} will read its whole source again. Reset?", abort=True)

    async def work(redis: Redis) -> object:
        checkpoints = RedisCheckpoints(redis)
        before = await checkpoints.load(adapter)
        await checkpoints.reset(adapter)
        _log.info("checkpoint_reset", adapter=adapter)
        return before

    before = _shown_position(_run(work))
    if as_json:
        print(json.dumps({"adapter": adapter, "reset": True, "was": before}, indent=2))
    else:
        _err.print(
            f"{adapter}: checkpoint reset (it was {json.dumps(before)}); the next run "
            "reads the source from the start",
            markup=False,
        )


def _summary(entry: QuarantineEntry) -> dict[str, Any]:
    return {
        "entry_id": entry.entry_id,
        "record_key": entry.record_key,
        "record_version": entry.record_version,
        "event_id": entry.event_id,
        "problems": [{"field": p.field, "problem": p.problem} for p in entry.problems],
        "time": entry.time,
    }
