"""Helpers for testing services and adapters (importable by department projects too).

* :func:`deliver` runs a service's handler for one event in memory, as the bus would call it
  — for pure handler logic. Delivery semantics (groups, pending, acks, claims) are only ever
  tested against a real Redis: use :func:`quick_settings` and ``Service.running()`` for that.
* :func:`wait_until` polls a condition with a deadline instead of sleeping a fixed time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from structlog.testing import capture_logs

from bus.context import EventContext
from bus.contracts import Contract
from bus.envelope import Envelope, format_time
from bus.errors import ConfigurationError
from bus.service import Service
from bus.settings import Settings

__all__ = ["capture_logs", "deliver", "quick_settings", "wait_until", "wait_until_sync"]


def quick_settings(redis_url: str, **overrides: Any) -> Settings:
    """Settings with short timers, so retries and reclaims happen within a test's patience."""
    values: dict[str, Any] = {
        "redis_url": redis_url,
        "block_ms": 100,
        "retry_backoff_ms": 50,
        "retry_backoff_max_ms": 200,
        "claim_idle_ms": 1_000,
        "reclaim_interval_ms": 50,
        "shutdown_grace_s": 5.0,
    }
    values.update(overrides)
    return Settings.load(**values)


async def deliver(
    service: Service, event: Contract, *, delivery: int = 1, **attributes: Any
) -> None:
    """Call the handler ``service`` registered for ``event``'s type, with a realistic context."""
    info = type(event).__contract__
    handler = service.handlers.get(info.event_type)
    if handler is None:
        raise ConfigurationError(f"service {service.name} has no handler for {info.event_type}")
    envelope = Envelope(
        id=attributes.pop("id", "test-event"),
        source=attributes.pop("source", "urn:simpul:test"),
        type=info.event_type,
        time=format_time(attributes.pop("time", None) or _now()),
        dataschema=info.dataschema,
        data=event.model_dump_json(),
        **attributes,
    )
    typed = handler.model.parse(envelope.data, tolerant=True)
    ctx = EventContext(envelope, info.stream, "0-1", service.name, "test", delivery)
    await (handler.func(typed, ctx) if handler.wants_context else handler.func(typed))


async def wait_until(
    condition: Callable[[], bool | Awaitable[bool]],
    *,
    timeout: float = 10.0,
    interval: float = 0.02,
) -> None:
    """Return once ``condition()`` is true; raise AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        outcome = condition()
        if isinstance(outcome, Awaitable):
            outcome = await outcome
        if outcome:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)


def wait_until_sync(
    condition: Callable[[], bool], *, timeout: float = 10.0, interval: float = 0.02
) -> None:
    """:func:`wait_until` for code without an event loop (threads, subprocesses, sync clients):
    return once ``condition()`` is true; raise AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


def _now() -> datetime:
    return datetime.now(UTC)
