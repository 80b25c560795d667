"""TLS to Redis with client certificates (mutual TLS), against a real TLS-only redis-server.

One server per module: it listens on TLS only (``--port 0``), verifies clients against the test
CA (``--tls-auth-clients yes``) and is stopped by pid at the end. The certificates are made in
the test with the ``openssl`` command line (tests/helpers/tls_ca.py).
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bus import EventContext, Publisher, Service, functions
from bus.cli.app import app
from bus.connection import RedisTLS, TLSConnectionError, connect, translate
from bus.errors import ConfigurationError, RedisUnavailable
from bus.local.redis import find_redis_server, free_port
from bus.settings import Settings
from bus.testing import quick_settings, wait_until
from schemas.dukcapil import CitizenDied
from tests.bus.delivery.helpers import SOURCE, died
from tests.helpers.tls_ca import CertificateAuthority, Issued, encrypted_key

CA_VAR, CERT_VAR, KEY_VAR = "SIMPUL_REDIS_TLS_CA", "SIMPUL_REDIS_TLS_CERT", "SIMPUL_REDIS_TLS_KEY"


@dataclass(frozen=True)
class TLSRedis:
    url: str  # rediss://127.0.0.1:<tls port>/0
    ca: CertificateAuthority  # signed the server's and the client's certificates
    client: Issued
    other_ca: CertificateAuthority  # signed nothing the server knows
    foreign_client: Issued  # a client certificate of other_ca
    pid: int

    @property
    def tls(self) -> RedisTLS:
        return RedisTLS(ca=str(self.ca.cert), cert=str(self.client.cert), key=str(self.client.key))


def _pong(port: int, ca: CertificateAuthority, client: Issued) -> bool:
    context = ssl.create_default_context(cafile=str(ca.cert))
    context.load_cert_chain(str(client.cert), str(client.key))
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=0.5) as raw,
            context.wrap_socket(raw, server_hostname="127.0.0.1") as sock,
        ):
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return sock.recv(7) == b"+PONG\r\n"
    except OSError:
        return False


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TLSRedis]:
    base = tmp_path_factory.mktemp("tls")
    ca = CertificateAuthority.create(base / "ca")
    server = ca.issue("redis", ip="127.0.0.1")
    client = ca.issue("svc-test", client=True)
    other = CertificateAuthority.create(base / "other", name="Someone Else's CA")
    foreign = other.issue("intruder", client=True)
    binary, log = find_redis_server(), base / "redis.log"
    for _ in range(3):  # the free port may be taken before the server binds it: take another
        port = free_port()
        proc = _start(binary, port, server, ca, base)
        try:
            if _ready(proc, port, ca, client, log):
                break
        except BaseException:
            _stop(proc)
            raise
    else:
        pytest.fail(f"no free port for the TLS redis-server:\n{log.read_text()[-2000:]}")
    try:
        yield TLSRedis(f"rediss://127.0.0.1:{port}/0", ca, client, other, foreign, proc.pid)
    finally:
        _stop(proc)


def _start(
    binary: str, port: int, server: Issued, ca: CertificateAuthority, base: Path
) -> subprocess.Popen[bytes]:
    log = base / "redis.log"
    with log.open("ab") as stderr:
        return subprocess.Popen(
            [
                binary,
                "--port",
                "0",
                "--bind",
                "127.0.0.1",
                "--tls-port",
                str(port),
                "--tls-cert-file",
                str(server.cert),
                "--tls-key-file",
                str(server.key),
                "--tls-ca-cert-file",
                str(ca.cert),
                "--tls-auth-clients",
                "yes",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(base),
                "--logfile",
                str(log),
                "--daemonize",
                "no",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
        )


def _ready(
    proc: subprocess.Popen[bytes], port: int, ca: CertificateAuthority, client: Issued, log: Path
) -> bool:
    """True once it answers PING over mutual TLS; False if its port was taken."""
    deadline = time.monotonic() + 10
    while not _pong(port, ca, client):
        if proc.poll() is not None:
            text = log.read_text(errors="replace")
            if "Address already in use" in text:
                return False
            if "tls" in text.lower() and "bad directive" in text.lower():
                pytest.skip("redis-server was built without TLS support (install Debian's)")
            pytest.fail(f"TLS redis-server exited ({proc.returncode}):\n{text[-2000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"TLS redis-server did not answer:\n{log.read_text()[-2000:]}")
        time.sleep(0.02)
    return True


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """By its pid: SIGTERM, then SIGKILL if it does not exit in time."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def tls_env(tls_redis: TLSRedis, monkeypatch: pytest.MonkeyPatch) -> TLSRedis:
    """The SIMPUL_REDIS_* variables a deployed service would have."""
    monkeypatch.setenv("SIMPUL_REDIS_URL", tls_redis.url)
    monkeypatch.setenv(CA_VAR, str(tls_redis.ca.cert))
    monkeypatch.setenv(CERT_VAR, str(tls_redis.client.cert))
    monkeypatch.setenv(KEY_VAR, str(tls_redis.client.key))
    return tls_redis


