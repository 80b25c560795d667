"""A tiny run of bench/router.py so it keeps working (no timing checked): every section is
measured and the router delivered every event (the bench asserts that itself)."""

from __future__ import annotations

import pytest

from tests.bench import run_python

pytestmark = pytest.mark.slow


def test_the_router_bench_measures_every_section() -> None:
    done = run_python(
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
        timeout=240,
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
