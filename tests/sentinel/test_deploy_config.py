"""The shipped Sentinel profile's configs (deploy/redis/redis-ha.conf, sentinel.conf) in real
servers: a master alone refuses writes, with a replica it takes them, and a Sentinel started
from sentinel.conf (with the credentials docker-compose.yml gives it) sees that replica and
fails over to it; the old master then rejoins as a replica of the new one. Replication runs as
the redis-replication user and the Sentinel as redis-sentinel, both rendered into users.acl
with only their own commands: no other user is used, and Redis denied them nothing.
Only paths, ports and host names are rewritten, as in tests/test_compose.py."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis
from redis.exceptions import ResponseError

from bus.local.redis import EmbeddedRedis, find_redis_server, free_port
from tests.test_compose import DEV_ENV, ROOT, local_redis_conf

pytestmark = pytest.mark.slow
OPERATOR = ("operator", DEV_ENV["SIMPUL_REDIS_PASSWORD_OPERATOR"])
REPLICATION = ("redis-replication", DEV_ENV["SIMPUL_REDIS_PASSWORD_REDIS_REPLICATION"])
SENTINEL = ("redis-sentinel", DEV_ENV["SIMPUL_REDIS_PASSWORD_REDIS_SENTINEL"])


def server_config(folder: Path, port: int) -> Path:
    folder.mkdir(parents=True)
    base = local_redis_conf(folder, port)
    ha = (ROOT / "deploy/redis/redis-ha.conf").read_text()
    ha = ha.replace("include /etc/redis/redis.conf", f"include {base}")
    (folder / "redis-ha.conf").write_text(ha)
    return folder / "redis-ha.conf"


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        proc.kill()
        proc.wait(10)


def start(procs: list[subprocess.Popen[bytes]], *args: str) -> None:
    procs.append(subprocess.Popen([find_redis_server(), *args], stdout=subprocess.DEVNULL))


def client(port: int) -> Redis:
    return Redis(port=port, username=OPERATOR[0], password=OPERATOR[1], socket_timeout=2)


def wait_for(condition: object, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():  # type: ignore[operator]
                return
        except (OSError, ResponseError, ConnectionError):
            pass
        except Exception as exc:  # redis-py's ConnectionError while the server starts
            if "connect" not in str(exc).lower():
                raise
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_the_shipped_sentinel_profile_refuses_writes_without_a_replica_and_fails_over(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    version = EmbeddedRedis(tmp_path / "probe").version
    if tuple(int(p) for p in version.split(".")[:2]) < (7, 0):
        pytest.skip(
            f"redis-server {version}: the shipped users.acl uses Redis 7 ACL selectors "
            "(the deployment runs redis:7.2)"
        )
    master_port, replica_port, sentinel_port = free_port(), free_port(), free_port()
    start(
        processes,
        str(server_config(tmp_path / "master", master_port)),
        "--masterauth",
        REPLICATION[1],
    )
    with client(master_port) as master:
        wait_for(master.ping, "the master")
        with pytest.raises(ResponseError, match="NOREPLICAS"):
            master.set("simpul:probe", "alone")
        start(
            processes,
            str(server_config(tmp_path / "replica", replica_port)),
            "--replicaof",
            "127.0.0.1",
            str(master_port),
            "--masterauth",
            REPLICATION[1],
        )
        wait_for(lambda: master.set("simpul:probe", "replicated"), "a write with a replica")
    sentinel = (ROOT / "deploy/redis/sentinel.conf").read_text()
    sentinel = sentinel.replace("port 26379", f"port {sentinel_port}\nbind 127.0.0.1")
    sentinel = sentinel.replace(
        "monitor simpul redis 6379 2", f"monitor simpul 127.0.0.1 {master_port} 1"
    )
    (tmp_path / "sentinel.conf").write_text(sentinel + f"dir {tmp_path}\n")
    start(
        processes,
        str(tmp_path / "sentinel.conf"),
        "--sentinel",
        "--sentinel",
        "auth-pass",
        "simpul",
        SENTINEL[1],
    )
    with Redis(port=sentinel_port, decode_responses=True) as asked:
        wait_for(lambda: asked.sentinel_master("simpul")["num-slaves"] == 1, "the replica seen")
        # A replica is a candidate once this Sentinel has its INFO (NOGOODSLAVE before).
        wait_for(lambda: asked.sentinel_failover("simpul"), "a failover started")
        wait_for(
            lambda: int(asked.sentinel_get_master_addr_by_name("simpul")[1]) == replica_port,
            "the replica promoted",
        )
    with client(master_port) as old, client(replica_port) as new:
        wait_for(lambda: following(old, replica_port), "the old master replicating from the new")
        [link] = new.client_list(_type="replica")
        assert link["user"] == REPLICATION[0]
        sentinel_links = [c for c in new.client_list() if c["user"] == SENTINEL[0]]
        assert sentinel_links, "the Sentinel does not watch the new master as redis-sentinel"
        for server in (old, new):
            denied = [
                entry
                for entry in server.acl_log()
                if entry["username"] in (REPLICATION[0], SENTINEL[0])
            ]
            assert denied == [], denied
            assert server.acl_dryrun(REPLICATION[0], "GET", "simpul:probe") != "OK"
            assert server.acl_dryrun(SENTINEL[0], "GET", "simpul:probe") != "OK"


def following(server: Redis, port: int) -> bool:
    info = server.info("replication")
    return bool(info.get("master_port") == port and info.get("master_link_status") == "up")
