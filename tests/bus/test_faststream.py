"""FastStream hosts Simpul services: ``faststream run module:app`` (with ``--workers``) runs a
service as ``simpul run`` does; a user's own RedisBroker app hosts a service on its one pool, and
a service's app hosts plain ``@broker.subscriber`` handlers on the service's pool."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from faststream import FastStream
from faststream.redis import RedisBroker, StreamSub
from redis import Redis as SyncRedis

from bus import EventContext, Publisher, Service
from bus.connection import connect
from bus.errors import ConfigurationError
from bus.local.redis import EmbeddedRedis
from bus.testing import quick_settings, wait_until, wait_until_sync
from schemas.dukcapil import CitizenDied

ROOT = Path(__file__).parent.parent.parent
NIK = "3573054107900001"


def _died(day: int = 2) -> CitizenDied:
    return CitizenDied(nik=NIK, date_of_death=date(2026, 11, day), kecamatan="35.73.02")


async def _publish(url: str, *events: CitizenDied) -> list[str]:
    redis = connect(url)
    try:
        publisher = Publisher(redis, source="urn:test")
        return [(await publisher.publish(event)).event_id for event in events]
    finally:
        await redis.aclose()


def _faststream(*args: str, url: str, **extra: str) -> subprocess.Popen[str]:
    env = dict(os.environ, SIMPUL_REDIS_URL=url, SIMPUL_LOG_FORMAT="json", SIMPUL_BLOCK_MS="100")
    env.update(extra)
    return subprocess.Popen(
        [sys.executable, "-m", "faststream", "run", "tests.helpers.faststream_service:app", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def stopped() -> Iterator[list[subprocess.Popen[str]]]:
    """Processes a test started: killed (with their workers) if the test left them running."""
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            for child in _workers(proc.pid):
                os.kill(child, signal.SIGKILL)
            proc.kill()
            proc.communicate()


def _workers(pid: int) -> list[int]:
    """The worker processes ``faststream run --workers`` spawned (not its resource tracker)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except FileNotFoundError:
        return []
    found = []
    for child in map(int, children):
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except FileNotFoundError:
            continue
        if b"spawn_main" in cmdline:
            found.append(child)
    return found


def _stream_names(admin: SyncRedis) -> set[str]:
    return {c["name"] for c in admin.client_list() if c["id"] != str(admin.client_id())}


def _blocked_readers(admin: SyncRedis) -> list[str]:
    """The names of the connections blocked in XREADGROUP right now, and only if every other
    connection (but ``admin``'s) has one of those names too."""
    clients = [c for c in admin.client_list() if c["id"] != str(admin.client_id())]
    blocked = sorted(c["name"] for c in clients if c["cmd"] == "xreadgroup")
    return blocked if {c["name"] for c in clients} <= set(blocked) else []


@pytest.mark.slow
async def test_faststream_run_handles_events_and_drains_on_sigterm(
    redis_url: str, stopped: list[subprocess.Popen[str]]
) -> None:
    admin = SyncRedis.from_url(redis_url)
    (event_id,) = await _publish(redis_url, _died())
    proc = _faststream(url=redis_url, FSRUN_HANDLER_S="1")
    stopped.append(proc)

    def started() -> bool:
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        return admin.get("test:fsrun:started") == event_id.encode()

    wait_until_sync(started, timeout=30)
    # One pool: every connection of the app carries the service's client name, also the one
    # FastStream's own subscriber blocks on.
    assert _stream_names(admin) == {"simpul:fsrun"}
    proc.send_signal(signal.SIGTERM)  # while the handler sleeps
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err[-2000:]
    assert [d.split(b":")[0] for d in admin.lrange("test:fsrun:done", 0, -1)] == [event_id.encode()]
    assert admin.xpending("simpul:{dukcapil.citizen}", "fsrun")["pending"] == 0
    assert '"event": "consumer_stopped"' in err
    admin.close()


@pytest.mark.slow
async def test_faststream_run_hosts_a_plain_subscriber_beside_the_service(
    redis_url: str, stopped: list[subprocess.Popen[str]]
) -> None:
    admin = SyncRedis.from_url(redis_url)
    proc = _faststream(url=redis_url)
    stopped.append(proc)

    def subscribed() -> bool:
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        groups = admin.xinfo_groups("test:fsrun:plain") if admin.exists("test:fsrun:plain") else []
        return any(g["name"] == b"plain" for g in groups)

    wait_until_sync(subscribed, timeout=30)
    broker = RedisBroker(redis_url)
    async with broker:
        await broker.publish({"n": "7"}, stream="test:fsrun:plain")
    await _publish(redis_url, _died())
    wait_until_sync(lambda: admin.llen("test:fsrun:done") == 1, timeout=30)
    assert admin.lrange("test:fsrun:plain:done", 0, -1) == [b"7"]
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err[-2000:]
    admin.close()


