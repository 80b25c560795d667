"""Smoke runs of the benchmarks, each in a process of its own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# tests/conftest.py sets these for the test session (a development run, most services under
# test verifying nothing); `make bench` runs from a plain shell, without them.
_SESSION_ONLY = ("SIMPUL_SIGNATURES", "SIMPUL_DEV_MODE")


def bench_environ() -> dict[str, str]:
    """The environment a benchmark gets from `make bench`: the session's development settings
    removed, so a bench that starts its services only because of them fails here too."""
    return {k: v for k, v in os.environ.items() if k not in _SESSION_ONLY}


def run_python(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """``python ARGS`` as `make bench` runs a benchmark: from the repository root, with
    :func:`bench_environ`; its output captured as text, its exit status left to the caller."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=bench_environ(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
