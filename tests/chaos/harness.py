"""What the fault scenarios share: the processes they start, their files, and the final wait.

Every process is started here, remembered by its pid, and stopped by that pid — SIGKILL for a
crash, SIGTERM for a graceful stop — never by name; whatever is still running when the test
ends is killed. Each process's stderr goes to ``<folder>/logs/<name>.log`` (a pipe nobody
reads would fill up and block it), and its tail is shown when it died unexpectedly.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from schemas.dukcapil import CitizenDied
from tests.chaos import effects, history
from tests.chaos.checker import Report, check, observe
from tests.chaos.consumer import GROUP, STREAMS

ROOT = Path(__file__).resolve().parents[2]
_POLL_S = 0.25
_LOG_TAIL = 2_000  # characters
DEATHS = CitizenDied.__contract__.stream  # where tests/chaos/producer.py publishes


class Processes:
    """The subprocesses of one test, by name."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.logs.mkdir(parents=True, exist_ok=True)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(
        self, name: str, module: str, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """``python -m module args...``; ``env`` is added to this process's environment."""
        assert not self.running(name), f"{name} is already running"
        with (self.logs / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", module, *args],
                cwd=ROOT,
                env={**os.environ, **(env or {})},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        self.procs[name] = proc
        return proc

    def running(self, name: str) -> bool:
        proc = self.procs.get(name)
        return proc is not None and proc.poll() is None

    def kill(self, name: str) -> None:
        """SIGKILL: no handler runs to completion, nothing is acked or flushed on the way out."""
        proc = self.procs[name]
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

    def stop(self, name: str, timeout: float = 15.0) -> int:
        """SIGTERM, and the exit status; SIGKILL if it does not exit in time."""
        proc = self.procs[name]
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                return proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
        return proc.wait(timeout=10)

    def wait(self, name: str, timeout: float) -> int:
        return self.procs[name].wait(timeout=timeout)

    def assert_alive(self, *names: str) -> None:
        for name in names:
            proc = self.procs[name]
            assert proc.poll() is None, (
                f"{name} exited with status {proc.returncode}:\n{self.log_tail(name)}"
            )

    def log_tail(self, name: str) -> str:
        text = (self.logs / f"{name}.log").read_text(encoding="utf-8", errors="replace")
        return text[-_LOG_TAIL:]

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=10)

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@dataclass
class Run:
    """One scenario's files: histories, the consumers' effect store, logs."""

    folder: Path
    url: str

    @property
    def histories(self) -> Path:
        return self.folder / "history"

    @property
    def store(self) -> Path:
        return self.folder / "effects.db"

    def history(self, name: str) -> Path:
        return self.histories / f"{name}.jsonl"

    def consumer_args(
        self, name: str, *, http: str | None = None, work_ms: int = 2, partitioned: bool = False
    ) -> list[str]:
        args = [
            "--url",
            self.url,
            "--consumer",
            name,
            "--store",
            str(self.store),
            "--history",
            str(self.history(name)),
            "--work-ms",
            str(work_ms),
        ]
        args += ["--http", http] if http else []
        return [*args, "--partitioned"] if partitioned else args

    def producer_args(
        self,
        run: str,
        *,
        events: int,
        seed: int,
        subjects: int = 8,
        interval_ms: float = 5.0,
        partitioned: bool = False,
    ) -> list[str]:
        args = [
            "--url",
            self.url,
            "--history",
            str(self.history(f"producer-{run}")),
            "--run",
            run,
            "--events",
            str(events),
            "--seed",
            str(seed),
            "--subjects",
            str(subjects),
            "--interval-ms",
            str(interval_ms),
        ]
        return [*args, "--partitioned"] if partitioned else args

    async def report(
        self,
        redis: Redis,
        streams: Sequence[str] = STREAMS,
        *,
        subjects: Callable[[str], bool] | None = None,
    ) -> Report:
        """The checker's report on ``streams``; with ``subjects``, of the events whose subject
        it accepts only (one inbox of a partitioned aggregate: the subjects of its partition)."""
        records = history.read(sorted(self.histories.glob("*.jsonl")))
        done = await asyncio.to_thread(effects.read, self.store)
        if subjects is not None:
            chosen = {
                r["id"]
                for r in records
                if r.get("phase") == history.INVOKE and subjects(r.get("subject") or "")
            }
            records = [r for r in records if r.get("id") in chosen]
            done = [e for e in done if e.event_id in chosen]
        return check(records, done, await observe(redis, streams, GROUP))

    async def settled(
        self,
        redis: Redis,
        *,
        timeout: float = 30.0,
        streams: Sequence[str] = STREAMS,
        subjects: Callable[[str], bool] | None = None,
    ) -> Report:
        """The report once nothing more will happen: every ok publish has its effect or a dead
        letter, every injected entry its dead letter, and the group has nothing pending or
        undelivered — or, after ``timeout`` seconds, as it stands (the test's assertions then
        say what is missing)."""
        deadline = time.monotonic() + timeout
        while True:
            report = await self.report(redis, streams, subjects=subjects)
            waiting = report.lost - report.lost_to_dead_letters  # may still be handled
            drained = not (waiting or report.final_pending or report.lag or report.poison_missing)
            if drained or time.monotonic() > deadline:
                return report
            await asyncio.sleep(_POLL_S)


