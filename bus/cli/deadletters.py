"""``simpul dlq ...``, ``simpul group reset`` and ``simpul trim``: fix what is stuck.

Thin commands over :mod:`bus.admin.deadletters`: plan, show the plan, ask (unless ``--yes``), apply.
Exit codes: 0 done (or nothing to do), 1 partly done or refused (details printed), 2 bad usage,
unknown names, Redis unreachable.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Annotated, TypeVar

import typer
from redis.asyncio import Redis
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from bus import keys
from bus.admin import deadletter_types, deadletters, groups, positions, streams
from bus.admin.trim import TrimPlan, TrimRefused, plan_trim, retention_age
from bus.admin.trim import trim as trim_stream
from bus.cli.common import AsJson, fail, import_target, run_with_redis
from bus.errors import ConfigurationError, SimpulError
from bus.logging import configure
from bus.publisher import Publisher, Retention
from bus.settings import Settings

dlq_app = typer.Typer(
    help="Dead letters: list, show, replay, purge (what services gave up on, on department "
    "streams and inboxes; what the router refused, read-only).",
    no_args_is_help=True,
)
group_app = typer.Typer(help="Consumer groups: move a group's position.", no_args_is_help=True)
_out = Console()
_err = Console(stderr=True, soft_wrap=True)
T = TypeVar("T")

Yes = Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")]
DryRun = Annotated[bool, typer.Option("--dry-run", help="say what would happen; change nothing")]
StreamArg = Annotated[
    str | None,
    typer.Argument(
        help="stream: an aggregate (dukcapil.citizen, with its services' inboxes) or its key; "
        "an inbox (dinsos/dukcapil.citizen or its key); an intake's key (its refusals, "
        "read-only); omit for all"
    ),
]
GroupOpt = Annotated[str | None, typer.Option("--group", "-g", help="only this group's")]
Ids = Annotated[list[str] | None, typer.Option("--id", help="dead-letter entry id (repeatable)")]


# -- plumbing ----------------------------------------------------------------------------------


def _run(work: Callable[[Redis], Awaitable[T]]) -> T:
    """Run ``work`` against Redis with logs on stderr (masked); errors: a line, exit code 2."""
    try:
        settings = Settings.load()
    except SimpulError as exc:
        raise fail(_err, exc) from None
    configure(settings.log_level, settings.log_format)
    return run_with_redis(_err, work)


def _usage(message: str) -> typer.Exit:
    return fail(_err, ConfigurationError(message))


def _contracts() -> None:
    """Import the contracts so their personal fields are masked; without them, every value
    that looks like an identifier is masked instead."""
    from bus.cli.contracts import load  # noqa: PLC0415 - only the dlq commands need it

    with contextlib.suppress(SimpulError, ImportError):
        load()


def _confirm(question: str, yes: bool) -> None:
    if yes:
        return
    try:
        agreed = typer.confirm(question, default=False, err=True)
    except typer.Abort:  # no answer (end of input, Ctrl-C); typer's own, not click's Abort
        agreed = False
    if not agreed:
        _err.print("cancelled: nothing changed (pass --yes to skip this question)")
        raise typer.Exit(1)


def _aggregate(stream: str) -> str:
    """How a list names where a dead letter waits, in a form the commands accept back:
    ``dukcapil.citizen``, an inbox as ``dinsos/dukcapil.citizen``, an intake by its key."""
    found = keys.inbox_of(stream)
    if found is not None:
        return f"{found[1]}/{_aggregate(found[0])}"
    return stream.removeprefix("simpul:{").removesuffix("}")


def _duration(text: str | None) -> timedelta | None:
    if text is None:
        return None
    try:
        return positions.parse_duration(text)
    except SimpulError as exc:
        raise fail(_err, exc) from None


# -- dlq list / show ---------------------------------------------------------------------------


@dlq_app.command("list")
def list_(
    stream: StreamArg = None,
    *,
    group: GroupOpt = None,
    limit: Annotated[int, typer.Option(min=1, max=100_000, help="at most this many")] = 100,
    as_json: AsJson = False,
) -> None:
    """Dead letters with reason, error, attempts and origin (personal data masked)."""
    _contracts()

    async def work(
        redis: Redis,
    ) -> tuple[list[deadletter_types.Queue], list[deadletter_types.DeadLetter]]:
        letters = deadletters.DeadLetters(redis)
        queues = await letters.queues(stream, group)
        return queues, await letters.entries(stream, group, limit=limit)

    queues, entries = _run(work)
    total = sum(q.length for q in queues)
    if as_json:
        print(
            json.dumps(
                {
                    "total": total,
                    "queues": [q.as_dict() for q in queues],
                    "dead_letters": [e.as_dict() for e in entries],
                },
                indent=2,
            )
        )
        return
    if not entries:
        _err.print(
            "no dead letters"
            + (f" of {stream}" if stream else "")
            + (f" in group {group}" if group else "")
        )
        return
    table = Table(title=f"dead letters: {total} in {len(queues)} group(s), {len(entries)} shown")
    table.add_column("id", no_wrap=True)  # copied into `simpul dlq show`: never cut
    table.add_column("stream", overflow="fold")  # copied into the commands: never cut
    for column in ("group", "reason", "tries", "type", "dead-lettered (UTC)", "error"):
        table.add_column(column)
    for e in entries:
        when = (e.dead_lettered_at or "")[:19].replace("T", " ")
        table.add_row(
            e.ref.entry_id,
            _aggregate(e.ref.stream),
            e.ref.group,
            e.reason,
            str(e.attempts or ""),
            e.event_type or "",
            when,
            escape(e.error[:160]),
        )
    _out.print(table)
    gone = [q for q in queues if not q.stream_exists]
    for queue in gone:
        _err.print(
            f"[yellow]note:[/yellow] stream {queue.stream} no longer exists "
            f"({queue.length} dead letters of {queue.group})"
        )


@dlq_app.command()
def show(
    entry_id: Annotated[str, typer.Argument(help="dead-letter id from `simpul dlq list`")],
    *,
    stream: Annotated[str | None, typer.Option(help="its stream, if the id is ambiguous")] = None,
    group: GroupOpt = None,
    reveal: Annotated[bool, typer.Option(help="show personal data unmasked (logged)")] = False,
    as_json: AsJson = False,
) -> None:
    """One dead letter decoded; personal fields masked unless --reveal."""
    _contracts()

    async def work(redis: Redis) -> deadletter_types.DeadLetterDetail:
        letters = deadletters.DeadLetters(redis)
        return await letters.show(await letters.find(entry_id, stream, group), reveal=reveal)

    detail = _run(work)
    if as_json:
        print(json.dumps(detail.as_dict(), indent=2, ensure_ascii=False))
        return
    letter = detail.dead_letter
    rows = [
        ("stream", letter.ref.stream + ("" if detail.stream_exists else "  (deleted)")),
        ("group", letter.ref.group),
        ("dead letter", letter.ref.entry_id),
        ("reason", letter.reason),
        ("error", letter.error),
        ("attempts", str(letter.attempts or "")),
        ("consumer", letter.consumer or ""),
        ("dead-lettered at", letter.dead_lettered_at or ""),
        (
            "original entry",
            (letter.original_entry or "")
            + ("" if detail.original_in_stream else "  (no longer in the stream)"),
        ),
    ]
    if detail.decode_error:
        rows.append(("not wire format v1", detail.decode_error))
    table = Table(show_header=False, box=None)
    for name, value in [*rows, *detail.attributes.items()]:
        table.add_row(f"[bold]{name}[/bold]", escape(value))
    _out.print(table)
    _out.print("[bold]data[/bold]" + ("" if detail.revealed else " (personal fields masked)"))
    if isinstance(detail.data, dict | list):
        _out.print_json(data=detail.data)
    else:
        _out.print(escape(str(detail.data)))


# -- dlq replay --------------------------------------------------------------------------------


class _Bar:
    """A rich progress bar on stderr, fed by the replay's progress callback."""

    def __init__(self, total: int, *, enabled: bool, title: str) -> None:
        self.enabled = enabled
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[note]}"),
            TimeRemainingColumn(),
        )
        self.bar = Progress(*columns, console=_err)
        self.task = self.bar.add_task(title, total=total, note="")
        self.counts: dict[str, int] = {}

    def __enter__(self) -> _Bar:
        if self.enabled:
            self.bar.start()
        return self

    def __exit__(self, *_: object) -> None:
        if self.enabled:
            self.bar.stop()

    def update(self, result: deadletter_types.ReplayResult, done: int, total: int) -> None:
        self.counts[result.outcome.value] = self.counts.get(result.outcome.value, 0) + 1
        note = ", ".join(f"{n} {o}" for o, n in self.counts.items())
        self.bar.update(self.task, completed=done, total=total, note=note)


