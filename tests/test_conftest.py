"""The project's own tests never touch the developer's dev bus (SIMPUL_REDIS_URL)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from redis import Redis as SyncRedis

REPO = Path(__file__).resolve().parents[1]
PROBE = """
import os

from redis import Redis


def test_uses_a_private_redis(redis_url):
    assert "SIMPUL_REDIS_URL" not in os.environ  # code under test cannot fall back to it
    with Redis.from_url(redis_url) as client:
        client.set("test:wrote", "1")
"""


def test_the_dev_bus_is_neither_flushed_nor_written(tmp_path: Path, redis_url: str) -> None:
    (tmp_path / "test_probe.py").write_text(PROBE)
    env = {k: v for k, v in os.environ.items() if not k.endswith("REDIS_URL")}
    env |= {"SIMPUL_REDIS_URL": redis_url, "PYTHONPATH": str(REPO)}
    with SyncRedis.from_url(redis_url) as dev_bus:
        dev_bus.set("their:work", "keep me")
        plugins = ["-p", "tests.conftest", "-p", "no:cacheprovider"]
        probe = ["--rootdir", str(tmp_path), str(tmp_path / "test_probe.py")]
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", *plugins, *probe],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert dev_bus.keys("*") == [b"their:work"]
