"""``simpul acl ...``: render the Redis ACLs from the topology, apply them, check a permission."""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from redis.asyncio import Redis
from redis.exceptions import AuthenticationError, NoPermissionError
from rich.console import Console
from rich.markup import escape

from bus import functions
from bus.access import acl, acl_server
from bus.access.topology import Topology, contracts, load_topology
from bus.cli.common import Schemas, fail, import_from_cwd
from bus.connection import TRANSIENT, connect, login_refused
from bus.decoding import text as _text
from bus.devmaterial import DEV_SECRET_DIGESTS, is_dev_secret
from bus.errors import ConfigurationError, RedisUnavailable, SimpulError

acl_app = typer.Typer(
    help="Redis ACLs rendered from the topology: render, apply, check.", no_args_is_help=True
)
_out = Console(soft_wrap=True)
_err = Console(stderr=True, soft_wrap=True)
T = TypeVar("T")

TopologyFile = Annotated[Path, typer.Option("--topology", help="the topology YAML", dir_okay=False)]
Passwords = Annotated[
    Path | None,
    typer.Option(
        "--passwords",
        help="an env file (NAME=VALUE lines) holding the principals' passwords; "
        "default: the process environment",
        dir_okay=False,
    ),
]
RedisUrl = Annotated[
    str | None,
    typer.Option("--redis-url", envvar="SIMPUL_REDIS_URL", help="Redis URL of an admin user"),
]
DEFAULT_TOPOLOGY = Path("deploy/topology.yaml")


def _load(path: Path, schemas: str) -> Topology:
    import_from_cwd()
    return load_topology(path, registry=contracts(schemas))


def _users(topology: Topology, passwords: Path | None) -> list[acl.AclUser]:
    if passwords is None:
        secrets = acl.passwords(topology)
    else:
        secrets = acl.passwords(topology, acl.read_env_file(passwords), source=str(passwords))
    development = sorted(p for p, secret in secrets.items() if is_dev_secret(secret))
    if development:
        _err.print(
            f"[yellow]warning:[/yellow] DEVELOPMENT passwords (deploy/dev.env, public) for "
            f"{', '.join(development)}: clients refuse them unless SIMPUL_DEV_MODE=1"
        )
    return acl.acl_users(topology, secrets)


def _warn_incidental(topology: Topology) -> None:
    for principal, types in topology.incidental_reads().items():
        _err.print(
            f"[yellow]note:[/yellow] {principal} can also read {', '.join(types)} "
            "(same stream as an approved type; Redis ACLs are per stream)"
        )


def _with_redis(url: str | None, work: Callable[[Redis], Awaitable[T]]) -> T:
    if not url:
        raise ConfigurationError("set SIMPUL_REDIS_URL or --redis-url (as an admin user)")

    async def main() -> T:
        redis = connect(url)
        try:
            return await work(redis)
        except AuthenticationError as exc:
            raise login_refused(exc, url) from None
        except TRANSIENT as exc:
            raise RedisUnavailable(f"Redis is unreachable: {exc}") from None
        except NoPermissionError as exc:
            raise ConfigurationError(
                f"the user of the Redis URL may not do this ({exc}): connect as an admin"
            ) from None
        finally:
            await redis.aclose()

    return asyncio.run(main())


@acl_app.command("render")
def render_(
    topology: TopologyFile = DEFAULT_TOPOLOGY,
    passwords: Passwords = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="write here instead of stdout")
    ] = None,
    schemas: Schemas = "schemas",
) -> None:
    """Render the ACL file (one user per principal, password hashes only)."""
    try:
        loaded = _load(topology, schemas)
        text = "".join(user.line() + "\n" for user in _users(loaded, passwords))
        if output is None:
            print(text, end="")
        else:
            _write(output, text)
            _err.print(f"wrote {len(text.splitlines())} users to {output}")
    except SimpulError as exc:
        raise fail(_err, exc) from None
    _warn_incidental(loaded)


def _write(path: Path, text: str) -> None:
    """Atomically, so a server (re)loading the file never reads half of it."""
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as exc:
        raise ConfigurationError(f"cannot write {path}: {exc.strerror or exc}") from None


@acl_app.command("apply")
def apply_(
    *,
    topology: TopologyFile = DEFAULT_TOPOLOGY,
    passwords: Passwords = None,
    redis_url: RedisUrl = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="print how the server differs; change nothing")
    ] = False,
    prune: Annotated[
        bool, typer.Option("--prune", help="also delete users the topology lacks")
    ] = False,
    load: Annotated[
        bool,
        typer.Option(
            "--load",
            help="ACL LOAD: the server re-reads its own aclfile (replace that file with the "
            "render first); then check it matches. Redis 7.0 disconnects every client.",
        ),
    ] = False,
    schemas: Schemas = "schemas",
) -> None:
    """Load the rendered users into a running Redis: ACL SETUSER per changed user, then ACL SAVE
    if the server has an aclfile. Or --load: the server re-reads its aclfile."""
    try:
        loaded = _load(topology, schemas)
        users = _users(loaded, passwords)
        if load and not dry_run:
            left = _with_redis(redis_url, lambda r: acl_server.reload(r, users))
            if left:
                for change in left:
                    _out.print(escape(change.describe()))
                raise ConfigurationError(
                    "the server loaded its aclfile, but it is not this render (above): "
                    "replace the file the server reads, then --load again"
                )
            _err.print("loaded the server's aclfile: it matches the render")
            _load_functions(redis_url)
            return
        report = _with_redis(
            redis_url, lambda r: acl_server.apply(r, users, prune=prune, dry_run=dry_run)
        )
        if not dry_run:
            _load_functions(redis_url)
    except SimpulError as exc:
        raise fail(_err, exc) from None
    _report(report, dry_run=dry_run, prune=prune)