async def _refusal(url: str, tls: RedisTLS) -> TLSConnectionError:
    redis = connect(url, tls=tls)
    try:
        with pytest.raises(TLSConnectionError) as caught:
            await redis.ping()
    finally:
        await redis.aclose()
    return caught.value


# -- a publisher and a service over mutual TLS ----------------------------------------------


async def test_publisher_and_service_over_mutual_tls(tls_env: TLSRedis) -> None:
    redis = connect(tls_env.url)  # the TLS files come from the environment
    await redis.flushdb()
    await functions.load(redis)  # as the admin does, over TLS too (the server has no plain port)
    service = Service("tls-consumer", settings=quick_settings(tls_env.url))
    seen: list[tuple[str, str]] = []

    @service.on(CitizenDied)
    async def record(event: CitizenDied, ctx: EventContext) -> None:
        seen.append((ctx.event_id, event.kecamatan))

    try:
        async with service.running():
            published = await Publisher(redis, source=SOURCE).publish(died(), id="tls-1")
            await wait_until(lambda: bool(seen), timeout=10)
        assert seen == [("tls-1", "35.73.01")]  # the server has no plain port: all of it was TLS
        assert not published.duplicate
    finally:
        await redis.aclose()


def test_cli_reads_the_tls_settings(tls_env: TLSRedis) -> None:
    result = CliRunner().invoke(app, ["status", "--json"])
    assert result.exit_code == 0, result.output
    assert isinstance(json.loads(result.stdout), dict)


def test_settings_carry_the_tls_files(tls_env: TLSRedis) -> None:
    settings = Settings.load()
    assert RedisTLS.from_settings(settings) == tls_env.tls == RedisTLS.from_env()
    assert Settings.load(redis_tls_ca="").redis_tls_ca is None


# -- refusals say what to fix -----------------------------------------------------------------


async def test_without_a_client_certificate_the_server_refuses(tls_redis: TLSRedis) -> None:
    error = await _refusal(tls_redis.url, RedisTLS(ca=str(tls_redis.ca.cert)))
    message = str(error)
    assert "requires a client certificate" in message
    assert CERT_VAR in message and KEY_VAR in message
    translated = translate(error)
    assert isinstance(translated, RedisUnavailable) and str(translated) == message


async def test_a_client_certificate_of_another_ca_is_rejected(tls_redis: TLSRedis) -> None:
    tls = RedisTLS(
        ca=str(tls_redis.ca.cert),
        cert=str(tls_redis.foreign_client.cert),
        key=str(tls_redis.foreign_client.key),
    )
    message = str(await _refusal(tls_redis.url, tls))
    assert "rejected the client certificate" in message
    assert f"{CERT_VAR}={tls_redis.foreign_client.cert}" in message


async def test_a_server_certificate_of_an_unknown_ca_fails_verification(
    tls_redis: TLSRedis,
) -> None:
    tls = RedisTLS(
        ca=str(tls_redis.other_ca.cert),
        cert=str(tls_redis.client.cert),
        key=str(tls_redis.client.key),
    )
    message = str(await _refusal(tls_redis.url, tls))
    assert "cannot verify the TLS certificate of Redis at 127.0.0.1:" in message
    assert f"{CA_VAR}={tls_redis.other_ca.cert} does not hold the CA that signed it" in message
    # Without SIMPUL_REDIS_TLS_CA the system's CAs are used, and they do not know ours either.
    message = str(await _refusal(tls_redis.url, RedisTLS()))
    assert "the system's CAs do not include its issuer" in message and CA_VAR in message


