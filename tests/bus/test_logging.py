"""Logs carry stable event names and context, and never personal data."""

from __future__ import annotations

import io
import json

import structlog
from structlog.testing import capture_logs

from bus import EventContext, Publisher, Service
from bus.logging import MASK, MaskPersonalData, configure, get_logger, mask_text
from bus.settings import Settings
from bus.testing import wait_until
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
    service = Service("privacy", settings=Settings.load(
        redis_url=redis_url, block_ms=100, retry_backoff_ms=20, retry_backoff_max_ms=40,
        claim_idle_ms=200, reclaim_interval_ms=20, max_deliveries=2,
    ))  # fmt: skip

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
