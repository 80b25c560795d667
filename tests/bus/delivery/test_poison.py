"""Poison entries go to dead letters at once; the service keeps consuming what follows."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from bus import Contract, EventContext, Publisher, keys
from bus.deadletter import SIGNATURE_REASONS, Reason, original_fields
from bus.settings import Settings
from bus.testing import wait_until
from tests.bus.delivery.helpers import (
    NIK,
    STREAM,
    Calls,
    as_bytes,
    barrier,
    dead_letters,
    died,
    fields_of,
    moved,
    pending,
    recording_service,
    text,
    wait_dead_letters,
    wait_pending,
)

SHORT_NIK = NIK[:15]  # one digit short: not a NIK
VALID_DATA = died().model_dump_json()


def _non_utf8() -> dict[str, Any]:
    return {**fields_of(died(), "poison"), "source": b"urn:malangkota:\xff\xfe:siak"}


def _unknown_type() -> dict[str, Any]:
    return fields_of(
        died(),
        "poison",
        type="dukcapil.citizen.vanished.v1",
        dataschema="simpul:dukcapil.citizen.vanished:1.0",
    )


def _wrong_stream() -> dict[str, Any]:
    return fields_of(
        died(), "poison", type="bapenda.tax.paid.v1", dataschema="simpul:bapenda.tax.paid:1.0"
    )


POISON: dict[str, tuple[Callable[[], dict[str, Any]], Reason, str]] = {
    "undecodable": (lambda: {"junk": "x"}, Reason.UNDECODABLE, "lacks required field"),
    "non_utf8": (_non_utf8, Reason.UNDECODABLE, "UTF-8"),
    "unknown_type": (_unknown_type, Reason.UNKNOWN_TYPE, "dukcapil.citizen.vanished.v1"),
    "wrong_stream": (_wrong_stream, Reason.WRONG_STREAM, "bapenda.tax.paid.v1"),
    "contract_violation": (
        lambda: fields_of(died(), "poison", data=VALID_DATA.replace(NIK, SHORT_NIK)),
        Reason.CONTRACT_VIOLATION,
        "nik",
    ),
    "invalid_json": (
        lambda: fields_of(died(), "poison", data=VALID_DATA[:-5]),
        Reason.CONTRACT_VIOLATION,
        "JSON",
    ),
}


@pytest.mark.parametrize("kind", list(POISON))
async def test_poison_is_dead_lettered_at_once_and_consuming_goes_on(
    kind: str, redis: Redis, settings: Settings, publisher: Publisher
) -> None:
    make, reason, problem = POISON[kind]
    poison = make()
    calls = Calls()
    async with recording_service(settings, calls).running():
        await publisher.publish(died(), id="good-before")
        entry_id = (await redis.xadd(STREAM, poison)).decode()
        await barrier(publisher, calls, "good-after")
        [dead] = await wait_dead_letters(redis, 1)
        await wait_pending(redis, 0)
    assert calls.ids() == ["good-before", "good-after"]  # the handler never saw the poison
    assert text(dead, "dlq.reason") == reason
    assert text(dead, "dlq.attempts") == "1"
    assert text(dead, "dlq.entry") == entry_id
    error = text(dead, "dlq.error")
    assert problem in error
    assert NIK not in error
    assert SHORT_NIK not in error
    assert original_fields(dead) == as_bytes(poison)


async def test_known_type_without_handler_is_acked_and_skipped(
    redis: Redis, settings: Settings, publisher: Publisher
) -> None:
    calls = Calls()
    async with recording_service(settings, calls).running():
        await publisher.publish(moved(), id="moved-1")  # a contract, but not one we handle
        await barrier(publisher, calls, "died-after")
        await wait_pending(redis, 0)
    assert calls.ids() == ["died-after"]
    assert await dead_letters(redis) == []
    assert await pending(redis) == 0


class ThingHappened(Contract, event_type="simpultest.thing.happened.v1", register=False):
    """A second aggregate, so the service below consumes two streams."""

    name: str


async def test_handled_type_written_into_a_foreign_stream_is_dead_lettered(
    redis: Redis, settings: Settings, publisher: Publisher
) -> None:
    """A producer allowed to write only the simpultest stream forges a dukcapil event there.

    The stream check guards the ACL model (an adapter may XADD only to its department's
    streams), so it must hold for handled types as well, not only for unhandled ones.
    """
    calls = Calls()
    service = recording_service(settings, calls)

    @service.on(ThingHappened)
    async def thing(event: ThingHappened, ctx: EventContext) -> None:
        calls.record(ctx)

    foreign = ThingHappened.__contract__.stream
    async with service.running():
        await redis.xadd(foreign, fields_of(died(), "forged"))
        await redis.xadd(foreign, fields_of(ThingHappened(name="x"), "thing-after"))
        await wait_until(lambda: "thing-after" in calls.ids())
        await wait_pending(redis, 0, stream=foreign)
    assert "forged" not in calls.ids(), "a dukcapil event read from another stream was handled"
    [dead] = await dead_letters(redis, stream=foreign)
    assert text(dead, "dlq.reason") == Reason.WRONG_STREAM


def test_poison_cases_cover_every_poison_reason() -> None:
    # Signature reasons need a keyring: tests/bus/test_signing.py covers each of them.
    poison_reasons = set(Reason) - {Reason.HANDLER_FAILED, Reason.GIVEN_UP, Reason.MAX_DELIVERIES}
    poison_reasons -= SIGNATURE_REASONS
    assert {reason for _, reason, _ in POISON.values()} == poison_reasons
    assert keys.stream_of("bapenda.tax.paid.v1") != STREAM
