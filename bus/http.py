"""Serving a Starlette (ASGI) app in the bus's event loop: webhooks, service APIs, health.

:func:`serve` runs until SIGINT/SIGTERM and then returns normally; :func:`running` serves for the
length of a block (services, tests, demos) on a given or a free port.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
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
    sock = _bind(host, port)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, setattr, server, "should_exit", True)
    try:
        await server.serve(sockets=[sock])
    finally:
        sock.close()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


@contextlib.asynccontextmanager
async def running(app: ASGIApp, *, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    """Serve ``app`` in this event loop for the block (tests, demos); yields its base URL.

    ``port=0`` takes a free port from the kernel, so parallel tests never collide."""
    server = _QuietServer(_config(app, host, port))
    sock = _bind(host, port)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()  # startup failed: raise its error
                raise ConfigurationError(f"the HTTP server on {host}:{port} did not start")
            await asyncio.sleep(0.01)
        bound = sock.getsockname()[1]
        yield f"http://{f'[{host}]' if ':' in host else host}:{bound}"
    finally:
        server.should_exit = True
        await task
        sock.close()


def _bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound here: uvicorn would ``sys.exit`` on a port in use, which
    inside a running event loop kills the whole process instead of raising."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise ConfigurationError(f"cannot serve HTTP on {host}:{port}: {exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        reason = exc.strerror or str(exc)
        raise ConfigurationError(f"cannot serve HTTP on {host}:{port}: {reason}") from None
    return sock


class _QuietServer(uvicorn.Server):
    """Leaves the host process's signal handlers alone (it is not the process's server)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Any:
        yield


def _config(app: ASGIApp, host: str, port: int) -> uvicorn.Config:
    # No access log: our own logs name each request's outcome without its contents.
    return uvicorn.Config(app, host=host, port=port, lifespan="off", access_log=False,
                          log_config=None, server_header=False)  # fmt: skip
