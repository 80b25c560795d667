"""docs/go-live.md: every command of the checklist exists with its options, and the checklist
runs in order against a scratch copy of deploy/ and a private Redis 7 loaded with the city's
ACL file — a new principal rendered, applied, checked, its adapter publishing signed events
into its own intake under its own user, and a router started with the new topology admitting
them onto the department stream."""

from __future__ import annotations

import base64
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer
from redis import Redis as SyncRedis

from bus import keys
from bus.access import acl
from bus.access.topology import contracts, load_topology
from bus.cli.app import app
from bus.signing import verify_fields
from tests.bus.routed import acl_server

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "go-live.md").read_text()
SIMPUL = str(Path(sys.executable).parent / "simpul")
OPERATOR = "redis://operator:dev-operator-kxs37gz6btvm5c3x@127.0.0.1:{port}/0"
STREAM = keys.stream_of("diskominfo.complaint.received.v1")
DEV_ENV = acl.read_env_file(ROOT / "deploy/dev.env")


@dataclass(frozen=True)
class Command:
    line: str
    argv: list[str]
    exit_code: int  # what the checklist says it exits with (a denied check: 1)


def commands() -> list[Command]:
    """The commands of the checklist's sh blocks, in order (continuations joined)."""
    found = []
    for block in re.findall(r"```sh\n(.*?)```", DOC, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip():
                argv = shlex.split(line, comments=True)
                found.append(Command(line, argv, 1 if "exit 1" in line else 0))
    return found


def _resolve(argv: list[str]) -> None:
    """Parse argv as `simpul` would (click raises on an unknown command or option), run nothing."""
    command: Any = typer.main.get_command(app)
    args = argv[1:]
    while hasattr(command, "commands"):  # a group (typer has its own click: not click.Group)
        name, *args = args
        found = command.commands.get(name)
        assert found is not None, f"no command `{name}` in {' '.join(argv)}"
        command = found
    command.make_context(" ".join(argv[:2]), list(args))


def test_every_simpul_command_of_the_checklist_exists_with_its_options() -> None:
    simpul = [c for c in commands() if c.argv[0] == "simpul"]
    assert len(simpul) >= 14
    for command in simpul:
        _resolve(command.argv)


def test_the_checklist_is_linked_from_both_tutorials() -> None:
    for tutorial in ("writing-an-adapter.md", "writing-a-service.md"):
        assert "(go-live.md)" in (ROOT / "docs" / tutorial).read_text(), tutorial


def test_the_service_entry_shown_is_a_valid_topology_entry(tmp_path: Path) -> None:
    """Step 2's services: entry, added to the city's topology, loads (approvals, personal
    fields and group checked as for any other service)."""
    entry = re.findall(r"```yaml\n(.*?)```", DOC, flags=re.S)[1]
    assert "principal: svc-lapor" in entry
    topology = (ROOT / "deploy/topology.yaml").read_text()
    (tmp_path / "topology.yaml").write_text(
        topology.replace("\nservices:\n", f"\nservices:\n{entry}\n", 1)
    )
    loaded = load_topology(tmp_path / "topology.yaml", registry=contracts("schemas"))
    lapor = next(service for service in loaded.services if service.principal == "svc-lapor")
    assert lapor.group == "lapor"
    assert [s.personal for s in lapor.subscriptions] == [["nik"]]


@pytest.fixture
def city_redis(tmp_path: Path) -> Iterator[int]:
    """A Redis 7 with the city's rendered ACL file, as the bus runs before the department; the
    bus's library is left to the checklist (`simpul acl apply` loads it)."""
    folder = tmp_path / "redis"
    folder.mkdir()
    city = [
        "--topology",
        str(ROOT / "deploy/topology.yaml"),
        "--passwords",
        str(ROOT / "deploy/dev.env"),
    ]
    render = [SIMPUL, "acl", "render", *city, "--output", str(folder / "users.acl")]
    subprocess.run(render, check=True, capture_output=True, timeout=60)
    with acl_server(folder / "users.acl", functions=False) as server:
        yield server.port


def _edit_topology(deployment: Path, keys_dir: Path) -> None:
    """Step 2 and 3's hand edit: the doc's producer entry with the new public key."""
    entry = re.findall(r"```yaml\n(.*?)```", DOC, flags=re.S)[0]
    public_key = (keys_dir / "adapter-lapor-2026-12.pub").read_text().strip()
    entry = entry.replace("<public key printed by simpul keys generate>", public_key)
    topology = deployment / "deploy" / "topology.yaml"
    text = topology.read_text()
    topology.write_text(text.replace("\nservices:\n", f"\n{entry}\nservices:\n", 1))


def _adapter_env(deployment: Path, keys_dir: Path, port: int) -> dict[str, str]:
    """Step 6's adapter: generated as in the tutorial, named diskominfo-lapor, over a sample
    table, with the environment of its compose service (its own user, its own key)."""
    new = [SIMPUL, "adapter", "new", "diskominfo", "--kind", "sql"]
    subprocess.run(new, cwd=deployment, check=True, capture_output=True, timeout=60)
    package = deployment / "adapters" / "diskominfo" / "__init__.py"
    package.write_text(package.read_text().replace('"diskominfo-app"', '"diskominfo-lapor"'))
    sample = "from adapters.diskominfo.fixtures import create_sqlite, rows; "
    sample += "create_sqlite('lapor.db', rows(3))"
    subprocess.run([sys.executable, "-c", sample], cwd=deployment, check=True, timeout=60)
    secrets = acl.read_env_file(deployment / "deploy" / "dev.env")  # step 4 wrote its password
    password = secrets["SIMPUL_REDIS_PASSWORD_ADAPTER_LAPOR"]
    return {
        "SIMPUL_REDIS_URL": f"redis://adapter-lapor:{password}@127.0.0.1:{port}/0",
        "SIMPUL_DISKOMINFO_DB": "lapor.db",
        "SIMPUL_SIGNING_KEY_FILE": str(keys_dir / "adapter-lapor-2026-12.key"),
        "SIMPUL_SIGNER": "adapter-lapor-2026-12",
    }


@pytest.mark.slow
def test_the_checklist_runs_in_order(tmp_path: Path, city_redis: int) -> None:
    deployment, keys_dir = tmp_path / "city", tmp_path / "etc-simpul-keys"
    for folder in ("deploy", "docs"):
        shutil.copytree(ROOT / folder, deployment / folder)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIMPUL_")}
    env["PATH"] = f"{Path(SIMPUL).parent}{os.pathsep}{env['PATH']}"
    env["COLUMNS"] = "250"  # rich tables: whole key ids
    for command in commands():
        argv = [arg.replace("/etc/simpul/keys", str(keys_dir)) for arg in command.argv]
        if argv[0] == "export":
            name, _, value = argv[1].partition("=")
            env[name] = value.replace("127.0.0.1:6379", f"127.0.0.1:{city_redis}")
            continue
        run_env = env
        if argv[:3] == ["simpul", "adapter", "run"]:
            run_env = {**env, **_adapter_env(deployment, keys_dir, city_redis)}
        if ">>" in argv:  # a line for the shell (a redirection, a command substitution)
            argv = ["bash", "-c", command.line]
        done = subprocess.run(
            argv,
            cwd=deployment,
            env=run_env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == command.exit_code, f"{command.line}\n{done.stdout}{done.stderr}"
        if argv[:3] == ["simpul", "keys", "generate"]:
            _edit_topology(deployment, keys_dir)
        if argv[:3] == ["simpul", "acl", "check"]:
            assert ("denied" if command.exit_code else "allowed") in done.stdout + done.stderr
        if "--dry-run" in argv:
            assert "+ adapter-lapor: missing on the server" in done.stdout + done.stderr
        if argv[:3] == ["simpul", "keys", "show"]:
            assert "adapter-lapor-2026-12" in done.stdout

    public_key = (keys_dir / "adapter-lapor-2026-12.pub").read_text().strip()
    with SyncRedis.from_url(OPERATOR.format(port=city_redis)) as admin:
        # The sample rows, published under the adapter's own user into its own intake ...
        assert admin.xlen(keys.intake("adapter-lapor")) == 3
        assert not admin.exists(STREAM)
        # ... and admitted onto the department stream by a router started with the new
        # topology (step 5), the adapter's own signature kept.
        router = _router(deployment, env, city_redis)
        try:
            deadline = time.monotonic() + 30
            while admin.xlen(STREAM) < 3:
                assert router.poll() is None, router.communicate()[0]
                assert time.monotonic() < deadline, "the router did not admit the rows"
                time.sleep(0.1)
        finally:
            router.terminate()
            output = router.communicate(timeout=30)[0]
        assert router.returncode == 0, output
        entries = admin.xrange(STREAM)
        assert len(entries) == 3
        assert all(fields[b"signer"] == b"adapter-lapor-2026-12" for _, fields in entries)
        assert all(verify_fields(base64.b64decode(public_key), f) for _, f in entries)
        assert admin.exists(keys.checkpoint("diskominfo-lapor"))
        assert not admin.exists(keys.intake_dead_letters("adapter-lapor"))
    assert "user adapter-lapor on" in (deployment / "deploy/redis/users.acl").read_text()


def _router(deployment: Path, env: dict[str, str], port: int) -> subprocess.Popen[str]:
    """One router replica as compose runs it: its own principal and key, the topology."""
    password = DEV_ENV["SIMPUL_REDIS_PASSWORD_ROUTER"]
    router_env = {
        **env,
        "SIMPUL_REDIS_URL": f"redis://router:{password}@127.0.0.1:{port}/0",
        "SIMPUL_SIGNING_KEY_FILE": str(deployment / "deploy/keys/router-dev-2026.key"),
        "SIMPUL_SIGNER": "router-dev-2026",
        "SIMPUL_INTAKE": "",
    }
    return subprocess.Popen(
        [SIMPUL, "router", "run", "--topology", "deploy/topology.yaml"],
        cwd=deployment,
        env=router_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
