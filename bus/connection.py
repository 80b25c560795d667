"""Redis clients configured for Simpul: bytes in and out, bounded timeouts, TLS.

Every Redis client of the bus comes from :func:`connect`. A ``rediss://`` URL speaks TLS and
always verifies the server: its certificate must chain to ``SIMPUL_REDIS_TLS_CA`` (or, unset,
to the system's CAs) and name the URL's host. ``SIMPUL_REDIS_TLS_CERT`` and
``SIMPUL_REDIS_TLS_KEY`` present a client certificate (mutual TLS, Redis' ``tls-auth-clients
yes``). The files are checked when the client is made, so a wrong path fails at start-up with
the setting's name, never later and never quoting a file's contents; a connection that fails
says what to fix (a missing client certificate, a CA that did not sign the server's, a host
the certificate does not name, a plain ``redis://`` URL on a TLS port).

``SIMPUL_REDIS_CLUSTER=1`` makes :func:`connect` return a Redis Cluster client
(``redis.asyncio.cluster.RedisCluster``) that discovers every master from the URL's node, with
the same options (bytes, timeouts, TLS files). It is typed as ``Redis``: it speaks the same
commands, and the few places that must act differently on a cluster (reads of streams in
several slots, SCAN of every master) ask :func:`is_cluster`. docs/cluster.md explains the rest.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import parse_qs, unquote, urlsplit

from pydantic import field_validator
from pydantic_settings import SettingsConfigDict
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import (
    AbstractConnection,
    Connection,
    ConnectionPool,
    SSLConnection,
    UnixDomainSocketConnection,
    parse_url,
)
from redis.exceptions import (
    AuthenticationError,
    ClusterError,
    InvalidResponse,
    NoPermissionError,
    RedisClusterUnreachableError,
    ResponseError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.utils import HIREDIS_AVAILABLE

from bus import replies
from bus.devmaterial import refuse_dev_secret
from bus.errors import ConfigurationError, PermissionDenied, RedisUnavailable, SimpulError
from bus.sentinel import SENTINELS_VAR, RedisSentinels, sentinel_client
from bus.settings import ComponentSettings, Settings

__all__ = [
    "TRANSIENT",
    "NotMaster",
    "NotRedisProtocol",
    "RedisTLS",
    "ReplicasMissing",
    "TLSConnectionError",
    "cluster_from_env",
    "connect",
    "is_cluster",
    "location",
    "login_refused",
    "outage_text",
    "simpul_error",
    "translate",
]

CLUSTER_VAR = "SIMPUL_REDIS_CLUSTER"
CA_VAR = "SIMPUL_REDIS_TLS_CA"
CERT_VAR = "SIMPUL_REDIS_TLS_CERT"
KEY_VAR = "SIMPUL_REDIS_TLS_KEY"


class ReplicasMissing(RedisConnectionError):
    """A master refused a write because too few replicas are in sync with it (NOREPLICAS).

    A redis-py ``ConnectionError`` (and the connection is closed): retried like an outage,
    which it is for writers — the master they reach is cut off from its replicas.
    """


class NotMaster(RedisConnectionError):
    """The node a write's ``WAIT`` was sent to answered that it is a replica: the client took
    it for the master of the keys written, a view a failover has made stale (on a cluster, an
    old master that came back as a replica of its successor).

    The write itself may have reached the real master (a cluster follows ``MOVED``), but no
    replica confirmed it, so it is no acknowledgement. A redis-py ``ConnectionError`` (and the
    connection is closed): retried like an outage, by which time the client has learnt the new
    master; a publish is idempotent, so the retry adds nothing and waits for its replicas.
    """


class NotRedisProtocol(RedisConnectionError):
    """What answered at the client's address does not speak the Redis protocol (RESP): a
    reply began with a byte no Redis reply begins with, or was malformed (redis-py's
    ``InvalidResponse``). Another service, a proxy, or a gateway answers there, e.g. one that
    takes an address it cannot route for its own and answers "HTTP/1.1 400 Bad Request".

    A redis-py ``ConnectionError`` (and the connection is closed: the rest of its bytes cannot
    be read as replies): retried like an outage, which it is for the client — the Redis it
    means does not answer, and a route restored or a proxy fixed brings it back. The message
    names the address, never the bytes received.
    """


class TLSConnectionError(RedisConnectionError):
    """A connection failed for a reason the message explains (TLS setup, wrong scheme).

    A redis-py ``ConnectionError``, so it is retried like any outage: an operator may fix the
    server's certificate while the services wait.
    """


# Errors after which a command may be retried once Redis answers again. A cluster client
# raises ClusterDownError (a ClusterError) while the cluster reports itself down or a master's
# slots are unserved, SlotNotCoveredError while none of the nodes it knows covers a slot, and
# TryAgainError when a slot in migration refuses a multi-key command for a moment: all pass
# once the cluster is whole again (the first and the last are ResponseErrors too).
# RedisClusterUnreachableError says that no node the client knows answered its request for the
# slot map: before the first map, the URL's node alone is known, so a process started while
# that node is down (killed, restarting, failing over) meets it; it passes once one answers.
# It is no RedisError: without it here a service started at that moment would die instead of
# waiting for the cluster.
# Socket failures redis-py lets through are builtin ConnectionError (reset, refused, broken
# pipe) or TimeoutError — not any OSError: an unreadable local file (a project's own schemas/
# shadowing the package's data) is no Redis outage, and waiting for Redis would never cure it.
# InvalidResponse: a reply that is not RESP, from something else answering at Redis' address;
# our connections raise NotRedisProtocol (a ConnectionError) for it, a client made elsewhere (a
# FastStream broker's, shared with a service) raises it as it is. redis-py has closed the
# connection either way.
TRANSIENT = (
    RedisConnectionError,
    RedisTimeoutError,
    ConnectionError,
    TimeoutError,
    ClusterError,
    SlotNotCoveredError,
    RedisClusterUnreachableError,
    TryAgainError,
    InvalidResponse,
)
# As pydantic reads a bool (Settings.redis_cluster), plus empty for unset.
_TRUE = ("1", "on", "t", "true", "y", "yes")
_FALSE = ("", "0", "off", "f", "false", "n", "no")


class ConnectionSettings(ComponentSettings):
    """What :func:`connect` reads when not told: ``SIMPUL_REDIS_TLS_CA``/``_CERT``/``_KEY``
    and ``SIMPUL_REDIS_CLUSTER`` (empty: unset)."""

    model_config = SettingsConfigDict(env_prefix="SIMPUL_REDIS_")

    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    cluster: bool = False

    @field_validator("cluster", mode="before")
    @classmethod
    def _flag(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ValueError("must be 1 (a Redis Cluster) or 0 (a single server)")


@dataclass(frozen=True)
class RedisTLS:
    """The TLS files of a ``rediss://`` connection (paths of PEM files; None: not used).

    ``ca``: the CA certificate(s) that signed the server's certificate (None: the system's).
    ``cert`` and ``key``: this principal's client certificate and unencrypted private key, for
    servers that demand one; ``cert`` alone if that file holds the key too.
    """

    ca: str | None = None
    cert: str | None = None
    key: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RedisTLS:
        """Read ``SIMPUL_REDIS_TLS_CA``/``_CERT``/``_KEY`` (empty counts as unset)."""
        read = ConnectionSettings.load(environ)
        return cls(ca=read.tls_ca, cert=read.tls_cert, key=read.tls_key)

    @classmethod
    def from_settings(cls, settings: Settings) -> RedisTLS:
        return cls(
            ca=settings.redis_tls_ca, cert=settings.redis_tls_cert, key=settings.redis_tls_key
        )

    @property
    def configured(self) -> bool:
        return any((self.ca, self.cert, self.key))

    def check(self) -> None:
        """Raise :class:`ConfigurationError` naming the setting and path of the first file that
        is missing, unreadable, not PEM, or (a key) encrypted or not matching the certificate."""
        if self.key and not self.cert:
            raise ConfigurationError(
                f"{KEY_VAR} is set but {CERT_VAR} is not: a client key needs its certificate"
            )
        for variable, path in ((CA_VAR, self.ca), (CERT_VAR, self.cert), (KEY_VAR, self.key)):
            if path:
                _check_file(variable, path)
        context = ssl.create_default_context()
        if self.ca:
            try:
                context.load_verify_locations(cafile=self.ca)
            except (ssl.SSLError, ValueError) as exc:
                raise ConfigurationError(
                    f"{CA_VAR}={self.ca}: no PEM CA certificate could be read from it "
                    f"({_reason(exc)})"
                ) from None
        if self.cert:
            try:
                context.load_cert_chain(self.cert, self.key, password=_refuse_password)
            except _EncryptedKey:
                raise ConfigurationError(
                    f"{KEY_VAR if self.key else CERT_VAR}={self.key or self.cert}: the private "
                    "key is encrypted; Simpul needs an unencrypted key (protect the file by its "
                    "permissions, e.g. 0600, readable only by the service's user)"
                ) from None
            except (ssl.SSLError, ValueError) as exc:
                key = f" and {KEY_VAR}={self.key}" if self.key else f" (no {KEY_VAR})"
                raise ConfigurationError(
                    f"{CERT_VAR}={self.cert}{key}: not a PEM certificate with its private key, "
                    f"or the key does not belong to the certificate ({_reason(exc)})"
                ) from None

    def redis_options(self) -> dict[str, Any]:
        """redis-py's SSL connection options: verification is always on."""
        return {
            "ssl_cert_reqs": "required",
            "ssl_check_hostname": True,
            "ssl_ca_certs": self.ca,
            "ssl_certfile": self.cert,
            "ssl_keyfile": self.key,
        }


