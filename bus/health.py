"""Liveness and readiness of a consumer, from what it last achieved (not from a ping).

A service run with ``SIMPUL_HTTP=HOST:PORT`` answers on that address:

* ``GET /healthz`` (liveness): 200 while the consumer loop runs — also through a Redis outage,
  which a restart would not cure; 503 once the loop has stopped or died.
* ``GET /readyz`` (readiness): 200 when the last successful poll of Redis is recent and no
  error followed it; 503 otherwise (Redis unreachable, group lost, loop stopped).

Both answer with :meth:`Health.snapshot` as JSON: ages of the last poll and the last ack, the
last error, why the service is not ready (``not_ready_because``, a sentence), counters.
``GET /metrics`` serves the service's Prometheus metrics beside them
(:mod:`bus.metrics`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp


@dataclass
class Health:
    """Updated by the consumer loop; read by health endpoints and the CLI."""

    stale_after_s: float
    last_poll: float | None = None  # monotonic time of the last successful XREADGROUP
    last_ack: float | None = None
    last_error: str | None = None
    running: bool = False
    dependency_down: str | None = None  # a handler's dependency is unavailable (its kind)
    counters: dict[str, int] = field(default_factory=dict)

    failing_since: float | None = None  # monotonic time of the first error since the last poll

    def polled(self) -> None:
        self.last_poll = time.monotonic()
        self.last_error = None
        self.failing_since = None

    def acked(self) -> None:
        self.last_ack = time.monotonic()

    def failed(self, error: str) -> None:
        if self.last_error is None:
            self.failing_since = time.monotonic()
        self.last_error = error

    def why_not_ready(self) -> str | None:
        """Why :attr:`ready` is false, in a sentence for the operator reading /readyz."""
        now = time.monotonic()
        if self.last_error is not None:
            since = now - (self.failing_since or now)
            state = "the consumer stopped" if not self.running else f"failing for {since:.0f} s"
            return f"{state}: {self.last_error}"
        if not self.running:
            return "the consumer is not running"
        if self.dependency_down is not None:
            return f"a handler's dependency is unavailable ({self.dependency_down})"
        if self.last_poll is None:
            return "Redis has not answered a read yet"
        if now - self.last_poll >= self.stale_after_s:
            return f"no read from Redis for {now - self.last_poll:.0f} s"
        return None

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n

    @property
    def ready(self) -> bool:
        """Polled Redis successfully within ``stale_after_s``: events are flowing to us."""
        return (
            self.running
            and self.last_error is None
            and self.dependency_down is None
            and self.last_poll is not None
            and time.monotonic() - self.last_poll < self.stale_after_s
        )

    def snapshot(self) -> dict[str, object]:
        now = time.monotonic()
        return {
            "running": self.running,
            "ready": self.ready,
            "last_poll_age_s": None if self.last_poll is None else round(now - self.last_poll, 3),
            "last_ack_age_s": None if self.last_ack is None else round(now - self.last_ack, 3),
            "last_error": self.last_error,
            "not_ready_because": self.why_not_ready(),
            "dependency_down": self.dependency_down,
            "counters": dict(self.counters),
        }


def health_app(
    health: Health,
    app: ASGIApp | None = None,
    *,
    metrics: Callable[[str], tuple[bytes, str]] | None = None,
) -> Starlette:
    """``/healthz`` and ``/readyz`` for ``health``; ``/metrics`` if ``metrics`` is given (a
    function of the request's Accept header returning the body and its content type, e.g.
    :meth:`bus.metrics.ServiceMetrics.exposition`); every other path goes to ``app``, if any."""

    async def live(_: Request) -> JSONResponse:
        return JSONResponse(health.snapshot(), status_code=200 if health.running else 503)

    async def ready(_: Request) -> JSONResponse:
        return JSONResponse(health.snapshot(), status_code=200 if health.ready else 503)

    async def exposition(request: Request) -> Response:
        assert metrics is not None
        body, content_type = metrics(request.headers.get("accept", ""))
        return Response(body, headers={"content-type": content_type})

    routes: list[Route | Mount] = [Route("/healthz", live), Route("/readyz", ready)]
    if metrics is not None:
        routes.append(Route("/metrics", exposition))
    if app is not None:
        routes.append(Mount("/", app=app))
    return Starlette(routes=routes)
