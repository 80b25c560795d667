"""Redis Sentinel: the third shape of a Simpul Redis, beside one server and a cluster.

``SIMPUL_REDIS_SENTINELS=host1:26379,host2:26379,host3:26379`` makes
:func:`bus.connection.connect` return a client of the *current* master of
``SIMPUL_REDIS_SENTINEL_MASTER`` (default ``simpul``): redis-py's ``SentinelConnectionPool``
asks the Sentinels for the master's address whenever it opens a connection, and drops a
connection whose server answers ``READONLY`` (a master demoted to a replica). Every component
of the bus gets its client from ``connect()``, so all of them follow a failover without a
restart. The URL then gives the scheme (``rediss://``: the Sentinels and the servers speak
TLS with the same ``SIMPUL_REDIS_TLS_*`` files), the data credentials and the database; its
host and port are not used. The Sentinels' own credentials are
``SIMPUL_REDIS_SENTINEL_USERNAME``/``_PASSWORD``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import Field
from pydantic_settings import SettingsConfigDict
from redis.asyncio import Redis
from redis.asyncio.connection import Connection
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool, SentinelManagedConnection

from bus.errors import ConfigurationError
from bus.settings import ComponentSettings

__all__ = ["SENTINELS_VAR", "RedisSentinels", "is_sentinel", "sentinel_client", "sentinel_of"]

SENTINELS_VAR = "SIMPUL_REDIS_SENTINELS"
DEFAULT_MASTER = "simpul"
# A Sentinel that does not answer "who is the master?" this fast is skipped for the next one.
_SENTINEL_TIMEOUT_S = 1.0


class SentinelSettings(ComponentSettings):
    """``SIMPUL_REDIS_SENTINELS`` and ``SIMPUL_REDIS_SENTINEL_*`` (empty: unset); parsed and
    checked by :meth:`RedisSentinels.parse`."""

    model_config = SettingsConfigDict(env_prefix="SIMPUL_REDIS_SENTINEL_")

    sentinels: str | None = Field(default=None, validation_alias=SENTINELS_VAR)
    master: str | None = None
    username: str | None = None
    password: str | None = Field(default=None, repr=False)


@dataclass(frozen=True)
class RedisSentinels:
    """Where the Sentinels are and which master to follow; no ``addresses``: no Sentinel."""

    addresses: tuple[tuple[str, int], ...] = ()
    master: str = DEFAULT_MASTER
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def configured(self) -> bool:
        return bool(self.addresses)

    @classmethod
    def parse(
        cls,
        text: str | None,
        *,
        master: str | None = None,
        username: str | None = None,
        password: str | None = None,
    ) -> RedisSentinels:
        """``host:port,host:port,...`` (IPv6 as ``[::1]:26379``); raises ConfigurationError."""
        parts = [part.strip() for part in (text or "").split(",")]
        addresses = tuple(_address(part) for part in parts if part)
        return cls(addresses, master or DEFAULT_MASTER, username or None, password or None)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RedisSentinels:
        """``SIMPUL_REDIS_SENTINELS``, ``..._MASTER``, ``..._USERNAME``, ``..._PASSWORD``."""
        read = SentinelSettings.load(environ)
        return cls.parse(
            read.sentinels, master=read.master, username=read.username, password=read.password
        )


def _address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65_536:
        raise ConfigurationError(
            f"{SENTINELS_VAR}: {text[:60]!r} is not HOST:PORT; give the Sentinels as "
            "host1:26379,host2:26379,host3:26379"
        )
    return host, int(port)


def sentinel_client(
    sentinels: RedisSentinels, options: dict[str, Any], connection_class: type[Connection]
) -> Redis:
    """A client of the current master, with the options of a single-server client.

    ``connection_class`` is ours (it explains TLS failures and turns ``NOREPLICAS`` and a reply
    that is not RESP into retryable connection errors); it is combined with redis-py's
    Sentinel-managed connection, which finds the master through the pool, and it is the class
    of the connections that ask the Sentinels. Host and port of the URL are dropped: the
    Sentinels give them.
    """
    options = dict(options)
    connection_class = options.pop("connection_class", connection_class)
    if "path" in options:
        raise ConfigurationError(
            f"{SENTINELS_VAR} is set but the Redis URL is unix://...: Sentinels hand out TCP "
            "addresses; give a redis:// or rediss:// URL"
        )
    for name in ("host", "port"):
        options.pop(name, None)
    managed = type(
        f"Sentinel{connection_class.__name__}", (SentinelManagedConnection, connection_class), {}
    )
    sentinel_options: dict[str, Any] = {
        "socket_timeout": _SENTINEL_TIMEOUT_S,
        "socket_connect_timeout": _SENTINEL_TIMEOUT_S,
        "username": sentinels.username,
        "password": sentinels.password,
    }
    tls = {key: value for key, value in options.items() if key.startswith("ssl_")}
    if tls:  # rediss://: the Sentinels speak TLS too, verified with the same files
        sentinel_options.update(tls, ssl=True)
    manager = Sentinel(list(sentinels.addresses), sentinel_kwargs=sentinel_options)
    # The questions to the Sentinels go through our connection class too. redis-py's master
    # lookup moves on to the next Sentinel after a ConnectionError, TimeoutError or error
    # reply, but not after InvalidResponse: a Sentinel address answered by something that does
    # not speak RESP (a gateway answering an address it cannot route, in HTTP) would end the
    # lookup. Ours raises NotRedisProtocol, a ConnectionError, never quoting the bytes.
    for asked in manager.sentinels:
        asked.connection_pool.connection_class = connection_class
    pool = SentinelConnectionPool(  # type: ignore[no-untyped-call]
        sentinels.master, manager, connection_class=managed, **options
    )
    return Redis.from_pool(pool)


def is_sentinel(redis: Redis) -> bool:
    """True for a client :func:`bus.connection.connect` made from Sentinels."""
    # getattr: a cluster client has no single pool.
    return isinstance(getattr(redis, "connection_pool", None), SentinelConnectionPool)


def sentinel_of(redis: Redis) -> Sentinel | None:
    """The Sentinels a client follows (for ``simpul status``), or None."""
    pool = getattr(redis, "connection_pool", None)
    return pool.sentinel_manager if isinstance(pool, SentinelConnectionPool) else None
