"""``simpul adapter new``: the skeleton it writes is a working, tested adapter."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from redis import Redis as SyncRedis
from typer.testing import CliRunner

from bus.adapter.scaffold import source_available
from bus.cli.app import app

REPO = Path(__file__).resolve().parents[3]
runner = CliRunner()


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty department project; the scaffold writes relative to the working directory."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def new(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["adapter", "new", *args])
    return result.exit_code, result.output


def run_tests(
    project: Path, test_redis_url: str | None, test: str, *, dev_bus: str | None = None
) -> subprocess.CompletedProcess[str]:
    """The generated test, as its developer runs it: pytest in the project, bus importable,
    with SIMPUL_TEST_REDIS_URL (None: unset) and their dev bus in SIMPUL_REDIS_URL."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("REDIS_URL")}
    env["PYTHONPATH"] = f"{project}{os.pathsep}{REPO}"
    if test_redis_url is not None:
        env["SIMPUL_TEST_REDIS_URL"] = test_redis_url
    if dev_bus is not None:
        env["SIMPUL_REDIS_URL"] = dev_bus
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.slow
def test_sql_skeleton_passes_its_generated_test(project: Path, redis_url: str) -> None:
    code, output = new("dinsos", "--kind", "sql")
    assert code == 0, output
    for path in (
        "adapters/__init__.py",
        "adapters/dinsos/__init__.py",
        "adapters/dinsos/fixtures.py",
        "tests/adapters/test_dinsos.py",
    ):
        assert (project / path).is_file()
        assert f"created {path}" in output
    assert "dinsos.assistance.suspended.v1" in output  # a real contract of the department
    assert "simpul adapter run adapters.dinsos:from_env --once" in output

    result = run_tests(project, redis_url, "tests/adapters/test_dinsos.py")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout


@pytest.mark.slow
def test_generated_test_leaves_the_dev_bus_alone(project: Path, redis_url: str) -> None:
    """SIMPUL_REDIS_URL is the developer's dev bus (`simpul redis`): without a separate
    SIMPUL_TEST_REDIS_URL the generated test starts a private Redis instead of flushing it."""
    with SyncRedis.from_url(redis_url) as dev_bus:
        dev_bus.set("their:work", "keep me")
        assert new("dinsos", "--kind", "sql")[0] == 0
        result = run_tests(project, None, "tests/adapters/test_dinsos.py", dev_bus=redis_url)
        assert result.returncode == 0, result.stdout + result.stderr
        assert dev_bus.keys("*") == [b"their:work"]  # no flush, no events, checkpoint, quarantine


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "dept"), [("csv", "bapenda"), ("webhook", "dpmptsp")])
def test_csv_and_webhook_skeletons_pass_their_generated_tests(
    project: Path, redis_url: str, kind: str, dept: str
) -> None:
    if not source_available(kind):
        pytest.fail(f"the {kind} source module is missing: the skeleton cannot be wired")
    code, output = new(dept, "--kind", kind)
    assert code == 0, output

    result = run_tests(project, redis_url, f"tests/adapters/test_{dept}.py")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout


@pytest.mark.slow
def test_department_without_contracts_gets_a_todo(project: Path, redis_url: str) -> None:
    code, output = new("disdik")
    assert code == 0, output
    assert "TODO" in (project / "adapters/disdik/__init__.py").read_text()

    result = run_tests(project, redis_url, "tests/adapters/test_disdik.py")
    assert result.returncode == 1
    assert "NotImplementedError: TODO" in result.stdout


@pytest.mark.parametrize("name", ["Dinsos", "1dinsos", "di-nsos", "x", "class", "bus", "a" * 31])
def test_bad_department_names_are_refused(project: Path, name: str) -> None:
    code, output = new(name)
    assert code == 2
    assert "error:" in output
    assert not (project / "adapters").exists()


def test_unknown_kind_is_refused(project: Path) -> None:
    code, output = new("dinsos", "--kind", "ftp")
    assert code == 2
    assert "--kind must be one of sql, webhook, csv" in output


def test_never_overwrites(project: Path) -> None:
    (project / "adapters" / "dinsos").mkdir(parents=True)
    code, output = new("dinsos")
    assert code == 2
    assert "never overwrites" in output
    assert not (project / "tests").exists()
    assert not list((project / "adapters" / "dinsos").iterdir())

    (project / "adapters" / "dinsos").rmdir()
    assert new("dinsos")[0] == 0
    assert new("dinsos")[0] == 2  # the second time, everything exists


@pytest.mark.slow
def test_the_csv_skeletons_printed_steps_run_as_printed(project: Path, redis_url: str) -> None:
    """(The sql ones run in tests/test_tutorials.py, from the adapter tutorial.)"""
    code, output = new("bapenda", "--kind", "csv")
    assert code == 0, output
    steps = [
        line.split(". ", 1)[1] for line in output.splitlines() if line[:5].strip()[:1].isdigit()
    ]
    commands = [s for s in steps if s.startswith(("python -m adapters", "SIMPUL_"))]
    assert len(commands) == 2, steps
    done = run_in(project, ["bash", "-ec", "\n".join(commands)], project_env(project, redis_url))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "published 3" in done.stderr