def _by_queue(refs: Sequence[deadletter_types.DeadLetterRef]) -> dict[tuple[str, str], int]:
    counts: dict[tuple[str, str], int] = {}
    for ref in refs:
        counts[(ref.stream, ref.group)] = counts.get((ref.stream, ref.group), 0) + 1
    return counts


_REPLAY_HELP = "\n\n".join(
    (
        "Replay dead letters after fixing the cause: each exactly once, even if two operators "
        "replay at the same time.",
        "--to group (default): the original entry goes back to the group that gave up, and only "
        "to it; its consumers retry it at once with delivery count 1. Needs the entry still in "
        "the stream (not trimmed by retention).",
        "--to stream: a new entry with the same event (same id) for every group of the stream; "
        "once=True handlers that completed it skip it (for SIMPUL_DEDUPE_TTL_MS), other handlers "
        "run again. A deleted stream is recreated only with --recreate-stream.",
        "Inboxes (routed delivery, e.g. dinsos/dukcapil.citizen): only their group reads them, so "
        "either target reaches that group alone; --to group adds a new inbox entry once the "
        "router has trimmed the original. The router's refusals of a producer's events "
        "(intakes) are read-only and never replayed.",
    )
)


@dlq_app.command(help=_REPLAY_HELP)
def replay(
    stream: StreamArg = None,
    *,
    group: GroupOpt = None,
    ids: Ids = None,
    to: Annotated[
        deadletter_types.Target,
        typer.Option(
            "--to",
            help="group: back to the group that gave up, only to it; stream: a new entry for "
            "every group (see above)",
        ),
    ] = deadletter_types.Target.GROUP,
    recreate_stream: Annotated[
        bool, typer.Option(help="with --to stream: create a deleted stream again")
    ] = False,
    dry_run: DryRun = False,
    yes: Yes = False,
    as_json: AsJson = False,
) -> None:
    if recreate_stream and to is not deadletter_types.Target.STREAM:
        raise _usage("--recreate-stream only goes with --to stream")
    refs = _run(lambda redis: deadletters.DeadLetters(redis).select(stream, group, ids or ()))
    if not refs:
        if as_json:
            print(json.dumps(deadletter_types.ReplayReport(to, dry_run).as_dict(), indent=2))
        else:
            _err.print("no dead letters to replay")
        return
    if not dry_run:
        for (origin, name), count in _by_queue(refs).items():
            _err.print(f"{count} dead letter(s) of {origin}, group {name}")
        where = (
            "back to the group(s) that gave up"
            if to is deadletter_types.Target.GROUP
            else ("as new entries: every group of the stream gets them")
        )
        _confirm(f"Replay {len(refs)} dead letter(s) {where}?", yes)

    async def work(redis: Redis) -> deadletter_types.ReplayReport:
        title = "dry run" if dry_run else "replaying"
        with _Bar(len(refs), enabled=_err.is_terminal and not as_json, title=title) as bar:
            return await deadletters.DeadLetters(redis).replay(
                refs,
                to=to,
                dry_run=dry_run,
                recreate_stream=recreate_stream,
                on_progress=bar.update,
            )

    report = _run(work)
    if as_json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        _print_report(report)
    if not report.ok:
        raise typer.Exit(1)


