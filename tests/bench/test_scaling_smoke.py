"""Tiny runs of bench/scaling.py and bench/memory.py so they keep working (no timing checked).

Each runs as its own process, as `python -m bench.<name>` does: the bench contracts must not
join this test session's contract registry (the city's topology checks that registry).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.bench import run_python

pytestmark = pytest.mark.slow


def bench(name: str, *args: str) -> str:
    done = run_python("-m", f"bench.{name}", "--no-wait", *args, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def run_scaling(tmp_path: Path, *args: str) -> tuple[dict[str, object], str]:
    out = tmp_path / "scaling.json"
    printed = bench("scaling", "--quick", "--n", "200", "--json", str(out), *args)
    result: dict[str, object] = json.loads(out.read_text())
    return result, printed


def test_scaling_drains_one_stream_with_two_replicas_of_each_consumer(tmp_path: Path) -> None:
    # Two replicas on partitions would wait for bus/'s leases to spread (up to 40 s): one
    # replica there, two on the plain stream.
    result, printed = run_scaling(tmp_path, "--partitions", "1", "--procs", "2")
    drain = result["drain"]
    assert isinstance(drain, dict)
    assert set(drain) == {"raw p1 x2", "simpul p1 x2"}
    # drain() itself fails unless the replicas handled all 200 between them.
    assert all(r["handled_max"] <= 200 for e in drain.values() for r in e["runs"])
    assert "| one stream | 2 |" in printed


def test_scaling_drains_four_partitions_routed_as_bus_routes_them(tmp_path: Path) -> None:
    result, printed = run_scaling(tmp_path, "--partitions", "4", "--procs", "1")
    drain, spread = result["drain"], result["spread"]
    assert isinstance(drain, dict) and isinstance(spread, dict)
    assert set(drain) == {"raw p4 x1", "simpul p4 x1"}
    partitions = spread["4 partitions"]
    assert set(partitions) == {f"simpul:{{bench.citizen4.p{p}}}" for p in range(4)}
    assert sum(partitions.values()) == 200 - 4  # plus one entry per partition at the start
    assert "| 4 partitions | 1 |" in printed


def test_memory_counts_the_stream_and_one_dedupe_marker_per_event(tmp_path: Path) -> None:
    out = tmp_path / "memory.json"
    printed = bench("memory", "--sizes", "200", "--json", str(out))
    (size,) = json.loads(out.read_text())["sizes"]
    assert size["n"] == 200
    assert size["markers"] == 200
    assert size["stream"] > 200 * size["data_bytes"]  # the whole entry is in the stream
    assert size["publish"]["rate"] > 0 and size["read"]["rate"] > 0
    assert "| 200 |" in printed