class _EncryptedKey(Exception):
    pass


def _refuse_password() -> str:
    # Called by OpenSSL only for an encrypted key; without a callback it would prompt on a tty.
    raise _EncryptedKey


def _reason(exc: Exception) -> str:
    """OpenSSL's reason code, never the data it was reading."""
    reason = getattr(exc, "reason", None)
    return str(reason) if reason else type(exc).__name__


def _check_file(variable: str, path: str) -> None:
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise ConfigurationError(f"{variable}={path}: no such file") from None
    except OSError as exc:
        raise ConfigurationError(f"{variable}={path}: cannot be read ({exc.strerror})") from None
    if stat.S_ISDIR(mode):
        raise ConfigurationError(f"{variable}={path}: is a directory, not a PEM file")
    try:
        with open(path, "rb") as file:
            file.read(1)
    except OSError as exc:
        raise ConfigurationError(
            f"{variable}={path}: cannot be read by this process ({exc.strerror})"
        ) from None


def connect(
    url: str,
    *,
    block_ms: int = 2_000,
    client_name: str | None = None,
    tls: RedisTLS | None = None,
    cluster: bool | None = None,
    sentinels: RedisSentinels | None = None,
) -> Redis:
    """A client for ``url``. Values stay bytes: a non-UTF-8 entry must not break a whole read.

    The socket timeout exceeds the longest XREADGROUP BLOCK we issue, so a blocked read is not
    mistaken for a dead server, while a paused or unreachable server is noticed within seconds.

    ``tls`` defaults to the ``SIMPUL_REDIS_TLS_*`` variables (:meth:`RedisTLS.from_env`). TLS
    files with a URL that is not ``rediss://`` are refused rather than silently unused, and so
    are ``ssl_*`` query parameters: TLS is configured by the settings only, so no URL can turn
    verification off. Raises :class:`ConfigurationError` for any of these.

    ``cluster`` defaults to ``SIMPUL_REDIS_CLUSTER`` (:func:`cluster_from_env`): true returns a
    ``RedisCluster`` that starts from the URL's node (typed as ``Redis``, see the module's note).

    ``sentinels`` defaults to ``SIMPUL_REDIS_SENTINELS`` and the other Sentinel variables
    (:meth:`RedisSentinels.from_env`): configured, the client follows the current master those
    Sentinels name (bus.sentinel); the URL's host is then not used.
    """
    files = RedisTLS.from_env() if tls is None else tls
    clustered = cluster_from_env() if cluster is None else cluster
    followed = RedisSentinels.from_env() if sentinels is None else sentinels
    if clustered and followed.configured:
        raise ConfigurationError(
            f"both {CLUSTER_VAR} and {SENTINELS_VAR} are set: a Redis Cluster fails over by "
            "itself and has no Sentinels; unset one of them"
        )
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    ssl_params = sorted(name for name in parse_qs(parts.query) if name.lower().startswith("ssl"))
    if ssl_params:
        raise ConfigurationError(
            f"the Redis URL sets {', '.join(ssl_params)}: TLS is configured by {CA_VAR}, "
            f"{CERT_VAR} and {KEY_VAR} (with a rediss:// URL), not by URL parameters"
        )
    if files.configured and scheme != "rediss":
        given = ", ".join(
            name
            for name, path in ((CA_VAR, files.ca), (CERT_VAR, files.cert), (KEY_VAR, files.key))
            if path
        )
        raise ConfigurationError(
            f"{given} set, but the Redis URL is {scheme}://...: use a rediss:// URL for TLS, "
            "or unset the TLS settings"
        )
    refuse_dev_secret(unquote(parts.password or ""), f"the password of Redis user {parts.username}")
    options: dict[str, Any] = {
        "decode_responses": False,
        "socket_timeout": block_ms / 1000 + 5.0,
        "socket_connect_timeout": 5.0,
        "health_check_interval": 0,
        "client_name": client_name,
    }
    if scheme == "rediss":
        files.check()
        options.update(files.redis_options())
    # As Redis.from_url, except that the connection class is ours (which explains failures).
    options.update(parse_url(url))
    chosen = options.get("connection_class", Connection)
    if chosen is SSLConnection:
        options["connection_class"] = _TLSConnection
    elif chosen is Connection:
        options["connection_class"] = _PlainConnection
    elif chosen is UnixDomainSocketConnection:
        options["connection_class"] = _UnixConnection
    if clustered:
        client = _cluster(url, options)
    elif followed.configured:
        client = sentinel_client(followed, options, options["connection_class"])
    else:
        client = Redis.from_pool(ConnectionPool(**options))
    replies.install(client)  # stream entries keep a repeated field name (the spec forbids it)
    return client


