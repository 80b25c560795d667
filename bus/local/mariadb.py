"""A private MariaDB server for tests and demos, started like the private PostgreSQL.

Adapters that wrap a PHP application's MySQL/MariaDB database are tested against a real server.
With ``SIMPUL_MYSQL_URL`` unset, tests start their own: ``mariadb-install-db`` into a temporary
folder, then ``mariadbd`` on a free loopback port with the row-based binary log that
change-data-capture reads, stopped by pid at exit. A user ``simpul`` (no password, loopback only,
every privilege) is created at the first start; the URL logs in as it.

Unlike :class:`bus.local.postgres.EmbeddedPostgres`, the server can be stopped or SIGKILLed and
started again on the same data folder and port (the database-restart tests): only :meth:`close`
(and the context manager's exit) throws the data away.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import ClassVar

from pydantic import Field

from bus.errors import ConfigurationError, MariaDBUnavailable
from bus.local.process import ServerProcess
from bus.local.redis import free_port
from bus.settings import ComponentSettings

__all__ = ["EmbeddedMariaDB", "find_mariadbd", "mariadb_url_or_embedded"]

_USER = "simpul"


def find_mariadbd() -> tuple[Path, Path]:
    """``mariadbd`` and ``mariadb-install-db``: Debian keeps the server in /usr/sbin."""
    server = shutil.which("mariadbd") or shutil.which("mariadbd", path="/usr/sbin:/usr/local/sbin")
    install = shutil.which("mariadb-install-db")
    if server and install:
        return Path(server), Path(install)
    raise ConfigurationError(
        "no MariaDB server found (mariadbd, mariadb-install-db): install it (`make system-deps`, "
        "or `apt install mariadb-server`), or set SIMPUL_MYSQL_URL to an existing database"
    )


class EmbeddedMariaDB(ServerProcess):
    """One private MariaDB server on loopback, binlog ROW/FULL unless told otherwise.

    ``log_bin=False`` or ``binlog_format="STATEMENT"`` start a server change-data-capture must
    refuse (the error-message tests).
    """

    program: ClassVar[str] = "mariadbd"
    unavailable: ClassVar[type[MariaDBUnavailable]] = MariaDBUnavailable

    def __init__(
        self,
        *,
        port: int | None = None,
        log_bin: bool = True,
        binlog_format: str = "ROW",
        binlog_row_image: str = "FULL",
        server_id: int = 1,
        options: Sequence[str] = (),
    ) -> None:
        super().__init__()
        self.mariadbd, self.install_db = find_mariadbd()
        self.host = "127.0.0.1"
        self.port = port if port is not None else free_port(self.host)
        self.log_bin = log_bin
        self.binlog_format = binlog_format
        self.binlog_row_image = binlog_row_image
        self.server_id = server_id
        self.options = tuple(options)
        self.base_dir: Path | None = None

    def __repr__(self) -> str:
        return f"EmbeddedMariaDB(url={self.url!r}, pid={self.pid})"

    @property
    def url(self) -> str:
        return f"mysql://{_USER}@{self.host}:{self.port}/"

    def url_for(self, database: str) -> str:
        return f"{self.url}{database}"

    @property
    def data_dir(self) -> Path:
        assert self.base_dir is not None, "start() creates it"
        return self.base_dir / "data"

    @property
    def socket(self) -> Path:
        assert self.base_dir is not None, "start() creates it"
        return self.base_dir / "mysqld.sock"

    @property
    def log_file(self) -> Path:
        assert self.base_dir is not None, "start() creates it"
        return self.base_dir / "mariadbd.log"

    def start(self, timeout: float = 60.0) -> EmbeddedMariaDB:
        """Start the server; the first start creates the data folder and the ``simpul`` user,
        a later one (after :meth:`stop` or :meth:`kill`) reuses both, on the same port."""
        if self.pid is not None:
            return self
        first = self.base_dir is None
        if first:
            self.base_dir = Path(tempfile.mkdtemp(prefix="simpul-mariadb-"))
            try:
                self._install()
            except BaseException:
                self.close()  # no half-made data folder left in /tmp
                raise
        self._spawn()
        self._register()
        self._wait_ready(time.monotonic() + timeout)
        if first:
            self._create_user()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM is mariadbd's normal shutdown; the data folder stays for another start."""
        self._stop_process(timeout)

    def kill(self) -> None:
        """SIGKILL, as a power cut would: InnoDB recovers at the next start."""
        self._kill_process()

    def close(self) -> None:
        """Stop the server and throw its data away."""
        self.stop()
        self._unregister()
        if self.base_dir is not None:
            shutil.rmtree(self.base_dir, ignore_errors=True)
            self.base_dir = None

    def __enter__(self) -> EmbeddedMariaDB:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _tmpdir(self) -> Path:
        """The server's own folder for temporary tables and files: the bootstrap was seen to
        fail on a loaded machine ("Could not remove temporary table: '/tmp/#sql-temptable-...'",
        then "Unknown table 'mysql.tmp_proxies_priv'") with the shared /tmp."""
        assert self.base_dir is not None, "start() creates it"
        folder = self.base_dir / "tmp"
        folder.mkdir(exist_ok=True)
        return folder

    def _install(self) -> None:
        command = [
            str(self.install_db),
            "--no-defaults",
            f"--datadir={self.data_dir}",
            f"--tmpdir={self._tmpdir()}",  # its temporary tables, away from every other server
            "--user=root",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            "--skip-name-resolve",
        ]
        for attempt in (1, 2):
            try:
                subprocess.run(command, capture_output=True, check=True, timeout=120)
                return
            except subprocess.CalledProcessError as exc:
                # Its bootstrap server has been seen to crash (a core dump, "Installation of
                # system tables failed") on a machine loaded by other tests: one more try on an
                # empty folder; a lasting cause fails again and is reported then.
                if attempt == 1:
                    shutil.rmtree(self.data_dir, ignore_errors=True)
                    continue
                output = (exc.stdout + exc.stderr).decode(errors="replace")[-2000:]
                raise MariaDBUnavailable(f"mariadb-install-db failed:\n{output}") from exc
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise MariaDBUnavailable(f"cannot run {command[0]}: {exc}") from exc

    def _settings(self) -> list[str]:
        """Durability is loosened (no fsync per commit): the data is a test's, and a SIGKILL of
        the process (not of the machine) loses nothing the OS already holds."""
        assert self.base_dir is not None
        settings = [
            "--no-defaults",
            f"--datadir={self.data_dir}",
            f"--port={self.port}",
            f"--bind-address={self.host}",
            f"--socket={self.socket}",
            f"--pid-file={self.base_dir / 'mariadbd.pid'}",
            f"--tmpdir={self._tmpdir()}",
            "--user=root",
            f"--server-id={self.server_id}",
            "--skip-name-resolve",
            "--innodb-buffer-pool-size=32M",
            "--innodb-log-file-size=16M",
            "--innodb-flush-log-at-trx-commit=2",
            "--sync-binlog=0",
            "--character-set-server=utf8mb4",
            "--collation-server=utf8mb4_general_ci",
            "--max-connections=200",
            "--default-time-zone=+07:00",  # WIB, as compose and the city's servers: NOW() is local
        ]
        if self.log_bin:
            settings += [
                f"--log-bin={self.base_dir / 'binlog' / 'mariadb-bin'}",
                f"--binlog-format={self.binlog_format}",
                f"--binlog-row-image={self.binlog_row_image}",
                "--binlog-row-metadata=FULL",  # column names in the binlog (MariaDB 10.5+)
            ]
        return settings + list(self.options)

    def _spawn(self) -> None:
        """New session, so a Ctrl-C meant for the tests does not stop the server under them."""
        assert self.base_dir is not None
        (self.base_dir / "binlog").mkdir(exist_ok=True)
        self._launch([str(self.mariadbd), *self._settings()])

    def _wait_ready(self, deadline: float) -> None:
        import pymysql  # noqa: PLC0415 - optional dependency, needed only for MySQL

        def accepting(_pid: int) -> bool:
            try:
                pymysql.connect(
                    unix_socket=str(self.socket), user="root", connect_timeout=2
                ).close()
            except pymysql.err.OperationalError:
                return False
            return True

        self._wait_answering(accepting, deadline, late="did not accept connections")

    def _create_user(self) -> None:
        import pymysql  # noqa: PLC0415

        root = pymysql.connect(unix_socket=str(self.socket), user="root")
        with contextlib.closing(root) as conn, conn.cursor() as cursor:
            cursor.execute(f"CREATE USER '{_USER}'@'127.0.0.1'")
            cursor.execute(f"GRANT ALL ON *.* TO '{_USER}'@'127.0.0.1' WITH GRANT OPTION")

    def _give_up(self) -> None:
        self.close()

    def _error(self, reason: str, tail: str) -> Exception:
        return MariaDBUnavailable(f"{reason} ({self.mariadbd}, port {self.port}); log:\n{tail}")

    def _at_exit(self) -> None:
        self.close()


class ExistingMariaDB(ComponentSettings):
    """``SIMPUL_MYSQL_URL``: a server to use instead of a private one (empty: unset)."""

    url: str | None = Field(default=None, validation_alias="SIMPUL_MYSQL_URL")


@contextlib.contextmanager
def mariadb_url_or_embedded(url: str | None = None) -> Iterator[str]:
    """``url`` (or ``SIMPUL_MYSQL_URL``) if set, else a private server for the block."""
    url = url or ExistingMariaDB.load().url
    if url:
        yield url
        return
    with EmbeddedMariaDB() as server:
        yield server.url
