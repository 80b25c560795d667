"""Redis clients configured for Simpul: bytes in and out, bounded timeouts, TLS from the URL."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bus.errors import PermissionDenied, RedisUnavailable

# Errors after which a command may be retried once Redis answers again.
TRANSIENT = (RedisConnectionError, RedisTimeoutError, ConnectionResetError, OSError)


def connect(url: str, *, block_ms: int = 2_000, client_name: str | None = None) -> Redis:
    """A client for ``url``. Values stay bytes: a non-UTF-8 entry must not break a whole read.

    The socket timeout exceeds the longest XREADGROUP BLOCK we issue, so a blocked read is not
    mistaken for a dead server, while a paused or unreachable server is noticed within seconds.
    """
    return Redis.from_url(
        url,
        decode_responses=False,
        socket_timeout=block_ms / 1000 + 5.0,
        socket_connect_timeout=5.0,
        health_check_interval=0,
        client_name=client_name,
    )


def translate(exc: Exception) -> Exception:
    """Map redis-py errors onto Simpul's error tree (callers ``raise translate(e) from e``)."""
    if isinstance(exc, TRANSIENT):
        return RedisUnavailable(f"Redis is unreachable or did not answer in time: {exc}")
    if isinstance(exc, ResponseError) and str(exc).startswith("NOPERM"):
        return PermissionDenied(f"Redis refused the command for this user: {exc}")
    return exc
