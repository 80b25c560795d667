"""A tiny run of bench/cdc.py so it keeps working (no timing checked): both databases, the raw
readers and the adapter, latency, the memory check and the polling comparison."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.bench import run_python

pytestmark = pytest.mark.slow


def test_cdc_bench_reads_the_same_rows_from_both_logs_with_both_readers(tmp_path: Path) -> None:
    out = tmp_path / "cdc.json"
    done = run_python(
        "-m",
        "bench.cdc",
        "--rows",
        "300",
        "--runs",
        "1",
        "--rate",
        "50",
        "--seconds",
        "1",
        "--memory",
        "100",
        "200",
        "--json",
        str(out),
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    for kind in ("mariadb", "postgresql"):
        runs = result[kind]["throughput"]["runs"]
        # _read() itself fails unless each reader added exactly its 300 rows to the stream.
        assert [r["raw"]["rows"] for r in runs] == [300]
        assert [r["adapter"]["rows"] for r in runs] == [300]
        latency = result[kind]["latency"]
        assert latency["published"] == latency["commits"] == 50
        assert set(latency["latency_ms"]) == {"p50", "p90", "p99", "max"}
        assert set(result[kind]["memory"]) == {"100", "200", "growth"}
    assert result["postgresql"]["polling_latency"]["published"] == 50
    assert "| MariaDB row binlog | 300 |" in done.stdout
    assert "| PostgreSQL logical decoding | 300 |" in done.stdout
    assert "polling (postgresql, change column), every 1 s" in done.stdout
