"""A private PostgreSQL server for tests and demos, started like the embedded Redis.

Adapters that wrap a department database are tested against a real PostgreSQL. With
``SIMPUL_POSTGRES_URL`` unset, tests start their own: ``initdb`` into a temporary folder, then the
``postgres`` server on a free loopback port with trust authentication, stopped by pid at exit.
Every server runs with ``wal_level=logical`` and room for replication slots, so the
change-data-capture source (:mod:`bus.adapter.sources.logical`) can be tested on any of them; pass
``wal_level="replica"`` for a server where logical decoding is off.
PostgreSQL refuses to run as root, so under root the cluster belongs to the ``postgres`` user
(Debian's packages create it) and the server runs as that user.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

from pydantic import Field

from bus.errors import ConfigurationError, PostgresUnavailable
from bus.local.process import POLL_S, ServerProcess
from bus.local.redis import free_port
from bus.settings import ComponentSettings

__all__ = ["EmbeddedPostgres", "find_postgres_bin", "postgres_url_or_embedded"]

_USER = "simpul"  # the superuser initdb creates; trust auth, loopback only
_UNPRIVILEGED = ("postgres", "nobody")
_TOOLS = ("initdb", "postgres", "pg_isready")


def find_postgres_bin() -> Path:
    """The folder with ``initdb``, ``postgres`` and ``pg_isready``: the one ``initdb`` on PATH
    links to, else Debian's newest version (Debian keeps them off PATH)."""
    on_path = shutil.which("initdb")
    candidates = [str(Path(on_path).resolve().parent)] if on_path else []
    candidates += glob.glob("/usr/local/pgsql/bin")
    candidates += sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0,
        reverse=True,
    )
    for folder in candidates:
        if all((Path(folder) / tool).exists() for tool in _TOOLS):
            return Path(folder)
    raise ConfigurationError(
        "no PostgreSQL server binaries found (initdb, postgres): install them (e.g. "
        "`apt install postgresql` or `brew install postgresql`), or set SIMPUL_POSTGRES_URL to "
        "an existing database"
    )


def _run_as() -> pwd.struct_passwd | None:
    """None when we are not root; else the unprivileged user the cluster will belong to."""
    if os.geteuid() != 0:
        return None
    for name in _UNPRIVILEGED:
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise ConfigurationError(
        "running as root, and PostgreSQL refuses root: create a 'postgres' user "
        "(e.g. `useradd --system postgres`) or run the tests as an ordinary user"
    )