def _print_report(report: deadletter_types.ReplayReport) -> None:
    shown = report.results if report.dry_run else [r for r in report.results if not r.ok]
    if shown:
        table = Table(title="dry run: nothing changed" if report.dry_run else "not replayed")
        for column in ("stream", "group", "id", "outcome", "detail"):
            table.add_column(column, no_wrap=column == "id")
        for r in shown:
            table.add_row(
                _aggregate(r.ref.stream),
                r.ref.group,
                r.ref.entry_id,
                r.outcome.value,
                escape(r.detail),
            )
        _out.print(table)
    counts = ", ".join(
        f"{report.count(o)} {o.value}" for o in deadletter_types.Outcome if report.count(o)
    )
    _err.print(counts)


# -- dlq purge ---------------------------------------------------------------------------------


@dlq_app.command()
def purge(
    stream: StreamArg = None,
    *,
    group: GroupOpt = None,
    ids: Ids = None,
    older_than: Annotated[
        str | None, typer.Option(help="dead-lettered more than this long ago (30d, 12h)")
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="every dead letter selected")] = False,
    dry_run: DryRun = False,
    yes: Yes = False,
    as_json: AsJson = False,
) -> None:
    """Delete dead letters for good: by --id, --older-than, or --all (of STREAM/--group)."""
    if sum((bool(ids), older_than is not None, all_)) != 1:
        raise _usage("say which dead letters: --id ID..., --older-than DURATION or --all")
    age = _duration(older_than)
    plan = _run(
        lambda redis: deadletters.DeadLetters(redis).plan_purge(
            stream, group, ids=ids or (), older_than=age
        )
    )
    if as_json and (dry_run or not plan.total):
        print(json.dumps({**plan.as_dict(), "dry_run": dry_run, "deleted": 0}, indent=2))
        return
    if not plan.total:
        _err.print("no dead letters to purge")
        return
    for step in plan.steps:
        _err.print(f"{step.count} dead letter(s) of {step.stream}, group {step.group}")
    if dry_run:
        _err.print(f"dry run: {plan.total} dead letter(s) would be deleted; nothing changed")
        return
    _confirm(f"Delete {plan.total} dead letter(s) for good?", yes)
    deleted = _run(lambda redis: deadletters.DeadLetters(redis).purge(plan))
    if as_json:
        print(json.dumps({**plan.as_dict(), "dry_run": False, "deleted": deleted}, indent=2))
    else:
        _err.print(f"{deleted} dead letter(s) deleted")