async def test_a_host_the_certificate_does_not_name_fails_verification(
    tls_redis: TLSRedis,
) -> None:
    port = tls_redis.url.rsplit(":", 1)[1]
    message = str(await _refusal(f"rediss://localhost:{port}", tls_redis.tls))
    assert "does not name that host" in message and "subjectAltName" in message


async def test_plain_redis_url_on_the_tls_port_fails_clearly(tls_redis: TLSRedis) -> None:
    plain = tls_redis.url.replace("rediss://", "redis://")
    message = str(await _refusal(plain, RedisTLS()))
    assert "closed the connection without answering" in message
    assert "rediss://" in message


# -- settings are checked when the client is made ----------------------------------------------


def test_tls_files_with_a_plain_url_are_refused(tls_redis: TLSRedis) -> None:
    with pytest.raises(ConfigurationError, match=r"SIMPUL_REDIS_TLS_CA.*use a rediss:// URL"):
        connect("redis://:s3cret@127.0.0.1:6379/0", tls=RedisTLS(ca=str(tls_redis.ca.cert)))
    with pytest.raises(ConfigurationError) as caught:
        connect("unix:///tmp/redis.sock", tls=tls_redis.tls)
    assert "unix://" in str(caught.value)


def test_url_parameters_cannot_turn_verification_off(tls_redis: TLSRedis) -> None:
    with pytest.raises(ConfigurationError, match="ssl_cert_reqs: TLS is configured by"):
        connect(f"{tls_redis.url}?ssl_cert_reqs=none", tls=tls_redis.tls)


def _files(tls_redis: TLSRedis, tmp: Path) -> dict[str, RedisTLS]:
    ca, client = str(tls_redis.ca.cert), tls_redis.client
    junk = tmp / "junk.pem"
    junk.write_text(
        "-----BEGIN CERTIFICATE-----\nSECRET-MATERIAL-7f3a\n-----END CERTIFICATE-----\n"
    )
    locked = encrypted_key(client.key, tmp / "locked.key")
    server_key = str(tls_redis.ca.directory / "redis.key")
    return {
        f"{CA_VAR}={tmp}/missing.pem: no such file": RedisTLS(ca=f"{tmp}/missing.pem"),
        f"{CA_VAR}={tmp}: is a directory": RedisTLS(ca=str(tmp)),
        f"{CA_VAR}={junk}: no PEM CA certificate": RedisTLS(ca=str(junk)),
        f"{KEY_VAR}={tmp}/gone.key: no such file": RedisTLS(
            ca=ca, cert=str(client.cert), key=f"{tmp}/gone.key"
        ),
        f"{KEY_VAR} is set but {CERT_VAR} is not": RedisTLS(ca=ca, key=str(client.key)),
        "the key does not belong to the certificate": RedisTLS(
            ca=ca, cert=str(client.cert), key=server_key
        ),
        f"{CERT_VAR}={junk} (no {KEY_VAR})": RedisTLS(ca=ca, cert=str(junk)),
        f"{KEY_VAR}={locked}: the private key is encrypted": RedisTLS(
            ca=ca, cert=str(client.cert), key=str(locked)
        ),
    }


def test_unusable_files_name_the_setting_and_path_never_the_contents(
    tls_redis: TLSRedis, tmp_path: Path
) -> None:
    for expected, tls in _files(tls_redis, tmp_path).items():
        with pytest.raises(ConfigurationError) as caught:
            connect(tls_redis.url, tls=tls)
        message = str(caught.value)
        assert expected in message, message
        assert "SECRET-MATERIAL" not in message and "BEGIN" not in message, message


async def test_the_environment_is_checked_too(
    tls_env: TLSRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CA_VAR, "/nonexistent/ca.pem")
    with pytest.raises(ConfigurationError, match=f"{CA_VAR}=/nonexistent/ca.pem: no such file"):
        connect(tls_env.url)
    monkeypatch.setenv(CA_VAR, "")  # empty is unset: the system's CAs, which do not know ours
    redis = connect(tls_env.url)
    try:
        with pytest.raises(TLSConnectionError, match="the system's CAs do not include"):
            await redis.ping()
    finally:
        await redis.aclose()