@pytest.mark.slow
async def test_faststream_run_workers_share_the_group_and_a_killed_worker_is_restarted(
    redis_url: str, stopped: list[subprocess.Popen[str]]
) -> None:
    admin = SyncRedis.from_url(redis_url)
    proc = _faststream("--workers", "2", url=redis_url)
    stopped.append(proc)

    def consumers() -> set[bytes]:
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        if not admin.exists("simpul:{dukcapil.citizen}"):
            return set()
        groups = {g["name"] for g in admin.xinfo_groups("simpul:{dukcapil.citizen}")}
        if b"fsrun" not in groups:
            return set()
        return {c["name"] for c in admin.xinfo_consumers("simpul:{dukcapil.citizen}", "fsrun")}

    wait_until_sync(lambda: len(_workers(proc.pid)) == 2 and len(consumers()) == 2, timeout=60)
    first = set(_workers(proc.pid))
    victim = sorted(first)[0]
    os.kill(victim, signal.SIGKILL)  # as the OOM killer would
    # One listing per check: two listings could see 2 workers (the victim not yet reaped), then
    # 1 (reaped, its replacement not yet spawned), and pass with no replacement to find.
    wait_until_sync(lambda: len(set(_workers(proc.pid)) - first) == 1, timeout=30)
    replacement = (set(_workers(proc.pid)) - first).pop()
    wait_until_sync(
        lambda: any(name.endswith(f"-{replacement}".encode()) for name in consumers()), timeout=60
    )
    ids = await _publish(redis_url, *(_died(day) for day in range(1, 21)))
    wait_until_sync(lambda: admin.llen("test:fsrun:done") == len(ids), timeout=30)
    done = [d.decode().split(":") for d in admin.lrange("test:fsrun:done", 0, -1)]
    assert sorted(event for event, _ in done) == sorted(ids)
    assert {int(pid) for _, pid in done} <= set(_workers(proc.pid))
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-2000:]
    assert err.count('"event": "consumer_stopped"') == 2  # both workers drained
    admin.close()


@pytest.mark.slow
def test_faststream_run_exits_non_zero_when_its_consumer_dies(
    private_redis: EmbeddedRedis, stopped: list[subprocess.Popen[str]]
) -> None:
    admin = SyncRedis.from_url(private_redis.url)
    admin.execute_command("ACL", "SETUSER", "svc", "on", ">pw", "~*", "&*", "+@all")
    url = private_redis.url.replace("redis://", "redis://svc:pw@", 1)
    proc = _faststream(url=url)
    stopped.append(proc)

    def consuming() -> bool:
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        stream = "simpul:{dukcapil.citizen}"
        return admin.exists(stream) > 0 and any(
            g["name"] == b"fsrun" for g in admin.xinfo_groups(stream)
        )

    wait_until_sync(consuming, timeout=30)
    started = time.monotonic()
    admin.execute_command("ACL", "SETUSER", "svc", "-@all", "+ping", "+auth", "+hello")
    _, err = proc.communicate(timeout=30)
    assert proc.returncode != 0, err[-2000:]
    assert time.monotonic() - started < 20
    assert '"event": "consumer_crashed"' in err
    assert "PermissionDenied" in err  # the translated error FastStream's CLI reports
    admin.close()


async def test_a_users_broker_hosts_a_service_on_its_one_pool(redis_url: str) -> None:
    broker = RedisBroker(redis_url, client_name="user-app")
    app = FastStream(broker, logger=None)
    plain: list[str] = []
    handled: list[str] = []

    @broker.subscriber(stream=StreamSub("test:user:plain", group="g", consumer="c"))
    async def on_plain(body: dict[str, str]) -> None:
        plain.append(body["n"])

    service = Service("hosted", settings=quick_settings(redis_url))

    @service.on(CitizenDied)
    async def on_died(event: CitizenDied, ctx: EventContext) -> None:
        handled.append(ctx.event_id)

    service.attach(app)
    admin = SyncRedis.from_url(redis_url)
    async with app:
        ids = await _publish(redis_url, _died(1), _died(2))
        await broker.publish({"n": "1"}, stream="test:user:plain")
        await wait_until(lambda: handled == ids and plain == ["1"], timeout=10)
        # The service's consumer holds no pool of its own: every connection is the broker's,
        # and both readers (the user's subscriber, the service's consumer) block on one of
        # them. Waited for: a reader is between two reads for a moment after each event, and
        # the publishing client's connection is gone only once the server has seen it close.
        await wait_until(lambda: _blocked_readers(admin) == ["user-app", "user-app"], timeout=10)
        assert _stream_names(admin) == {"user-app"}
    assert admin.xpending("simpul:{dukcapil.citizen}", "hosted")["pending"] == 0
    await wait_until(lambda: _stream_names(admin) == set(), timeout=10)  # all closed with it
    admin.close()


async def test_a_service_app_consumes_with_its_brokers_client(redis_url: str) -> None:
    service = Service("owner", settings=quick_settings(redis_url))
    handled: list[str] = []

    @service.on(CitizenDied)
    async def on_died(event: CitizenDied, ctx: EventContext) -> None:
        handled.append(ctx.event_id)

    app = service.app()
    assert isinstance(app.broker, RedisBroker)
    admin = SyncRedis.from_url(redis_url)
    async with app:
        client = await app.broker.connect()
        ids = await _publish(redis_url, _died())
        await wait_until(lambda: handled == ids, timeout=10)
        await wait_until(lambda: _stream_names(admin) == {"simpul:owner"}, timeout=10)
        assert await client.client_getname() == "simpul:owner"
    admin.close()


async def test_a_shared_client_that_would_time_out_a_blocking_read_is_refused(
    redis_url: str,
) -> None:
    broker = RedisBroker(redis_url, socket_timeout=0.05)
    app = FastStream(broker, logger=None)
    service = Service("impatient", settings=quick_settings(redis_url, block_ms=2_000))

    @service.on(CitizenDied)
    async def on_died(event: CitizenDied) -> None:
        pass

    service.attach(app)
    with pytest.raises(
        ConfigurationError, match=r"socket_timeout \(0.05 s\) must exceed SIMPUL_BLOCK_MS"
    ):
        async with app:
            await asyncio.sleep(0)
    await broker.stop()


def test_only_a_redis_broker_hosts_a_service() -> None:
    service = Service("wrong")
    with pytest.raises(ConfigurationError, match="by a FastStream RedisBroker, not NoneType"):
        service.attach(FastStream())
