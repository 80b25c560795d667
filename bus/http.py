"""Serving a Starlette (ASGI) app in the bus's event loop: webhooks, service APIs, health.

:func:`serve` runs until SIGINT/SIGTERM and then returns normally; :func:`running` serves for the
length of a block (services, tests, demos) on a given or a free port.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from bus.errors import ConfigurationError

__all__ = ["parse_address", "running", "serve"]


def parse_address(address: str) -> tuple[str, int]:
    """``host:port`` (or ``[::1]:port``) from a setting, with a clear error."""
    host, sep, port = address.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigurationError(
            f"an HTTP address is HOST:PORT (e.g. 127.0.0.1:8080), not {address!r}"
        )
    return host, int(port)


async def serve(app: ASGIApp, *, host: str = "127.0.0.1", port: int = 8080) -> None:
    """Serve until SIGINT/SIGTERM; in-flight requests finish (and publish) before exit.

    The signal ends the server, then this returns normally (uvicorn's own handling would
    re-raise the signal afterwards, so a clean stop would look like a kill to supervisors).
    """
    server = _QuietServer(_config(app, host, port))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, setattr, server, "should_exit", True)
    try:
        await server.serve()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


@contextlib.asynccontextmanager
async def running(app: ASGIApp, *, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    """Serve ``app`` in this event loop for the block (tests, demos); yields its base URL.

    ``port=0`` takes a free port from the kernel, so parallel tests never collide."""
    server = _QuietServer(_config(app, host, port))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()  # startup failed: raise its error
            raise ConfigurationError(f"the HTTP server on {host}:{port} did not start")
        await asyncio.sleep(0.01)
    bound = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{bound}"
    finally:
        server.should_exit = True
        await task


class _QuietServer(uvicorn.Server):
    """Leaves the host process's signal handlers alone (it is not the process's server)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Any:
        yield


def _config(app: ASGIApp, host: str, port: int) -> uvicorn.Config:
    # No access log: our own logs name each request's outcome without its contents.
    return uvicorn.Config(app, host=host, port=port, lifespan="off", access_log=False,
                          log_config=None, server_header=False)  # fmt: skip
