"""bus.http's server through real sockets (uvicorn on a free loopback port): what any app served
by the bus gets, whatever the app does."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bus.errors import BadRequestBody, ConfigurationError
from bus.http import Limits, parse_json, read_body, running
from bus.testing import capture_logs, wait_until

NIK = "3573014506900001"


async def crash(_: Request) -> Response:
    raise KeyError(NIK)  # careless code: the message quotes a person's NIK


async def echo(request: Request) -> Response:
    return Response(await request.body())


async def ok(_: Request) -> Response:
    return Response("ok")


APP = Starlette(routes=[Route("/echo", echo, methods=["POST"]), Route("/ok", ok)])
# Half a request each, then nothing: inside the request line, inside the head, inside the body.
HALVES = [
    b"GET /ok HT",
    b"GET /ok HTTP/1.1\r\nHost: localhost\r\nX-Slow: ",
    b'POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n{"half": ',
]
Stalled = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def stall(url: str, count: int) -> list[Stalled]:
    """``count`` connections that each send half a request and then wait."""
    where = urlsplit(url)
    assert where.hostname is not None and where.port is not None
    opened = []
    for n in range(count):
        reader, writer = await asyncio.open_connection(where.hostname, where.port)
        writer.write(HALVES[n % len(HALVES)])
        opened.append((reader, writer))
    await asyncio.gather(*(writer.drain() for _, writer in opened))
    return opened


async def until_closed(reader: asyncio.StreamReader, within: float) -> bytes:
    """What the server answered before it closed the connection (TimeoutError: still open)."""
    return await asyncio.wait_for(reader.read(), timeout=within)


def close_all(opened: list[Stalled]) -> None:
    for _, writer in opened:
        writer.close()


async def test_an_unexpected_error_is_a_json_500_and_one_log_line_without_traceback_or_data(
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    app = Starlette(routes=[Route("/crash", crash)])
    with capture_logs() as logs:
        async with running(app) as url, httpx.AsyncClient(timeout=5) as http:
            answer = await http.get(f"{url}/crash")
            again = await http.get(f"{url}/crash")

    assert answer.status_code == again.status_code == 500
    assert answer.headers["content-type"] == "application/json"  # not Starlette's text 500
    assert "http_unhandled_error" in answer.json()["error"]
    assert [e["event"] for e in logs] == ["http_unhandled_error"] * 2
    assert logs[0]["error"] == "KeyError" and logs[0]["at"].startswith("test_http.py:")
    assert NIK not in str(logs) + answer.text
    assert not [r for r in caplog.records if r.exc_info], caplog.text
    assert "Traceback" not in caplog.text + capfd.readouterr().err


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("[" * 33 + "]" * 33, "too_deep"),
        ("[" * 5_000 + "]" * 5_000, "too_deep"),
        ("1" * 65, "number_too_long"),
        ("-0." + "1" * 64, "number_too_long"),
        ("Infinity", "bad_json"),
        ("{", "bad_json"),
        (b"\xff\xfe\x00", "bad_json"),
    ],
)
def test_parse_json_refuses_what_a_request_cannot_be_with_a_reason(
    text: str | bytes, reason: str
) -> None:
    with pytest.raises(BadRequestBody) as caught:
        parse_json(text)
    assert caught.value.reason == reason


def test_parse_json_reads_what_a_request_can_be() -> None:
    deep: object = 1
    for _ in range(31):
        deep = [deep]
    assert parse_json(str(deep)) == deep
    assert parse_json('{"n": ' + "9" * 64 + ', "x": -1.5e3}') == {"n": int("9" * 64), "x": -1500.0}


async def test_300_half_sent_requests_are_closed_within_the_timeout_and_others_are_served() -> None:
    limits = Limits(request_timeout_s=1.0, max_connections=400)
    with capture_logs() as logs:
        async with running(APP, limits=limits) as url, httpx.AsyncClient(timeout=5) as http:
            opened = await stall(url, 300)
            started = time.monotonic()
            try:
                during = await http.get(f"{url}/ok")
                answers = await asyncio.gather(*(until_closed(r, within=5) for r, _ in opened))
            finally:
                close_all(opened)
            closed_after = time.monotonic() - started
            after = await http.post(f"{url}/echo", content=b"whole")

    assert during.status_code == 200 and during.text == "ok"
    assert closed_after < 1.0 + 2.0  # the timeout, plus slack for a busy machine
    unanswered = [a for n, a in enumerate(answers) if n % len(HALVES) < 2]
    assert all(a.startswith(b"HTTP/1.1 408 ") for a in unanswered)
    assert all(b"\r\ncache-control: no-store\r\n" in a for a in unanswered)
    timeouts = [e for e in logs if e["event"] == "http_request_timeout"]
    assert len(timeouts) == 300 and timeouts[0]["client"] == "127.0.0.1"
    assert after.status_code == 200 and after.content == b"whole"


async def test_connections_past_the_cap_are_answered_503_at_once_and_served_once_freed() -> None:
    limits = Limits(request_timeout_s=30, max_connections=20)
    async with running(APP, limits=limits) as url, httpx.AsyncClient(timeout=5) as http:
        opened = await stall(url, 20)
        try:
            over = await stall(url, 10)
            refused = await asyncio.gather(*(until_closed(r, within=2) for r, _ in over))
            close_all(over)
            while_full = await http.get(f"{url}/ok")
        finally:
            close_all(opened)

        async def served() -> bool:
            return (await http.get(f"{url}/ok")).status_code == 200

        await wait_until(served, timeout=5)

    assert all(answer.startswith(b"HTTP/1.1 503 ") for answer in refused)
    assert while_full.status_code == 503 and while_full.headers["retry-after"] == "1"


def test_limits_come_from_the_environment_with_clear_errors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SIMPUL_HTTP_REQUEST_TIMEOUT_S", "2.5")
    monkeypatch.setenv("SIMPUL_HTTP_MAX_CONNECTIONS", "50")
    assert Limits.load() == Limits(request_timeout_s=2.5, keep_alive_s=5, max_connections=50)
    monkeypatch.setenv("SIMPUL_HTTP_MAX_CONNECTIONS", "0")
    with pytest.raises(ConfigurationError, match="SIMPUL_HTTP_MAX_CONNECTIONS"):
        Limits.load()


async def test_no_server_believes_a_forwarded_address_unless_its_app_names_the_proxy() -> None:
    async def client(request: Request) -> Response:
        return Response(request.client.host if request.client else "none")

    app = Starlette(routes=[Route("/client", client)])
    async with running(app) as url, httpx.AsyncClient(timeout=5) as http:
        answer = await http.get(f"{url}/client", headers={"X-Forwarded-For": "203.0.113.9"})

    assert answer.text == "127.0.0.1"  # uvicorn's default believes loopback's X-Forwarded-For


async def cached(_: Request) -> Response:
    return Response("public", headers={"Cache-Control": "max-age=60"})


async def failing(_: Request) -> Response:
    return Response('{"error": "the store is broken"}', 500, media_type="application/json")


async def test_every_answer_is_kept_out_of_caches_and_sniffing_unless_the_app_says_otherwise() -> (
    None
):
    routes = [Route("/ok", ok), Route("/cached", cached), Route("/crash", crash)]
    app = Starlette(routes=[*routes, Route("/failing", failing)])
    async with running(app) as url, httpx.AsyncClient(timeout=5) as http:
        paths = ("/ok", "/crash", "/nowhere", "/failing")
        answers = [await http.get(f"{url}{path}") for path in paths]
        chosen = await http.get(f"{url}/cached")
    assert [a.status_code for a in answers] == [200, 500, 404, 500]
    assert answers[3].json() == {"error": "the store is broken"}  # the app's own 500, as sent
    for answer in answers:
        assert answer.headers["cache-control"] == "no-store", answer.headers
        assert answer.headers["x-content-type-options"] == "nosniff"
    assert chosen.headers.get_list("cache-control") == ["max-age=60"]


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def test_read_body_refuses_a_chunked_body_past_its_limit_before_the_body_ends() -> None:
    async def limited(request: Request) -> Response:
        try:
            return Response(await read_body(request, 1000))
        except BadRequestBody as exc:
            return Response(exc.reason, status_code=413)

    app = Starlette(routes=[Route("/limited", limited, methods=["POST"])])
    async with running(app, limits=Limits(request_timeout_s=30)) as url:
        where = urlsplit(url)
        assert where.hostname is not None and where.port is not None
        reader, writer = await asyncio.open_connection(where.hostname, where.port)
        head = b"POST /limited HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
        writer.write(head + b"800\r\n" + b"a" * 0x800 + b"\r\n")  # and the body never ends
        try:
            answer = await reader.readuntil(b"too_large")
        finally:
            writer.close()
        async with httpx.AsyncClient(timeout=5) as http:
            small = await http.post(f"{url}/limited", content=chunks(b"a" * 600, b"b" * 400))
            declared = await http.post(f"{url}/limited", content=b"a" * 1001)
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert small.status_code == 200 and small.content == b"a" * 600 + b"b" * 400
    assert declared.status_code == 413


async def test_a_request_head_over_16_kib_is_refused_and_the_server_serves_on() -> None:
    with capture_logs() as logs:
        async with running(APP) as url, httpx.AsyncClient(timeout=5) as http:
            one_read = await http.get(f"{url}/ok", headers={"X-Padding": "a" * 17 * 1024})
            long_url = await http.get(f"{url}/ok?q={'a' * 17 * 1024}")
            pieces = await http.get(f"{url}/ok", headers={"X-Padding": "a" * 100 * 1024})
            within = await http.get(f"{url}/ok", headers={"X-Padding": "a" * 15 * 1024})
    assert one_read.status_code == long_url.status_code == 431  # h11 let them through
    assert "exceeds 16384 bytes" in one_read.json()["error"]
    assert pieces.status_code in (400, 431)  # h11 refuses it first while it arrives in pieces
    assert within.status_code == 200 and within.text == "ok"
    refused = [e for e in logs if e["event"] == "http_head_too_large"]
    assert len(refused) >= 2 and refused[0]["client"] == "127.0.0.1"


async def test_clients_that_stop_reading_their_answers_are_cut_off_and_free_their_slots() -> None:
    big = b"a" * (16 * 1024 * 1024)  # far more than the kernel's buffers take

    async def download(_: Request) -> Response:
        return Response(big)

    app = Starlette(routes=[Route("/download", download), Route("/ok", ok)])
    limits = Limits(request_timeout_s=1.0, max_connections=3)
    with capture_logs() as logs:
        async with running(app, limits=limits) as url, httpx.AsyncClient(timeout=5) as http:
            where = urlsplit(url)
            assert where.hostname is not None and where.port is not None
            readers = []
            for _ in range(3):  # every slot, each asking for the download and reading nothing
                reader, writer = await asyncio.open_connection(where.hostname, where.port)
                writer.write(b"GET /download HTTP/1.1\r\nHost: localhost\r\n\r\n")
                readers.append((reader, writer))

            def stalled() -> list[Any]:
                return [e for e in logs if e["event"] == "http_write_timeout"]

            try:
                await wait_until(lambda: len(stalled()) == 3, timeout=20)
                after = await http.get(f"{url}/ok")  # the slots are free again
            finally:
                close_all(readers)
    assert after.status_code == 200 and after.text == "ok"
    assert stalled()[0]["client"] == "127.0.0.1"


async def test_a_slow_reader_that_keeps_reading_gets_its_whole_answer() -> None:
    big = b"a" * (24 * 1024 * 1024)

    async def download(_: Request) -> Response:
        return Response(big)

    app = Starlette(routes=[Route("/download", download)])
    with capture_logs() as logs:
        async with running(app, limits=Limits(request_timeout_s=1.0)) as url:
            where = urlsplit(url)
            assert where.hostname is not None and where.port is not None
            reader, writer = await asyncio.open_connection(where.hostname, where.port, limit=2**16)
            writer.write(b"GET /download HTTP/1.1\r\nHost: localhost\r\n\r\n")
            head = await reader.readuntil(b"\r\n\r\n")
            received = 0
            try:
                while received < len(big):  # a slow link: longer in all than the timeout
                    chunk = await reader.read(1024 * 1024)
                    assert chunk, f"cut off after {received} bytes"
                    received += len(chunk)
                    await asyncio.sleep(0.05)
            finally:
                writer.close()
    assert head.startswith(b"HTTP/1.1 200 ") and received == len(big)
    assert not [e for e in logs if e["event"] == "http_write_timeout"]


async def test_content_length_and_chunks_together_are_refused_and_the_connection_closed() -> None:
    """Request smuggling: a proxy believing Content-Length would see one request where h11,
    believing Transfer-Encoding, reads a second from the same bytes."""
    smuggled = (
        b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /ok HTTP/1.1\r\nHost: localhost\r\n\r\n"
    )
    with capture_logs() as logs:
        async with running(APP) as url:
            where = urlsplit(url)
            assert where.hostname is not None and where.port is not None
            reader, writer = await asyncio.open_connection(where.hostname, where.port)
            writer.write(smuggled)
            try:
                answered = await until_closed(reader, within=10)
            finally:
                writer.close()
    assert answered.startswith(b"HTTP/1.1 400 ") and answered.count(b"HTTP/1.1 ") == 1
    assert b"not both" in answered
    assert [e["client"] for e in logs if e["event"] == "http_ambiguous_length"] == ["127.0.0.1"]


async def test_a_request_h11_cannot_parse_is_a_400_logged_as_an_event_with_the_client(
    capfd: pytest.CaptureFixture[str],
) -> None:
    with capture_logs() as logs:
        async with running(APP) as url:
            where = urlsplit(url)
            assert where.hostname is not None and where.port is not None
            answers = []
            for garbage in (
                b"NOT HTTP AT ALL\r\n\r\n",
                b"GET /ok HTTP/1.1\r\nHost: a\r\nHost\r\n\r\n",
            ):
                reader, writer = await asyncio.open_connection(where.hostname, where.port)
                writer.write(garbage)
                try:
                    answers.append(await until_closed(reader, within=10))
                finally:
                    writer.close()
    assert all(a.startswith(b"HTTP/1.1 400 ") for a in answers)
    invalid = [e for e in logs if e["event"] == "http_invalid_request"]
    assert [e["client"] for e in invalid] == ["127.0.0.1"] * 2
    assert "Invalid HTTP request received." not in capfd.readouterr().err  # no bare text line
