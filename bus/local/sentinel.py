"""A private Sentinel group on loopback: one master, two replicas, three Sentinels.

For tests, fault scenarios and local trials of failover. Each server is an
:class:`~bus.local.redis.EmbeddedRedis` with its own port and data folder; the replicas start as
``replicaof`` the first master, and every server carries ``min-replicas-to-write`` so that any
of them, once master, refuses writes while cut off from all its replicas. The Sentinels are
``redis-server <conf> --sentinel`` processes with a config file of their own (Sentinel rewrites
it). Everything is stopped by pid; nothing else is touched.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import BinaryIO

from bus.errors import RedisUnavailable
from bus.local.process import POLL_S
from bus.local.redis import AppendFsync, EmbeddedRedis, find_redis_server

__all__ = ["EmbeddedSentinel", "EmbeddedSentinelGroup"]

MASTER_NAME = "simpul"


class EmbeddedSentinel(EmbeddedRedis):
    """One ``redis-server --sentinel`` watching ``master_name`` at ``master`` (host, port)."""

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *,
        master: tuple[str, int],
        master_name: str = MASTER_NAME,
        quorum: int = 2,
        down_after_ms: int = 1_000,
        failover_timeout_ms: int = 10_000,
        binary: str | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        super().__init__(data_dir, binary=binary, host=host)
        self.master = master
        self.master_name = master_name
        self.quorum = quorum
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms

    @property
    def config_file(self) -> Path:
        return self.data_dir / "sentinel.conf"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def _command(self) -> list[str]:
        # The port again on the command line (it overrides the file): a port taken before the
        # first start is retried with another one, and the file keeps the first.
        return [self.binary, str(self.config_file), "--sentinel", "--port", str(self.port)]

    def _spawn(self) -> None:
        # Written once: on a restart the Sentinel resumes from what it rewrote (epochs, the
        # current master), as a production Sentinel does.
        if not self.config_file.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            host, port = self.master
            name = self.master_name
            self.config_file.write_text(
                f"port {self.port}\nbind {self.host}\nprotected-mode no\ndaemonize no\n"
                f"dir {self.data_dir}\nlogfile {self.log_file}\n"
                f"sentinel monitor {name} {host} {port} {self.quorum}\n"
                f"sentinel down-after-milliseconds {name} {self.down_after_ms}\n"
                f"sentinel failover-timeout {name} {self.failover_timeout_ms}\n"
                f"sentinel parallel-syncs {name} 1\n"
            )
        super()._spawn()


class EmbeddedSentinelGroup:
    """A master, ``replicas`` replicas and ``sentinels`` Sentinels, all private processes.

    ``servers[0]`` is the first master; after a failover ask :meth:`master` which one it is.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *,
        replicas: int = 2,
        sentinels: int = 3,
        quorum: int = 2,
        down_after_ms: int = 1_000,
        failover_timeout_ms: int = 10_000,
        min_replicas_to_write: int = 1,
        min_replicas_max_lag_s: int = 10,
        appendfsync: AppendFsync = "everysec",
        host: str = "127.0.0.1",
        binary: str | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.host = host
        self.min_replicas_to_write = min_replicas_to_write
        binary = binary if binary is not None else find_redis_server()
        durable = (
            "--min-replicas-to-write",
            str(min_replicas_to_write),
            "--min-replicas-max-lag",
            str(min_replicas_max_lag_s),
            # Faster than the defaults (10 s, 60 s), so a test sees a lagging replica soon.
            "--repl-ping-replica-period",
            "1",
            "--repl-timeout",
            "5",
        )
        self.servers = [
            EmbeddedRedis(
                self.data_dir / f"redis-{i}",
                binary=binary,
                host=host,
                appendfsync=appendfsync,
                extra_args=durable,
            )
            for i in range(1 + replicas)
        ]
        first = self.servers[0]
        for replica in self.servers[1:]:
            replica.extra_args = (*durable, "--replicaof", host, str(first.port))
        self.sentinels = [
            EmbeddedSentinel(
                self.data_dir / f"sentinel-{i}",
                master=(host, first.port),
                quorum=quorum,
                down_after_ms=down_after_ms,
                failover_timeout_ms=failover_timeout_ms,
                binary=binary,
                host=host,
            )
            for i in range(sentinels)
        ]

    def __repr__(self) -> str:
        return (
            f"EmbeddedSentinelGroup(servers={[s.port for s in self.servers]}, "
            f"sentinels={[s.port for s in self.sentinels]})"
        )

    @property
    def url(self) -> str:
        """A URL for connect(): with SIMPUL_REDIS_SENTINELS set its host is not used."""
        return self.servers[0].url

    @property
    def sentinel_addresses(self) -> str:
        """The value of ``SIMPUL_REDIS_SENTINELS``."""
        return ",".join(s.address for s in self.sentinels)

    def environment(self) -> dict[str, str]:
        """The variables a process needs to follow this group's master."""
        return {
            "SIMPUL_REDIS_SENTINELS": self.sentinel_addresses,
            "SIMPUL_REDIS_SENTINEL_MASTER": MASTER_NAME,
        }

    def start(self, timeout: float = 30.0) -> EmbeddedSentinelGroup:
        """Start every server, wait until the replicas are in sync, then the Sentinels, and
        return once every Sentinel knows the replicas and the other Sentinels."""
        deadline = time.monotonic() + timeout
        try:
            for server in self.servers:
                server.start()
            self.wait_replicas_online(len(self.servers) - 1, deadline)
            self._load_functions()
            for sentinel in self.sentinels:
                sentinel.start()
            self._wait_sentinels_agree(deadline)
        except BaseException:
            self.stop()
            raise
        return self

    def _load_functions(self) -> None:
        """The bus's library, as an admin loads it: on the master once its replicas are in sync
        (with min-replicas-to-write it refuses writes before); they get it by replication."""
        import redis  # noqa: PLC0415 - as bus.local.redis does

        from bus.functions import load_sync  # noqa: PLC0415

        first = self.servers[0]
        with redis.Redis(host=first.host, port=first.port, socket_timeout=5) as client:
            load_sync(client)

    def stop(self) -> None:
        for process in [*self.sentinels, *self.servers]:
            process.stop()

    def __enter__(self) -> EmbeddedSentinelGroup:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def master(self) -> EmbeddedRedis:
        """The server the Sentinels name as master now (asked of the first that answers)."""
        for sentinel in self.sentinels:
            if sentinel.pid is None:
                continue
            reply = _command(
                sentinel.host, sentinel.port, "SENTINEL", "get-master-addr-by-name", MASTER_NAME
            )
            if isinstance(reply, list) and len(reply) == 2:
                return self.server_at(int(reply[1]))
        raise RedisUnavailable(f"no Sentinel of {self!r} names a master")

    def server_at(self, port: int) -> EmbeddedRedis:
        for server in self.servers:
            if server.port == port:
                return server
        raise RedisUnavailable(f"{self!r} has no server on port {port}")

    def replicas(self) -> list[EmbeddedRedis]:
        master = self.master()
        return [server for server in self.servers if server is not master]

    def failover(self, timeout: float = 30.0) -> EmbeddedRedis:
        """``SENTINEL FAILOVER`` (a coordinated one: no write is lost), and the new master once
        every Sentinel names it and it has its replicas back."""
        old = self.master()
        sentinel = next(s for s in self.sentinels if s.pid is not None)
        deadline = time.monotonic() + timeout
        # A Sentinel that does not know a replica in sync yet (a group just started) refuses
        # with NOGOODSLAVE, and nothing would happen: ask again until it accepts.
        while True:
            reply = _command(sentinel.host, sentinel.port, "SENTINEL", "FAILOVER", MASTER_NAME)
            if not isinstance(reply, RedisUnavailable) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        new = self.wait_new_master(old, max(1.0, deadline - time.monotonic()))
        # Until its replicas are back, the new master refuses writes (min-replicas-to-write).
        self.wait_replicas_online(self.min_replicas_to_write, deadline)
        return new

    def wait_new_master(self, old: EmbeddedRedis, timeout: float = 30.0) -> EmbeddedRedis:
        """Until every running Sentinel names a master other than ``old`` and that server
        says it is one; returns it."""
        deadline = time.monotonic() + timeout
        while True:
            named = {self._named_master(s) for s in self.sentinels if s.pid is not None}
            if len(named) == 1 and None not in named and old.port not in named:
                new = self.server_at(int(next(iter(named)) or 0))
                if _role(new) == "master":
                    return new
            if time.monotonic() > deadline:
                raise RedisUnavailable(f"{self!r}: no failover away from port {old.port} in time")
            time.sleep(POLL_S)

    def wait_replicas_online(self, count: int, deadline: float) -> None:
        """Until the current master has ``count`` replicas online."""
        while True:
            try:
                running = any(s.pid is not None for s in self.sentinels)
                master = self.master() if running else self.servers[0]
                info = _info(master, "replication")
            except RedisUnavailable:
                info = {}
            online = sum(
                1 for key, value in info.items() if key.startswith("slave") and "online" in value
            )
            if online >= count:
                return
            if time.monotonic() > deadline:
                raise RedisUnavailable(f"{self!r}: {online} of {count} replicas online in time")
            time.sleep(POLL_S)

    def _named_master(self, sentinel: EmbeddedSentinel) -> int | None:
        reply = _command(
            sentinel.host, sentinel.port, "SENTINEL", "get-master-addr-by-name", MASTER_NAME
        )
        return int(reply[1]) if isinstance(reply, list) and len(reply) == 2 else None

    def _wait_sentinels_agree(self, deadline: float) -> None:
        want_replicas, want_others = len(self.servers) - 1, len(self.sentinels) - 1
        while True:
            views = [_sentinel_view(s) for s in self.sentinels]
            if all(v == (want_replicas, want_others) for v in views):
                return
            if time.monotonic() > deadline:
                raise RedisUnavailable(
                    f"{self!r}: the Sentinels did not all see {want_replicas} replicas and "
                    f"{want_others} other Sentinels in time (saw {views})"
                )
            time.sleep(POLL_S)