def _load_functions(redis_url: str | None) -> None:
    """The users' FCALL grants are useless without the library: apply loads it too."""
    loaded = _with_redis(redis_url, functions.load)
    _err.print(f"loaded the Redis Functions library: {', '.join(loaded)}")


def _report(report: acl_server.ApplyReport, *, dry_run: bool, prune: bool) -> None:
    different = [c for c in report.changes if c.action != "same"]
    for change in different:
        line = change.describe()
        if change.action == "remove" and not prune:
            line += " (kept; --prune deletes it)"
        _out.print(escape(line))
    if not different:
        _err.print("the server's users are the render: nothing to do")
        return
    if dry_run:
        _err.print(f"{len(different)} user(s) differ; dry run: nothing changed")
        return
    _err.print(f"applied {len(report.applied)} user(s): {', '.join(report.applied) or '-'}")
    if report.aclfile is None:
        _err.print(
            "[yellow]warning:[/yellow] the server has no aclfile: these users last until it "
            "restarts; start it with the rendered file as its aclfile"
        )
    elif report.save_error is not None:
        _err.print(
            f"[red]not saved:[/red] ACL SAVE to {report.aclfile} failed ({report.save_error}); "
            "the rules are live but a restart reverts them: write the render to that file "
            "(`simpul acl render --output`)"
        )
        raise typer.Exit(1)
    elif report.saved:
        _err.print(f"saved to the server's aclfile {report.aclfile}")


@acl_app.command(
    "check", context_settings={"allow_interspersed_args": False, "ignore_unknown_options": True}
)
def check_(
    principal: Annotated[str, typer.Argument(help="the ACL user, e.g. svc-dinsos")],
    command: Annotated[
        list[str],
        typer.Argument(help="the command and its arguments, e.g. xadd 'simpul:{x.y}' '*' f v"),
    ],
    redis_url: RedisUrl = None,
) -> None:
    """Would PRINCIPAL be allowed COMMAND? (ACL DRYRUN on the server: nothing runs.)

    Exit 0 if allowed, 1 if denied. Options go before PRINCIPAL."""
    try:
        allowed, reason = _with_redis(redis_url, lambda r: acl_server.check(r, principal, command))
    except SimpulError as exc:
        raise fail(_err, exc) from None
    _flag_dev_password(redis_url, principal)
    if allowed:
        _out.print(f"[green]allowed[/green]: {escape(principal)} may run {escape(command[0])}")
        return
    _out.print(f"[red]denied[/red]: {escape(reason)}")
    raise typer.Exit(1)


def _flag_dev_password(redis_url: str | None, principal: str) -> None:
    """Warn when the server's password of ``principal`` is one of deploy/dev.env's (the ACL
    holds SHA-256 digests, the very ones bus.devmaterial lists)."""

    async def hashes(redis: Redis) -> list[str]:
        user: Any = await redis.acl_getuser(principal)
        return [_text(h) for h in (user or {}).get("passwords", [])]

    try:
        found = _with_redis(redis_url, hashes)
    except SimpulError:
        return  # the check above answered; this is only a note
    if any(h in DEV_SECRET_DIGESTS for h in found):
        _err.print(
            f"[yellow]warning:[/yellow] {escape(principal)}'s password on this server is a "
            "DEVELOPMENT password of deploy/dev.env (public, in git): clients refuse it unless "
            "SIMPUL_DEV_MODE=1; set a password of your own (`simpul acl apply`)"
        )


functions_app = typer.Typer(
    help="The bus's Redis Functions library (every Lua function the bus runs), loaded by the "
    "admin only.",
    no_args_is_help=True,
)


@functions_app.command("load")
def functions_load(redis_url: RedisUrl = None) -> None:
    """FUNCTION LOAD REPLACE the library (on every master of a cluster), as an admin. Needed once
    per new server or Simpul version; `simpul acl apply` does it too. Replicas get it from their
    master."""
    try:
        _load_functions(redis_url)
    except SimpulError as exc:
        raise fail(_err, exc) from None


@functions_app.command("show")
def functions_show() -> None:
    """Print the library's source (what `load` sends), e.g. to load it by hand with redis-cli:
    `simpul functions show | redis-cli -x FUNCTION LOAD REPLACE`."""
    print(functions.library_code(), end="")
