"""docker-compose.yml is the real deployment: check it without Docker.

* deploy/redis/users.acl is the render of deploy/topology.yaml with deploy/dev.env (so it
  cannot drift), and every container connects as its own principal of that topology;
* the Redis config and ACL file load in a real redis-server, every compose user can log in with
  its development password, the default user cannot, dangerous commands are refused;
* every adapter and service command of the compose file exists and starts, with the compose
  environment and its mounted files (keys, the topology as keyring), against that Redis
  (hostnames pointed at loopback, stores at SQLite), reaches its ready state, and stops cleanly
  on SIGTERM;
* while they run (two router replicas among them), every event on a department stream is
  signed by the key of the principal that published it, every inbox entry by the router, every
  service verifies it, and a forged or altered event reaches no inbox: the router refuses it.
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
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
import pytest
import yaml
from redis import Redis
from redis.exceptions import AuthenticationError, NoPermissionError, ResponseError

from adapters import disnaker
from adapters.disnaker import fixtures as pencaker
from adapters.disnaker.schema import DDL as PENCAKER_DDL
from adapters.dukcapil import fixtures as siak
from adapters.dukcapil.schema import ddl, insert_sql
from bus import functions, keys
from bus.access import acl
from bus.access.topology import load_topology, password_variable
from bus.local.redis import find_redis_server, free_port
from bus.signing import Signer, verify_fields
from tests.conftest import mysql_connect, mysql_server_url, postgres_server_url

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
    """The long-running ones (not the one-shot "functions" loader)."""
    return {
        name: spec
        for name, spec in COMPOSE["services"].items()
        if (spec.get("image", "").startswith("simpul") or "build" in spec)
        and spec.get("restart") != "no"
    }


def test_the_functions_library_is_loaded_by_the_admin_before_anything_starts(
    acl_redis: AclRedis,
) -> None:
    """Only the admin loads code into Redis: the one-shot "functions" container runs `simpul
    functions load` as an admin, and every adapter and service waits for it to succeed."""
    loader = COMPOSE["services"]["functions"]
    assert loader["command"] == ["simpul", "functions", "load"]
    user = re.match(r"redis://([^:]+):", loader["environment"]["SIMPUL_REDIS_URL"])
    assert user and user.group(1) in {o.principal for o in TOPOLOGY.operators if o.role == "admin"}
    for name, spec in _simpul_containers().items():
        depends = spec.get("depends_on", {})
        assert depends.get("functions") == {"condition": "service_completed_successfully"}, name
    simpul = shutil.which("simpul", path=str(Path(sys.executable).parent))
    assert simpul
    env = {**os.environ, "SIMPUL_REDIS_URL": acl_redis.url(user.group(1))}
    done = subprocess.run(
        [simpul, "functions", "load"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    with acl_redis.client("operator", DEV_ENV["SIMPUL_REDIS_PASSWORD_OPERATOR"]) as operator:
        libraries = operator.function_list()
        assert [dict(zip(x[::2], x[1::2], strict=True))[b"library_name"] for x in libraries] == [
            functions.LIBRARY.encode()
        ]


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
    assert {"adapter-dukcapil", "adapter-dpmptsp", "adapter-bapenda", "adapter-disnaker"} <= set(
        containers
    )
    for name, spec in containers.items():
        assert spec["command"][0] == "simpul", name
    users = _container_users()
    # One user each, with the password of its variable in deploy/dev.env; the router's
    # replicas share the router principal (and run nothing else).
    routers = [name for name, spec in containers.items() if spec["command"][1] == "router"]
    assert len(routers) >= 2, "the router runs replicated"
    assert {users[name][0] for name in routers} == {TOPOLOGY.router.principal}  # type: ignore[union-attr]
    others = [user for name, (user, _) in users.items() if name not in routers]
    assert len(set(others)) == len(others) == len(containers) - len(routers)
    assert TOPOLOGY.router.principal not in others  # type: ignore[union-attr]
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
    # What faces HTTP holds only what it needs: the exporter its own user (no entry reads),
    # never the admin; the Redis health check a user that may only PING.
    roles = {o.principal: o.role for o in TOPOLOGY.operators}
    assert roles[users["exporter"][0]] == "exporter"
    assert roles[users["monitor"][0]] == "monitor"  # the dashboard: reads and replay only
    for name, spec in containers.items():  # nothing facing HTTP runs as the admin
        env, command = spec["environment"], [str(c) for c in spec["command"]]
        if {"SIMPUL_HTTP", "SIMPUL_MONITOR_HTTP"} & set(env) or "--port" in command:
            assert roles.get(users[name][0]) != "admin", f"{name} faces HTTP as the admin"
    healthcheck = COMPOSE["services"]["redis"]["healthcheck"]["test"]
    health = healthcheck[healthcheck.index("--user") + 1]
    assert roles[health] == "health"
    variable = password_variable(next(o for o in TOPOLOGY.operators if o.principal == health))
    assert healthcheck[healthcheck.index("--pass") + 1] == f"${{{variable}}}"


def test_every_container_runs_in_development_mode_from_one_file() -> None:
    """The development keys and passwords are refused without SIMPUL_DEV_MODE=1: compose sets
    it for every Simpul container from deploy/dev-mode.env, which production drops."""
    assert "SIMPUL_DEV_MODE=1" in (ROOT / "deploy/dev-mode.env").read_text().splitlines()
    loader = COMPOSE["services"]["functions"]
    for name, spec in {**_simpul_containers(), "functions": loader}.items():
        assert "deploy/dev-mode.env" in spec["env_file"], name
        assert "SIMPUL_DEV_MODE" not in spec.get("environment", {}), name  # one place only


def test_the_deployment_is_routed_producers_write_intakes_services_read_inboxes() -> None:
    """The shipped topology says `delivery: router` and the compose file follows it: every
    producer writes only its own intake, every service reads only its inboxes, and two router
    replicas run `simpul router run` on the mounted topology (decision 0011)."""
    assert TOPOLOGY.routed and TOPOLOGY.router is not None
    users = _container_users()
    publishers = {p.principal for p in TOPOLOGY.publishers()}
    services = {s.principal for s in TOPOLOGY.services}
    routers = 0
    for name, spec in _simpul_containers().items():
        env, user, command = spec["environment"], users[name][0], spec["command"]
        if command[1] == "router":
            assert command[2:] == ["run", "--topology", "/etc/simpul/topology.yaml"], name
            assert _bind_mounts(spec)["/etc/simpul/topology.yaml"] == ROOT / "deploy/topology.yaml"
            assert "SIMPUL_INTAKE" not in env and "SIMPUL_INBOXES" not in env, name
            routers += 1
            continue
        if user in publishers:
            assert env.get("SIMPUL_INTAKE") == user, f"{name} must write its own intake"
        else:
            assert "SIMPUL_INTAKE" not in env, name
        if user in services:
            assert str(env.get("SIMPUL_INBOXES")).lower() == "true", f"{name} reads its inboxes"
        else:
            assert "SIMPUL_INBOXES" not in env, name
    assert routers == 2


def test_every_publisher_signs_with_its_principals_key_and_every_service_verifies() -> None:
    """Producers sign with their own keys, the router (the only writer of inboxes) with its
    own, and every service's keyring is the topology, which holds the router's key."""
    ring = {key.key_id: key for key in TOPOLOGY.signing_keys()}
    publishers = {p.principal for p in TOPOLOGY.publishers()}
    assert TOPOLOGY.router is not None
    publishers.add(TOPOLOGY.router.principal)
    assert {k.principal for k in ring.values()} == publishers
    users = _container_users()
    signing = verifying = 0
    for name, spec in _simpul_containers().items():
        env, user, mounts = spec["environment"], users[name][0], _bind_mounts(spec)
        if user in publishers:
            key_id = env["SIMPUL_SIGNER"]
            assert ring[key_id].principal == user, f"{name} signs with another principal's key"
            signer = Signer.from_file(mounts[env["SIMPUL_SIGNING_KEY_FILE"]], key_id)
            assert signer.public_key == ring[key_id].public_key, f"{name}: not the topology's key"
            signing += 1
        if spec["command"][1] == "run":  # a service: the topology is its keyring
            assert mounts[env["SIMPUL_KEYRING_FILE"]] == ROOT / "deploy/topology.yaml", name
            assert str(env.get("SIMPUL_REQUIRE_SIGNATURES", "true")).lower() == "true", name
            verifying += 1
    # 4 adapters + 3 publishing services + 2 router replicas; 6 services
    assert (signing, verifying) == (9, 6)


def test_every_published_port_is_on_loopback_and_the_monitor_is_as_its_docs_show() -> None:
    """Nothing of the bus answers other machines unless a reverse proxy is put in front; and
    docs/services/monitor.md's compose snippet (which operators copy) runs as compose does."""
    for name, service in COMPOSE["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (name, port)
    text = (ROOT / "docs/services/monitor.md").read_text()
    snippet = re.search(r"```yaml\n(  monitor:\n.*?)```", text, re.DOTALL)
    assert snippet is not None
    documented = yaml.safe_load(snippet.group(1).replace("<<: *simpul", "simpul: shared"))
    doc, ours = documented["monitor"], COMPOSE["services"]["monitor"]
    for key in ("command", "volumes", "ports"):
        assert doc[key] == ours[key], key
    for variable in ("SIMPUL_REDIS_URL", "SIMPUL_KEYRING_FILE", "SIMPUL_MONITOR_HTTP"):
        assert doc["environment"][variable] == ours["environment"][variable], variable
    assert doc["environment"]["SIMPUL_MONITOR_TOKEN"] == ours["environment"]["SIMPUL_MONITOR_TOKEN"]
    assert doc["healthcheck"]["test"] == COMPOSE["x-ready"]["test"]


def test_the_siak_ddl_of_the_compose_database_is_the_adapters_schema() -> None:
    assert (ROOT / "deploy/postgres/siak.ddl").read_text().strip() == ddl("postgresql").strip()


def test_the_registry_ddl_of_the_compose_mariadb_is_the_adapters_schema() -> None:
    committed = (ROOT / "deploy/mariadb/pencaker.ddl").read_text().strip()
    assert committed == PENCAKER_DDL.strip() + ";"


def test_the_compose_mariadb_writes_the_row_binlog_the_adapter_reads() -> None:
    mariadb = COMPOSE["services"]["mariadb"]
    assert {
        "--log-bin=mariadb-bin",
        "--binlog-format=ROW",
        "--binlog-row-image=FULL",
        "--default-time-zone=+07:00",
    } <= set(mariadb["command"])
    assert disnaker.WIB.utcoffset(None) == timedelta(hours=7)  # what the adapter assumes
    adapter = COMPOSE["services"]["adapter-disnaker"]
    assert "mariadb" in adapter["depends_on"]
    assert "SIMPUL_DISNAKER_POLL" not in adapter["environment"]  # the binlog, not polling
    script = (ROOT / "deploy/mariadb/20-disnaker.sh").read_text()
    assert "GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO 'simpul_disnaker'" in script


def test_the_compose_siak_adapter_reads_the_postgres_log_not_by_polling() -> None:
    postgres = COMPOSE["services"]["postgres"]
    assert "wal_level=logical" in postgres["command"]
    assert postgres["command"][0] == "postgres"  # the image's server, with options
    adapter = COMPOSE["services"]["adapter-dukcapil"]
    assert adapter["environment"]["SIMPUL_DUKCAPIL_CDC"] == "1"
    assert "SIMPUL_DUKCAPIL_OUTBOX" not in adapter["environment"]
    assert adapter["environment"]["SIMPUL_DUKCAPIL_DB"].startswith("postgresql://simpul:")
    assert "postgres" in adapter["depends_on"]


# -- the Redis config loads in a real server --------------------------------------------------


@dataclass
class AclRedis:
    port: int

    def client(self, user: str | None = None, password: str | None = None) -> Redis:
        return Redis(host="127.0.0.1", port=self.port, username=user, password=password)

    def url(self, user: str) -> str:
        return f"redis://{user}:{_users()[user]}@127.0.0.1:{self.port}/0"


def local_redis_conf(folder: Path, port: int) -> Path:
    """deploy/redis/redis.conf written into ``folder`` with only its data folder, ACL file path,
    port and bind address rewritten (loopback, the committed users.acl)."""
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
    return folder / "redis.conf"


@pytest.fixture(scope="module")
def acl_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AclRedis]:
    """redis-server with deploy/redis/redis.conf; only the paths and the port are rewritten."""
    folder = tmp_path_factory.mktemp("compose-redis")
    port = free_port()
    proc = subprocess.Popen(
        [find_redis_server(), str(local_redis_conf(folder, port))],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
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
    functions.load_sync(operator)  # what the compose "functions" container does (tested below)
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
    assert int(operator.config_get("maxmemory")["maxmemory"]) > 0  # a limit, not the host's RAM
    assert operator.config_get("maxmemory-clients") == {"maxmemory-clients": "10%"}
    assert operator.config_get("proto-max-bulk-len") == {"proto-max-bulk-len": str(1 << 20)}
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
    mounts = _bind_mounts(spec)
    for variable, value in env.items():
        if value in mounts:
            env[variable] = str(mounts[value])
    user = re.match(r"redis://([^:]+):", env["SIMPUL_REDIS_URL"])
    assert user
    env["SIMPUL_REDIS_URL"] = redis.url(user.group(1))
    legacy = ("SIMPUL_DUKCAPIL_DB", "SIMPUL_DISNAKER_DB")
    for key in [k for k in env if k.endswith("_DB") and k not in legacy]:
        env[key] = f"sqlite:///{folder / name / 'store.db'}"
    if "SIMPUL_DISNAKER_DB" in env:  # a registry of its own on the tests' MariaDB (binlog ROW)
        env["SIMPUL_DISNAKER_DB"] = _registry(f"compose_{free_port()}")
    if env.get("SIMPUL_DUKCAPIL_CDC") == "1":  # the log: a SIAK database on the tests' server
        env["SIMPUL_DUKCAPIL_DB"] = _siak_database(f"compose_{free_port()}")
    elif "SIMPUL_DUKCAPIL_DB" in env:
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
    command = [str(mounts.get(str(part), part)) for part in spec["command"]]
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


_SIAK_DATABASES: list[str] = []  # dropped, with their replication slots, after the test


def _siak_database(database: str) -> str:
    """A SIAK database of its own (20 rows) on the tests' PostgreSQL (wal_level=logical)."""
    server = postgres_server_url()
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {database}")  # type: ignore[arg-type]
    _SIAK_DATABASES.append(database)
    url = urlunsplit(urlsplit(server)._replace(path=f"/{database}"))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(ddl("postgresql"))  # type: ignore[arg-type]
        params = [siak.as_params(r, "postgresql") for r in siak.rows(20, seed=7)]
        with conn.cursor() as cursor:
            cursor.executemany(insert_sql("postgresql"), params)  # type: ignore[arg-type]
    return url


def _drop_siak_databases() -> None:
    server = postgres_server_url()
    with psycopg.connect(server, autocommit=True) as conn:
        while _SIAK_DATABASES:
            database = _SIAK_DATABASES.pop()
            conn.execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                "WHERE database = %s AND NOT active",
                [database],
            )
            conn.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")  # type: ignore[arg-type]