class EmbeddedPostgres(ServerProcess):
    """One private PostgreSQL cluster and server on loopback; the data is thrown away at stop."""

    program: ClassVar[str] = "postgres"
    unavailable: ClassVar[type[PostgresUnavailable]] = PostgresUnavailable
    stop_signal: ClassVar[signal.Signals] = signal.SIGINT  # fast shutdown

    def __init__(
        self,
        *,
        port: int | None = None,
        bin_dir: str | Path | None = None,
        wal_level: str = "logical",
        durable: bool = False,
    ) -> None:
        super().__init__()
        self.wal_level = wal_level
        # durable: commits reach the WAL before they are acknowledged, so a SIGKILLed server
        # keeps every committed row (crash tests); otherwise speed over durability.
        self.durable = durable
        self.bin_dir = Path(bin_dir) if bin_dir else find_postgres_bin()
        self.host = "127.0.0.1"
        self.port = port if port is not None else free_port(self.host)
        self.user = _run_as()
        self.base_dir: Path | None = None

    def __repr__(self) -> str:
        return f"EmbeddedPostgres(url={self.url!r}, pid={self.pid})"

    @property
    def url(self) -> str:
        return f"postgresql://{_USER}@{self.host}:{self.port}/postgres"

    @property
    def data_dir(self) -> Path:
        assert self.base_dir is not None, "start() creates it"
        return self.base_dir / "data"

    @property
    def log_file(self) -> Path:
        assert self.base_dir is not None, "start() creates it"
        return self.base_dir / "postgres.log"

    def start(self, timeout: float = 30.0) -> EmbeddedPostgres:
        """Start the server; after :meth:`crash`, restart it on the same data and port."""
        if self.pid is not None:
            return self
        if self.base_dir is None:
            # Under /tmp itself, not a root-only pytest folder: the postgres user must reach it.
            self.base_dir = Path(tempfile.mkdtemp(prefix="simpul-postgres-"))
            if self.user is not None:
                os.chown(self.base_dir, self.user.pw_uid, self.user.pw_gid)
            self._initdb()
        self._spawn()
        self._register()
        self._wait_ready(time.monotonic() + timeout)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """SIGINT is PostgreSQL's fast shutdown: roll back, close sessions, exit."""
        self._stop_process(timeout)
        self._unregister()
        if self.base_dir is not None:
            shutil.rmtree(self.base_dir, ignore_errors=True)
            self.base_dir = None

    def crash(self) -> None:
        """SIGKILL the postmaster and its backends at once, as a power cut would; the data stays
        for :meth:`start` (crash recovery). The whole process group, because orphaned backends
        would keep the shared memory and a new postmaster would refuse to start."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        self._proc = None
        deadline = time.monotonic() + 10
        while self._backends_alive() and time.monotonic() < deadline:
            time.sleep(POLL_S)

    def _backends_alive(self) -> bool:
        pid_file = self.data_dir / "postmaster.pid"
        try:
            leader = int(pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return False
        try:
            os.killpg(leader, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # pragma: no cover - a foreign group: someone else's
            return False
        return True

    def __enter__(self) -> EmbeddedPostgres:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _initdb(self) -> None:
        command = [
            str(self.bin_dir / "initdb"),
            "-D",
            str(self.data_dir),
            "-U",
            _USER,
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-locale",
            "--no-sync",
        ]
        try:
            subprocess.run(
                command,
                capture_output=True,
                check=True,
                timeout=60,
                user=self._uid,
                group=self._gid,
            )
        except subprocess.CalledProcessError as exc:
            output = (exc.stdout + exc.stderr).decode(errors="replace")
            raise PostgresUnavailable(f"initdb failed ({' '.join(command)}):\n{output}") from exc
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise PostgresUnavailable(f"cannot run {command[0]}: {exc}") from exc

    def _spawn(self) -> None:
        """New session, so a Ctrl-C meant for the tests does not stop the server under them.
        fsync is off: the data is thrown away at stop, and durability is Redis's job here."""
        command = [
            str(self.bin_dir / "postgres"),
            "-D",
            str(self.data_dir),
            "-p",
            str(self.port),
            "-c",
            f"listen_addresses={self.host}",
            "-c",
            "unix_socket_directories=",
            "-c",
            "fsync=off",
            "-c",
            f"synchronous_commit={'on' if self.durable else 'off'}",
            "-c",
            "full_page_writes=off",
            "-c",
            f"wal_level={self.wal_level}",
            "-c",
            "max_replication_slots=20",
            "-c",
            "max_wal_senders=20",
        ]
        self._launch(command, user=self._uid, group=self._gid)

    @property
    def _uid(self) -> int | None:
        return None if self.user is None else self.user.pw_uid

    @property
    def _gid(self) -> int | None:
        return None if self.user is None else self.user.pw_gid

    def _wait_ready(self, deadline: float) -> None:
        ready = [str(self.bin_dir / "pg_isready"), "-q", "-h", self.host, "-p", str(self.port)]

        def accepting(_pid: int) -> bool:
            return subprocess.run(ready, check=False, timeout=10).returncode == 0

        self._wait_answering(accepting, deadline, late="did not accept connections")

    def _give_up(self) -> None:
        self.stop()

    def _error(self, reason: str, tail: str) -> Exception:
        return PostgresUnavailable(f"{reason} ({self.bin_dir}, port {self.port}); log:\n{tail}")

    def _at_exit(self) -> None:
        self.stop(timeout=5.0)


class ExistingPostgres(ComponentSettings):
    """``SIMPUL_POSTGRES_URL``: a server to use instead of a private one (empty: unset)."""

    url: str | None = Field(default=None, validation_alias="SIMPUL_POSTGRES_URL")


@contextlib.contextmanager
def postgres_url_or_embedded(url: str | None = None) -> Iterator[str]:
    """``url`` (or ``SIMPUL_POSTGRES_URL``) if set, else a private server for the block."""
    url = url or ExistingPostgres.load().url
    if url:
        yield url
        return
    with EmbeddedPostgres() as server:
        yield server.url
