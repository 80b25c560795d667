"""Logs carry stable event names and context, and never personal data."""

from __future__ import annotations

import io
import json
from typing import Any

import structlog
from pydantic import BaseModel, Field
from structlog.testing import capture_logs

from bus import EventContext, Publisher, Service, keys
from bus.logging import MASK, MaskPersonalData, configure, get_logger, mask_text
from bus.settings import Settings
from bus.testing import quick_settings, wait_until
from schemas.dukcapil import CitizenDied, CitizenMoved

NIK = "3573014506900001"


def test_mask_text_hides_sixteen_digit_runs_only() -> None:
    assert mask_text(f"nik={NIK} kk 3573010101010001.") == f"nik={MASK} kk {MASK}."
    assert mask_text("entry 1795896857575-0 and 12345") == "entry 1795896857575-0 and 12345"
    assert mask_text("17 digits 35730145069000011") == "17 digits 35730145069000011"


def test_processor_masks_declared_personal_fields_and_nik_values() -> None:
    processor = MaskPersonalData()
    event = processor(
        None,
        "info",
        {"event": "x", "address": "Jl. Ijen 1", "note": f"about {NIK}", "n": 3573014506900001},
    )
    assert event["address"] == MASK  # declared personal by CitizenMoved
    assert event["note"] == f"about {MASK}"
    assert event["n"] == MASK
    assert event["event"] == "x"


def test_json_rendering_masks_an_exception_message() -> None:
    out = io.StringIO()
    configure("info", "json")
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(out))
    try:
        get_logger("t").error("boom", error=ValueError(f"bad {NIK}"))
    finally:
        structlog.reset_defaults()
    line = json.loads(out.getvalue())
    assert line["event"] == "boom" and NIK not in out.getvalue() and MASK in line["error"]


async def test_a_failing_scenario_logs_no_personal_data(redis_url: str, redis: object) -> None:
    service = Service(
        "privacy",
        settings=Settings.load(
            redis_url=redis_url,
            block_ms=100,
            retry_backoff_ms=20,
            retry_backoff_max_ms=40,
            claim_idle_ms=200,
            reclaim_interval_ms=20,
            max_deliveries=2,
        ),
    )

    @service.on(CitizenMoved)
    async def fail(event: CitizenMoved, ctx: EventContext) -> None:
        raise RuntimeError(f"cannot re-check {event.nik} at {event.address}")

    with capture_logs() as logs:
        async with service.running():
            publisher = Publisher(redis, source="urn:test")  # type: ignore[arg-type]
            moved = CitizenMoved(
                nik=NIK, address="Jl. Ijen 7", kecamatan="35.73.02", moved_on="2026-01-02"
            )
            await publisher.publish(moved)
            await publisher.publish(
                CitizenDied(nik=NIK, date_of_death="2026-01-03", kecamatan="35.73.02")
            )
            await wait_until(lambda: any(e["event"] == "event_dead_lettered" for e in logs))
    names = {entry["event"] for entry in logs}
    assert {"consumer_started", "handler_failed", "event_dead_lettered"} <= names
    text = json.dumps(logs, default=str)
    assert NIK not in text and "Jl. Ijen 7" not in text


async def _failed_lines(redis_url: str, redis: object, tracebacks: str) -> list[dict[str, Any]]:
    """The handler_failed lines (JSON, as rendered) of a handler failing on a moved citizen."""
    service = Service(
        "failing",
        settings=quick_settings(
            redis_url,
            max_deliveries=2,
            log_tracebacks=tracebacks,
        ),
    )

    @service.on(CitizenMoved)
    async def recheck(event: CitizenMoved, ctx: EventContext) -> None:
        raise RuntimeError(f"cannot re-check {event.nik} at {event.address}")

    out = io.StringIO()
    configure("info", "json")
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(out))
    async with service.running():
        publisher = Publisher(redis, source="urn:test")  # type: ignore[arg-type]
        await publisher.publish(
            CitizenMoved(nik=NIK, address="Jl. Ijen 7", kecamatan="35.73.02", moved_on="2026-01-02")
        )
        await wait_until(lambda: out.getvalue().count('"event": "handler_failed"') == 2, timeout=20)
    assert NIK not in out.getvalue() and "Jl. Ijen 7" not in out.getvalue()
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    return [line for line in lines if line["event"] == "handler_failed"]


