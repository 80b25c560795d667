"""No development trust anchor in production (docs/security.md).

The private keys of deploy/keys and the passwords of deploy/dev.env are public: without
SIMPUL_DEV_MODE=1 every Redis connection refuses a development password, a producer refuses a
development signing key, a service refuses a keyring that trusts one, every HTTP surface refuses
a development bearer token; a service without a keyring refuses to start unless
SIMPUL_SIGNATURES=off, which it logs at every start. The tests
run in development mode (tests/conftest.py); each test here takes it away for itself.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from redis import Redis as SyncRedis
from redis.asyncio import Redis
from typer.testing import CliRunner

from adapters import dpmptsp
from bus import Service, Store, keys
from bus.access.acl import read_env_file
from bus.cli.app import app
from bus.connection import connect
from bus.devmaterial import DEV_PUBLIC_KEYS, DEV_SECRET_DIGESTS
from bus.errors import ConfigurationError
from bus.settings import Settings
from bus.signing import KeyRing, Signer
from bus.testing import capture_logs, quick_settings
from schemas.dukcapil import CitizenDied
from services.monitor import Monitor, MonitorSettings
from services.notifier import Notifier, SmtpSettings
from services.profile.policy import Policy, Tokens

ROOT = Path(__file__).resolve().parents[2]
DEV_ENV = read_env_file(ROOT / "deploy/dev.env")
runner = CliRunner()


@pytest.fixture
def production(monkeypatch: pytest.MonkeyPatch) -> None:
    """Neither development mode nor signatures off: the defaults of a real deployment."""
    monkeypatch.delenv("SIMPUL_DEV_MODE", raising=False)
    monkeypatch.delenv("SIMPUL_SIGNATURES", raising=False)


def test_the_lists_are_exactly_the_development_material_of_deploy() -> None:
    files = sorted((ROOT / "deploy/keys").glob("*.key"))
    assert files
    public = {Signer.from_file(f).key_id: Signer.from_file(f).public_key for f in files}
    example = Signer("example", bytes(range(32))).public_key  # docs/wire-format.md 10.5
    listed = {k: base64.b64decode(v) for k, v in DEV_PUBLIC_KEYS.items()}
    assert set(listed.values()) == {*public.values(), example}
    for key_id, key in public.items():
        assert listed[key_id] == key
    profile = [e.partition("=")[2] for e in DEV_ENV["SIMPUL_PROFILE_TOKENS"].split(",")]
    secrets = [*DEV_ENV.values(), *profile]
    assert {hashlib.sha256(v.encode()).hexdigest() for v in secrets} == set(DEV_SECRET_DIGESTS)
    module = (ROOT / "bus/devmaterial.py").read_text()
    for value in DEV_ENV.values():  # digests only, never the secrets themselves
        assert value not in module


@pytest.mark.usefixtures("production")
async def test_a_development_redis_password_is_refused_outside_development_mode(
    redis: Redis, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    password = DEV_ENV["SIMPUL_REDIS_PASSWORD_SVC_DINSOS"]
    await redis.acl_setuser(
        "svc-dinsos", enabled=True, passwords=[f"+{password}"], commands=["+ping"]
    )
    url = redis_url.replace("redis://", f"redis://svc-dinsos:{password}@", 1)
    with pytest.raises(ConfigurationError, match=r"development password of deploy/dev.env") as e:
        connect(url)
    assert password not in str(e.value)
    monkeypatch.setenv("SIMPUL_DEV_MODE", "1")
    client = connect(url)
    try:
        assert await client.ping()
    finally:
        await client.aclose()
        await redis.acl_deluser("svc-dinsos")


@pytest.mark.usefixtures("production")
def test_a_development_signing_key_is_refused_outside_development_mode(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    key = ROOT / "deploy/keys/adapter-dukcapil-dev-2026.key"
    settings = Settings.load(signing_key_file=str(key))
    with pytest.raises(ConfigurationError, match=r"development key\(s\) adapter-dukcapil-dev"):
        Signer.from_settings(settings)
    monkeypatch.setenv("SIMPUL_SIGNING_KEY_FILE", str(key))
    with pytest.raises(ConfigurationError, match="SIMPUL_DEV_MODE=1"):
        Signer.from_environment()
    own = Signer.generate("dukcapil-siak-own")  # a key of one's own is fine
    own.write(tmp_path / "own.key")
    assert Signer.from_settings(Settings.load(signing_key_file=str(tmp_path / "own.key")))
    monkeypatch.setenv("SIMPUL_DEV_MODE", "1")
    assert Signer.from_environment() is not None


async def _handle(event: CitizenDied) -> None:
    return None


def _service(settings: Settings, keyring: KeyRing | None = None) -> Service:
    service = Service("dinsos", settings=settings, keyring=keyring)
    service.on(CitizenDied)(_handle)
    return service


@pytest.mark.usefixtures("production")
async def test_a_service_refuses_a_keyring_that_trusts_development_keys(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = quick_settings(redis_url, keyring_file=str(ROOT / "deploy/topology.yaml"))
    with pytest.raises(ConfigurationError, match=r"deploy/topology.yaml holds development key"):
        async with _service(settings).running():
            pass
    monkeypatch.setenv("SIMPUL_DEV_MODE", "1")
    async with _service(settings).running():
        pass


@pytest.mark.usefixtures("production")
async def test_a_service_without_a_keyring_starts_only_with_signatures_off_and_says_so(
    redis: Redis, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigurationError, match=r"no keyring.*SIMPUL_SIGNATURES=off"):
        async with _service(quick_settings(redis_url)).running():
            pass
    assert not await redis.exists(keys.stream("dukcapil.citizen"))  # not even a group made
    monkeypatch.setenv("SIMPUL_SIGNATURES", "off")
    with capture_logs() as logs:
        async with _service(quick_settings(redis_url)).running():
            pass
    [warning] = [e for e in logs if e["event"] == "signatures_off"]
    assert warning["log_level"] == "warning"
    assert "NOT verified" in warning["warning"]
    # An empty keyring is a keyring: it trusts nothing, and the service may run.
    monkeypatch.delenv("SIMPUL_SIGNATURES")
    async with _service(quick_settings(redis_url), KeyRing([])).running():
        pass


@pytest.mark.usefixtures("production")
def test_a_monitor_that_may_replay_refuses_a_keyring_that_trusts_development_keys(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SIMPUL_KEYRING_FILE", str(ROOT / "deploy/topology.yaml"))
    redis = Redis()  # never used: the monitor refuses before any command
    replaying = MonitorSettings(token="t" * 32)
    with pytest.raises(ConfigurationError, match=r"deploy/topology.yaml holds development key"):
        Monitor(redis, settings=replaying)
    Monitor(redis, settings=MonitorSettings())  # no replay, no keyring needed
    monkeypatch.setenv("SIMPUL_DEV_MODE", "1")
    Monitor(redis, settings=replaying)


def test_keys_show_flags_development_keys() -> None:
    shown = runner.invoke(
        app, ["keys", "show", "--keyring", str(ROOT / "deploy/topology.yaml"), "--json"]
    )
    assert shown.exit_code == 0, shown.output
    facts = {k["key_id"]: k["development"] for k in json.loads(shown.stdout)}
    assert facts and all(facts.values())
    table = runner.invoke(app, ["keys", "show", "--keyring", str(ROOT / "deploy/topology.yaml")])
    assert "DEVELOPMENT" in table.output
    for key_id in facts:  # whole on an 80-column terminal: go-live.md reads them off the table
        assert key_id in table.stdout, key_id
    one = runner.invoke(app, ["keys", "show", str(ROOT / "deploy/keys/svc-dinsos-dev-2026.key")])
    assert "DEVELOPMENT key(s)" in one.output


def test_acl_check_flags_a_development_password(redis_url: str) -> None:
    password = DEV_ENV["SIMPUL_REDIS_PASSWORD_SVC_DINKES"]
    with SyncRedis.from_url(redis_url) as admin:
        admin.acl_setuser(
            "svc-dinkes", enabled=True, passwords=[f"+{password}"], commands=["+ping"]
        )
        try:
            done = runner.invoke(
                app, ["acl", "check", "--redis-url", redis_url, "svc-dinkes", "ping"]
            )
            assert done.exit_code == 0, done.output
            assert "DEVELOPMENT password of deploy/dev.env" in done.output
            admin.acl_setuser(
                "svc-dinkes", reset_passwords=True, passwords=["+a-password-of-its-own-1234"]
            )
            done = runner.invoke(
                app, ["acl", "check", "--redis-url", redis_url, "svc-dinkes", "ping"]
            )
            assert done.exit_code == 0, done.output
            assert "DEVELOPMENT" not in done.output
        finally:
            admin.acl_deluser("svc-dinkes")


@pytest.mark.usefixtures("production")
def test_every_http_surface_refuses_a_development_token_outside_development_mode(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    redis = Redis()  # never used: each refuses before any command
    store = Store(f"sqlite:///{tmp_path / 'notifier.db'}")
    monitor = DEV_ENV["SIMPUL_MONITOR_TOKEN"]
    profile = DEV_ENV["SIMPUL_PROFILE_TOKENS"]
    builds: list[tuple[str, Callable[[], object]]] = [
        ("SIMPUL_MONITOR_TOKEN", lambda: Monitor(redis, settings=MonitorSettings(token=monitor))),
        (
            "the token of webhook dpmptsp",
            lambda: dpmptsp.webhook(redis, token=DEV_ENV["SIMPUL_DPMPTSP_TOKEN"], signer=None),
        ),
        (
            "SIMPUL_NOTIFIER_TOKEN",
            lambda: Notifier(store, smtp=SmtpSettings(), token=DEV_ENV["SIMPUL_NOTIFIER_TOKEN"]),
        ),
        ("SIMPUL_PROFILE_TOKENS entry 1", lambda: Tokens.parse(Policy.load(), profile)),
    ]
    for what, build in builds:
        with pytest.raises(ConfigurationError, match=r"development token of deploy/dev\.env") as e:
            build()
        assert what in str(e.value), e.value
        assert all(secret not in str(e.value) for secret in DEV_ENV.values() if secret)
    # Tokens of one's own are fine; so are the development ones in development mode.
    own = "a-token-of-our-own-" + "x" * 16
    assert Monitor(redis, settings=MonitorSettings(token=own, services="")).token
    assert len(Tokens.parse(Policy.load(), f"dinsos={own}")) == 1
    monkeypatch.setenv("SIMPUL_DEV_MODE", "1")
    for _, build in builds:
        build()