# -- group reset -------------------------------------------------------------------------------


@group_app.command()
def reset(
    stream: Annotated[str, typer.Argument(help="stream: aggregate (dukcapil.citizen) or key")],
    group: Annotated[str, typer.Argument(help="consumer group (the service name)")],
    *,
    to: Annotated[
        str,
        typer.Option(
            "--to",
            help="$ (skip to the end), 0 (from the start), an entry id, a time with offset "
            "(2026-11-30T08:00+07:00: entries from then on) or an age (2h ago)",
        ),
    ],
    dry_run: DryRun = False,
    yes: Yes = False,
    as_json: AsJson = False,
) -> None:
    """Move a group's position (XGROUP SETID): re-deliver or skip entries."""
    plan = _run(lambda redis: groups.plan_reset(redis, stream, group, to))
    if not as_json or dry_run:
        _print_reset(plan, dry_run=dry_run, as_json=as_json)
    if dry_run:
        return
    _confirm(f"Move group {plan.group} of {plan.stream} to {plan.target}?", yes)
    done = _run(lambda redis: groups.reset_group(redis, plan))
    if as_json:
        print(json.dumps(done.as_dict(), indent=2))
    else:
        _err.print(f"group {done.group} of {done.stream} now at {done.target}")


def _print_reset(plan: groups.ResetPlan, *, dry_run: bool, as_json: bool) -> None:
    if as_json:
        print(json.dumps(plan.as_dict(), indent=2))
        return
    _err.print(
        f"group {plan.group} of {plan.stream}: at {plan.current}; "
        f"{plan.asked} -> position {plan.target}"
    )
    for note in plan.warnings():
        _err.print(f"[yellow]-[/yellow] {note}")
    if dry_run:
        _err.print("dry run: nothing changed")


# -- trim --------------------------------------------------------------------------------------


def _retention(target: str) -> Retention:
    """MODULE:ATTRIBUTE naming a Retention, a Publisher, or a function returning either."""
    found = import_target(target)
    if callable(found) and not isinstance(found, type | Retention | Publisher):
        found = found()
    if isinstance(found, Publisher):
        found = found.retention
    if not isinstance(found, Retention):
        raise SimpulError(f"{target} is {type(found).__name__}, not a bus.Retention or Publisher")
    return found


