"""What the ``simpul`` sub-commands share: importing MODULE:ATTRIBUTE, running against Redis,
failing with a message."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import shutil
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from redis.asyncio import Redis
from redis.exceptions import AuthenticationError, ResponseError
from rich.console import Console

from bus.connection import TRANSIENT, connect, location, login_refused, translate
from bus.errors import ConfigurationError, RedisUnavailable, SimpulError
from bus.settings import Settings

T = TypeVar("T")

# Options every command group spells the same way.
AsJson = Annotated[bool, typer.Option("--json", help="machine-readable output")]
Schemas = Annotated[str, typer.Option("--schemas", help="package holding the contracts")]


def import_target(target: str) -> Any:
    """Import ``package.module:attribute`` (relative to the working directory too)."""
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise SimpulError(
            f"expected MODULE:ATTRIBUTE (e.g. services.profile:create), got {target!r}"
        )
    import_from_cwd()
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SimpulError(f"cannot import {module_name!r}: {exc}") from exc
    if not hasattr(module, attribute):
        raise SimpulError(f"module {module_name!r} has no attribute {attribute!r}")
    return getattr(module, attribute)


def redis_url() -> str:
    """``SIMPUL_REDIS_URL``, or the error that says how to get a Redis."""
    url = Settings.load().redis_url
    if url is None:
        raise ConfigurationError(
            "set SIMPUL_REDIS_URL (or start a local server with `simpul redis`)"
        )
    return url


def activate_command() -> str | None:
    """``. .venv/bin/activate``: what puts this installation's ``simpul`` on PATH (`make install`
    does not), relative to the working directory where it can be; None outside a virtualenv."""
    if sys.prefix == sys.base_prefix:
        return None
    venv = Path(sys.prefix)
    shown = os.path.relpath(venv) if venv.is_relative_to(Path.cwd()) else str(venv)
    return f". {shown}/bin/activate"


def not_on_path_hint() -> str | None:
    """A line for commands that print more `simpul ...` commands, when this `simpul` is not the
    one on PATH (run as .venv/bin/simpul): the printed ones would fail as printed."""
    activate = activate_command()
    if activate is None or shutil.which("simpul") == str(Path(sys.prefix) / "bin" / "simpul"):
        return None
    return f"simpul is not on your PATH: run `{activate}` first, in every new terminal"


def import_from_cwd() -> None:
    """Let the commands import the project they are run in (once on sys.path, not per call)."""
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))


def fail(console: Console, exc: SimpulError) -> typer.Exit:
    """Print an error for people (no traceback) and return the exit to raise (code 2)."""
    console.print(f"[red]error:[/red] {exc}")
    return typer.Exit(2)


def run_with_redis(
    console: Console, work: Callable[[Redis], Awaitable[T]], *, url: str | None = None
) -> T:
    """Run ``work`` with a client of ``url`` (default: ``SIMPUL_REDIS_URL``). Every failure is
    one line on ``console`` and exit code 2, no traceback: Simpul's errors as they are, Redis
    unreachable (naming where), a command Redis refused (NOPERM explained)."""

    async def main(address: str) -> T:
        redis = connect(address)
        try:
            return await work(redis)
        except AuthenticationError as exc:
            raise login_refused(exc, address) from None
        except TRANSIENT as exc:
            raise RedisUnavailable(
                f"Redis at {location(address)} is unreachable or did not answer: {exc}"
            ) from None
        except ResponseError as exc:
            raise SimpulError(f"Redis refused: {translate(exc)}") from None
        finally:
            with contextlib.suppress(Exception):
                await redis.aclose()

    try:
        return asyncio.run(main(url or redis_url()))
    except SimpulError as exc:
        raise fail(console, exc) from None
