"""A router source's own connection for its hot loop: one round trip a turn, packed and read
without redis-py's pipeline machinery.

At a batch of one event, redis-py's pipeline (the command objects, the response callbacks, a
timeout context and the retry wrapper around each reply) costs the router more CPU than the
checks it exists for (bench/analysis.md): ~150 µs a round trip against ~50 µs for the same
commands packed by hiredis in one buffer and their replies read by one hiredis reader. A
:class:`Lane` queues commands the way the router's batches queue them on a pipeline
(``execute_command``, ``xack``, ``xtrim``, ``xread``) and sends them in one write.

The connection is redis-py's, taken from the client's pool and kept by the source's loop:
connecting, AUTH, TLS and finding the master behind Sentinels stay redis-py's. What redis-py
does with a reply on the way back is done here for the replies the router can meet: an error
reply is returned as a ``ResponseError`` (the pipeline's ``raise_on_error=False``), except
those that mean the connection leads to the wrong server — ``READONLY`` (a replica, e.g. the
old master after a failover), ``NOREPLICAS`` and a ``WAIT`` refused by a replica — which close
the connection and raise the connection error redis-py raises for them, so the next turn
reconnects (to the new master). A reply that is not RESP, a closed connection, a timeout or a
cancellation mid-turn close the connection too: its unread replies must never be taken for
the next turn's.

A Redis Cluster keeps redis-py's cluster pipeline (commands go to the node of each key):
:func:`open_lane` returns None there.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import InvalidResponse, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.utils import HIREDIS_AVAILABLE

from bus.connection import is_cluster, not_redis, refused_for_replicas

if HIREDIS_AVAILABLE:  # redis[hiredis] is a dependency; without it the router keeps pipelines
    import hiredis

_NOT_ENOUGH_DATA = object()
_READ_SIZE = 65536
# RESP3 push messages (none unless something subscribes or a server announces maintenance) are
# no command's reply: skipped, as redis-py's parser does.
_PUSH: Any = getattr(hiredis, "PushNotification", None) if HIREDIS_AVAILABLE else None


def open_lane(redis: Redis) -> Lane | None:
    """A lane on ``redis``, or None where the router keeps redis-py's pipelines (a cluster;
    no hiredis)."""
    if not HIREDIS_AVAILABLE or is_cluster(redis):
        return None
    return Lane(redis)


class Lane:
    """Commands queued for one round trip on a connection of the source's own (see the module)."""

    def __init__(self, redis: Redis) -> None:
        self._pool = redis.connection_pool
        self._connection: Any = None
        self._reader: Any = None
        self._queued: list[bytes] = []

    # -- queueing, as on a redis-py pipeline --------------------------------------------------

    def execute_command(self, *args: Any) -> None:
        self._queued.append(hiredis.pack_command(args))

    def xack(self, name: str, group: str, *ids: Any) -> None:
        self.execute_command(b"XACK", name, group, *ids)

    def xtrim(self, name: str, *, minid: Any, approximate: bool = True) -> None:
        self.execute_command(b"XTRIM", name, b"MINID", b"~" if approximate else b"=", minid)

    def xread(self, streams: Mapping[str, Any], *, count: int, block: int | None) -> None:
        args: list[Any] = [b"XREAD", b"COUNT", count]
        if block is not None:
            args += [b"BLOCK", block]
        self.execute_command(*args, b"STREAMS", *streams, *streams.values())

    # -- the round trip --------------------------------------------------------------------

    async def __aenter__(self) -> Lane:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._queued = []  # what an error left queued is not sent with the next turn

    async def execute(self, *, raise_on_error: bool = False) -> list[Any]:
        """Send what was queued in one write; every reply, in order (an error reply as a
        ``ResponseError`` in its place: ``raise_on_error`` must be False, as for the router's
        pipelines, which raise them themselves)."""
        if raise_on_error:
            raise TypeError("a lane returns error replies: raise_on_error=False")
        queued, self._queued = self._queued, []
        if not queued:
            return []
        connection = await self._connected()
        timeout = connection.socket_timeout
        try:
            async with asyncio.timeout(timeout) if timeout else contextlib.nullcontext():
                await self._send(connection, b"".join(queued))
                replies = await self._read(connection, len(queued))
        except InvalidResponse:  # its text quotes the bytes received: anything, personal data too
            self._reader = None
            raise await not_redis(connection) from None
        except TimeoutError as exc:
            await self._drop()
            raise RedisTimeoutError(
                f"Timeout talking to {connection._host_error()}: no reply within {timeout} s"
            ) from exc
        except OSError as exc:
            await self._drop()
            raise RedisConnectionError(
                f"Error while talking to {connection._host_error()}: {exc}"
            ) from exc
        except BaseException:
            await self._drop()
            raise
        for reply in replies:
            if isinstance(reply, ResponseError):
                await self._check(connection, reply)
        return replies

    async def close(self) -> None:
        """Give the connection back to the pool (closed if a turn was cut short)."""
        connection, self._connection = self._connection, None
        if connection is not None:
            await self._pool.release(connection)

    async def _connected(self) -> Any:
        if self._connection is None:
            self._connection = await self._pool.get_connection()  # type: ignore[no-untyped-call]
            self._reader = None
        connection = self._connection
        if not connection.is_connected:  # new, or closed after an error: (re)connect
            await connection.connect()
            self._reader = None
        if self._reader is None:
            self._reader = hiredis.Reader(
                protocolError=InvalidResponse,
                replyError=ResponseError,
                notEnoughData=_NOT_ENOUGH_DATA,
            )
        return connection

    @staticmethod
    async def _send(connection: Any, payload: bytes) -> None:
        """One write (redis-py's own wraps each in a task of its own, for its timeout: the
        turn's timeout covers it here)."""
        writer = connection._writer
        if writer.transport.is_closing():
            raise RedisConnectionError(
                f"Redis at {connection._host_error()} closed the connection before the write"
            )
        try:
            writer.write(payload)
            await writer.drain()
        except (TypeError, AttributeError) as exc:  # a transport lost mid-write (CPython < 3.13.10)
            if not writer.transport.is_closing():
                raise
            raise RedisConnectionError(
                f"Redis at {connection._host_error()} closed the connection during the write"
            ) from exc

    async def _read(self, connection: Any, count: int) -> list[Any]:
        reader, stream = self._reader, connection._reader
        replies: list[Any] = []
        while len(replies) < count:
            reply = reader.gets()
            if reply is _NOT_ENOUGH_DATA:
                data = await stream.read(_READ_SIZE)
                if not data:
                    raise RedisConnectionError(
                        f"Redis at {connection._host_error()} closed the connection"
                    )
                reader.feed(data)
                continue
            if _PUSH is not None and isinstance(reply, _PUSH):
                continue
            replies.append(reply)
        return replies

    async def _check(self, connection: Any, reply: ResponseError) -> None:
        """Raise the connection error an error reply stands for (see the module)."""
        if str(reply).startswith("READONLY"):
            await self._drop()
            raise RedisConnectionError(
                f"Redis at {connection._host_error()} is a replica (READONLY): the master "
                "moved; the next turn reconnects"
            )
        translated = await refused_for_replicas(connection, reply)
        if translated is not reply:
            await self._drop()
            raise translated

    async def _drop(self) -> None:
        """Close the connection: a turn cut short leaves replies unread on it."""
        self._reader = None
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.disconnect(nowait=True)