_TRIM_HELP = "\n\n".join(
    (
        "Delete old entries of a stream (XTRIM MINID by age); refuses to take unprocessed ones.",
        "Before Redis 8.2 trimming ignores consumer groups: entries a group has not read yet, or "
        "still holds pending, would be lost for it. Unless --force, such streams are left alone "
        "(checked again in the trimming script itself) and the command exits with 1.",
    )
)


def trim(
    stream: StreamArg = None,
    *,
    all_: Annotated[bool, typer.Option("--all", help="every stream")] = False,
    older_than: Annotated[
        str | None, typer.Option(help="delete entries recorded more than this long ago (30d)")
    ] = None,
    retention_from_config: Annotated[
        str | None,
        typer.Option(
            help="MODULE:ATTRIBUTE of the publishers' bus.Retention (or a Publisher, or a "
            "function returning one): each stream's own age"
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option(help="trim even entries a group has not read or holds pending")
    ] = False,
    dry_run: DryRun = False,
    yes: Yes = False,
    as_json: AsJson = False,
) -> None:
    if (stream is None) == (not all_):
        raise _usage("give one STREAM or --all")
    if (older_than is None) == (retention_from_config is None):
        raise _usage("give --older-than DURATION or --retention-from-config MODULE:ATTRIBUTE")
    age = _duration(older_than)
    try:
        retention = _retention(retention_from_config) if retention_from_config else None
    except SimpulError as exc:
        raise fail(_err, exc) from None

    async def plan(redis: Redis) -> list[TrimPlan]:
        names = [streams.stream_key(stream)] if stream else await streams.stream_keys(redis)
        plans = []
        for name in names:
            keep = age if retention is None else retention_age(retention, name)
            if keep is not None:
                plans.append(await plan_trim(redis, name, older_than=keep))
        return plans

    plans = [p for p in _run(plan) if p.entries]
    unsafe = [p for p in plans if not p.safe and not force]
    todo = [p for p in plans if p.safe or force]
    if not as_json:
        _print_trim(plans, force=force)
    if dry_run or not todo:
        if as_json:
            _trim_json(plans, dry_run=dry_run, trimmed={}, refused=[p.stream for p in unsafe])
        elif not plans:
            _err.print("nothing to trim")
        elif dry_run:
            _err.print("dry run: nothing changed")
        raise typer.Exit(1 if unsafe else 0)
    total = sum(p.entries for p in todo)
    _confirm(f"Delete {total} entries from {len(todo)} stream(s) for good?", yes)

    async def apply(redis: Redis) -> tuple[dict[str, int], list[str]]:
        trimmed, refused = {}, [p.stream for p in unsafe]
        for p in todo:
            try:
                trimmed[p.stream] = await trim_stream(redis, p, force=force)
            except TrimRefused as exc:  # a group fell behind since the plan
                _err.print(f"[red]refused:[/red] {exc}")
                refused.append(p.stream)
        return trimmed, refused

    trimmed, refused = _run(apply)
    if as_json:
        _trim_json(plans, dry_run=False, trimmed=trimmed, refused=refused)
    else:
        for name, count in trimmed.items():
            _err.print(f"{name}: {count} entries trimmed")
    if refused:
        raise typer.Exit(1)


trim.__doc__ = _TRIM_HELP  # registered in bus.cli.app with app.command("trim"): help from here


def _trim_json(
    plans: Sequence[TrimPlan],
    *,
    dry_run: bool,
    trimmed: dict[str, int],
    refused: list[str],
) -> None:
    streams = [p.as_dict() for p in plans]
    print(
        json.dumps(
            {"dry_run": dry_run, "streams": streams, "trimmed": trimmed, "refused": refused},
            indent=2,
        )
    )


def _print_trim(plans: Sequence[TrimPlan], *, force: bool) -> None:
    if not plans:
        return
    table = Table(title="entries to trim")
    for column in ("stream", "recorded before", "entries", "groups losing unprocessed entries"):
        table.add_column(column)
    for p in plans:
        losses = "; ".join(f"{x.group}: {x.unread} unread, {x.pending} pending" for x in p.losses)
        if losses and not force:
            losses += "  -> refused (--force to trim anyway)"
        table.add_row(_aggregate(p.stream), p.cutoff, str(p.entries), losses or "none")
    _err.print(table)