async def wait_for_entries(redis: Redis, count: int, procs: Processes) -> None:
    """Until the producer's stream (its deaths) holds ``count`` entries; it must stay alive."""
    deadline = time.monotonic() + 30
    while await redis.xlen(DEATHS) < count:
        procs.assert_alive("producer")
        assert time.monotonic() < deadline, "the producer published nothing"
        await asyncio.sleep(0.02)


async def wait_ready(procs: Processes, addresses: dict[str, str], timeout: float = 60.0) -> None:
    """Until the ``/readyz`` of every replica (name -> HOST:PORT of its ``--http``) answers
    200: each has polled Redis successfully. The replicas must stay alive meanwhile. A loaded
    machine takes seconds to start one; a scenario whose faults begin before its replicas read
    tests nothing."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=1.0) as client:
        waiting = dict(addresses)
        while waiting:
            procs.assert_alive(*waiting)
            for name, address in list(waiting.items()):
                try:
                    ready = (await client.get(f"http://{address}/readyz")).status_code == 200
                except httpx.TransportError:  # still starting
                    ready = False
                if ready:
                    del waiting[name]
            assert time.monotonic() < deadline, (
                f"not ready within {timeout:.0f} s: {sorted(waiting)}"
            )
            await asyncio.sleep(0.1)


FRESH_MS = 1_000  # an entry delivered this recently is held by a live replica at work
AIM_S = 3.0  # how long a kill waits for a replica holding fresh entries


async def holders(redis: Redis, streams: Sequence[str], replicas: Sequence[str]) -> list[str]:
    """The replicas holding entries delivered to them within :data:`FRESH_MS` (read, not yet
    acked): alive and inside their work. A replica killed earlier keeps its old pending entries
    under its name until it or another takes them over; those are not fresh and do not count."""
    found: set[str] = set()
    for stream in streams:
        try:
            rows: Any = await redis.xpending_range(stream, GROUP, "-", "+", 200)
        except ResponseError:  # NOGROUP: no replica has started yet
            continue
        found.update(
            r["consumer"].decode() for r in rows if int(r["time_since_delivered"]) < FRESH_MS
        )
    return sorted(found & set(replicas))


async def aim(
    redis: Redis, streams: Sequence[str], replicas: Sequence[str], rng: random.Random
) -> tuple[str, bool]:
    """The next victim, and whether it holds fresh entries: one that does, as soon as one does
    (within :data:`AIM_S`), else any replica."""
    deadline = time.monotonic() + AIM_S
    while True:
        found = await holders(redis, streams, replicas)
        if found:
            return rng.choice(found), True
        if time.monotonic() > deadline:
            return rng.choice(list(replicas)), False
        await asyncio.sleep(0.02)
