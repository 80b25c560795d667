"""SIGKILL an adapter process at random points, as the crash tests of every source kind do."""

from __future__ import annotations

import random
import signal
import subprocess
import time
from collections.abc import Callable

from redis import Redis as SyncRedis

Start = Callable[[], "subprocess.Popen[bytes]"]


def wait_for_growth(
    redis: SyncRedis, stream: str, proc: subprocess.Popen[bytes], since: int
) -> None:
    """Return once the stream grew past ``since`` (the adapter is mid-run)."""
    deadline = time.monotonic() + 30
    while redis.xlen(stream) <= since:
        assert proc.poll() is None, f"adapter exited early: {proc.stderr.read()!r}"  # type: ignore[union-attr]
        assert time.monotonic() < deadline, "the adapter made no progress"
        time.sleep(0.005)


def kill_repeatedly(
    start: Start,
    redis: SyncRedis,
    stream: str,
    *,
    records: int,
    kills: int,
    seed: int,
    after_kill: Callable[[], None] = lambda: None,
) -> None:
    """Kill ``kills`` runs mid-way (at least 3 before the end), then let one run finish."""
    rng = random.Random(seed)
    mid_run = 0
    for _ in range(kills):
        before = redis.xlen(stream)
        proc = start()
        wait_for_growth(redis, stream, proc, before)
        time.sleep(rng.uniform(0.0, 0.15))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        mid_run += redis.xlen(stream) < records
        after_kill()
    assert mid_run >= 3, "the kills came too late to test anything"
    final = start()
    _, stderr = final.communicate(timeout=60)
    assert final.returncode == 0, stderr.decode()