def location(url: str) -> str:
    """Host and port (or socket path) of a Redis URL, for messages: never its password."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    host = parts.hostname or "localhost"
    return f"{f'[{host}]' if ':' in host else host}:{parts.port or 6379}"


def cluster_from_env(environ: Mapping[str, str] | None = None) -> bool:
    """``SIMPUL_REDIS_CLUSTER``: 1/true/yes/on for a Redis Cluster; unset, empty, 0/false/no/off
    for a single server. Anything else is a :class:`ConfigurationError`."""
    return ConnectionSettings.load(environ).cluster


def is_cluster(redis: Redis) -> bool:
    """True for a client :func:`connect` made for a Redis Cluster."""
    return isinstance(redis, RedisCluster)


def _cluster(url: str, options: dict[str, Any]) -> Redis:
    """A RedisCluster with the options of a single-server client (and our connection classes,
    which explain TLS failures). Slots are learnt from the URL's node on first use."""
    connection_class = options.pop("connection_class")
    if issubclass(connection_class, UnixDomainSocketConnection):
        raise ConfigurationError(
            f"{CLUSTER_VAR} is set but the Redis URL is unix://...: a cluster is reached over "
            "TCP, give the redis:// or rediss:// URL of one of its masters"
        )
    if options.pop("db", 0):
        raise ConfigurationError(
            f"{CLUSTER_VAR} is set but the Redis URL names database {urlsplit(url).path[1:]}: "
            "a cluster has database 0 only (end the URL with /0 or no path)"
        )
    options["ssl"] = connection_class is _TLSConnection
    try:
        client = RedisCluster(**options)
    except TypeError as exc:  # an option redis-py's cluster client does not take
        raise ConfigurationError(
            f"the Redis URL has an option a cluster cannot use: {exc}"
        ) from None
    # RedisCluster picks Connection or SSLConnection itself; ours explain failures the same way
    # as on a single server. Nodes it discovers later are made from connection_kwargs.
    client.connection_kwargs["connection_class"] = connection_class
    for node in client.startup_nodes:
        node.connection_class = connection_class
    return cast(Redis, client)


