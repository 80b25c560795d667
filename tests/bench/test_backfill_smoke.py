"""A tiny run of bench/backfill.py over every source besides PostgreSQL's 1M-row run, so the
one harness keeps working (no timing checked: speed targets live in `make bench`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.bench import run_python

pytestmark = pytest.mark.slow


def test_backfill_bench_reads_every_row_of_every_source_with_both_contenders(
    tmp_path: Path,
) -> None:
    out = tmp_path / "backfill.json"
    sources = "sqlite,csv,mysql,mysql-snapshot,postgresql-snapshot"
    done = run_python(
        "-m",
        "bench.backfill",
        "--sources",
        sources,
        "--rows",
        "300",
        "--runs",
        "2",
        "--json",
        str(out),
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert sorted(result["sources"]) == sorted(sources.split(","))
    for name, figures in result["sources"].items():
        assert len(figures["ratios"]) == 2, name
        for kind in ("raw", "adapter"):
            assert [r["rows"] for r in figures[kind]] == [300, 300], (name, kind)
    assert "| CSV drop folder (Bapenda exports) | 300 | 2 |" in done.stdout


def test_an_unknown_source_is_refused_by_name() -> None:
    done = run_python("-m", "bench.backfill", "--sources", "oracle", timeout=60)
    assert done.returncode == 2
    assert "unknown source(s) oracle" in done.stderr
