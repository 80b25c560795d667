"""``make demo`` (python -m demo): the day plays, every department shows its effect, and the
demo stops cleanly on Ctrl-C — after the day and in the middle of it."""

from __future__ import annotations

import contextlib
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from redis import Redis as SyncRedis

from bus import ConfigurationError
from bus.local.mariadb import find_mariadbd
from bus.local.redis import find_redis_server
from bus.local.sentinel import EmbeddedSentinelGroup
from demo.report import activate_line

ROOT = Path(__file__).parent.parent


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "SIMPUL_REDIS_URL"}
    env.update(extra)
    return env


@pytest.mark.slow
def test_the_day_plays_and_every_department_shows_its_effect() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "demo"],
        cwd=ROOT,
        env=_env(COLUMNS="200", SIMPUL_NOTIFIER_MAX_AGE_DAYS="1"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    out = done.stdout
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in out + done.stderr
    # Adapters: the broken legacy records are quarantined with their reason.
    assert "a NIK has exactly 16 digits" in out
    assert "not valid JSON" in out
    assert "jumlah_bayar is not whole rupiah" in out
    assert "6 x 201, 1 x 400, 1 x 422" in out
    if _mariadb_here():  # the job-seeker registry on a private MariaDB, read from its binlog
        assert "tgl_daftar is empty (0000-00-00)" in out
        assert "kecamatan must name one of Kota Malang's five kecamatan" in out
        assert "2 grants re-verified after job placements" in out
    else:
        assert "no MariaDB server (mariadbd) here: the job-seeker registry was left out" in out
    # Services: the cross-department effects of the day (demo/city.py plays them).
    assert "2 grants suspended after deaths" in out
    assert "2 households grew by a birth" in out
    assert "4 taxpayers registered from permits, 1 taxpayer reviews after deaths" in out
    assert "4 immunisation schedules" in out
    # 3 billboard permits, 1 rejection and 4 payments of account holders; whatever the date
    # the demo runs on (its day is in the past).
    assert "8 e-mails delivered over SMTP, 8 in-app messages" in out
    assert "hash chain verifies" in out
    # The failing consumer: dead letters with the handler's error, everything else flowed.
    assert "ArchiveDiskFull" in out and "handler_failed" in out
    # Every service's handlers fit what its subscription is shown (need-to-know projections).
    assert "contract_violation" not in out
    # Trust: each component logs in as its own principal and signs; the router admits what
    # producers sign and signs what it forwards. With the dukcapil adapter's password but not
    # its key, a bapenda payment is refused by Redis and an unsigned death by the router (no
    # inbox gets it; the resident's account stays).
    signed = re.search(r"(\d+) of (\d+) events signed by a principal allowed their type", out)
    assert signed, out[-3000:]
    assert int(signed[1]) == int(signed[2]) > 40  # the forged death never reached a stream
    forwarded = re.search(r"(\d+) of (\d+) inbox entries signed by the router", out)
    assert forwarded, out[-3000:]
    assert int(forwarded[1]) == int(forwarded[2]) > int(signed[2])  # several subscribers each
    assert "refused by the router: unsigned; in 0 inboxes" in out
    assert "the resident's account is still linked" in out
    if _redis_major(find_redis_server()) >= 7:  # ACL selectors: Redis 7 (else the 6.2 wheel)
        assert re.search(r"\d+ principals, default user off", out), out[-3000:]
        assert "refused by Redis: this user has no permissions" in out
        # A stolen service password cannot silence another department: dinsos's inbox group
        # is out of its reach, and dinsos still acts on the deaths.
        assert "stolen dinkes password vs dinsos's inbox" in out
        assert "refused by Redis: 5 x NOPERM; dinsos still got the deaths: 2 grants" in out
    assert "stopped cleanly" in out
    # The printed commands work as printed: `simpul` is on PATH once the venv is activated.
    activate = activate_line()
    assert activate is not None and activate in out
    assert out.index(activate) < out.index("simpul quarantine list")


@pytest.mark.slow
def test_the_day_plays_on_a_sentinel_group_through_the_master_the_sentinels_name(
    tmp_path: Path,
) -> None:
    """SIMPUL_REDIS_SENTINELS (docs/ha.md): every component of the demo follows the master the
    Sentinels name. A failover first, so that SIMPUL_REDIS_URL names a replica: a component
    writing to the URL's server instead would get READONLY and the day would not play."""
    with EmbeddedSentinelGroup(tmp_path / "group") as group:
        first = group.master()
        new = group.failover()
        assert group.url == first.url and new is not first
        done = subprocess.run(
            [sys.executable, "-m", "demo"],
            cwd=ROOT,
            env=_env(
                COLUMNS="200",
                SIMPUL_NOTIFIER_MAX_AGE_DAYS="1",
                SIMPUL_DEMO_STAY="0",
                SIMPUL_REDIS_URL=group.url,
                **group.environment(),
            ),
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        out = done.stdout
        assert done.returncode == 0, done.stderr[-3000:]
        assert "Traceback" not in out + done.stderr
        assert "2 grants suspended after deaths" in out
        assert "hash chain verifies" in out and "stopped cleanly" in out
        with SyncRedis(new.host, new.port) as master:
            assert master.xlen("simpul:{dukcapil.citizen}") > 0


def test_the_printed_activate_line_puts_simpul_on_path() -> None:
    activate = activate_line()
    assert activate is not None, "the tests run from a virtualenv (make install)"
    command = activate.split("#")[0].strip()
    env = {**_env(), "PATH": "/usr/bin:/bin"}  # a fresh shell: the venv is not on PATH
    shell = subprocess.run(
        ["bash", "-c", f"{command} && simpul contracts list --json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert shell.returncode == 0, shell.stderr
    assert "dukcapil.citizen.died.v1" in shell.stdout


def test_without_an_install_the_demo_says_run_make_install(tmp_path: Path) -> None:
    """A fresh clone's `python -m demo` with a Python that has none of the dependencies."""
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "bare")],
        check=True,
        timeout=120,
    )
    bare = subprocess.run(
        [str(tmp_path / "bare" / "bin" / "python"), "-m", "demo"],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bare.returncode == 1
    assert "Traceback" not in bare.stderr
    [line] = bare.stderr.strip().splitlines()
    assert "run `make install`" in line and "redis" in line


def _mariadb_here() -> bool:
    if os.environ.get("SIMPUL_MYSQL_URL"):
        return True
    try:
        find_mariadbd()
    except ConfigurationError:
        return False
    return True


def _redis_major(binary: str) -> int:
    version = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True)
    found = re.search(r"v=(\d+)\.", version.stdout)
    assert found, version.stdout
    return int(found[1])


def _pty_demo() -> tuple[subprocess.Popen[bytes], int]:
    """The demo on a terminal (so it stays up after the day), reading what it prints."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "demo"],
        cwd=ROOT,
        env=_env(COLUMNS="200"),
        stdin=follower,
        stdout=follower,
        stderr=follower,
    )
    os.close(follower)
    return proc, leader


def _read_until(leader: int, text: str, timeout: float = 90) -> str:
    seen = b""
    deadline = time.monotonic() + timeout
    while text.encode() not in seen:
        assert time.monotonic() < deadline, f"never printed {text!r}:\n{seen.decode()[-3000:]}"
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closed: the process ended
            break
        seen += chunk
    return seen.decode(errors="replace")


def _rest(leader: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> str:
    """What the demo prints until it exits (read all along: a full terminal would block it)."""
    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.2)
        if not ready:
            if proc.poll() is not None:
                break
            continue
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closed: the process ended
            break
        if not chunk:
            break
        out += chunk
    return out.decode(errors="replace")


def _children(pid: int) -> dict[int, bytes]:
    """The processes ``pid`` started (its servers), with their command lines."""
    found = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in map(int, (task / "children").read_text().split()):
            with contextlib.suppress(FileNotFoundError):
                found[child] = Path(f"/proc/{child}/cmdline").read_bytes()
    return found


def _alive(children: dict[int, bytes]) -> dict[int, bytes]:
    """Those of ``children`` still running (a pid taken by another program since is not)."""
    alive = {}
    for pid, cmdline in children.items():
        with contextlib.suppress(FileNotFoundError):
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            if state != "Z" and Path(f"/proc/{pid}/cmdline").read_bytes() == cmdline:
                alive[pid] = cmdline
    return alive


# When the stop comes: a line the demo printed, how long after it, which signal. Redis is up at
# "Redis at" (the event loop may not run yet: the signal only asks); the day plays between the
# dashboard line and "Press Ctrl-C" (a few seconds, more under load); SIGTERM, as a supervisor
# stops it, is handled as Ctrl-C is.
STOPS = {
    "as the servers answer": ("Redis at", 0.0, signal.SIGINT),
    "as the day begins": ("Dashboard:", 0.0, signal.SIGINT),
    "during the day": ("Dashboard:", 1.0, signal.SIGINT),
    "later in the day": ("Dashboard:", 2.0, signal.SIGINT),
    "during the day, by SIGTERM": ("Dashboard:", 1.0, signal.SIGTERM),
    "after the day": ("Press Ctrl-C to stop", 0.0, signal.SIGINT),
}


@pytest.mark.slow
@pytest.mark.parametrize("when", list(STOPS))
def test_ctrl_c_stops_the_demo_cleanly(when: str) -> None:
    """Whenever it comes: the demo exits 0 with "stopped cleanly", its servers stopped. A
    Ctrl-C lost on the way (redis-py dropped a cancellation landing on a command's write; the
    demo's own wait for its live view dropped another) left it waiting at "Press Ctrl-C"."""
    marker, pause, signum = STOPS[when]
    _stops_cleanly(marker, pause, signum)


@pytest.mark.slow
def test_signals_while_the_demo_stops_do_not_cut_the_stop_short() -> None:
    """An impatient operator: SIGTERM after SIGINT, again and again until the demo is gone. Once
    asyncio.run closed its loop, SIGTERM killed the demo while it stopped its servers (asyncio
    puts the default handlers back), and redis-server or MariaDB ran on."""
    _stops_cleanly("Press Ctrl-C to stop", 0.0, signal.SIGINT, then=signal.SIGTERM)


def _stops_cleanly(
    marker: str, pause: float, signum: signal.Signals, then: signal.Signals | None = None
) -> None:
    proc, leader = _pty_demo()
    servers: dict[int, bytes] = {}
    try:
        before = _read_until(leader, marker)
        servers = _children(proc.pid)
        before += _rest(leader, proc, timeout=pause) if pause else ""
        proc.send_signal(signum)
        if then is not None:  # every 50 ms, for a minute at most
            for _ in range(1200):
                before += _rest(leader, proc, timeout=0.05)
                if proc.poll() is not None:
                    break
                proc.send_signal(then)
        out = before + _rest(leader, proc)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)  # the terminal closed as it exited
        code = proc.poll()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        left = _alive(servers)
        for pid in left:  # the demo's servers, if it left them: stopped here, by pid
            os.kill(pid, signal.SIGKILL)
        os.close(leader)
    assert servers, "the demo started no server of its own (Redis at least)"
    assert code is not None, f"still running a minute after the signal:\n{out[-3000:]}"
    assert code == 0, out[-3000:]
    assert "stopped cleanly" in out, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    running = [cmdline.split(b"\0")[0].decode() for cmdline in left.values()]
    assert not left, f"left running: {running}"