if HIREDIS_AVAILABLE:  # redis[hiredis] is a dependency; without it redis-py packs alone
    import hiredis

_FUNCTION_CALLS = frozenset({"FCALL", "FCALL_RO", "EVAL", "EVALSHA"})


def _packed(args: tuple[Any, ...]) -> list[bytes] | None:
    """A call of the bus's functions packed by hiredis in one call, else None.

    redis-py checks and encodes each argument in Python before hiredis packs them (~0.35 µs an
    argument; a published event is ~18 of them: bench/analysis.md). hiredis packs str (UTF-8),
    bytes, int and float as redis-py does, and refuses anything else with TypeError: such a call
    goes the usual way, which raises redis-py's DataError for it."""
    if not HIREDIS_AVAILABLE or args[0] not in _FUNCTION_CALLS:
        return None
    try:
        return [hiredis.pack_command(args)]
    except TypeError:
        return None


class _KeepsCancellation(AbstractConnection):
    """A connection whose command writes never lose their task's cancellation.

    redis-py bounds each write by ``socket_timeout`` with ``asyncio.wait_for``, which runs the
    write as a task of its own. On Python 3.11, a cancellation that reaches the caller once that
    task is done but before ``wait_for`` woke up is dropped (``wait_for`` returns the write's
    result; Python 3.12 raises it): the command goes on, its reply is read, and the caller runs
    on as if never cancelled — a Ctrl-C landing on a command was lost so, and a stopped process
    waited forever. A write that returns while its task was asked to cancel raises the
    cancellation here, after closing the connection (its reply is not read: it must never be
    taken for the next command's), as redis-py does for a cancellation that reaches the write.
    """

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        task = asyncio.current_task()
        asked = task.cancelling() if task is not None else 0
        await super().send_packed_command(command, check_health)
        if task is not None and task.cancelling() > asked:
            await self.disconnect(nowait=True)
            raise asyncio.CancelledError


