"""The health endpoints a service serves on SIMPUL_HTTP: from what the consumer last achieved."""

from __future__ import annotations

from datetime import date

import httpx
import pytest
from redis import Redis as SyncRedis
from redis.exceptions import ResponseError
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from bus import Publisher, Service
from bus.connection import connect
from bus.local.redis import EmbeddedRedis
from bus.testing import quick_settings, wait_until
from schemas.dukcapil import CitizenDied

NIK = "3573054107900001"


def _service(url: str) -> tuple[Service, list[str]]:
    service = Service("health-probe", settings=quick_settings(url, http="127.0.0.1:0"))
    seen: list[str] = []

    @service.on(CitizenDied)
    async def handle(event: CitizenDied) -> None:
        seen.append(event.kecamatan)

    return service, seen


async def _status(url: str) -> int:
    async with httpx.AsyncClient(timeout=5) as client:
        return (await client.get(url)).status_code


async def test_ready_after_a_poll_and_the_snapshot_reports_the_ack(redis_url: str) -> None:
    service, seen = _service(redis_url)
    async with service.running():
        assert service.http_url is not None
        base = service.http_url
        await wait_until(lambda: _ready(base), timeout=10)
        redis = connect(redis_url)
        await Publisher(redis, source="urn:test").publish(
            CitizenDied(nik=NIK, date_of_death=date(2026, 11, 2), kecamatan="35.73.02")
        )
        await redis.aclose()
        await wait_until(lambda: seen == ["35.73.02"])
        async with httpx.AsyncClient() as client:
            body = (await client.get(f"{base}/readyz")).json()
            assert (await client.get(f"{base}/healthz")).status_code == 200
        assert body["ready"] is True and body["counters"]["acked"] == 1
        assert body["last_ack_age_s"] is not None
    try:
        await _status(f"{base}/healthz")
    except httpx.ConnectError:
        pass  # the server stopped with the service
    else:
        raise AssertionError("the health endpoint still answers after the service stopped")


async def _ready(base: str) -> bool:
    return await _status(f"{base}/readyz") == 200


async def test_readiness_goes_red_while_redis_is_down_and_green_again(
    private_redis: EmbeddedRedis,
) -> None:
    service, _ = _service(private_redis.url)
    async with service.running():
        base = service.http_url
        assert base is not None
        await wait_until(lambda: _ready(base), timeout=10)
        private_redis.kill()
        await wait_until(lambda: _status_is(f"{base}/readyz", 503), timeout=10)
        assert await _status(f"{base}/healthz") == 200  # alive: a restart would not cure this
        private_redis.start()
        await wait_until(lambda: _ready(base), timeout=20)


async def _status_is(url: str, status: int) -> bool:
    return await _status(url) == status


async def test_the_mounted_api_is_served_beside_the_health_routes(redis_url: str) -> None:
    service, _ = _service(redis_url)

    async def hello(_: object) -> PlainTextResponse:
        return PlainTextResponse("hello")

    service.mount(Starlette(routes=[Route("/hello", hello)]))
    async with service.running(), httpx.AsyncClient() as client:
        assert (await client.get(f"{service.http_url}/hello")).text == "hello"
        assert (await client.get(f"{service.http_url}/healthz")).status_code == 200
        assert (await client.get(f"{service.http_url}/nothing")).status_code == 404


def _revocable_user(server: EmbeddedRedis) -> str:
    """A URL of an ACL user allowed everything, until :func:`_revoke`."""
    with SyncRedis.from_url(server.url) as admin:
        admin.execute_command("ACL", "SETUSER", "svc", "on", ">pw", "~*", "&*", "+@all")
    return server.url.replace("redis://", "redis://svc:pw@", 1)


def _revoke(server: EmbeddedRedis) -> None:
    """An operator's ACL change: the service's user may only say hello and ping any more."""
    with SyncRedis.from_url(server.url) as admin:
        admin.execute_command("ACL", "SETUSER", "svc", "-@all", "+ping", "+auth", "+hello")


async def test_liveness_goes_red_when_the_consumer_dies_of_a_refused_command(
    private_redis: EmbeddedRedis,
) -> None:
    service, _ = _service(_revocable_user(private_redis))
    with pytest.raises(
        ResponseError, match="no permissions"
    ):  # leaving the block raises what it died of
        async with service.running(), httpx.AsyncClient(timeout=5) as client:
            base = service.http_url
            assert base is not None
            await wait_until(lambda: _ready(base), timeout=10)
            _revoke(private_redis)
            await wait_until(lambda: _status_is(f"{base}/healthz", 503), timeout=10)
            body = (await client.get(f"{base}/healthz")).json()
            assert body["running"] is False
            assert "NoPermissionError" in body["last_error"]
