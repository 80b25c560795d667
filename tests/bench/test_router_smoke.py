"""A tiny run of bench/router.py so it keeps working (no timing checked): every section is
measured and the router delivered every event (the bench asserts that itself)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.bench import bench_environ

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def test_the_router_bench_measures_every_section() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.router",
            "--events",
            "200",
            "--rate",
            "100",
            "--seconds",
            "1",
            "--runs",
            "1",
        ],
        cwd=ROOT,
        env=bench_environ(),
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for line in (
        "throughput",
        "router_rate",
        "raw_rate",
        "direct_p99_ms",
        "routed_p99_ms",
        "routed_trimmed_bytes_per_event",
        "subscriptions: 3.00",
    ):
        assert line in done.stdout, done.stdout
