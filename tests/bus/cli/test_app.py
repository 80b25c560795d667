"""``simpul run`` runs a service (or a factory's) as a FastStream app and stops gracefully on
SIGTERM; plugins add command groups."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import IO

import httpx
import pytest
import typer
from redis import Redis
from typer.testing import CliRunner

from bus import keys
from bus.cli import app as cli_app
from bus.envelope import Envelope, format_time
from bus.local.redis import EmbeddedRedis, free_port
from bus.testing import wait_until
from tests.bus.cli.helpers import cli_env, simpul_process

ROOT = Path(__file__).parents[3]
STREAM = keys.stream("dukcapil.citizen")


def _simpul_logging_to(log: IO[str], *args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    """``simpul`` writing its logs to ``log`` (read while it runs; a pipe would be drained only
    at its end)."""
    return subprocess.Popen(
        [sys.executable, "-m", "bus.cli.app", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
        text=True,
    )


def _env(redis_url: str, **extra: str) -> dict[str, str]:
    env = cli_env(redis_url, SIMPUL_BLOCK_MS="100")
    env.update(extra)
    return env


def _died(event_id: str) -> dict[str, str]:
    data = '{"nik":"3573014506900001","date_of_death":"2026-11-01","kecamatan":"35.73.01"}'
    envelope = Envelope(
        id=event_id,
        source="urn:test",
        type="dukcapil.citizen.died.v1",
        time=format_time(datetime.now(UTC)),
        dataschema="simpul:dukcapil.citizen.died:1.0",
        data=data,
    )
    return envelope.to_fields()


@pytest.mark.slow
def test_run_consumes_and_stops_gracefully_on_sigterm(redis_url: str) -> None:
    client = Redis.from_url(redis_url)
    client.xadd(STREAM, _died("cli-1"))  # type: ignore[arg-type]
    proc = simpul_process("run", "tests.helpers.slow_service:service", env=_env(redis_url))
    try:
        deadline = time.monotonic() + 30
        while client.get("test:slow:started") is None:  # the handler is running now
            assert proc.poll() is None, proc.communicate()[1][-2000:]
            assert time.monotonic() < deadline, "handler never started"
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-2000:]
    assert client.lrange("test:slow:done", 0, -1) == [b"cli-1"]  # finished, not cut short
    assert client.xpending(STREAM, "slow")["pending"] == 0  # and acked before exit
    assert '"event": "consumer_stopped"' in err


def test_run_with_a_bad_target_exits_2_with_a_message(redis_url: str) -> None:
    proc = simpul_process("run", "tests.nowhere:service", env=_env(redis_url))
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert "cannot import 'tests.nowhere'" in err
    assert "Traceback" not in err


def test_run_refuses_to_start_without_redis_url() -> None:
    env = {k: v for k, v in os.environ.items() if k != "SIMPUL_REDIS_URL"}
    proc = simpul_process("run", "tests.helpers.slow_service:service", env=env)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert "set SIMPUL_REDIS_URL" in err


# -- simpul run MODULE:factory, --http, and the plugin command groups -------------------------

FACTORY = """
import os

from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from bus import EventContext, Service
from schemas.dukcapil import CitizenDied

NAME = "factory"


def create() -> Service:
    service = Service(NAME)

    @service.on(CitizenDied)
    async def record(event: CitizenDied, ctx: EventContext) -> None:
        client = Redis.from_url(os.environ["SIMPUL_REDIS_URL"])
        await client.rpush("test:factory:done", ctx.event_id)
        await client.aclose()

    async def hello(request):
        return PlainTextResponse("hello from " + service.name)

    service.mount(Starlette(routes=[Route("/hello", hello)]))
    return service


def answer():
    return 42


def named(name):
    return Service(name)
