"""bus.http's server through real sockets (uvicorn on a free loopback port): what any app served
by the bus gets, whatever the app does."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bus.errors import BadRequestBody
from bus.http import parse_json, running
from bus.testing import capture_logs

NIK = "3573014506900001"


async def crash(_: Request) -> Response:
    raise KeyError(NIK)  # careless code: the message quotes a person's NIK


async def test_an_unexpected_error_is_a_json_500_and_one_log_line_without_traceback_or_data(
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    app = Starlette(routes=[Route("/crash", crash)])
    with capture_logs() as logs:
        async with running(app) as url, httpx.AsyncClient(timeout=5) as http:
            answer = await http.get(f"{url}/crash")
            again = await http.get(f"{url}/crash")

    assert answer.status_code == again.status_code == 500
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
