"""Something that is not Redis answers at Redis' address (a gateway answering an address it
cannot route, in HTTP): an outage for publishers and consumers, never a crash."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from redis.asyncio import Redis

from bus import EventContext, Publisher, Service, event_id
from bus.connection import TRANSIENT, NotRedisProtocol, RedisTLS, connect
from bus.testing import capture_logs, quick_settings, wait_until
from schemas.dukcapil import CitizenDied
from tests.bus.delivery.helpers import (
    GROUP,
    SOURCE,
    STREAM,
    died,
    publish_retrying,
    surviving,
)
from tests.helpers.tls_ca import CertificateAuthority

HTTP_400 = b"HTTP/1.1 400 Bad Request\r\n\r\n"


class Gateway:
    """A loopback address in front of a Redis. While ``answering``, it answers every request
    itself with ``HTTP/1.1 400``; otherwise it forwards to the Redis. A connection keeps what
    it got when it was accepted, so a client that kept a connection after an HTTP answer
    would keep getting HTTP; a switch to answering cuts the forwarded connections, as a route
    that changes does."""

    def __init__(self, redis_url: str) -> None:
        parts = urlsplit(redis_url)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 6379)
        self.answering = True
        self.answers = 0  # HTTP answers given
        self._forwarded: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self.url = ""

    @contextlib.asynccontextmanager
    async def serving(self, tls: ssl.SSLContext | None = None) -> AsyncIterator[Gateway]:
        """Listen on a free loopback port; with ``tls``, speak TLS (a ``rediss://`` URL)."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0, ssl=tls)
        scheme = "rediss" if tls else "redis"
        self.url = f"{scheme}://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        try:
            yield self
        finally:
            self._server.close()
            self._cut()

    def forward(self) -> None:
        self.answering = False

    def answer(self) -> None:
        self.answering = True
        self._cut()

    async def answered(self, more: int, client: asyncio.Task[None] | Service) -> None:
        """Wait until the gateway has given ``more`` HTTP answers from now on to ``client``
        (a publishing task, a service), which must not end meanwhile."""
        target = self.answers + more

        def running() -> bool:
            if isinstance(client, Service):  # not yet started, or running
                return client.health.running or client.health.last_error is None
            return not client.done()

        await wait_until(lambda: self.answers >= target or not running(), timeout=30)
        if isinstance(client, asyncio.Task) and client.done():
            client.result()  # its error, if it failed
        state = client.health.snapshot() if isinstance(client, Service) else client
        assert running(), f"the client ended while the gateway answered in HTTP: {state}"

    def _cut(self) -> None:
        for writer in list(self._forwarded):
            writer.transport.abort()
        self._forwarded.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if self.answering:
                while await reader.read(65_536):
                    self.answers += 1
                    writer.write(HTTP_400)
                    await writer.drain()
                return
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
            self._forwarded |= {writer, up_writer}
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        except ConnectionError:
            pass  # cut, or the client went away
        finally:
            writer.transport.abort()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65_536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.transport.abort()


def _names_the_fault(error: str, address: str | None = None) -> bool:
    """The error says what answered (and where, if ``address``), without the bytes received."""
    where = f"Redis at {address} " if address else "Redis "
    return (
        f"{where}answered in something that is not the Redis protocol (RESP)" in error
        and not any(quoted in error for quoted in ("HTTP/1.1", "Bad Request", '"H"'))
    )


async def test_a_publisher_rides_out_an_endpoint_answering_http_and_loses_nothing(
    redis: Redis, redis_url: str
) -> None:
    errors: list[Exception] = []
    returned: list[str] = []

    async def publish_all(publisher: Publisher, numbers: range) -> None:
        for i in numbers:
            eid = event_id(SOURCE, "wrong-endpoint", i)
            await publish_retrying(publisher, eid, errors)
            returned.append(eid)

    async with Gateway(redis_url).serving() as gateway:
        client = connect(gateway.url, client_name="publisher")
        publisher = Publisher(client, source=SOURCE)
        try:
            for numbers in (range(10), range(10, 30)):  # the route changes again mid-way
                gateway.answer()
                publishing = asyncio.create_task(publish_all(publisher, numbers))
                await gateway.answered(3, publishing)
                assert len(returned) == numbers.start
                gateway.forward()
                await asyncio.wait_for(publishing, 60)
        finally:
            await client.aclose()
    address = urlsplit(gateway.url).netloc
    faults = [e for e in errors if isinstance(e, NotRedisProtocol)]
    assert len(faults) >= 2, [type(e).__name__ for e in errors]
    assert all(_names_the_fault(str(e), address) for e in faults), faults[0]
    ids = [fields[b"id"].decode() for _, fields in await redis.xrange(STREAM)]
    assert len(ids) == len(set(ids)) == 30, "an event lost or written twice"
    assert set(ids) == set(returned)


@pytest.mark.parametrize("client", ["its own", "shared"])
async def test_a_consumer_loop_survives_an_endpoint_answering_http(
    redis: Redis, redis_url: str, client: str
) -> None:
    """``shared``: a client not made by bus.connection.connect (as a FastStream broker's),
    which raises redis-py's InvalidResponse as it is."""
    handled: list[str] = []
    async with Gateway(redis_url).serving() as gateway:
        service = Service(GROUP, settings=quick_settings(gateway.url, consumer="gateway-1"))
        shared = Redis.from_url(gateway.url, socket_timeout=10) if client == "shared" else None

        @service.on(CitizenDied)
        async def record(event: CitizenDied, ctx: EventContext) -> None:
            handled.append(ctx.event_id)

        publisher = Publisher(redis, source=SOURCE)
        ids = [event_id(SOURCE, "gateway-consumer", n) for n in range(2)]
        closing = shared if shared is not None else contextlib.nullcontext()
        with capture_logs() as logs:
            async with closing, surviving(service, shared):
                # First the consumer's start meets the gateway, then its blocked read is cut
                # and its reconnection answered in HTTP.
                for eid in ids:
                    gateway.answer()
                    await gateway.answered(3, service)
                    await publisher.publish(died(), id=eid)
                    assert eid not in handled
                    gateway.forward()
                    await wait_until(
                        lambda: eid in handled or not service.health.running,  # noqa: B023
                        timeout=30,
                    )
                    assert service.health.running, f"the loop died: {service.health.snapshot()}"
    assert handled == ids
    address = None if shared else urlsplit(gateway.url).netloc  # redis-py's error has none
    outages = [log["error"] for log in logs if log["event"] == "redis_unavailable"]
    assert outages and _names_the_fault(outages[0], address), outages  # at the start
    assert not any("HTTP/1.1" in error or "Bad Request" in error for error in outages), outages
    assert [log["event"] for log in logs].count("redis_recovered") >= 2


async def test_an_answer_in_https_to_a_rediss_url_is_an_outage_too(
    redis_url: str, tmp_path: Path
) -> None:
    ca = CertificateAuthority.create(tmp_path / "ca")
    issued = ca.issue("gateway", ip="127.0.0.1")
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(issued.cert, issued.key)
    async with Gateway(redis_url).serving(tls) as gateway:
        client = connect(gateway.url, tls=RedisTLS(ca=str(ca.cert)))
        try:
            with pytest.raises(NotRedisProtocol) as caught:
                await client.ping()
        finally:
            await client.aclose()
    assert isinstance(caught.value, TRANSIENT)
    assert gateway.answers >= 1
    assert _names_the_fault(str(caught.value), urlsplit(gateway.url).netloc), caught.value
