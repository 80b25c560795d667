"""What the CLI suites share: the stream they use, synthetic NIKs, running `simpul`, publishing
and consuming with a plain client."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from redis import Redis
from typer.testing import CliRunner

from bus import keys
from bus.cli.app import app
from tests.bus.delivery.helpers import died, fields_of

ROOT = Path(__file__).parents[3]
CITIZEN = keys.stream("dukcapil.citizen")
NIKS = [f"35730145069{i:05d}" for i in range(1, 9)]  # synthetic 16-digit NIKs
runner = CliRunner()


def simpul(*args: str) -> Any:
    return runner.invoke(app, list(args))


def cli_env(redis_url: str, **extra: str) -> dict[str, str]:
    """The environment of a ``simpul`` process against ``redis_url``, logging JSON."""
    return dict(os.environ, SIMPUL_REDIS_URL=redis_url, SIMPUL_LOG_FORMAT="json", **extra)


def simpul_process(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    """``simpul ARGS`` as a process of its own, its output piped: for the commands that run
    until stopped (tail --follow, the exporter, run)."""
    return subprocess.Popen(
        [sys.executable, "-m", "bus.cli.app", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def publish(client: Redis, count: int, start: int = 0) -> list[str]:
    return [
        client.xadd(CITIZEN, fields_of(died(NIKS[i]), f"e{i}")).decode()  # type: ignore[arg-type, union-attr]
        for i in range(start, start + count)
    ]


def consume(client: Redis, group: str, count: int, *, ack: bool = True) -> None:
    """Read ``count`` entries as one replica of ``group`` (created at 0 if need be)."""
    if not any(g["name"] == group.encode() for g in client.xinfo_groups(CITIZEN)):  # type: ignore[union-attr]
        client.xgroup_create(CITIZEN, group, id="0")
    reply: Any = client.xreadgroup(group, f"{group}-1", {CITIZEN: ">"}, count=count)
    if ack and reply:
        client.xack(CITIZEN, group, *[entry for entry, _ in reply[0][1]])
