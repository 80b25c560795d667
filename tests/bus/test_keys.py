"""Key names of wire format v1 (docs/wire-format.md, section 3) and their Cluster hash tags."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis
from redis.crc import key_slot

from bus import keys

STREAM = "simpul:{dukcapil.citizen}"


def test_aggregate_is_the_first_two_segments_of_the_type() -> None:
    assert keys.aggregate_of("dukcapil.citizen.died.v1") == "dukcapil.citizen"
    assert keys.aggregate_of("dpm-ptsp.izin_usaha.issued.v12") == "dpm-ptsp.izin_usaha"


def test_names_of_every_key() -> None:
    assert keys.stream("dukcapil.citizen") == STREAM
    assert keys.stream_of("dukcapil.citizen.moved.v2") == STREAM
    assert keys.dead_letters(STREAM, "dinsos") == "simpul:{dukcapil.citizen}:dlq:dinsos"
    assert keys.seen(STREAM, "e-1") == "simpul:{dukcapil.citizen}:seen:e-1"
    assert keys.done(STREAM, "dinsos", "e-1") == "simpul:{dukcapil.citizen}:done:dinsos:e-1"
    assert keys.quarantine("siak") == "simpul:quarantine:{siak}"


def test_all_keys_of_an_aggregate_share_one_cluster_slot() -> None:
    # An event id may contain braces: the hash tag is the *first* {...}, which is the aggregate's.
    event_id = "odd{id}with}braces{"
    related = [
        STREAM,
        keys.dead_letters(STREAM, "dinsos"),
        keys.seen(STREAM, event_id),
        keys.done(STREAM, "dinsos", event_id),
    ]
    assert {key_slot(k.encode()) for k in related} == {key_slot(b"dukcapil.citizen")}
    assert key_slot(keys.stream("bapenda.tax").encode()) == key_slot(b"bapenda.tax")


def test_is_stream_tells_streams_from_their_sub_keys() -> None:
    assert keys.is_stream(STREAM)
    assert not keys.is_stream(keys.dead_letters(STREAM, "dinsos"))
    assert not keys.is_stream(keys.seen(STREAM, "e-1"))
    assert not keys.is_stream(keys.quarantine("siak"))
    assert not keys.is_stream("other:{dukcapil.citizen}")


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "dukcapil.citizen.died",  # no version
        "dukcapil.citizen.v1",  # no verb
        "Dukcapil.citizen.died.v1",  # upper case
        "dukcapil.citizen.died.v0",  # majors start at 1
        "dukcapil.citizen.died.v01",
        "dukcapil.citizen.died.1",
        "dukcapil.citizen.record.died.v1",  # too many segments
        "dukcapil..died.v1",
        "1dukcapil.citizen.died.v1",  # a segment starts with a letter
        "dukcapil.citizen.died.v1 ",
    ],
)
def test_aggregate_of_rejects_a_bad_type_and_says_what_is_expected(bad: str) -> None:
    with pytest.raises(ValueError, match=r"<dept>\.<aggregate>\.<verb>\.v<major>") as caught:
        keys.aggregate_of(bad)
    assert repr(bad) in str(caught.value)
    with pytest.raises(ValueError):
        keys.stream_of(bad)


async def test_scan_pattern_finds_streams_and_their_sub_keys_only(redis: Redis) -> None:
    await redis.xadd(STREAM, {"k": "v"})
    await redis.xadd(keys.dead_letters(STREAM, "dinsos"), {"k": "v"})
    await redis.set(keys.seen(STREAM, "e-1"), "1-0")
    await redis.set(keys.quarantine("siak"), "x")
    await redis.set("unrelated", "x")

    found = {k.decode() async for k in redis.scan_iter(match=keys.stream_pattern())}

    assert found == {STREAM, keys.dead_letters(STREAM, "dinsos"), keys.seen(STREAM, "e-1")}
    assert [k for k in found if keys.is_stream(k)] == [STREAM]
