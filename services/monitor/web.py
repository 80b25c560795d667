"""The monitor's HTTP surface: the page, its assets, the JSON endpoints, health.

    GET  /                     the dashboard (HTML; refreshes itself from the JSON endpoints)
    GET  /api/status           snapshot, breaches, thresholds (the ``simpul status --json`` shape)
    GET  /api/dead-letters     dead letters per group, masked (?stream=&group=&limit=)
    GET  /api/throughput       entries added per stream per sample, last ``window_s`` seconds
    GET  /api/flowmap.svg      the flow map for the consumer groups present now
    POST /api/replay           replay dead letters (Authorization: Bearer <SIMPUL_MONITOR_TOKEN>)
    GET  /healthz, /readyz     liveness (always 200) and readiness (200 when Redis answered)

Errors are JSON, ``{"error": {"code", "message"}}``: 400 bad input, 401 no or wrong token, 403
replay disabled, 404 unknown stream / group / dead letter, 413 body too large, 415 not JSON,
503 Redis unreachable. Every response carries a strict Content-Security-Policy: the page loads
nothing but its own script and style sheet.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from html import escape
from importlib.resources import files
from string import Template
from typing import Any, Protocol

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from bus import (
    BadRequestBody,
    ConfigurationError,
    PermissionDenied,
    RedisUnavailable,
    SimpulError,
    get_logger,
    parse_json,
    read_body,
)
from bus.admin import (
    BrokenModule,
    DeadLetterRef,
    NotFound,
    ReplayReport,
    Target,
    UnknownGroup,
    UnknownStream,
)
from services._common import bearer_token, same_token
from services.monitor.throughput import Throughput

__all__ = ["build"]


class Settings(Protocol):
    """The monitor's settings the web app reads."""

    @property
    def refresh_s(self) -> float: ...

    @property
    def sample_s(self) -> float: ...

    @property
    def window_s(self) -> float: ...

    def hosts(self) -> list[str]: ...

    def proxies(self) -> list[str]: ...


class Monitor(Protocol):
    """What the web app uses of the monitor service (typed by use, so this module does not
    import the service that builds it)."""

    @property
    def settings(self) -> Settings: ...

    @property
    def token(self) -> bytes | None: ...

    @property
    def where(self) -> str: ...

    @property
    def throughput(self) -> Throughput: ...

    @property
    def last_map(self) -> tuple[str, str] | None: ...

    @property
    def last_ok(self) -> float | None: ...

    @property
    def last_error(self) -> str | None: ...

    @property
    def code_problems(self) -> Sequence[BrokenModule]: ...

    async def snapshot(self, *, max_age_s: float | None = None) -> object: ...

    async def status(self) -> dict[str, Any]: ...

    async def dead_letters(
        self, stream: str | None = None, group: str | None = None, *, limit: int | None = None
    ) -> dict[str, Any]: ...

    async def flow_svg(self) -> tuple[str, str]: ...

    async def group_refs(
        self, stream: str, group: str, *, upto: str | None = None
    ) -> tuple[list[DeadLetterRef], int]: ...

    async def replay(
        self,
        refs: list[DeadLetterRef],
        *,
        to: Target = Target.GROUP,
        dry_run: bool = False,
        by: str = "monitor",
    ) -> ReplayReport: ...