def _registry(database: str) -> str:
    server = mysql_server_url()
    with mysql_connect(server) as conn, conn.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {database}")
        cursor.execute(f"CREATE DATABASE {database}")
    url = f"{server.rstrip('/')}/{database}"
    pencaker.create(url, pencaker.rows(20, seed=7))
    return url


def _bind_mounts(spec: dict[str, Any]) -> dict[str, Path]:
    """Container path -> the repository file a ``./host:/container[:ro]`` volume mounts there."""
    found = {}
    for volume in spec.get("volumes", []):
        host, _, rest = volume.partition(":")
        if host.startswith("./"):
            source = ROOT / host
            assert source.exists(), f"docker-compose.yml mounts {host}, which does not exist"
            found[rest.split(":")[0]] = source
    return found


def _start(name: str, spec: dict[str, Any], redis: AclRedis, folder: Path) -> Started:
    env, command, http = _environment(name, spec, redis, folder)
    simpul = shutil.which("simpul", path=str(Path(sys.executable).parent))
    assert simpul, "the simpul command is installed beside this Python"
    assert command[0] == "simpul"
    logs = open(folder / f"{name}.log", "w")  # noqa: SIM115 - closed when the process ends
    # As Docker does: the env files, then the environment; not the tests' development mode
    # or SIMPUL_SIGNATURES=off (tests/conftest.py): only what compose itself sets.
    inherited = {
        k: v for k, v in os.environ.items() if k not in ("SIMPUL_DEV_MODE", "SIMPUL_SIGNATURES")
    }
    files: dict[str, str] = {}
    for env_file in spec.get("env_file", []):
        files.update(
            acl.read_env_file(ROOT / env_file.replace("${SIMPUL_REDIS_SHAPE:-single}", "single"))
        )
    proc = subprocess.Popen(
        [simpul, *command[1:]],
        cwd=ROOT,
        env={**inherited, **files, **env},
        stdout=logs,
        stderr=subprocess.STDOUT,
        text=True,
    )
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
        if started.name == "adapter-disnaker":  # the registry's rows, from the binlog
            return int(operator.xlen(keys.stream("disnaker.jobseeker"))) > 0
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
        _check_signed_end_to_end(acl_redis)
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
        _drop_siak_databases()