class _PlainConnection(_KeepsCancellation, Connection):
    """A TCP connection whose server closing it unanswered hints at a TLS port."""

    _answered = False

    def pack_command(self, *args: Any) -> list[bytes]:
        return _packed(args) or super().pack_command(*args)

    async def _connect(self) -> None:
        self._answered = False
        await super()._connect()  # type: ignore[no-untyped-call]

    async def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            response = await super().read_response(*args, **kwargs)
        except ResponseError as exc:
            raise await refused_for_replicas(self, exc) from exc
        except InvalidResponse:
            raise await not_redis(self) from None
        except TLSConnectionError:
            raise
        except RedisConnectionError as exc:
            if self._answered or not _closed_by_peer(exc):
                raise
            raise TLSConnectionError(
                f"Redis at {self._host_error()} closed the connection without answering "
                f"({_root(exc)}): if that port serves TLS (Redis' tls-port), the URL must be "
                "rediss://"
            ) from exc
        self._answered = True
        return response


class _TLSConnection(_KeepsCancellation, SSLConnection):
    """A TLS connection whose handshake failures name the setting to fix."""

    _answered = False

    def pack_command(self, *args: Any) -> list[bytes]:
        return _packed(args) or super().pack_command(*args)

    async def _connect(self) -> None:
        self._answered = False
        await super()._connect()  # type: ignore[no-untyped-call]

    def _error_message(self, exception: BaseException) -> str:
        # redis-py calls this while wrapping an OSError of the connect (TCP + handshake): an
        # explained TLS failure is raised in its stead, typed, with the original as its cause.
        explained = _explain_tls(self, exception)
        if explained is None:
            return str(super()._error_message(exception))
        raise TLSConnectionError(explained) from exception

    async def read_response(self, *args: Any, **kwargs: Any) -> Any:
        # With TLS 1.3 the server judges the client's certificate after the client considers
        # the handshake done: its refusal arrives with the first reply.
        try:
            response = await super().read_response(*args, **kwargs)
        except ResponseError as exc:
            raise await refused_for_replicas(self, exc) from exc
        except InvalidResponse:
            raise await not_redis(self) from None
        except TLSConnectionError:
            raise
        except RedisConnectionError as exc:
            cause = _ssl_error(exc)
            explained = _explain_tls(self, cause) if cause is not None else None
            if explained is None and not self._answered and _closed_by_peer(exc):
                # The alert can lose the race with the server closing the socket: a reset
                # before the first reply is the same refusal, unexplained by the server.
                where = f"Redis at {self._host_error()}"
                explained = _handshake_refused(
                    where,
                    "CERTIFICATE_REQUIRED" if not self.certfile else "ACCESS_DENIED",
                    self.certfile,
                )
            if explained is None:
                raise
            raise TLSConnectionError(explained) from exc
        self._answered = True
        return response