async def test_a_failed_handler_logs_its_message_masked_and_its_traceback_when_asked(
    redis_url: str, redis: object
) -> None:
    first, last = await _failed_lines(redis_url, redis, "on")
    assert first["error"] == f"RuntimeError: cannot re-check {MASK} at {MASK}"
    assert first["retry_in_ms"] > 0 and last["retry_in_ms"] is None  # the last: dead-lettered
    trace = first["traceback"]
    assert "in recheck" in trace and 'raise RuntimeError(f"cannot re-check' in trace
    assert trace.rstrip().endswith(f"RuntimeError: cannot re-check {MASK} at {MASK}")


async def test_tracebacks_are_off_for_machine_read_logs(redis_url: str, redis: object) -> None:
    first, _ = await _failed_lines(redis_url, redis, "auto")  # json: not for a person
    assert first["error"] == f"RuntimeError: cannot re-check {MASK} at {MASK}"
    assert "traceback" not in first


class _Geocode(BaseModel):
    """A department's own model (no Contract: pydantic's errors quote its input)."""

    street: str = Field(max_length=40)


# Long enough that pydantic cuts it in its errors ('Jalan Kenari Canary 7 Gg...ng Bandulan'),
# with a line break, as legacy registers keep addresses.
CANARY_ADDRESS = "Jalan Kenari Canary 7 Gg. Manggis\nRT 003 RW 004 Kelurahan Bandulan"


async def _dead_letter_of(redis_url: str, redis: Any, handler: Any) -> tuple[str, dict[str, Any]]:
    """The log (JSON, tracebacks on) and the dead letter of ``handler`` failing on a move to
    CANARY_ADDRESS."""
    service = Service(
        "geocoder", settings=quick_settings(redis_url, max_deliveries=1, log_tracebacks="on")
    )
    service.on(CitizenMoved)(handler)
    out = io.StringIO()
    configure("info", "json")
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(out))
    dead_letters = keys.dead_letters(keys.stream("dukcapil.citizen"), "geocoder")
    try:
        async with service.running():
            await Publisher(redis, source="urn:test").publish(
                CitizenMoved(
                    nik=NIK, address=CANARY_ADDRESS, kecamatan="35.73.04", moved_on="2026-01-02"
                )
            )
            await wait_until(lambda: redis.xlen(dead_letters), timeout=20)
    finally:
        structlog.reset_defaults()
    [(_, fields)] = await redis.xrange(dead_letters)
    return out.getvalue(), {k.decode(): v.decode() for k, v in fields.items()}


def _pieces(value: str) -> list[str]:
    """``value``'s lines and its first and last 20 characters: what a message may quote."""
    return [*value.splitlines(), value[:20], value[-20:]]


async def test_a_handlers_own_validation_error_is_shown_without_its_input(
    redis_url: str, redis: Any
) -> None:
    """pydantic's text quotes each input, cut to its first and last characters: the whole
    value, which masking looks for, is not in it."""

    async def geocode(event: CitizenMoved) -> None:
        _Geocode(street=event.address)

    logged, dead = await _dead_letter_of(redis_url, redis, geocode)
    for text in (logged, dead["dlq.error"]):
        assert not [piece for piece in _pieces(CANARY_ADDRESS) if piece in text], text
    assert "street: String should have at most 40 characters" in dead["dlq.error"]
    lines = [json.loads(line) for line in logged.splitlines()]
    [failed] = [line for line in lines if line["event"] == "handler_failed"]
    assert failed["error_type"] == "ValidationError" and "_Geocode" in failed["error"]


async def test_a_value_quoted_escaped_is_masked(redis_url: str, redis: Any) -> None:
    """repr() writes the line break as \\n; the value as sent has a real one."""

    async def geocode(event: CitizenMoved) -> None:
        raise LookupError(f"no coordinates for {event.address!r}")

    logged, dead = await _dead_letter_of(redis_url, redis, geocode)
    assert dead["dlq.error"] == f"LookupError: no coordinates for '{MASK}'"
    for text in (logged, dead["dlq.error"]):
        assert not [piece for piece in _pieces(CANARY_ADDRESS) if piece in text], text


def test_processor_masks_inside_lists_and_dicts() -> None:
    """What a log call binds as a list or dict is rendered as it is: masked inside too."""
    event = MaskPersonalData()(
        None,
        "info",
        {"event": "x", "keys": [NIK, "7"], "row": {"address": "Jl. Ijen 1", "n": (NIK,)}},
    )
    assert event["keys"] == [MASK, "7"]
    assert event["row"] == {"address": MASK, "n": [MASK]}