def _check_signed_end_to_end(redis: AclRedis) -> None:
    """Every event on a department stream is signed by a principal allowed its type and
    verifies, every inbox entry is signed by the router and verifies — but the audit's, which
    may see every field: the producer-signed originals (docs/wire-format.md, 11.2); the router
    and the services took them all. A stolen adapter password cannot reach a department
    stream, and a forged and an altered event written into that adapter's intake are refused by
    the router (unsigned, bad_signature) into the adapter's own dead letters: no inbox gets
    them."""
    ring = {key.key_id: key for key in TOPOLOGY.signing_keys()}
    assert TOPOLOGY.router is not None
    router_keys = {k.id for k in TOPOLOGY.router.keys}
    with redis.client("operator", DEV_ENV["SIMPUL_REDIS_PASSWORD_OPERATOR"]) as operator:
        _wait_until(lambda: _drained(operator), "every group read and acked every entry")
        streams, inboxes = _streams(operator), _inboxes(operator)
        assert keys.stream("dukcapil.citizen") in streams
        assert keys.inbox(keys.stream("dukcapil.citizen"), "dinsos") in inboxes
        for stream in streams:
            for _, fields in operator.xrange(stream):
                key = ring[fields[b"signer"].decode()]
                assert key.key_id not in router_keys, f"{stream}: the producer's own signature"
                assert fields[b"type"].decode() in key.types, f"{stream}: signed by {key.key_id}"
                assert verify_fields(key.public_key, fields), f"{stream}: a signature fails"
        forwarded = originals = 0
        for inbox in inboxes:
            group = keys.inbox_of(inbox)[1]  # type: ignore[index]
            for _, fields in operator.xrange(inbox):
                key = ring[fields[b"signer"].decode()]
                if key.key_id not in router_keys:  # the original, as admitted: the audit's
                    assert group == "audit" and b"origindigest" not in fields, inbox
                    assert fields[b"type"].decode() in key.types, f"{inbox}: {key.key_id}"
                    originals += 1
                assert verify_fields(key.public_key, fields), f"{inbox}: a signature fails"
                forwarded += 1
        assert forwarded > originals > 0
        dead = [
            *operator.scan_iter(match="simpul:{*}:dlq:*"),
            *operator.scan_iter(match="simpul:inbox:{*}:dlq:*"),
            *operator.scan_iter(match="simpul:intake:{*}:dlq"),
        ]
        assert not dead, f"nothing dead-lettered: {dead}"

        citizen = keys.stream("dukcapil.citizen")
        _, fields = operator.xrange(citizen, count=1)[0]
        unsigned = {k: v for k, v in fields.items() if k not in (b"signature", b"signer")}
        forged = {**unsigned, b"id": b"forged-0001"}
        altered = {**fields, b"id": b"altered-0001"}  # the id is signed too

        def added() -> dict[str, int]:  # not XLEN: the router trims what groups acked
            return {
                key: int(operator.xinfo_stream(key)["entries-added"])  # type: ignore[index]
                for key in [citizen, *inboxes]
            }

        before = added()
        stolen = DEV_ENV["SIMPUL_REDIS_PASSWORD_ADAPTER_DUKCAPIL"]  # a stolen adapter password
        with redis.client("adapter-dukcapil", stolen) as adapter:
            with pytest.raises(NoPermissionError):
                adapter.xadd(citizen, forged)  # type: ignore[arg-type]
            intake = keys.intake("adapter-dukcapil")
            adapter.xadd(intake, forged)  # type: ignore[arg-type]
            adapter.xadd(intake, altered)  # type: ignore[arg-type]
        refused = keys.intake_dead_letters("adapter-dukcapil")

        def reasons() -> list[str]:
            return sorted(f[b"dlq.reason"].decode() for _, f in operator.xrange(refused))

        _wait_until(lambda: len(reasons()) == 2, "the router refused both")
        assert reasons() == ["bad_signature", "unsigned"]
        assert added() == before  # nobody got them


def _streams(redis: Redis) -> list[str]:
    found = [k.decode() for k in redis.scan_iter(match="simpul:{*}", _type="stream")]
    return sorted(k for k in found if keys.is_stream(k))


def _inboxes(redis: Redis) -> list[str]:
    found = [k.decode() for k in redis.scan_iter(match="simpul:inbox:{*}", _type="stream")]
    return sorted(k for k in found if keys.is_inbox(k))


def _intakes(redis: Redis) -> list[str]:
    found = [k.decode() for k in redis.scan_iter(match="simpul:intake:{*}", _type="stream")]
    return sorted(k for k in found if keys.intake_owner(k) is not None)


def _drained(redis: Redis) -> bool:
    """The router admitted every intake entry and forwarded every department-stream entry,
    every service read and acked its inboxes."""
    for stream in [*_intakes(redis), *_streams(redis), *_inboxes(redis)]:
        last = redis.xinfo_stream(stream)["last-generated-id"]
        groups = redis.xinfo_groups(stream)
        if not groups:
            return False
        for group in groups:
            if group["last-delivered-id"] != last or group["pending"]:
                return False
    return True


def _wait_until(ready: Any, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout:.0f} s: {what}")
        time.sleep(0.1)