def _sentinel_view(sentinel: EmbeddedSentinel) -> tuple[int, int]:
    reply = _command(sentinel.host, sentinel.port, "SENTINEL", "MASTER", MASTER_NAME)
    if not isinstance(reply, list):
        return (-1, -1)
    fields = dict(zip(reply[::2], reply[1::2], strict=False))
    return int(fields.get("num-slaves", -1)), int(fields.get("num-other-sentinels", -1))


def _role(server: EmbeddedRedis) -> str | None:
    return _info(server, "replication").get("role")


def _info(server: EmbeddedRedis, section: str) -> dict[str, str]:
    reply = _command(server.host, server.port, "INFO", section)
    if not isinstance(reply, str):
        return {}
    pairs = (line.split(":", 1) for line in reply.splitlines() if ":" in line)
    return {key: value for key, value in pairs}


def _command(host: str, port: int, *args: str) -> object:
    """One command in raw RESP (these helpers run in threads and in sync code: no client),
    or None when the server does not answer."""
    request = f"*{len(args)}\r\n".encode() + b"".join(
        f"${len(a.encode())}\r\n{a}\r\n".encode() for a in args
    )
    try:
        with socket.create_connection((host, port), timeout=1.0) as sock:
            sock.sendall(request)
            with sock.makefile("rb") as stream:
                return _read(stream)
    except (OSError, ValueError):
        return None


def _read(stream: BinaryIO) -> object:
    line = stream.readline()
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        return RedisUnavailable(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        size = int(rest)
        return None if size < 0 else stream.read(size + 2)[:-2].decode()
    if kind == b"*":
        size = int(rest)
        return None if size < 0 else [_read(stream) for _ in range(size)]
    raise ValueError(f"not a RESP reply: {line[:20]!r}")
