"""Entries that break the wire format's letter are dead-lettered, never handled (real Redis).

Python is more forgiving than the spec in two places: redis-py keeps the last value of a field
name that appears twice, and ``datetime.fromisoformat`` reads more than RFC 3339. A Java or PHP
consumer following docs/wire-format.md rejects these entries, so a Simpul service must too.
"""

from __future__ import annotations

import json
from typing import Any, cast

import pytest
from redis.asyncio import Redis

from bus import EventContext, Publisher, Service, Settings
from bus.admin.deadletter_types import DeadLetterRef
from bus.admin.deadletters import DeadLetters
from bus.admin.entries import decode_entry
from bus.deadletter import Reason
from bus.envelope import Envelope
from bus.signing import KeyRing, PublicSigningKey, Signer
from bus.testing import wait_until
from schemas.dukcapil import CitizenDied

STREAM = "simpul:{dukcapil.citizen}"
SOURCE = "urn:malangkota:dukcapil:siak"
DATA = json.dumps(
    {"nik": "3573014107900001", "date_of_death": "2026-11-27", "kecamatan": "35.73.02"}
)


def entry(**changes: str) -> list[tuple[str, str]]:
    fields = {
        "specversion": "1.0",
        "id": "strict-1",
        "source": SOURCE,
        "type": "dukcapil.citizen.died.v1",
        "time": "2026-11-28T13:07:26.123Z",
        "datacontenttype": "application/json",
        "dataschema": "simpul:dukcapil.citizen.died:1.0",
        "data": DATA,
    }
    return list((fields | changes).items())


async def raw_xrange(redis: Redis, stream: str) -> list[list[Any]]:
    """XRANGE as Redis answered it: field lists, not parsed into maps by any client code."""
    plain = Redis(connection_pool=redis.connection_pool)
    plain.set_response_callback("XRANGE", lambda response, **_: response)
    return cast(list[list[Any]], await plain.execute_command("XRANGE", stream, "-", "+"))


async def consume_until_dead_lettered(
    redis: Redis, settings: Settings, pairs: list[tuple[str, str]]
) -> tuple[list[str], list[tuple[str, str]], dict[str, str]]:
    """XADD ``pairs`` verbatim (a repeated name too), then a good event; run a service until it
    handled the good one. Returns the ids it handled, the dead letter's field pairs in order
    (without dlq.*) and its dlq.* fields."""
    await redis.execute_command("XADD", STREAM, "*", *[part for pair in pairs for part in pair])
    await Publisher(redis, source=SOURCE).publish(
        CitizenDied.parse(DATA), id="good-after-the-bad-one"
    )
    handled: list[str] = []
    service = Service("strict", settings=settings)

    @service.on(CitizenDied)
    async def record(event: CitizenDied, ctx: EventContext) -> None:
        handled.append(ctx.event_id)

    async with service.running():
        await wait_until(lambda: "good-after-the-bad-one" in handled)
    [[_, flat]] = await raw_xrange(redis, f"{STREAM}:dlq:strict")
    texts = [part.decode() for part in flat]
    all_pairs = list(zip(texts[::2], texts[1::2], strict=True))
    original = [(name, value) for name, value in all_pairs if not name.startswith("dlq.")]
    dlq = {name: value for name, value in all_pairs if name.startswith("dlq.")}
    assert await redis.xpending(STREAM, "strict") == {
        "pending": 0,
        "min": None,
        "max": None,
        "consumers": [],
    }
    return handled, original, dlq


@pytest.mark.parametrize(
    ("pairs", "repeated"),
    [
        ([*entry(id="first-id"), ("id", "second-id")], "id"),
        ([("data", "null"), *entry()], "data"),
        ([*entry(), ("type", "dukcapil.citizen.moved.v1")], "type"),
    ],
    ids=["id twice", "data null then valid", "type twice"],
)
async def test_an_entry_with_a_repeated_field_name_is_undecodable_and_kept_verbatim(
    redis: Redis, settings: Settings, pairs: list[tuple[str, str]], repeated: str
) -> None:
    handled, original, dlq = await consume_until_dead_lettered(redis, settings, pairs)

    assert handled == ["good-after-the-bad-one"]  # neither value of the repeated name won
    assert dlq["dlq.reason"] == "undecodable"
    assert f"['{repeated}'] appear more than once" in dlq["dlq.error"]
    assert original == pairs  # every pair, in the order it was written: 9 fields, not 8


@pytest.mark.parametrize(
    "time",
    [
        "2026-11-28t13:07:26.123Z",  # a lower-case t
        "2026-11-28T13:07Z",  # no seconds
        "2026-11-28 13:07:26Z",  # a space for the T
        "20261128T130726Z",  # ISO 8601 basic format
        "2026-11-28T13:07:26.123z",  # a lower-case z
    ],
)
async def test_a_time_outside_rfc3339_is_undecodable(
    redis: Redis, settings: Settings, time: str
) -> None:
    pairs = entry(time=time)
    handled, original, dlq = await consume_until_dead_lettered(redis, settings, pairs)

    assert handled == ["good-after-the-bad-one"]
    assert dlq["dlq.reason"] == "undecodable"
    assert f"time {time!r} is not RFC 3339" in dlq["dlq.error"]
    assert original == pairs


async def test_the_publisher_writes_the_spec_form_of_time(redis: Redis) -> None:
    await Publisher(redis, source=SOURCE).publish(CitizenDied.parse(DATA), id="written")
    [(_, raw)] = await redis.xrange(STREAM)
    assert raw[b"time"].decode() == raw[b"time"].decode().upper()
    assert len(raw[b"time"]) == len("2026-11-28T13:07:26.123Z")
    assert raw[b"time"].endswith(b"Z")


async def test_operators_see_why_an_entry_with_a_repeated_name_is_undecodable(
    redis: Redis, settings: Settings
) -> None:
    pairs = [*entry(id="first-id"), ("id", "second-id")]
    await consume_until_dead_lettered(redis, settings, pairs)

    [(dead, _)] = await redis.xrange(f"{STREAM}:dlq:strict")
    detail = await DeadLetters(redis).show(DeadLetterRef(STREAM, "strict", dead.decode()))
    assert detail.decode_error is not None
    assert "['id'] appear more than once" in detail.decode_error

    [(entry_id, raw), _] = await redis.xrange(STREAM)
    shown = decode_entry(STREAM, entry_id.decode(), raw)
    assert "['id'] appear more than once" in shown["error"]


@pytest.mark.parametrize("signedat", ["2026-12-07t03:00:00.000Z", "2026-12-07T03:00Z"])
def test_a_signedat_outside_rfc3339_is_a_bad_signature(signedat: str) -> None:
    signer = Signer("strict-test", bytes(range(32)))
    fields = dict(entry()) | {"signer": "strict-test", "signedat": signedat}
    fields["signature"] = signer.signature_of(fields)
    types = frozenset({"dukcapil.citizen.died.v1"})
    key = PublicSigningKey("strict-test", "adapter-dukcapil", "dukcapil", signer.public_key, types)
    ring = KeyRing([key])
    rejection = ring.check(Envelope.from_fields(fields), fields, "1796601600000-0")
    assert rejection is not None and rejection.reason == Reason.BAD_SIGNATURE
    assert "signedat, an RFC 3339 time" in rejection.error
