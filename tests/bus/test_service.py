"""Registering handlers: mistakes are caught at import time with a clear message."""

from __future__ import annotations

import pytest

from bus import ConfigurationError, Contract, EventContext, Service
from bus.testing import deliver
from schemas.dukcapil import CitizenDied

DIED = CitizenDied(nik="3573014506900001", date_of_death="2026-11-01", kecamatan="35.73.01")


def test_service_name_must_be_a_group_name() -> None:
    with pytest.raises(ConfigurationError, match="service name 'Dinas Sosial'"):
        Service("Dinas Sosial")


def test_handler_must_be_async() -> None:
    service = Service("s")
    with pytest.raises(ConfigurationError, match="must be an async def"):
        service.on(CitizenDied)(lambda event: None)  # type: ignore[arg-type,return-value]


def test_handler_takes_event_or_event_and_context() -> None:
    service = Service("s")

    async def three(event: CitizenDied, ctx: EventContext, extra: int) -> None: ...

    with pytest.raises(ConfigurationError, match="not 3 parameters"):
        service.on(CitizenDied)(three)


def test_one_handler_per_type() -> None:
    service = Service("s")

    @service.on(CitizenDied)
    async def first(event: CitizenDied) -> None: ...

    with pytest.raises(ConfigurationError, match="already has handler"):

        @service.on(CitizenDied)
        async def second(event: CitizenDied) -> None: ...


def test_only_declared_contracts_can_be_subscribed() -> None:
    class Loose(Contract):  # no event_type: not a declared contract
        x: int

    with pytest.raises(ConfigurationError, match="not a declared contract"):
        Service("s").on(Loose)


async def test_deliver_runs_a_handler_in_memory_with_its_context() -> None:
    service = Service("s")
    seen: list[tuple[str, str, int]] = []

    @service.on(CitizenDied)
    async def record(event: CitizenDied, ctx: EventContext) -> None:
        seen.append((event.kecamatan, ctx.event_id, ctx.delivery))

    await deliver(service, DIED, id="e-1", delivery=2)
    assert seen == [("35.73.01", "e-1", 2)]


async def test_run_without_redis_url_says_what_to_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SIMPUL_REDIS_URL", raising=False)
    service = Service("s")
    with pytest.raises(ConfigurationError, match="set SIMPUL_REDIS_URL"):
        async with service.running():
            pass
