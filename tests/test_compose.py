"""docker-compose.yml is the real deployment: check it without Docker.

* deploy/redis/users.acl is the render of deploy/topology.yaml with deploy/dev.env (so it
  cannot drift), and every container connects as its own principal of that topology;
* the Redis config and ACL file load in a real redis-server, every compose user can log in with
  its development password, the default user cannot, dangerous commands are refused;
* every adapter and service command of the compose file exists and starts, with the compose
  environment, against that Redis (hostnames pointed at loopback, stores at SQLite), reaches
  its ready state, and stops cleanly on SIGTERM.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from redis import Redis
from redis.exceptions import AuthenticationError, NoPermissionError, ResponseError

from adapters.dukcapil import fixtures as siak
from adapters.dukcapil.schema import ddl
from bus import acl, keys
from bus.embedded import find_redis_server, free_port
from bus.topology import load_topology, password_variable

ROOT = Path(__file__).parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
DEV_ENV = dict(
    line.split("=", 1)
    for line in (ROOT / "deploy/dev.env").read_text().splitlines()
    if line and not line.startswith("#")
)
_VAR = re.compile(r"\$\{([A-Z0-9_]+)\}")


def _interpolate(text: str) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        assert name in DEV_ENV, f"docker-compose.yml uses ${{{name}}}, deploy/dev.env lacks it"
        return DEV_ENV[name]

    return _VAR.sub(value, text)


def _simpul_containers() -> dict[str, dict[str, Any]]:
    return {
        name: spec
        for name, spec in COMPOSE["services"].items()
        if spec.get("image", "").startswith("simpul") or "build" in spec
    }


TOPOLOGY = load_topology(ROOT / "deploy/topology.yaml")


def _users() -> dict[str, str]:
    """ACL user -> development password: every principal of the topology."""
    return acl.passwords(TOPOLOGY, DEV_ENV, source="deploy/dev.env")


def _container_users() -> dict[str, tuple[str, str]]:
    """Container -> (ACL user, password), from the compose Redis URLs."""
    found = {}
    for name, spec in _simpul_containers().items():
        url = _interpolate(spec["environment"]["SIMPUL_REDIS_URL"])
        match = re.match(r"redis://([^:]+):([^@]+)@", url)
        assert match, f"{name} connects as its own ACL user"
        found[name] = (match.group(1), match.group(2))
    return found


# -- the files agree with each other ------------------------------------------------------------


def test_the_committed_acl_file_is_the_render_of_the_topology() -> None:
    rendered = acl.render(TOPOLOGY, _users())
    committed = (ROOT / "deploy/redis/users.acl").read_text()
    assert committed == rendered, (
        "deploy/redis/users.acl is not the render of deploy/topology.yaml: run `simpul acl "
        "render --passwords deploy/dev.env --output deploy/redis/users.acl`"
    )
    assert committed.startswith("user default off ")
    for password in _users().values():  # hashes only
        assert password not in committed
        assert f"#{hashlib.sha256(password.encode()).hexdigest()}" in committed


def test_every_simpul_container_runs_a_simpul_command_as_its_own_user() -> None:
    containers = _simpul_containers()
    assert {"profile", "dinsos", "bapenda", "dinkes", "notifier", "audit"} <= set(containers)
    assert {"adapter-dukcapil", "adapter-dpmptsp", "adapter-bapenda"} <= set(containers)
    for name, spec in containers.items():
        assert spec["command"][0] == "simpul", name
    users = _container_users()
    # One user each, with the password of its variable in deploy/dev.env.
    assert len({user for user, _ in users.values()}) == len(containers)
    passwords = _users()
    for name, (user, password) in users.items():
        assert passwords.get(user) == password, f"{name}: {user} is not a topology principal"
    producers = {p.principal: p for p in TOPOLOGY.producers}
    services = {s.principal: s for s in TOPOLOGY.services}
    for name, (user, _) in users.items():
        command = containers[name]["command"]
        if command[1] == "adapter":
            assert user in producers, f"{name} runs an adapter as {user}, not a producer"
        elif command[1] == "run":  # simpul run services.<name>:create: its group is <name>
            assert user in services, f"{name} runs a service as {user}, not a service principal"
            assert command[2] == f"services.{services[user].group}:create", name
    # The exporter only reads: the read-only operator, never the admin.
    assert users["exporter"][0] == "operator-readonly"
    readonly = {o.principal for o in TOPOLOGY.operators if o.role == "readonly"}
    assert users["exporter"][0] in readonly
    healthcheck = COMPOSE["services"]["redis"]["healthcheck"]["test"]
    assert healthcheck[healthcheck.index("--user") + 1] in readonly
    variable = password_variable(next(o for o in TOPOLOGY.operators if o.role == "readonly"))
    assert healthcheck[healthcheck.index("--pass") + 1] == f"${{{variable}}}"


def test_the_siak_ddl_of_the_compose_database_is_the_adapters_schema() -> None:
    assert (ROOT / "deploy/postgres/siak.ddl").read_text().strip() == ddl("postgresql").strip()


# -- the Redis config loads in a real server --------------------------------------------------


@dataclass
class AclRedis:
    port: int

    def client(self, user: str | None = None, password: str | None = None) -> Redis:
        return Redis(host="127.0.0.1", port=self.port, username=user, password=password)

    def url(self, user: str) -> str:
        return f"redis://{user}:{_users()[user]}@127.0.0.1:{self.port}/0"


@pytest.fixture(scope="module")
def acl_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AclRedis]:
    """redis-server with deploy/redis/redis.conf; only the paths and the port are rewritten."""
    folder = tmp_path_factory.mktemp("compose-redis")
    port = free_port()
    original = (ROOT / "deploy/redis/redis.conf").read_text()
    rewritten = (
        original.replace("dir /data", f"dir {folder}")
        .replace("aclfile /etc/redis/users.acl", f"aclfile {ROOT / 'deploy/redis/users.acl'}")
        .replace("port 6379", f"port {port}")
        .replace("bind 0.0.0.0 -::*", "bind 127.0.0.1")
    )
    changed = [
        a for a, b in zip(original.splitlines(), rewritten.splitlines(), strict=True) if a != b
    ]
    assert len(changed) == 4, (
        "the config's dir, aclfile, port and bind lines moved: update the test"
    )
    (folder / "redis.conf").write_text(rewritten)
    proc = subprocess.Popen(
        [find_redis_server(), str(folder / "redis.conf")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    server = AclRedis(port)
    operator = server.client("operator", DEV_ENV["SIMPUL_REDIS_PASSWORD_OPERATOR"])
    deadline = time.monotonic() + 10
    while True:
        try:
            operator.ping()
            break
        except Exception:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"redis-server refused the compose config:\n{proc.communicate()[0]}")
            time.sleep(0.05)
    try:
        yield server
    finally:
        operator.close()
        proc.terminate()
        proc.wait(timeout=10)


def test_the_compose_redis_config_loads_with_aof_and_acl_users(acl_redis: AclRedis) -> None:
    operator = acl_redis.client("operator", DEV_ENV["SIMPUL_REDIS_PASSWORD_OPERATOR"])
    assert operator.config_get("appendonly") == {"appendonly": "yes"}
    assert operator.config_get("appendfsync") == {"appendfsync": "always"}
    assert operator.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
    # The admin has every command, but Redis 7 keeps its code-running and file-writing ones
    # off by configuration: DEBUG, MODULE, and CONFIG SET of dir, dbfilename and the like.
    for option in ("enable-debug-command", "enable-module-command", "enable-protected-configs"):
        assert operator.config_get(option) == {option: "no"}
    with pytest.raises(ResponseError, match="not allowed"):
        operator.execute_command("DEBUG", "SLEEP", "0")
    with pytest.raises(ResponseError, match="protected config"):
        operator.config_set("dir", "/tmp")
    with pytest.raises((AuthenticationError, ResponseError)):
        acl_redis.client().ping()  # the default user is off
    for user, password in _users().items():
        client = acl_redis.client(user, password)
        assert client.ping(), user
        if user != "operator":
            with pytest.raises(NoPermissionError):
                client.flushall()
            with pytest.raises(NoPermissionError):
                client.set("outside-the-namespace", "1")
        client.close()
    with pytest.raises(AuthenticationError):
        acl_redis.client("svc-profile", "wrong-password").ping()


# -- every command of the compose file starts --------------------------------------------------


@dataclass
class Started:
    name: str
    proc: subprocess.Popen[str]
    http: str | None  # base URL when the container serves HTTP


def _environment(
    name: str, spec: dict[str, Any], redis: AclRedis, folder: Path
) -> tuple[dict[str, str], list[str], str | None]:
    """The compose environment with hosts on loopback and stores on SQLite in ``folder``."""
    env = {k: _interpolate(str(v)) for k, v in spec["environment"].items()}
    user = re.match(r"redis://([^:]+):", env["SIMPUL_REDIS_URL"])
    assert user
    env["SIMPUL_REDIS_URL"] = redis.url(user.group(1))
    for key in [k for k in env if k.endswith("_DB") and k != "SIMPUL_DUKCAPIL_DB"]:
        env[key] = f"sqlite:///{folder / name / 'store.db'}"
    if "SIMPUL_DUKCAPIL_DB" in env:
        db = folder / name / "siak.db"
        db.parent.mkdir(parents=True, exist_ok=True)
        siak.create_sqlite(db, siak.rows(20, seed=7))
        env["SIMPUL_DUKCAPIL_DB"] = str(db)
    if "SIMPUL_BAPENDA_DROP" in env:
        env["SIMPUL_BAPENDA_DROP"] = str(folder / name / "drop")
        for sub in ("incoming", "done", "failed"):
            (folder / name / "drop" / sub).mkdir(parents=True, exist_ok=True)
    if "SIMPUL_SMTP_HOST" in env:
        env["SIMPUL_SMTP_HOST"], env["SIMPUL_SMTP_PORT"] = "127.0.0.1", str(free_port())
    env["SIMPUL_DATA_DIR"] = str(folder / name / "data")
    command = [str(part) for part in spec["command"]]
    http = None
    for variable in ("SIMPUL_HTTP", "SIMPUL_MONITOR_HTTP"):
        if variable in env:
            port = free_port()
            env[variable] = f"127.0.0.1:{port}"
            http = f"http://127.0.0.1:{port}"
    if "--port" in command:
        port = free_port()
        command[command.index("--port") + 1] = str(port)
        command[command.index("--host") + 1] = "127.0.0.1"
        http = f"http://127.0.0.1:{port}"
    env["SIMPUL_BLOCK_MS"] = "200"
    return env, command, http


def _start(name: str, spec: dict[str, Any], redis: AclRedis, folder: Path) -> Started:
    env, command, http = _environment(name, spec, redis, folder)
    simpul = shutil.which("simpul", path=str(Path(sys.executable).parent))
    assert simpul, "the simpul command is installed beside this Python"
    assert command[0] == "simpul"
    logs = open(folder / f"{name}.log", "w")  # noqa: SIM115 - closed when the process ends
    proc = subprocess.Popen(
        [simpul, *command[1:]], cwd=ROOT, env={**os.environ, **env},
        stdout=logs, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    return Started(name, proc, http)


def _ready(started: Started, redis: AclRedis) -> bool:
    assert started.proc.poll() is None, f"{started.name} exited with {started.proc.returncode}"
    if started.http is not None:
        path = "/healthz" if started.name in ("adapter-dpmptsp", "exporter") else "/readyz"
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(started.http + path, timeout=2).status_code == 200
        return False
    operator = redis.client("operator", DEV_ENV["SIMPUL_REDIS_PASSWORD_OPERATOR"])
    with operator:
        if started.name == "adapter-dukcapil":  # its SIAK rows reached the stream
            return int(operator.xlen(keys.stream("dukcapil.citizen"))) > 0
        return True  # the CSV adapter: alive (checked above) and polling an empty folder


@pytest.mark.slow
def test_every_compose_command_starts_against_the_compose_redis_and_stops_cleanly(
    acl_redis: AclRedis, tmp_path: Path
) -> None:
    containers = _simpul_containers()
    started = [_start(name, spec, acl_redis, tmp_path) for name, spec in containers.items()]
    try:
        waiting = list(started)
        deadline = time.monotonic() + 60
        while waiting:
            waiting = [s for s in waiting if not _ready(s, acl_redis)]
            if waiting and time.monotonic() > deadline:
                logs = {s.name: (tmp_path / f"{s.name}.log").read_text()[-1500:] for s in waiting}
                pytest.fail(f"not ready within 60 s: {logs}")
            time.sleep(0.1)
        for s in started:
            s.proc.send_signal(signal.SIGTERM)
        for s in started:
            code = s.proc.wait(timeout=30)
            log = (tmp_path / f"{s.name}.log").read_text()
            assert code == 0, f"{s.name} exited {code} on SIGTERM:\n{log[-2000:]}"
            assert "Traceback" not in log, f"{s.name}:\n{log[-2000:]}"
    finally:
        for s in started:
            if s.proc.poll() is None:
                s.proc.kill()
                s.proc.wait()
