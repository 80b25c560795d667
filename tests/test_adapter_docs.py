"""The commands docs/adapters/mysql.md, disnaker.md, cdc.md, webhook.md and csv.md name exist
with the options they show, and the benchmark they tell readers to try runs
(tests/test_tutorials.py runs the tutorials' shell blocks; these pages' blocks need a
department's database or application, so they are checked, not run). A page that names a command
gone or renamed fails here."""

from __future__ import annotations

import importlib.util
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer

from bus.cli.app import app

ROOT = Path(__file__).resolve().parents[1]
PAGES = (
    "docs/adapters/mysql.md",
    "docs/adapters/disnaker.md",
    "docs/adapters/cdc.md",
    "docs/adapters/webhook.md",
    "docs/adapters/csv.md",
)


def commands(page: str) -> list[list[str]]:
    """Every `simpul ...` and `python -m ...` of the page's shell blocks and inline code."""
    text = (ROOT / page).read_text(encoding="utf-8")
    lines = [
        line
        for block in re.findall(r"```(?:sh|bash)\n(.*?)```", text, flags=re.S)
        for line in block.splitlines()
    ]
    lines += re.findall(r"`((?:simpul|python -m) [^`]*)`", text)
    found = []
    for line in lines:
        argv = shlex.split(re.sub(r"<[^>]*>", "x", line), comments=True)
        while argv and re.fullmatch(r"[A-Z_]+=\S*", argv[0]):  # VAR=value before the command
            argv = argv[1:]
        if argv[:1] == ["simpul"] or argv[:2] == ["python", "-m"]:
            found.append([a for a in argv if a != "&"])
    return found


def options(argv: list[str]) -> list[str]:
    return [a.split("=", 1)[0] for a in argv if a.startswith("--")]


def simpul_command(argv: list[str]) -> Any:
    """The click command argv names (AssertionError if there is none); nothing is run. Typer
    brings its own copy of click, so a group is told by its ``commands``, not by isinstance."""
    command: Any = typer.main.get_command(app)
    args = argv[1:]
    while hasattr(command, "commands") and args and not args[0].startswith("-"):
        name, *args = args
        found = command.commands.get(name)
        assert found is not None, f"no command `{name}` in {' '.join(argv)}"
        command = found
    assert not hasattr(command, "commands"), f"{' '.join(argv)} names a group, no command"
    return command


@pytest.mark.parametrize("page", PAGES)
def test_every_simpul_command_a_page_names_exists_with_its_options(page: str) -> None:
    named = [argv for argv in commands(page) if argv[0] == "simpul"]
    assert named, page
    for argv in named:
        known = {o for p in simpul_command(argv).params for o in p.opts if o.startswith("--")}
        unknown = set(options(argv)) - known
        assert not unknown, f"{page}: {' '.join(argv)}: no option {sorted(unknown)}"


@pytest.mark.parametrize("page", PAGES)
def test_every_python_module_a_page_names_exists_with_its_options(page: str) -> None:
    for argv in (a for a in commands(page) if a[0] == "python"):
        module = argv[2]
        assert importlib.util.find_spec(module) is not None, f"{page}: no module {module}"
        shown = subprocess.run(
            [sys.executable, "-m", module, "--help"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert shown.returncode == 0, f"{page}: python -m {module} --help: {shown.stderr[-500:]}"
        for option in options(argv):
            assert option in shown.stdout, f"{page}: python -m {module} has no {option}"


def test_the_polling_hole_benchmark_runs_and_the_binlog_misses_nothing() -> None:
    """mysql.md's `python -m bench.polling_hole`, with fewer writers: it crashed unnoticed once
    (an adapter keyword renamed), so it is run here."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.polling_hole", "--writers", "2", "--per-writer", "10"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = re.findall(
        r"^(.+?): (\d+) committed row versions, (\d+) never published", done.stdout, flags=re.M
    )
    assert [label for label, _, _ in results] == [
        "polling, settle 0",
        "polling, settle 5 s",
        "binlog",
    ]
    assert len({versions for _, versions, _ in results}) == 1  # the same table, three readers
    assert int(results[0][1]) > 20  # 20 rows inserted, some updated
    assert results[-1][2] == "0"  # the binlog misses nothing
