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
serve_in_background() {  # start a long-running command and wait until it logs $1; leave it running
  local event=$1 log deadline=$((SECONDS + 90)); shift; log=$(mktemp)
  eval "exec $*" 2>"$log" &
  served=$!
  until grep -q "$event" "$log"; do
    if ! kill -0 "$served" 2>/dev/null || [ $SECONDS -ge $deadline ]; then
      cat "$log" >&2; return 1
    fi
    sleep 0.1
  done
}
stop_background() {  # SIGTERM, as Ctrl-C in the other shell would; it must exit 0
  kill -TERM "$served"; wait "$served"
}
prints() {  # run a command until it prints $1 (it may take a moment), at most 60 s
  local expected=$1 deadline=$((SECONDS + 60)) out; shift
  until out=$(eval "$*") && [ "$out" = "$expected" ]; do
    if [ $SECONDS -ge $deadline ]; then echo "$* printed: $out" >&2; return 1; fi
    sleep 0.2
  done
  echo "$out"
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
    """The lines as bash runs them, long-running ones bounded, the ports moved. A line
    `# in the background:` before a long-running command leaves it running for the lines after
    it (a second shell, in the docs); a `curl` line with its answer in its comment is repeated
    until it prints that answer."""
    out, background, http_port = [PRELUDE], False, free_port()
    for shown in lines:
        moved = shown.replace("127.0.0.1:6390", f"127.0.0.1:{redis_port}")
        line = moved.replace("127.0.0.1:8081", f"127.0.0.1:{http_port}")
        command, _, comment = (part.strip() for part in line.partition("  #"))
        event = next((e for start, e in LONG_RUNNING.items() if command.startswith(start)), None)
        if line == "# in the background:":
            background = True
        elif event and background:
            out.append(f"serve_in_background {event} {shlex.quote(command)}")
            background = False
        elif event and "--once" not in command:
            out.append(f"serve_until {event} {shlex.quote(command)}")
        elif command.startswith("curl ") and comment.startswith("{"):
            out.append(f"prints {shlex.quote(comment)} {shlex.quote(command)}")
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


@pytest.mark.slow
def test_the_service_handles_a_death_as_shown(clone: Path) -> None:
    """Section 2's second shell: a grant, a death published by hand, the API and the tail."""
    (clone / "services" / "bansos").mkdir()
    (clone / "services" / "bansos" / "__init__.py").write_text(
        python_blocks("docs/writing-a-service.md")[0]
    )
    run_it = block_with("docs/writing-a-service.md", "simpul run services.bansos")
    served = next(line for line in run_it if "--http 127.0.0.1:8081" in line)
    see_it = block_with("docs/writing-a-service.md", "simpul publish dukcapil.citizen.died.v1")
    setup = [line for line in run_it if not line.startswith("simpul run")]
    output = run(clone, [*setup, "# in the background:", served, *see_it, "stop_background"])
    assert '"status":"suspended"' in output
    assert "dinsos.assistance.suspended.v1" in output  # the tail shows what it published


@pytest.mark.slow
def test_a_dead_letter_of_the_service_is_found_and_replayed_as_shown(clone: Path) -> None:
    """Section 3's walk: the handler made to fail for one NIK, the dead letter after
    SIMPUL_MAX_DELIVERIES attempts, the line removed, the operator's list, show and replay."""
    doc = DOCS["docs/writing-a-service.md"]
    module = python_blocks("docs/writing-a-service.md")[0]
    failing = re.search(r"`(if event\.nik == \"(\d{16})\": raise [^`]*)`", doc)
    assert failing is not None
    handler = "async def suspend_grants(event: CitizenDied, ctx: EventContext) -> None:\n"
    (clone / "services" / "bansos").mkdir()
    package = clone / "services" / "bansos" / "__init__.py"
    package.write_text(module.replace(handler, f"{handler}        {failing[1]}\n", 1))
    (clone / "fixed.py").write_text(module)
    run_it = block_with("docs/writing-a-service.md", "simpul run services.bansos")
    served = next(line for line in run_it if "--http 127.0.0.1:8081" in line)
    setup = [line for line in run_it if not line.startswith("simpul run")]
    nik = failing[2]
    see_it = [
        line.replace("3573014506900001", nik).replace("PKH-1", "PKH-2")
        for line in block_with("docs/writing-a-service.md", "simpul publish dukcapil.citizen.died")
    ]
    grant, publish, curl = see_it[0], see_it[1], see_it[2]
    operator = block_with("docs/writing-a-service.md", "simpul dlq replay")
    dead = "simpul dlq list dukcapil.citizen --group bansos --json | python -c "
    dead += '\'import json, sys; print(*[d["id"] for d in json.load(sys.stdin)["dead_letters"]])\''
    lines = [
        *setup,
        "# in the background:",
        served,
        grant,
        publish,
        f'until [ -n "$({dead})" ]; do sleep 0.5; done  # 5 attempts, about 15 s',
        "stop_background",
        "cp fixed.py services/bansos/__init__.py  # the line removed",
        "# in the background:",
        served,
        f"id=$({dead})",
        *[line.replace("<id>", "$id").replace("--id $id", "--id $id --yes") for line in operator],
        curl,
        "stop_background",
    ]
    output = run(clone, lines)
    assert "handler_failed" in output and "grants table locked" in output
    assert "1 replayed" in output
    assert '"grant_no":"PKH-2","programme":"pkh","status":"suspended"' in output