@pytest.mark.slow
def test_the_sql_skeleton_reads_a_mysql_table(
    project: Path, redis_url: str, mysql_url: str
) -> None:
    """Most department apps are PHP on MySQL or MariaDB: SIMPUL_<DEPT>_DB=mysql://... is read
    through the MySQL source (it was opened as a SQLite file named by the URL)."""
    assert new("dinsos", "--kind", "sql")[0] == 0
    table = """CREATE TABLE bantuan (no_urut INT AUTO_INCREMENT PRIMARY KEY, legacy_id VARCHAR(20),
        versi INT, grant_no VARCHAR(40), programme VARCHAR(40), recipient VARCHAR(16),
        reason VARCHAR(40), suspended_on DATE, effective_from DATE, updated_at DATETIME(6))"""
    sample = f"""
import pymysql
from urllib.parse import urlsplit
from adapters.dinsos.fixtures import TABLE, rows
url = urlsplit({mysql_url!r})
conn = pymysql.connect(host=url.hostname, port=url.port, user=url.username,
                       database=url.path[1:], autocommit=True)
conn.cursor().execute({table!r}.replace("bantuan", TABLE))
for row in rows(3):
    conn.cursor().execute(f"INSERT INTO {{TABLE}} ({{', '.join(row)}}) VALUES "
                          f"({{', '.join(['%s'] * len(row))}})", list(row.values()))
"""
    env = project_env(project, redis_url) | {"SIMPUL_DINSOS_DB": mysql_url}
    subprocess.run([sys.executable, "-c", sample], cwd=project, env=env, check=True, timeout=60)
    done = run_in(project, ["simpul", "adapter", "run", "adapters.dinsos:from_env", "--once"], env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "published 3" in done.stderr


def project_env(project: Path, redis_url: str) -> dict[str, str]:
    """A shell in the department's project: its adapters and Simpul importable, ``simpul`` on
    PATH, the dev bus at ``redis_url``."""
    bin_dir = Path(sys.executable).parent
    return {
        **os.environ,
        "PYTHONPATH": f"{project}{os.pathsep}{REPO}",
        "SIMPUL_REDIS_URL": redis_url,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
    }


def run_in(
    project: Path, command: list[str], env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, cwd=project, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def _imported(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
        elif isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
    return names


@pytest.mark.slow
def test_skeletons_pass_the_projects_lint(project: Path) -> None:
    """writing-an-adapter.md keeps the package in adapters/, where `make test` lints it: the
    skeletons imported bus internals the import contract forbids adapters, and their tests'
    imports were unsorted, so a fresh skeleton failed `make test`."""
    for dept, kind in (
        ("dinsos", "sql"),
        ("dinkes", "csv"),
        ("dpmptsp", "webhook"),
        ("disdik", "sql"),
    ):
        assert new(dept, "--kind", kind)[0] == 0
    settings = tomllib.loads((REPO / "pyproject.toml").read_text())
    faces = next(
        contract
        for contract in settings["tool"]["importlinter"]["contracts"]
        if contract["name"] == "Adapters, services and the demo import only the public faces"
    )
    for path in (project / "adapters").rglob("*.py"):
        for name in _imported(path):
            forbidden = [f for f in faces["forbidden_modules"] if f"{name}.".startswith(f"{f}.")]
            assert not forbidden, f"{path.relative_to(project)} imports {name}"
    # The repository's settings; inside it, ruff finds adapters, bus and schemas first-party.
    config = ["--config", str(REPO / "pyproject.toml")]
    config += ["--config", "lint.isort.known-first-party = ['adapters', 'bus', 'schemas']"]
    for command in (["check"], ["format", "--check"]):
        done = subprocess.run(
            [sys.executable, "-m", "ruff", *command, *config, "."],
            cwd=project,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
    typed = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(REPO / "pyproject.toml"), "adapters"],
        cwd=project,
        env={**os.environ, "MYPYPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert typed.returncode == 0, typed.stdout + typed.stderr


@pytest.mark.parametrize("activated", [False, True])
def test_printed_steps_say_to_activate_when_simpul_is_not_on_path(
    project: Path, activated: bool
) -> None:
    """Run as .venv/bin/simpul (make install does not activate): `simpul ...` steps would fail."""
    simpul = Path(sys.executable).parent / "simpul"
    path = f"{simpul.parent}{os.pathsep}/usr/bin:/bin" if activated else "/usr/bin:/bin"
    env = {**os.environ, "PATH": path, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [str(simpul), "adapter", "new", "dinsos"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    hint = f"simpul is not on your PATH: run `. {Path(sys.prefix)}/bin/activate` first"
    assert (hint in done.stdout) is not activated, done.stdout
