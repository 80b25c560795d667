"""Serving a Starlette (ASGI) app in the bus's event loop: webhooks, service APIs, health.

:func:`serve` runs until SIGINT/SIGTERM and then returns normally; :func:`running` serves for the
length of a block (services, tests, demos) on a given or a free port.

Whatever an app does, the server answers a request that fails unexpectedly with a JSON 500 and
logs ``http_unhandled_error`` (the error's type and where it was raised): never a traceback as
text, which would break the JSON log and could quote the request's data. :func:`read_body`
reads a client's body no further than a limit (declared or streamed), and :func:`parse_json`
parses a JSON body with the limits a request deserves (depth, digits). Every answer carries
``Cache-Control: no-store`` and ``X-Content-Type-Options: nosniff`` unless the app set its own:
what these servers answer (profiles, inboxes, dead letters, event ids) is for its client only.
Slow and greedy clients are bounded by :class:`bus.http_limits.Limits` (a read deadline per
request, a cap on connections, the keep-alive time).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import traceback
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import uvicorn
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bus.errors import BadRequestBody, ConfigurationError
from bus.http_limits import Limits
from bus.logging import get_logger

__all__ = [
    "MAX_HEAD",
    "MAX_JSON_DEPTH",
    "MAX_JSON_DIGITS",
    "Limits",
    "parse_address",
    "parse_json",
    "read_body",
    "running",
    "serve",
]

# A record or a request is a few levels deep; deeper is an attack or a bug, and past ~1000 the
# JSON decoder itself fails with a RecursionError.
MAX_JSON_DEPTH = 32
# Far above any identifier or amount (a NIK has 16 digits); Python refuses ints past 4300 digits
# with a ValueError, and a float of thousands of digits is silently infinite.
MAX_JSON_DIGITS = 64
# A request line's target and headers: far above any client of ours (a bearer token, a few
# headers), far below what would matter per connection. uvicorn's h11 refuses a head over
# 16 KiB only while it arrives in pieces; this holds however it arrived (431).
MAX_HEAD = 16 * 1024

_log = get_logger("bus.http")


def parse_address(address: str) -> tuple[str, int]:
    """``host:port`` (or ``[::1]:port``) from a setting, with a clear error."""
    host, sep, port = address.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigurationError(
            f"an HTTP address is HOST:PORT (e.g. 127.0.0.1:8080), not {address!r}"
        )
    return host, int(port)


def parse_json(text: str | bytes) -> Any:
    """A client's JSON document; raises :class:`BadRequestBody` (with a reason and a message
    that quotes no data) for anything that is not plain JSON within the limits above."""
    try:
        value = json.loads(text, parse_int=_integer, parse_float=_real, parse_constant=_constant)
    except BadRequestBody:
        raise
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        raise BadRequestBody(
            "bad_json", f"the body is not valid JSON: {exc.msg} at {where}"
        ) from None
    except RecursionError:
        raise _too_deep() from None
    except (ValueError, UnicodeDecodeError) as exc:  # bytes in no UTF encoding
        raise BadRequestBody(
            "bad_json", f"the body is not valid JSON: {type(exc).__name__}"
        ) from None
    if _depth(value) > MAX_JSON_DEPTH:
        raise _too_deep()
    return value


async def read_body(request: Request, limit: int) -> bytes:
    """The request's body, refused with :class:`BadRequestBody` (reason ``too_large``) as soon
    as it is known to pass ``limit`` bytes: from Content-Length before reading any, or while a
    chunked body streams in, so a client cannot make the server buffer more than the limit."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _too_large(limit)
    return bytes(body)


def _too_large(limit: int) -> BadRequestBody:
    return BadRequestBody("too_large", f"the request body exceeds {limit} bytes")


def _integer(text: str) -> int:
    _check_digits(text)
    return int(text)


def _real(text: str) -> float:
    _check_digits(text)
    return float(text)


def _check_digits(text: str) -> None:
    if sum(c.isdigit() for c in text) > MAX_JSON_DIGITS:
        message = f"a number in the JSON body has more than {MAX_JSON_DIGITS} digits"
        raise BadRequestBody("number_too_long", f"{message}; send long identifiers as strings")


def _constant(name: str) -> Any:
    raise BadRequestBody("bad_json", f"the body is not valid JSON: {name} is not a JSON value")


def _too_deep() -> BadRequestBody:
    return BadRequestBody("too_deep", f"the JSON body nests deeper than {MAX_JSON_DEPTH} levels")


