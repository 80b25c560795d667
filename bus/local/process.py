"""The one way bus.local runs a private server: start it with its log file, wait until it
answers (or say why it died, with the tail of its log), stop it by pid.

Each server class (:class:`~bus.local.redis.EmbeddedRedis`, ``EmbeddedPostgres``,
``EmbeddedMariaDB``; the cluster and the Sentinel group are made of EmbeddedRedis) subclasses
:class:`ServerProcess` and adds only what is its own: the command line, how to ask whether it
answers, its error class. Only the pids started here are ever signalled, and a server left
running by a caller that forgot it is stopped when the interpreter exits — by the process that
started it, never by a forked child.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import ClassVar, NoReturn

from bus.errors import ConfigurationError, SimpulError

__all__ = ["ServerProcess", "wait_for"]

POLL_S = 0.05
LOG_TAIL_LINES = 20
# Strong references on purpose: a server whose owner dropped it must still be stopped at exit.
_RUNNING: set[ServerProcess] = set()


def wait_for(done: Callable[[], bool], deadline: float, failed: Callable[[], Exception]) -> None:
    """Poll ``done`` until it is true; past ``deadline`` (time.monotonic) raise ``failed()``."""
    while not done():
        if time.monotonic() >= deadline:
            raise failed()
        time.sleep(POLL_S)


class ServerProcess:
    """One private server process, known by its pid.

    Subclasses set :attr:`program` (its name in messages), :attr:`unavailable` (the error
    raised when it does not come up), :attr:`stop_signal` (its clean shutdown) and
    :attr:`poll_s` (how often to ask whether it answers), and define :attr:`log_file` and
    :meth:`_at_exit`.
    """

    program: ClassVar[str] = "server"
    unavailable: ClassVar[type[SimpulError]] = SimpulError
    stop_signal: ClassVar[signal.Signals] = signal.SIGTERM
    poll_s: ClassVar[float] = POLL_S

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._owner_pid = os.getpid()
        self._log_offset = 0

    @property
    def pid(self) -> int | None:
        """None once the process is gone, so callers can tell a dead server from a live one."""
        if self._proc is None or self._proc.poll() is not None:
            return None
        return self._proc.pid

    @property
    def log_file(self) -> Path:
        raise NotImplementedError

    def _launch(
        self,
        command: Sequence[str],
        *,
        stdout_to_log: bool = True,
        user: int | None = None,
        group: int | None = None,
    ) -> None:
        """Start ``command`` in a new session (a Ctrl-C meant for the caller must not kill the
        server before the caller can stop it), stderr appended to the log file (argument
        errors are printed there, not logged), stdout too unless ``stdout_to_log`` is False."""
        log_file = self.log_file
        self._log_offset = log_file.stat().st_size if log_file.exists() else 0
        try:
            with log_file.open("ab") as log:
                self._proc = subprocess.Popen(
                    list(command),
                    stdin=subprocess.DEVNULL,
                    stdout=log if stdout_to_log else subprocess.DEVNULL,
                    stderr=log,
                    start_new_session=True,
                    user=user,
                    group=group,
                )
        except OSError as exc:
            raise ConfigurationError(f"cannot run {command[0]}: {exc}") from exc
        self._owner_pid = os.getpid()

    def _wait_answering(
        self, answers: Callable[[int], bool], deadline: float, *, late: str = "did not answer"
    ) -> None:
        """Until ``answers(pid)``; :meth:`_fail` if the process exits first, or says ``late``
        once the deadline (time.monotonic) passes."""
        while True:
            proc = self._proc
            if proc is None or proc.poll() is not None:
                status = "" if proc is None else f" with status {proc.returncode}"
                self._fail(f"{self.program} exited{status} while starting")
            if answers(proc.pid):
                return
            if time.monotonic() >= deadline:
                self._fail(f"{self.program} {late} in time")
            time.sleep(self.poll_s)

    def _fail(self, reason: str) -> NoReturn:
        """Stop what is left of the process and raise :attr:`unavailable` with the log's tail."""
        tail = self._log_tail()
        self._give_up()
        raise self._error(reason, tail)

    def _give_up(self) -> None:
        """What a failed start leaves behind: by default, the process (SIGKILL)."""
        self._kill_process()

    def _error(self, reason: str, tail: str) -> Exception:
        return self.unavailable(f"{reason}; last lines of {self.log_file}:\n{tail}")

    def _log_tail(self) -> str:
        """This run's last lines only: the log file is appended to across restarts."""
        try:
            with self.log_file.open("rb") as log:
                log.seek(self._log_offset)
                text = log.read().decode("utf-8", errors="replace")
        except OSError:
            return "(no log written)"
        return "\n".join(text.splitlines()[-LOG_TAIL_LINES:]) or "(log is empty)"

    def _stop_process(self, timeout: float) -> None:
        """:attr:`stop_signal` (after SIGCONT: a paused server cannot act on it), SIGKILL if it
        does not exit within ``timeout`` seconds."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
            proc.send_signal(self.stop_signal)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._proc = None

    def _kill_process(self) -> None:
        """SIGKILL at once, as a power cut would."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        self._proc = None

    def _register(self) -> None:
        _RUNNING.add(self)

    def _unregister(self) -> None:
        _RUNNING.discard(self)

    def _at_exit(self) -> None:
        """Stop a server the caller left running (at interpreter exit)."""
        raise NotImplementedError


@atexit.register
def _stop_leftovers() -> None:
    """Leave no orphan servers behind a caller that forgot to stop them (or crashed)."""
    for server in list(_RUNNING):
        # A forked child inherits the registry but must not stop its parent's servers.
        if server._owner_pid == os.getpid():
            with contextlib.suppress(Exception):
                server._at_exit()
