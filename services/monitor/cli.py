"""``python -m services.monitor`` (and ``simpul monitor`` where the entry point is declared):
serve the operator dashboard until SIGINT/SIGTERM.

Environment: ``SIMPUL_REDIS_URL`` (required), ``SIMPUL_MONITOR_HTTP`` (HOST:PORT, default
``127.0.0.1:8090``: loopback only), ``SIMPUL_MONITOR_TOKEN`` (16+ characters; unset: read-only),
the other ``SIMPUL_MONITOR_*`` knobs of :class:`~services.monitor.MonitorSettings` and the
``SIMPUL_STATUS_*`` thresholds of ``simpul status``. Errors are one line and exit code 2.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from typing import Annotated

import typer
from rich.console import Console

from bus import (
    ConfigurationError,
    Settings,
    SimpulError,
    connect,
    default_registry,
    get_logger,
    parse_address,
)
from bus import configure_logging as configure
from bus import serve_http as serve
from bus.admin import Thresholds
from bus.cli import fail, import_from_cwd, load_contracts
from services.monitor.service import Monitor, MonitorSettings, redis_location

app = typer.Typer(
    help="The operator dashboard of the bus (web page; read-only except Replay).",
    no_args_is_help=False,
    add_completion=False,
)
_err = Console(stderr=True, soft_wrap=True)
_log = get_logger("services.monitor")


@app.callback(invoke_without_command=True)
def monitor(
    http: Annotated[
        str | None,
        typer.Option(
            "--http",
            help="HOST:PORT to listen on [default: SIMPUL_MONITOR_HTTP, else 127.0.0.1:8090]",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Serve the dashboard: streams, consumer groups, dead letters (with Replay), throughput
    and the flow map of the bus at SIMPUL_REDIS_URL, refreshed every few seconds."""
    try:
        settings = MonitorSettings.load(**({"http": http} if http else {}))
        bus_settings = Settings.load()
        thresholds = Thresholds.load()
        host, port = parse_address(settings.http)
        url = bus_settings.redis_url
        if url is None:
            raise ConfigurationError(
                "set SIMPUL_REDIS_URL to the bus's Redis (the operator user of "
                "deploy/redis/users.acl can read everything the monitor shows)"
            )
    except SimpulError as exc:
        raise fail(_err, exc) from None
    configure(bus_settings.log_level, bus_settings.log_format)
    import_from_cwd()
    try:
        load_contracts(settings.schemas)
    except SimpulError as exc:
        _err.print(
            f"[yellow]warning:[/yellow] {exc}; masking falls back to identifier-looking "
            "values and streams are found in Redis only"
        )
    if not _loopback(host):
        _err.print(
            f"[yellow]note:[/yellow] listening on {host}, not loopback: serve it to "
            "operators only through a TLS reverse proxy"
        )

    async def work() -> None:
        redis = connect(url, block_ms=0, client_name="simpul:monitor")
        where = redis_location(url)
        board = Monitor(
            redis, settings=settings, registry=default_registry, thresholds=thresholds, where=where
        )
        replay = "enabled" if board.token is not None else "disabled (no SIMPUL_MONITOR_TOKEN)"
        shown = f"[{host}]" if ":" in host else host
        _err.print(
            f"serving the Simpul monitor on http://{shown}:{port} for Redis at {where}; "
            f"replay {replay}"
        )
        _log.info(
            "monitor_serving", host=host, port=port, redis=where, replay=board.token is not None
        )
        try:
            async with board.running():
                await serve(board.app(), host=host, port=port)
        finally:
            with contextlib.suppress(Exception):
                await redis.aclose()

    try:
        asyncio.run(work())
    except SimpulError as exc:
        raise fail(_err, exc) from None


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def main() -> None:
    app(prog_name="python -m services.monitor")
