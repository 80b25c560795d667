"""A tiny run of bench/backfill_sqlite.py so it keeps working (no timing checked)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def test_sqlite_backfill_bench_reads_every_row_with_both_contenders(tmp_path: Path) -> None:
    out = tmp_path / "sqlite.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.backfill_sqlite", "--rows", "300", "--runs", "2",
         "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert len(result["runs"]) == 2
    assert all(r[k]["rows"] == 300 for r in result["runs"] for k in ("raw", "adapter"))
    assert "SQLite backfill, 300 rows: adapter / raw =" in done.stdout