_log = get_logger("services.monitor")
MAX_BODY = 64 * 1024
_ASSETS = {
    "monitor.js": "text/javascript; charset=utf-8",
    "monitor.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="simpul-monitor"'}
_SECURITY = [
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]


def build(monitor: Monitor) -> Starlette:
    """The Starlette app over ``monitor``."""
    package = files("services.monitor")
    assets = {name: package.joinpath("static", name).read_bytes() for name in _ASSETS}
    page_template = Template(package.joinpath("templates", "index.html").read_text("utf-8"))

    async def page(_: Request) -> Response:
        try:
            signature, svg = await monitor.flow_svg()
        except SimpulError:  # Redis down: the last map drawn, if any
            signature, svg = monitor.last_map or ("", "")
        figure = (
            svg.split("\n", 1)[1]  # no XML declaration inside HTML
            if svg
            else '<p class="muted">The flow map appears once Redis answers.</p>'
        )
        html = page_template.substitute(
            refresh_ms=str(int(monitor.settings.refresh_s * 1000)),
            replay_enabled="true" if monitor.token is not None else "false",
            window_min=_minutes(monitor.settings.window_s),
            where=escape(monitor.where or "Redis"),
            signature=escape(signature),
            flow_problems=_flow_problems(monitor),
            flowmap=figure,
        )
        return HTMLResponse(html)

    async def asset(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in assets:
            return _error(404, "not_found", "no such file")
        return Response(assets[name], media_type=_ASSETS[name])

    async def status(_: Request) -> Response:
        return await _answer(monitor.status)

    async def dead_letters(request: Request) -> Response:
        params = request.query_params
        limit_text = params.get("limit")
        if limit_text is not None and not (limit_text.isdigit() and 1 <= int(limit_text) <= 500):
            return _error(400, "bad_request", "limit is a whole number from 1 to 500")
        limit = int(limit_text) if limit_text else None
        if params.get("group") and not params.get("stream"):
            return _error(400, "bad_request", "give the stream of the group too")
        stream, group = params.get("stream") or None, params.get("group") or None
        return await _answer(lambda: monitor.dead_letters(stream, group, limit=limit))

    async def throughput(_: Request) -> Response:
        return JSONResponse(monitor.throughput.as_json())

    async def flow_svg(_: Request) -> Response:
        try:
            signature, svg = await monitor.flow_svg()
        except SimpulError as exc:
            return _failure(exc)
        return Response(svg, media_type="image/svg+xml", headers={"ETag": f'"{signature}"'})

    async def replay(request: Request) -> Response:
        who = request.client.host if request.client else "unknown"
        refused = _authorize(monitor, request, who)
        if refused is not None:
            return refused
        body = await _json_body(request)
        if isinstance(body, Response):
            return body
        return await _answer(lambda: _replay(monitor, body, by=f"monitor@{who}"))

    async def healthz(_: Request) -> Response:
        return JSONResponse(_health(monitor))

    async def readyz(_: Request) -> Response:
        with contextlib.suppress(SimpulError):  # recorded as the monitor's last error
            await monitor.snapshot()
        health = _health(monitor)
        return JSONResponse(health, status_code=200 if health["ready"] else 503)

    return Starlette(
        routes=[
            Route("/", page, methods=["GET"]),
            Route("/static/{name}", asset, methods=["GET"]),
            Route("/api/status", status, methods=["GET"]),
            Route("/api/dead-letters", dead_letters, methods=["GET"]),
            Route("/api/throughput", throughput, methods=["GET"]),
            Route("/api/flowmap.svg", flow_svg, methods=["GET"]),
            Route("/api/replay", replay, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
        ],
        middleware=_middleware(monitor),
        exception_handlers={HTTPException: _http_error},
    )


def _middleware(monitor: Monitor) -> list[Middleware]:
    """Outermost first: the client's address (forwarded only by a trusted proxy), the security
    headers on every answer, then the Host check (a page of another name gets nothing)."""
    settings = monitor.settings
    proxies = settings.proxies()
    forwarded = [Middleware(ProxyHeadersMiddleware, trusted_hosts=proxies)] if proxies else []
    hosts = Middleware(TrustedHostMiddleware, allowed_hosts=settings.hosts())
    return [*forwarded, Middleware(_SecurityHeaders), hosts]


async def _http_error(_: Request, exc: Exception) -> Response:
    """Starlette's own refusals (no such path, wrong method) as JSON too."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    code = {404: "not_found", 405: "method_not_allowed"}.get(status, f"http_{status}")
    detail = exc.detail if isinstance(exc, HTTPException) else "internal error"
    headers = exc.headers if isinstance(exc, HTTPException) else None  # 405's Allow
    return _error(status, code, str(detail), headers=dict(headers) if headers else None)


async def _replay(monitor: Monitor, body: Any, *, by: str) -> dict[str, Any]:
    """``{"refs": [{"stream", "group", "id"}, ...]}`` or ``{"stream", "group"[, "upto"]}`` (the
    group's dead letters, oldest first, up to the id given), with ``"to": "group" | "stream"``
    and ``"dry_run": bool``."""
    if not isinstance(body, dict):
        raise ConfigurationError("the body must be a JSON object")
    to_text = body.get("to", "group")
    if to_text not in ("group", "stream"):
        raise ConfigurationError("to is 'group' (the default) or 'stream'")
    dry_run = body.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise ConfigurationError("dry_run is true or false")
    remaining = 0
    if "refs" in body:
        given = body["refs"]
        if not isinstance(given, list) or not all(isinstance(r, dict) for r in given):
            raise ConfigurationError("refs is a list of {stream, group, id} objects")
        refs = [DeadLetterRef.from_dict(r) for r in given]
    elif isinstance(body.get("stream"), str) and isinstance(body.get("group"), str):
        upto = body.get("upto")
        if upto is not None and not isinstance(upto, str):
            raise ConfigurationError("upto is a dead letter id")
        refs, depth = await monitor.group_refs(body["stream"], body["group"], upto=upto)
        remaining = depth - len(refs)
    else:
        raise ConfigurationError(
            'give "refs": [{"stream", "group", "id"}] or "stream" and "group" (a whole group)'
        )
    report = await monitor.replay(refs, to=Target(to_text), dry_run=dry_run, by=by)
    answer = report.as_dict()
    _log.info("monitor_replay", by=by, target=to_text, dry_run=dry_run, **answer["counts"])
    return {"ok": report.ok, **answer, "not_selected": max(0, remaining)}


async def _answer(work: Callable[[], Awaitable[dict[str, Any]]]) -> Response:
    try:
        return JSONResponse(await work())
    except SimpulError as exc:
        return _failure(exc)


# Simpul's errors as HTTP answers, most specific first.
_FAILURES: list[tuple[type[SimpulError], int, str]] = [
    (RedisUnavailable, 503, "redis_unavailable"),
    (PermissionDenied, 503, "redis_permission_denied"),
    (UnknownStream, 404, "unknown_stream"),
    (UnknownGroup, 404, "unknown_group"),
    (NotFound, 404, "not_found"),
    (ConfigurationError, 400, "bad_request"),
]


def _failure(exc: SimpulError) -> Response:
    """A Simpul error as JSON: what went wrong, in words, never a traceback."""
    for kind, status, code in _FAILURES:
        if isinstance(exc, kind):
            return _error(status, code, str(exc))
    _log.warning("monitor_redis_error", error=type(exc).__name__)
    return _error(502, "redis_error", str(exc))


def _authorize(monitor: Monitor, request: Request, who: str) -> Response | None:
    """None if the request carries the operator token; else the answer refusing it."""
    expected = monitor.token
    if expected is None:
        return _error(
            403,
            "replay_disabled",
            "replay is disabled: the monitor was started without SIMPUL_MONITOR_TOKEN",
        )
    presented = bearer_token(request.headers)
    if presented is not None and same_token(presented, expected):
        return None
    _log.warning("monitor_replay_unauthorized", client=who, token_given=presented is not None)
    message = (
        "the token was not accepted"
        if presented
        else "replay needs the operator token: Authorization: Bearer <token>"
    )
    return _error(401, "unauthorized", message, headers=_CHALLENGE)


async def _json_body(request: Request) -> Any:
    """The request's JSON body, or the answer refusing it (not JSON, too large)."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/json":
        return _error(415, "unsupported_media_type", "send the request as application/json")
    try:
        # Refused as soon as it passes the limit: a chunked body is not buffered whole first.
        return parse_json(await read_body(request, MAX_BODY))
    except BadRequestBody as exc:  # too large; not JSON, or nested or numbered past the limits
        if exc.reason == "too_large":
            return _error(413, "too_large", str(exc))
        return _error(400, "bad_request", str(exc))


def _error(
    status: int, code: str, message: str, *, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )


def _health(monitor: Monitor) -> dict[str, Any]:
    """Ready: the last snapshot of Redis succeeded (within a few samples)."""
    age = None if monitor.last_ok is None else round(time.monotonic() - monitor.last_ok, 3)
    fresh = age is not None and age < 3 * monitor.settings.sample_s + 10
    ready = monitor.last_error is None and fresh
    return {"ready": ready, "last_snapshot_age_s": age, "last_error": monitor.last_error}


def _flow_problems(monitor: Monitor) -> str:
    """The banner over the flow map naming the service modules it could not read (monitor.js
    draws the same from /api/status)."""
    if not monitor.code_problems:
        return ""
    items = "".join(
        f"<li><code>{escape(p.module)}</code>: {escape(p.error)}</li>"
        for p in monitor.code_problems
    )
    return (
        '<div class="notice bad"><strong>The flow map lacks the code of these modules</strong> '
        "(their services' consumers are drawn only where Redis shows their groups):"
        f"<ul>{items}</ul></div>"
    )


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s"


class _SecurityHeaders:
    """Adds the Content-Security-Policy and friends to every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in _SECURITY if k not in present]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, with_headers)
