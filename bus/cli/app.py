"""The ``simpul`` command: run services, run a local Redis. Operator commands live beside these."""

from __future__ import annotations

import asyncio
import inspect
import signal
from importlib.metadata import entry_points
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from bus.cli.acl import acl_app, functions_app
from bus.cli.adapter import adapter_app, quarantine_app
from bus.cli.common import fail, import_target, not_on_path_hint
from bus.cli.contracts import app as contracts_app
from bus.cli.deadletters import dlq_app, group_app, trim
from bus.cli.entries import pending, tail
from bus.cli.inspect import exporter, map_, status
from bus.cli.publish import publish
from bus.cli.router import router_app
from bus.cli.signing_keys import keys_app
from bus.errors import SimpulError
from bus.local.redis import DEV_PORT, EmbeddedRedis, answering
from bus.logging import configure
from bus.service import Service
from bus.settings import Settings

app = typer.Typer(help="Simpul: the event bus of Kota Malang's departments.", no_args_is_help=True)
app.add_typer(contracts_app, name="contracts")
app.add_typer(adapter_app, name="adapter")
app.add_typer(quarantine_app, name="quarantine")
app.add_typer(dlq_app, name="dlq")
app.add_typer(group_app, name="group")
app.add_typer(acl_app, name="acl")
app.add_typer(functions_app, name="functions")
app.add_typer(keys_app, name="keys")
app.add_typer(router_app, name="router")
app.command("trim")(trim)
app.command("status")(status)
app.command("tail")(tail)
app.command("pending")(pending)
app.command("map")(map_)
app.command("exporter")(exporter)
app.command("publish")(publish)
_err = Console(stderr=True, soft_wrap=True)


def load_service(target: str) -> Service:
    """Import ``package.module:attribute``: a Service, or a function that builds one."""
    found = import_target(target)
    if isinstance(found, Service):
        return found
    if isinstance(found, type) or not callable(found):  # don't call a class by mistake
        raise SimpulError(
            f"{target} is {_kind(found)}, not a bus.Service or a function returning one"
        )
    try:
        inspect.signature(found).bind()
    except TypeError:
        raise SimpulError(f"{target} must take no arguments to build the service") from None
    service = found()
    if not isinstance(service, Service):
        raise SimpulError(f"{target}() returned {_kind(service)}, not a bus.Service")
    return service


def _kind(value: object) -> str:
    return f"the class {value.__qualname__}" if isinstance(value, type) else type(value).__name__


@app.command()
def run(
    target: Annotated[str, typer.Argument(help="the service, as MODULE:ATTRIBUTE")],
    redis_url: Annotated[
        str | None, typer.Option(envvar="SIMPUL_REDIS_URL", help="Redis URL")
    ] = None,
    http: Annotated[
        str | None,
        typer.Option(envvar="SIMPUL_HTTP", help="HOST:PORT to serve the service's HTTP API on"),
    ] = None,
) -> None:
    """Run a service (one replica; start more processes for more replicas).

    TARGET is a Service object or a function returning one (``services.profile:create``).
    """
    try:
        overrides = {"redis_url": redis_url} if redis_url else {}
        if http:
            overrides["http"] = http
        settings = Settings.load(**overrides)
        configure(settings.log_level, settings.log_format)
        service = load_service(target)
        service.settings = settings
        asyncio.run(service.app(settings.redis_url).run())
    except SimpulError as exc:
        raise fail(_err, exc) from None


@app.command()
def redis(
    data_dir: Annotated[Path, typer.Option(help="where the AOF is kept")] = Path(".simpul/redis"),
    port: Annotated[
        int,
        typer.Option(envvar="SIMPUL_DEV_REDIS_PORT", min=0, max=65535, help="port (0: a free one)"),
    ] = DEV_PORT,
) -> None:
    """Run a private Redis for development (the newest redis-server installed, else the bundled
    6.2), on the same port every time, so the exported SIMPUL_REDIS_URL stays valid."""
    if port and answering("127.0.0.1", port):
        url = f"redis://127.0.0.1:{port}/0"
        taken = SimpulError(
            f"a Redis already answers on {url} (another `simpul redis`?): use it "
            f"(export SIMPUL_REDIS_URL={url}), or start this one with --port N (0: a free one)"
        )
        raise fail(_err, taken) from None
    # A SIGTERM from here on stops the server too, even one that comes before the wait below
    # takes over the signal (by default it would end this process and leave redis-server behind).
    signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        server = EmbeddedRedis(data_dir, port=port or None).start()
    except SimpulError as exc:
        raise fail(_err, exc) from None
    stop = asyncio.Event()

    async def wait() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()

    try:
        _err.print(
            f"Redis {server.version} ({server.binary}) on [bold]{server.url}[/bold], "
            f"data in {data_dir}"
        )
        _err.print(f"export SIMPUL_REDIS_URL={server.url}   # then: simpul run MODULE:service")
        if hint := not_on_path_hint():
            _err.print(hint)
        asyncio.run(wait())
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # stopping: a second SIGTERM waits
        server.stop()


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def _plugins() -> None:
    """Add the command groups packages declare under the ``simpul.commands`` entry point
    (e.g. ``simpul audit`` from services.audit): ``bus`` itself never imports services."""
    for entry in entry_points(group="simpul.commands"):
        try:
            group = entry.load()
        except Exception as exc:  # a broken plugin must not take the whole command down
            _err.print(f"[yellow]simpul {entry.name} unavailable: {type(exc).__name__}: {exc}")
            continue
        if isinstance(group, typer.Typer):
            app.add_typer(group, name=entry.name)


def main() -> None:
    _plugins()
    app()


if __name__ == "__main__":
    main()