"""


@pytest.fixture
def factory_env(redis_url: str, tmp_path: Path) -> dict[str, str]:
    """The environment of a `simpul run` that can import ``factory_module`` from tmp_path."""
    (tmp_path / "factory_module.py").write_text(FACTORY)
    path = os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return _env(redis_url, PYTHONPATH=path)


def _stop(proc: subprocess.Popen[str]) -> str:
    """SIGTERM, then the exit: returns stderr; asserts a clean exit."""
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err[-2000:]
    return err


@pytest.mark.slow
async def test_run_builds_the_service_with_a_factory(
    redis_url: str, factory_env: dict[str, str]
) -> None:
    client = Redis.from_url(redis_url)
    client.xadd(STREAM, _died("factory-1"))  # type: ignore[arg-type]
    proc = simpul_process("run", "factory_module:create", env=factory_env)
    try:

        def handled() -> bool:
            assert proc.poll() is None, proc.communicate()[1][-2000:]
            return client.lrange("test:factory:done", 0, -1) == [b"factory-1"]

        await wait_until(handled, timeout=30)
        err = _stop(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert client.xpending(STREAM, "factory")["pending"] == 0
    assert '"group": "factory"' in err
    assert "http_serving" not in err  # no --http, no SIMPUL_HTTP: no server


@pytest.mark.slow
async def test_run_with_http_serves_the_mounted_app(
    redis_url: str, factory_env: dict[str, str]
) -> None:
    factory_env.pop("SIMPUL_HTTP", None)
    base = f"http://127.0.0.1:{free_port()}"
    proc = simpul_process(
        "run", "factory_module:create", "--http", base[len("http://") :], env=factory_env
    )
    try:
        async with httpx.AsyncClient(timeout=5) as client:

            async def answers() -> bool:
                assert proc.poll() is None, proc.communicate()[1][-2000:]
                try:
                    return (await client.get(f"{base}/hello")).text == "hello from factory"
                except httpx.TransportError:
                    return False

            await wait_until(answers, timeout=30)
            assert (await client.get(f"{base}/healthz")).status_code == 200
        err = _stop(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert '"event": "http_serving"' in err
    async with httpx.AsyncClient(timeout=5) as client:
        with pytest.raises(httpx.ConnectError):  # the port closed with the process
            await client.get(f"{base}/hello")


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("factory_module:answer", "factory_module:answer() returned int, not a bus.Service"),
        ("factory_module:named", "factory_module:named must take no arguments"),
        ("bus:Service", "bus:Service is the class Service, not a bus.Service or a function"),
        ("factory_module:NAME", "factory_module:NAME is str, not a bus.Service"),
    ],
)
def test_run_with_something_else_than_a_service_says_so(
    factory_env: dict[str, str], target: str, message: str
) -> None:
    proc = simpul_process("run", target, env=factory_env)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2, err[-2000:]
    assert message in " ".join(err.split())
    assert "Traceback" not in err


plugin_app = typer.Typer(help="A plugin's commands.")


@plugin_app.command()
def hello() -> None:
    """Say hello."""
    typer.echo("hello from the plugin")


def test_a_broken_plugin_does_not_breaksimpul_process(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    plugins = [
        EntryPoint("broken", "tests.nowhere_at_all:app", "simpul.commands"),
        EntryPoint("greet", "tests.bus.cli.test_app:plugin_app", "simpul.commands"),
        # not a Typer: skipped
        EntryPoint("odd", "tests.bus.cli.test_app:FACTORY", "simpul.commands"),
    ]
    asked: list[str] = []

    def entry_points(*, group: str) -> list[EntryPoint]:
        asked.append(group)
        return plugins

    monkeypatch.setattr(cli_app, "entry_points", entry_points)
    monkeypatch.setattr(cli_app.app, "registered_groups", list(cli_app.app.registered_groups))
    monkeypatch.setattr(sys, "argv", ["simpul", "--help"])
    with pytest.raises(SystemExit) as exited:
        cli_app.main()
    assert exited.value.code == 0
    out, err = capsys.readouterr()
    assert asked == ["simpul.commands"]
    assert "simpul broken unavailable: ModuleNotFoundError" in " ".join(err.split())
    assert "Traceback" not in err
    for command in ("run", "contracts", "greet"):
        assert command in out
    assert "odd" not in out

    result = CliRunner().invoke(cli_app.app, ["greet", "hello"])
    assert result.exit_code == 0, result.output
    assert "hello from the plugin" in result.output


@pytest.mark.slow
async def test_run_exits_non_zero_when_its_consumer_dies(private_redis: EmbeddedRedis) -> None:
    """A consumer that dies (its ACL user lost its rights) must end the process, so that its
    supervisor restarts it, instead of leaving a live process that consumes nothing."""
    with Redis.from_url(private_redis.url) as admin:
        admin.execute_command("ACL", "SETUSER", "svc", "on", ">pw", "~*", "&*", "+@all")
        url = private_redis.url.replace("redis://", "redis://svc:pw@", 1)
        proc = simpul_process("run", "tests.helpers.slow_service:service", env=_env(url))
        try:

            def consuming() -> bool:
                assert proc.poll() is None, proc.communicate()[1][-2000:]
                groups = admin.xinfo_groups(STREAM) if admin.exists(STREAM) else []
                return any(g["name"] == b"slow" for g in groups)

            await wait_until(consuming, timeout=30)
            admin.execute_command("ACL", "SETUSER", "svc", "-@all", "+ping", "+auth", "+hello")
            _, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 2, err[-2000:]
    assert '"event": "consumer_crashed"' in err
    assert "Redis refused the command for this user" in err
    assert "Traceback" not in err


@pytest.mark.slow
async def test_run_against_a_wrong_port_keeps_saying_so_and_readyz_says_why(
    tmp_path: Path,
) -> None:
    nowhere = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    base = f"http://127.0.0.1:{free_port()}"
    env = _env(nowhere, SIMPUL_HTTP=base[len("http://") :])
    with (tmp_path / "stderr").open("w+") as err:
        proc = _simpul_logging_to(err, "run", "tests.helpers.slow_service:service", env=env)
        try:
            async with httpx.AsyncClient(timeout=5) as client:

                async def says_why() -> bool:
                    assert proc.poll() is None, (tmp_path / "stderr").read_text()[-2000:]
                    try:
                        answer = await client.get(f"{base}/readyz")
                    except httpx.TransportError:
                        return False
                    why = answer.json()["not_ready_because"] or ""
                    return answer.status_code == 503 and nowhere[len("redis://") : -2] in why

                await wait_until(says_why, timeout=30)

            def warned_again() -> bool:
                return (tmp_path / "stderr").read_text().count('"redis_unavailable"') >= 2

            await wait_until(warned_again, timeout=30)  # the first repeat comes after 2 s
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    lines = (tmp_path / "stderr").read_text().splitlines()
    warnings = [line for line in lines if '"redis_unavailable"' in line]
    assert '"down_for_s"' in warnings[1]