async def refused_for_replicas(conn: Connection, exc: ResponseError) -> Exception:
    """A master with too few replicas in sync (``min-replicas-to-write``) refused a write: most
    likely an old master cut off from the others. Or a ``WAIT`` reached a replica: the node
    was taken for the master before a failover (:class:`NotMaster`). Either way the
    connection is closed, so that a client following Sentinels asks them again for the master
    (a cluster client refreshes its slot map after a connection error), and the error is a
    connection error, retried like an outage. Any other error reply is returned as it is."""
    text = str(exc)
    if text.startswith(_WAIT_ON_REPLICA):
        await conn.disconnect()
        return NotMaster(
            f"Redis at {conn._host_error()} is a replica (it refused WAIT), but was taken for "
            "the master of the keys just written: the master moved (a failover). No replica "
            "confirmed the write; retry (a publish is idempotent) once the client has found "
            "the new master"
        )
    # Redis 7 refuses the whole command; 6.2 refuses a script's first write inside it ("Error
    # running script ...: -NOREPLICAS ..."), before anything was written.
    if not (text.startswith("NOREPLICAS") or "-NOREPLICAS " in text):
        return exc
    await conn.disconnect()
    return ReplicasMissing(
        f"Redis at {conn._host_error()} refused a write: fewer replicas are in sync with it "
        "than its min-replicas-to-write (NOREPLICAS), so it may be a master cut off from the "
        "others. Nothing was written; retry (a publish is idempotent) once a master with its "
        "replicas answers, and check the replicas' link (simpul status)"
    )


async def not_redis(conn: Connection) -> NotRedisProtocol:
    """A reply that is not RESP (redis-py's ``InvalidResponse``) as the outage it is for the
    client. The connection is closed (redis-py 5 left it open, its unread bytes the next
    command's reply); ``from None`` by the caller: redis-py's error quotes the bytes received,
    which may be anything, personal data included."""
    await conn.disconnect(nowait=True)
    return NotRedisProtocol(
        f"Redis at {conn._host_error()} {_NOT_RESP}; the connection was closed, retry once "
        "Redis answers there"
    )


_NOT_RESP = (
    "answered in something that is not the Redis protocol (RESP): another service, a proxy or "
    "a gateway answers at that address (one that cannot route it may answer in HTTP). Check "
    "the host and port of the Redis URL and the route to them"
)


def outage_text(exc: BaseException) -> str:
    """What to say of a :data:`TRANSIENT` error: its message, except that a reply that is not
    RESP is named, not quoted (redis-py's ``InvalidResponse`` quotes the bytes received, which
    may be anything, personal data included; a client not made by :func:`connect` raises it)."""
    if isinstance(exc, InvalidResponse):
        return f"Redis {_NOT_RESP}"
    return str(exc)


# The reply of a replica to WAIT (Redis 5 to 7; "slave" before 5).
_WAIT_ON_REPLICA = "WAIT cannot be used with replica instances"


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _ssl_error(exc: BaseException) -> ssl.SSLError | None:
    return next((e for e in _chain(exc) if isinstance(e, ssl.SSLError)), None)


def _root(exc: BaseException) -> str:
    last = _chain(exc)[-1]
    if isinstance(last, OSError) and last.strerror:
        return last.strerror
    return str(last) or type(last).__name__


def _closed_by_peer(exc: BaseException) -> bool:
    for error in _chain(exc):
        if isinstance(error, ConnectionResetError | BrokenPipeError | EOFError):
            return True
        if isinstance(error, RedisConnectionError) and "closed by server" in str(error).lower():
            return True
    return False


_CLIENT_CERT_MISSING = ("CERTIFICATE_REQUIRED", "PEER_DID_NOT_RETURN_A_CERTIFICATE")
_CLIENT_CERT_REJECTED = (
    "UNKNOWN_CA",
    "BAD_CERTIFICATE",
    "CERTIFICATE_UNKNOWN",
    "CERTIFICATE_EXPIRED",
    "CERTIFICATE_REVOKED",
    "UNSUPPORTED_CERTIFICATE",
    "DECRYPT_ERROR",
    "ACCESS_DENIED",
)
_NOT_TLS = ("WRONG_VERSION_NUMBER", "UNEXPECTED_EOF", "RECORD_LAYER_FAILURE", "HTTP_REQUEST")


