"""The commands the README and the tutorials show, and the ones `simpul adapter new` prints, work
as written: run in bash, in order, in a fresh copy of the repository (its .venv linked in, so
`make install` has nothing to do), against the dev Redis that `simpul redis &` starts.

Only the ports move: `simpul redis` listens on SIMPUL_DEV_REDIS_PORT (a free port, not 6390)
and `--http 127.0.0.1:8081` gets a free port, so tests never collide. A long-running command
(`simpul run`, `simpul adapter run` without --once) runs until it logs that it works, then is
stopped with SIGTERM, as Ctrl-C would, and must exit 0.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from bus.adapter.scaffold import plan
from bus.local.redis import free_port
from tests.test_go_live import _resolve

ROOT = Path(__file__).resolve().parents[1]
SHOWN = ("README.md", "docs/writing-an-adapter.md", "docs/writing-a-service.md", "docs/go-live.md")
DOCS = {name: (ROOT / name).read_text() for name in SHOWN}
PRELUDE = r"""
set -eo pipefail
trap 'kill $(jobs -p) 2>/dev/null || true; wait' EXIT
serve_until() {  # start a long-running command, wait until it logs $1, stop it with SIGTERM
  local event=$1 log pid deadline=$((SECONDS + 90)); shift; log=$(mktemp)
  eval "exec $*" 2>"$log" &
  pid=$!
  until grep -q "$event" "$log"; do
    if ! kill -0 "$pid" 2>/dev/null || [ $SECONDS -ge $deadline ]; then cat "$log" >&2; return 1; fi
    sleep 0.1
  done
  kill -TERM "$pid"; wait "$pid"; echo "stopped cleanly: $*"
}
dev_redis_ready() {  # what a developer sees as the printed export line
  until python -c "import redis; redis.Redis(port=$SIMPUL_DEV_REDIS_PORT).ping()" 2>/dev/null; do
    sleep 0.1
  done
}
"""
LONG_RUNNING = {"simpul run ": "consumer_started", "simpul adapter run ": "adapter_pass_finished"}


def sh_blocks(doc: str) -> list[list[str]]:
    return [block.strip().splitlines() for block in re.findall(r"```sh\n(.*?)```", DOCS[doc], re.S)]


def block_with(doc: str, command: str) -> list[str]:
    return next(block for block in sh_blocks(doc) if any(command in line for line in block))


def python_blocks(doc: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOCS[doc], flags=re.S)


def script(lines: list[str], redis_port: int) -> str:
    """The lines as bash runs them, long-running ones bounded, the ports moved."""
    out = [PRELUDE]
    for shown in lines:
        moved = shown.replace("127.0.0.1:6390", f"127.0.0.1:{redis_port}")
        line = moved.replace("127.0.0.1:8081", f"127.0.0.1:{free_port()}")
        command = line.split("  #")[0].strip()
        event = next((e for start, e in LONG_RUNNING.items() if command.startswith(start)), None)
        if event and "--once" not in command:
            out.append(f"serve_until {event} {shlex.quote(command)}")
        else:
            out.append(line)
        if command == "simpul redis &":
            out.append("dev_redis_ready")
    return "\n".join(out) + "\n"


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    """The repository's files as a fresh clone has them, with this checkout's .venv."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True)
    for name in filter(None, listed.stdout.decode().split("\0")):
        if (ROOT / name).is_file():
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, tmp_path / name)
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    return tmp_path


def run(clone: Path, lines: list[str]) -> str:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIMPUL_", "VIRTUAL_ENV"))}
    env |= {"SIMPUL_DEV_REDIS_PORT": str(port), "PATH": "/usr/local/bin:/usr/bin:/bin"}
    # The linked .venv's editable install points at this checkout; a clone's own `make install`
    # would point at the clone: PYTHONPATH makes its packages (services.bansos) the ones found.
    env["PYTHONPATH"] = str(clone)
    bash = ["bash", "-c", script(lines, port)]
    done = subprocess.run(
        bash, cwd=clone, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return done.stdout + done.stderr


def test_every_simpul_command_shown_exists_with_its_options() -> None:
    shown = [line for doc in DOCS for block in sh_blocks(doc) for line in block]
    simpul = [shlex.split(line.replace("<entry>", "1-0"), comments=True) for line in shown]
    simpul = [argv for argv in simpul if argv and argv[0] == "simpul" and argv[1] != "audit"]
    assert len(simpul) >= 15
    for argv in simpul:
        _resolve([a for a in argv if a != "&"])


@pytest.mark.slow
def test_the_adapter_tutorial_and_the_steps_it_prints(clone: Path) -> None:
    start = block_with("docs/writing-an-adapter.md", "simpul adapter new")
    printed = [step for step in plan("dinsos", "sql").next_steps() if step.startswith("python")]
    printed += [step for step in plan("dinsos", "sql").next_steps() if "simpul adapter run" in step]
    synthetic = re.search(
        r"`(python -m adapters\.synthetic [^`]*)`", DOCS["docs/writing-an-adapter.md"]
    )
    assert synthetic is not None
    backfill = synthetic[1].replace("--count 100000", "--count 200")  # the same, smaller
    run_it = block_with("docs/writing-an-adapter.md", "simpul adapter run adapters.dukcapil")
    output = run(clone, [*start, *printed, backfill, *run_it])
    for step in printed:  # the steps run are the ones `simpul adapter new` printed
        assert step in output
    assert "2 passed" in output  # the generated test, against a private Redis
    assert "published 3" in output  # the sample table, on the dev bus
    assert "stopped cleanly: simpul adapter run adapters.dukcapil:from_env" in output


@pytest.mark.slow
def test_the_readme_service_runs_as_shown(clone: Path) -> None:
    (clone / "bansos.py").write_text(python_blocks("README.md")[1])
    output = run(clone, block_with("README.md", "simpul run bansos:service"))
    assert "stopped cleanly: simpul run bansos:service" in output


@pytest.mark.slow
def test_the_service_tutorial_runs_as_shown(clone: Path) -> None:
    (clone / "services" / "bansos").mkdir()
    (clone / "services" / "bansos" / "__init__.py").write_text(
        python_blocks("docs/writing-a-service.md")[0]
    )
    output = run(clone, block_with("docs/writing-a-service.md", "simpul run services.bansos"))
    assert output.count("stopped cleanly: simpul run services.bansos:create") == 2
