"""What a slow or greedy client may hold of a server of :mod:`bus.http`: time and connections.

uvicorn bounds the idle time between two requests of a connection (keep-alive) and, with
``limit_concurrency``, answers 503 once too many connections are open — but only when a
request's head has arrived, and it has no deadline for reading a request: a client that sends
half a request and stalls holds its connection (a file descriptor, a buffer, maybe a handler
waiting on ``receive()``) for ever. :class:`Limits` adds the two missing bounds to uvicorn's
h11 protocol: every request (head and body) must arrive within ``request_timeout_s`` of its
first byte (or of the connection's opening), else the connection is closed (``408`` if nothing
was answered yet); a client that stops reading an answer is cut off once its part has waited
``request_timeout_s``; and a connection past ``max_connections`` is answered 503 and closed at
once.

Read from ``SIMPUL_HTTP_REQUEST_TIMEOUT_S``, ``SIMPUL_HTTP_KEEP_ALIVE_S`` and
``SIMPUL_HTTP_MAX_CONNECTIONS`` (or passed to :func:`bus.http.serve` / :func:`bus.http.running`).
Logs: ``http_request_timeout``, ``http_write_timeout`` and ``http_connection_refused``, with the
client's address.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, ClassVar

import h11
from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict
from uvicorn.protocols.http.h11_impl import H11Protocol

from bus.errors import ConfigurationError
from bus.logging import get_logger

__all__ = ["Limits"]

_log = get_logger("bus.http")


def _answer(status: str, text: str, *headers: str) -> bytes:
    """A whole HTTP/1.1 response, written raw: h11 will not answer a request it has not read."""
    body = f"{text}\n".encode()
    head = [
        f"HTTP/1.1 {status}",
        "content-type: text/plain; charset=utf-8",
        f"content-length: {len(body)}",
        "cache-control: no-store",  # as every answer of bus.http
        "x-content-type-options: nosniff",
        *headers,
        "connection: close",
    ]
    return "\r\n".join([*head, "", ""]).encode() + body


_BUSY = _answer("503 Service Unavailable", "too many connections; retry shortly", "retry-after: 1")
_TIMEOUT = _answer("408 Request Timeout", "the request did not arrive in time")


class Limits(BaseSettings):
    """Bounds on what clients hold; the defaults suit a service API or a webhook on a LAN."""

    model_config = SettingsConfigDict(env_prefix="SIMPUL_HTTP_", extra="ignore", frozen=True)

    request_timeout_s: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description="a request's head and body must arrive within this many seconds of its "
        "first byte (or of the connection's opening); else the connection is closed",
    )
    keep_alive_s: int = Field(
        default=5, ge=1, le=300, description="an idle connection between requests is closed after"
    )
    max_connections: int = Field(
        default=256,
        ge=1,
        le=10_000,
        description="connections open at once; the next is answered 503 and closed",
    )

    @classmethod
    def load(cls, **overrides: Any) -> Limits:
        """Environment, then ``overrides``; one clear error naming the variable."""
        try:
            return cls(**overrides)
        except ValidationError as exc:
            problems = "; ".join(
                f"SIMPUL_HTTP_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
                for err in exc.errors()
            )
            raise ConfigurationError(f"invalid HTTP limits: {problems}") from None

    def protocol(self) -> type[H11Protocol]:
        """uvicorn's h11 protocol with these limits (``uvicorn.Config(http=...)``)."""
        return type("LimitedH11Protocol", (_LimitedH11Protocol,), {"limits": self})


class _LimitedH11Protocol(H11Protocol):
    """H11Protocol plus a read deadline per request and a hard cap on connections."""

    limits: ClassVar[Limits]
    _deadline: asyncio.TimerHandle | None = None
    _stalled: asyncio.TimerHandle | None = None  # the client stopped reading our answer

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # uvicorn logs to the standard library, which nothing configures here: its lines came
        # out as bare text in the JSON log, without the client's address.
        self.logger = _ProtocolLog(self)  # type: ignore[assignment]

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            _log.warning(
                "http_connection_refused",
                client=self._client(),
                open=len(self.connections),
                limit=self.limits.max_connections,
            )
            self.transport.write(_BUSY)
            self.transport.close()
            return
        self._arm()  # a client that connects and sends nothing is a slow client too

    def data_received(self, data: bytes) -> None:
        self._arm()  # a request is arriving: it has request_timeout_s to arrive whole
        super().data_received(data)
        if self.conn.their_state not in (h11.IDLE, h11.SEND_BODY):
            self._disarm()  # all of it is in (or the client is gone): the handler takes its time

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._unstall()
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        """The answer is not being read as fast as it is written: the client must take some of
        it within every ``request_timeout_s``, else the connection is cut (a closed transport
        still waits for its buffer, so a client that never reads would hold its connection,
        and the answer in memory, for ever). A slow reader that keeps reading is never cut."""
        super().pause_writing()
        if self._stalled is None:
            self._watch(self.transport.get_write_buffer_size())

    def _watch(self, unread: int) -> None:
        self._stalled = self.loop.call_later(
            self.limits.request_timeout_s, self._stalled_out, unread
        )

    def resume_writing(self) -> None:
        super().resume_writing()
        self._unstall()

    def _unstall(self) -> None:
        if self._stalled is not None:
            self._stalled.cancel()
            self._stalled = None

    def _stalled_out(self, unread: int) -> None:
        self._stalled = None
        left = self.transport.get_write_buffer_size()
        if left < unread:  # the client took some: watch on
            self._watch(left)
            return
        _log.info(
            "http_write_timeout", client=self._client(), timeout_s=self.limits.request_timeout_s
        )
        self.transport.abort()

    def _arm(self) -> None:
        if self._deadline is None:
            self._deadline = self.loop.call_later(self.limits.request_timeout_s, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        answered = self.conn.our_state is not h11.IDLE
        _log.info(
            "http_request_timeout",
            client=self._client(),
            answered=answered,
            timeout_s=self.limits.request_timeout_s,
        )
        if not answered:
            self.transport.write(_TIMEOUT)
        # A handler waiting on receive() gets http.disconnect (Starlette: ClientDisconnect).
        self.transport.close()

    def _client(self) -> str:
        return self.client[0] if self.client else "unknown"


# uvicorn's own messages (fixed texts, never request data) as the bus's log events.
_EVENTS = {
    "Invalid HTTP request received.": "http_invalid_request",
    "Exceeded concurrency limit.": "http_concurrency_limit",
}


class _ProtocolLog:
    """What H11Protocol (and its request cycle) call on their logger, as structured events with
    the client's address; an exception by its type only (a traceback may quote data)."""

    level = logging.INFO  # uvicorn's TRACE lines stay off

    def __init__(self, protocol: _LimitedH11Protocol) -> None:
        self.protocol = protocol

    def log(self, level: int, msg: str, *args: Any, exc_info: Any = None, **_: Any) -> None:
        text = msg % args if args else msg
        event = _EVENTS.get(text.strip(), "http_server_message")
        fields: dict[str, Any] = {"client": self.protocol._client()}
        if event == "http_server_message":
            fields["message"] = text.strip()
        if isinstance(exc_info, BaseException):
            fields["error"] = type(exc_info).__name__
        if event == "http_invalid_request":  # a client's fault, like a timeout
            level = min(level, logging.INFO)
        _log.log(level, event, **fields)

    def debug(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self.log(logging.DEBUG, msg, *args, **kwargs)

    def info(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self.log(logging.INFO, msg, *args, **kwargs)

    def warning(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self.log(logging.WARNING, msg, *args, **kwargs)

    def error(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self.log(logging.ERROR, msg, *args, **kwargs)