def _explain_tls(conn: SSLConnection, exc: BaseException) -> str | None:
    """What to fix, for a TLS failure; None for anything else (a refused port, a timeout)."""
    error = exc if isinstance(exc, ssl.SSLError) else _ssl_error(exc)
    if error is None:
        return None
    where = f"Redis at {conn._host_error()}"
    if isinstance(error, ssl.SSLCertVerificationError):
        return _server_not_trusted(where, error, conn.ca_certs)
    reason = str(error.reason or type(error).__name__)
    explained = _handshake_refused(where, reason, conn.certfile)
    return explained or f"TLS with {where} failed ({reason})"


def _server_not_trusted(where: str, error: ssl.SSLCertVerificationError, ca: str | None) -> str:
    detail = str(error.verify_message or error.reason).rstrip(".")
    if "mismatch" in detail.lower():
        return (
            f"the TLS certificate of {where} does not name that host ({detail}): put in "
            "SIMPUL_REDIS_URL a host name or IP address that its subjectAltName lists"
        )
    trust = (
        f"{CA_VAR}={ca} does not hold the CA that signed it"
        if ca
        else f"the system's CAs do not include its issuer: set {CA_VAR} to its CA's PEM file"
    )
    return f"cannot verify the TLS certificate of {where} ({detail}): {trust}"


def _handshake_refused(where: str, reason: str, cert: str | None) -> str | None:
    """The server's alert (or a non-TLS answer) explained, if it is one we know."""
    missing = any(code in reason for code in _CLIENT_CERT_MISSING) or "HANDSHAKE_FAILURE" in reason
    if missing and not cert:
        return (
            f"{where} requires a client certificate (mutual TLS) and none was given: set "
            f"{CERT_VAR} and {KEY_VAR}"
        )
    if cert and any(code in reason for code in _CLIENT_CERT_REJECTED):
        return (
            f"{where} rejected the client certificate {CERT_VAR}={cert} ({reason}): it must be "
            "valid and signed by a CA in the server's tls-ca-cert-file"
        )
    if any(code in reason for code in _NOT_TLS):
        return (
            f"{where} did not complete a TLS handshake ({reason}): does that port serve TLS "
            "(Redis' tls-port)? A plain port needs a redis:// URL"
        )
    return None


def login_refused(exc: AuthenticationError, url: str | None = None) -> RedisUnavailable:
    """A refused AUTH is no outage: the server answered, and said no to this user (a wrong
    password, or another Redis at that address than the one meant). Names the server and the
    user when ``url`` is known, never the password."""
    who = ""
    if url is not None:
        who = f" at {location(url)} of user {urlsplit(url).username or 'default'!r}"
    return RedisUnavailable(
        f"Redis refused the login{who} ({exc}): check the user and password of SIMPUL_REDIS_URL "
        "and that it is the Redis you mean; on a bus with ACLs each principal has its own "
        "(deploy/topology.yaml, `simpul acl render` and `apply`)"
    )


def translate(exc: Exception) -> Exception:
    """Map redis-py errors onto Simpul's error tree (callers ``raise translate(e) from e``)."""
    if isinstance(exc, TLSConnectionError):
        return RedisUnavailable(str(exc))
    if isinstance(exc, AuthenticationError):
        return login_refused(exc)
    if isinstance(exc, TRANSIENT):
        return RedisUnavailable(
            f"Redis is unreachable or did not answer in time: {outage_text(exc)}"
        )
    # redis-py raises NOPERM as NoPermissionError, without the code in its text.
    if isinstance(exc, NoPermissionError) or (
        isinstance(exc, ResponseError) and str(exc).startswith("NOPERM")
    ):
        return PermissionDenied(f"Redis refused the command for this user: {exc}")
    return exc


def simpul_error(exc: Exception) -> SimpulError:
    """:func:`translate`, and any other error Redis answered with as a :class:`SimpulError`
    quoting it (e.g. a key of the wrong type where a stream was expected): for callers that
    promise only Simpul's errors (operator tooling, the monitor)."""
    translated = translate(exc)
    if isinstance(translated, SimpulError):
        return translated
    return SimpulError(f"Redis answered with an error: {exc}")


class _UnixConnection(_KeepsCancellation, UnixDomainSocketConnection):
    """A Unix-socket connection (``unix://``), keeping its cancellations as the others do."""
