"""Sentinel over TLS (bus/sentinel.py): with a ``rediss://`` URL, the client asks the Sentinels
over TLS too, with the same ``SIMPUL_REDIS_TLS_*`` files, and follows a failover.

Everything listens on TLS only (``port 0``) and verifies client certificates against the test
CA (tests/tls_ca.py): a master, a replica replicating over TLS (``tls-replication yes``) and a
Sentinel (quorum 1) that reaches them over TLS too. Started and stopped by pid.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from redis import Redis as SyncRedis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from bus import Publisher
from bus.connection import TRANSIENT, connect
from bus.errors import RedisUnavailable
from bus.local.redis import find_redis_server, free_port
from schemas.dukcapil import CitizenDied
from tests.chaos.producer import died
from tests.helpers.tls_ca import CertificateAuthority, Issued

pytestmark = pytest.mark.slow
SOURCE = "urn:malangkota:dukcapil:siak"
STREAM = CitizenDied.__contract__.stream


@dataclass(frozen=True)
class Tls:
    ca: CertificateAuthority
    server: Issued  # serverAuth, 127.0.0.1: every server and the Sentinel
    node: Issued  # clientAuth: what a replica and the Sentinel show when they connect
    client: Issued  # clientAuth: the bus's client

    def args(self) -> list[str]:
        return [
            "--tls-cert-file",
            str(self.server.cert),
            "--tls-key-file",
            str(self.server.key),
            "--tls-client-cert-file",
            str(self.node.cert),
            "--tls-client-key-file",
            str(self.node.key),
            "--tls-ca-cert-file",
            str(self.ca.cert),
            "--tls-auth-clients",
            "yes",
            "--tls-replication",
            "yes",
        ]

    def client_to(self, port: int) -> SyncRedis:
        return SyncRedis(
            host="127.0.0.1",
            port=port,
            ssl=True,
            ssl_ca_certs=str(self.ca.cert),
            ssl_certfile=str(self.client.cert),
            ssl_keyfile=str(self.client.key),
            socket_timeout=2,
            decode_responses=True,
        )


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        proc.kill()
        proc.wait(10)


def start(procs: list[subprocess.Popen[bytes]], folder: Path, *args: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "stderr.log").open("ab") as stderr, (folder / "redis.log").open("ab") as log:
        procs.append(
            subprocess.Popen(
                [find_redis_server(), *args], stdout=log, stderr=stderr, start_new_session=True
            )
        )


def replica_online(server: SyncRedis) -> bool:
    return bool(server.info("replication").get("slave0", {}).get("state") == "online")


def pairs(args: list[str]) -> list[tuple[str, str]]:
    return list(zip(args[::2], args[1::2], strict=True))


def wait_for(condition: object, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():  # type: ignore[operator]
                return
        except (RedisConnectionError, ResponseError, OSError, TypeError):
            pass  # not up yet, or no answer yet
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


async def test_a_client_asks_the_sentinels_over_tls_and_follows_a_failover(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    ca = CertificateAuthority.create(tmp_path / "ca")
    tls = Tls(
        ca,
        ca.issue("redis", ip="127.0.0.1"),
        ca.issue("node", client=True),
        ca.issue("svc-test", client=True),
    )
    master, replica, sentinel = free_port(), free_port(), free_port()
    server = [
        "--port",
        "0",
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--repl-diskless-sync-delay",
        "0",
    ]
    start(
        processes,
        tmp_path / "master",
        *server,
        "--tls-port",
        str(master),
        *tls.args(),
        "--dir",
        str(tmp_path / "master"),
    )
    start(
        processes,
        tmp_path / "replica",
        *server,
        "--tls-port",
        str(replica),
        *tls.args(),
        "--dir",
        str(tmp_path / "replica"),
        "--replicaof",
        "127.0.0.1",
        str(master),
    )
    await asyncio.sleep(0.3)
    if processes[0].poll() is not None:
        errors = (tmp_path / "master" / "stderr.log").read_text()
        if "tls" in errors.lower():
            pytest.skip("redis-server was built without TLS support (install Debian's)")
        pytest.fail(f"the TLS master exited: {errors[-2000:]}")
    with tls.client_to(master) as m:
        wait_for(lambda: replica_online(m), "the TLS replica in sync")
    conf = tmp_path / "sentinel" / "sentinel.conf"
    conf.parent.mkdir()
    conf.write_text(
        f"port 0\ntls-port {sentinel}\nbind 127.0.0.1\ndir {conf.parent}\n"
        + "".join(f"{name[2:]} {value}\n" for name, value in pairs(tls.args()))
        + f"sentinel monitor simpul 127.0.0.1 {master} 1\n"
        "sentinel down-after-milliseconds simpul 1000\nsentinel failover-timeout simpul 10000\n"
    )
    start(processes, conf.parent, str(conf), "--sentinel")
    with tls.client_to(sentinel) as asked:
        wait_for(lambda: asked.sentinel_master("simpul")["num-slaves"] == 1, "the replica seen")
        monkeypatch.setenv("SIMPUL_REDIS_SENTINELS", f"127.0.0.1:{sentinel}")
        monkeypatch.setenv("SIMPUL_REDIS_TLS_CA", str(ca.cert))
        monkeypatch.setenv("SIMPUL_REDIS_TLS_CERT", str(tls.client.cert))
        monkeypatch.setenv("SIMPUL_REDIS_TLS_KEY", str(tls.client.key))
        redis = connect(f"rediss://127.0.0.1:{master}/0")
        try:
            publisher = Publisher(redis, source=SOURCE, signer=None)
            assert await publisher.replicas.required() == 1
            await publisher.publish(died(1), id="e-1")  # WAIT 1: the TLS replica confirmed
            wait_for(lambda: asked.sentinel_failover("simpul"), "a failover started")
            wait_for(
                lambda: asked.sentinel_get_master_addr_by_name("simpul")[1] == replica,
                "the replica promoted",
            )
            with tls.client_to(replica) as promoted:
                wait_for(
                    lambda: replica_online(promoted),
                    "the old master replicating from the new one over TLS",
                )
                deadline = time.monotonic() + 20
                while True:  # the client finds the new master through the Sentinel, over TLS
                    try:
                        await publisher.publish(died(2), id="e-2")
                        break
                    except (RedisUnavailable, *TRANSIENT) as exc:  # a failover's retryables
                        assert time.monotonic() < deadline, f"no publish after the failover: {exc}"
                        await asyncio.sleep(0.2)
                assert promoted.xlen(STREAM) == 2
        finally:
            await redis.aclose()