def _depth(value: Any) -> int:
    """How deep arrays and objects nest in ``value`` (a scalar: 0), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        children = (
            item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        )
        if children is None:
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in children)
    return deepest


async def serve(
    app: ASGIApp, *, host: str = "127.0.0.1", port: int = 8080, limits: Limits | None = None
) -> None:
    """Serve until SIGINT/SIGTERM; in-flight requests finish (and publish) before exit.
    ``limits``: what slow or greedy clients may hold (default: :meth:`Limits.load`).

    The signal ends the server, then this returns normally (uvicorn's own handling would
    re-raise the signal afterwards, so a clean stop would look like a kill to supervisors).
    """
    server = _QuietServer(_config(app, host, port, limits))
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
async def running(
    app: ASGIApp, *, host: str = "127.0.0.1", port: int = 0, limits: Limits | None = None
) -> AsyncIterator[str]:
    """Serve ``app`` in this event loop for the block (tests, demos); yields its base URL.

    ``port=0`` takes a free port from the kernel, so parallel tests never collide."""
    server = _QuietServer(_config(app, host, port, limits))
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


def _config(app: ASGIApp, host: str, port: int, limits: Limits | None) -> uvicorn.Config:
    limits = limits or Limits.load()
    return uvicorn.Config(
        _Contained(app),
        host=host,
        port=port,
        http=limits.protocol(),
        timeout_keep_alive=limits.keep_alive_s,
        # Our protocol refuses connection max+1 at once; uvicorn's check (at a request's head,
        # counting this connection) is the backstop for requests in flight.
        limit_concurrency=limits.max_connections + 1,
        lifespan="off",
        # Nobody's X-Forwarded-For is believed (uvicorn's default believes 127.0.0.1's, and
        # FORWARDED_ALLOW_IPS anyone's): an app behind a proxy names its proxies (the monitor).
        proxy_headers=False,
        access_log=False,  # our own logs name each request's outcome without its contents
        log_config=None,
        server_header=False,
    )


class _Contained:
    """Keeps an app's unexpected errors from uvicorn, which would log their traceback as text:
    one ``http_unhandled_error`` line instead (type and place, no message: it may quote data)
    and a JSON 500 if the app had not answered yet. A 500 is held until the app returns: when it
    raises after answering 500 (Starlette's ServerErrorMiddleware sends a text/plain "Internal
    Server Error", then re-raises), the JSON 500 replaces that answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False
        held: list[Message] = []  # a 500 and its body, sent when the app returns normally

        async def tracking(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message = {**message, "headers": _with_defaults(message.get("headers", []))}
                if message.get("status") == 500:
                    held.append(message)
                    return
            elif held:
                held.append(message)
                return
            await send(message)

        if scope["type"] == "http" and _ambiguous_length(scope):
            # RFC 9112 6.3: a request smuggling attempt, which a proxy in front may read
            # otherwise than h11 (which believes Transfer-Encoding and reads on).
            client = scope["client"][0] if scope.get("client") else "unknown"
            _log.info("http_ambiguous_length", client=client)
            body = b'{"error": "send Content-Length or Transfer-Encoding, not both"}'
            await _answer_json(send, 400, body, close=True)
            return
        if scope["type"] == "http" and _head_size(scope) > MAX_HEAD:
            client = scope["client"][0] if scope.get("client") else "unknown"
            _log.info("http_head_too_large", client=client, limit=MAX_HEAD)
            refusal = f'{{"error": "the request head exceeds {MAX_HEAD} bytes"}}'
            await _answer_json(send, 431, refusal.encode())
            return
        try:
            await self.app(scope, receive, tracking)
        except Exception as exc:
            where = _place(exc)
            _log.error("http_unhandled_error", error=type(exc).__name__, at=where)
            if (held or not started) and scope["type"] == "http":
                await _internal_error(send)
            return
        for message in held:
            await send(message)


# What every answer of these servers carries unless the app says otherwise: nothing they serve
# (profiles, inboxes, dead letters, event ids, metrics) may sit in a browser's or a proxy's
# cache, nor be read as another content type than the one declared.
_DEFAULT_HEADERS = ((b"cache-control", b"no-store"), (b"x-content-type-options", b"nosniff"))


def _with_defaults(headers: Any) -> list[tuple[bytes, bytes]]:
    given = list(headers)
    present = {bytes(name).lower() for name, _ in given}
    return [*given, *((k, v) for k, v in _DEFAULT_HEADERS if k not in present)]


def _place(exc: BaseException) -> str:
    """``file.py:line in function`` where ``exc`` was raised (the last frame of its traceback)."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "unknown"
    last = frames[-1]
    return f"{Path(last.filename).name}:{last.lineno} in {last.name}"


def _ambiguous_length(scope: Scope) -> bool:
    names = {bytes(name).lower() for name, _ in scope["headers"]}
    return b"content-length" in names and b"transfer-encoding" in names


def _head_size(scope: Scope) -> int:
    """Bytes of the request line's target and the headers, as received."""
    target = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"")
    return target + sum(len(name) + len(value) + 4 for name, value in scope["headers"])


async def _internal_error(send: Send) -> None:
    body = b'{"error": "internal error: the server log names it (http_unhandled_error)"}'
    await _answer_json(send, 500, body)


async def _answer_json(send: Send, status: int, body: bytes, *, close: bool = False) -> None:
    headers = _with_defaults(
        [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    )
    if close:  # uvicorn closes the connection after this answer
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
