"""Logs carry stable event names and context, and never personal data."""

from __future__ import annotations

import io
import json
from typing import Any

import structlog
from structlog.testing import capture_logs

from bus import EventContext, Publisher, Service
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
