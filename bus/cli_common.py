"""What the ``simpul`` sub-commands share: importing MODULE:ATTRIBUTE, failing with a message."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from bus.errors import ConfigurationError, SimpulError
from bus.settings import Settings


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


def import_from_cwd() -> None:
    """Let the commands import the project they are run in (once on sys.path, not per call)."""
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))


def fail(console: Console, exc: SimpulError) -> typer.Exit:
    """Print an error for people (no traceback) and return the exit to raise (code 2)."""
    console.print(f"[red]error:[/red] {exc}")
    return typer.Exit(2)
