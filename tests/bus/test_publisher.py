"""The publisher against a real Redis: validate first, then one idempotent function call each."""

from __future__ import annotations

import copy
import hashlib
import pickle
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from importlib.resources import files

import pytest
from pydantic import BaseModel
from redis import Redis as SyncRedis
from redis.asyncio import Redis
from redis.connection import PythonRespSerializer
from redis.exceptions import DataError, ResponseError

from bus import functions, keys
from bus.contracts import Contract
from bus.envelope import Envelope
from bus.errors import ConfigurationError, ContractViolation
from bus.functions import FunctionsNotLoaded
from bus.publisher import Publisher, Retention, event_id
from schemas.dukcapil import CitizenDied, CitizenMoved

SOURCE = "urn:malangkota:dukcapil:siak"
STREAM = "simpul:{dukcapil.citizen}"
A_NIK = "3573014107900001"  # synthetic
SCRIPT_SHA = hashlib.sha1(files("bus").joinpath("publish.lua").read_bytes()).hexdigest()
BATCH_SHA = hashlib.sha1(files("bus").joinpath("publish_batch.lua").read_bytes()).hexdigest()


class FamilyFormed(Contract, event_type="testdept.family.formed.v1", register=False):
    kk: str


class ParcelSold(Contract, event_type="testdept.parcel.sold.v1", register=False):
    parcel: str


def died(nik: str = A_NIK) -> CitizenDied:
    return CitizenDied(nik=nik, date_of_death=date(2026, 11, 27), kecamatan="35.73.02")


@pytest.fixture
def publisher(redis: Redis) -> Publisher:
    return Publisher(redis, source=SOURCE)


# -- validation happens before anything reaches Redis -------------------------------------------


async def test_an_invalid_constructed_instance_is_rejected_before_redis(
    redis: Redis, publisher: Publisher
) -> None:
    bad_nik = A_NIK[:-1]
    invalid = CitizenDied.model_construct(
        nik=bad_nik, date_of_death=date(2026, 11, 27), kecamatan="35.73.09"
    )

    with pytest.raises(ContractViolation) as caught:
        await publisher.publish(invalid)

    assert caught.value.event_type == "dukcapil.citizen.died.v1"
    assert {path for path, _ in caught.value.problems} == {"nik", "kecamatan"}
    assert bad_nik not in str(caught.value)
    assert await redis.xlen(STREAM) == 0
    assert await redis.dbsize() == 0
    assert await redis.script_exists(SCRIPT_SHA) == [False]  # clients never load scripts


async def test_an_incomplete_constructed_instance_names_the_missing_fields(
    redis: Redis, publisher: Publisher
) -> None:
    with pytest.raises(ContractViolation, match=r"date_of_death: Field required"):
        await publisher.publish(CitizenDied.model_construct(nik=A_NIK))
    assert await redis.xlen(STREAM) == 0


async def test_violation_from_publish_does_not_leak_the_value_in_its_traceback(
    publisher: Publisher,
) -> None:
    bad_nik = A_NIK[:-1]  # 15 digits: the log processor's 16-digit mask does not catch it
    invalid = CitizenDied.model_construct(
        nik=bad_nik, date_of_death=date(2026, 11, 27), kecamatan="35.73.02"
    )
    with pytest.raises(ContractViolation) as caught:
        await publisher.publish(invalid)
    assert bad_nik not in "".join(traceback.format_exception(caught.value))


async def test_a_copy_changed_without_validation_is_rejected_before_redis(
    redis: Redis, publisher: Publisher
) -> None:
    # model_copy(update=) checks nothing: the copy must not pass as the validated original.
    valid = died()
    assert valid.validated
    changed = valid.model_copy(update={"nik": A_NIK[:-1]})
    with pytest.raises(ContractViolation, match="nik"):
        await publisher.publish(changed)
    assert await redis.xlen(STREAM) == 0


@pytest.mark.parametrize(
    "copy_of", [copy.copy, copy.deepcopy, lambda e: pickle.loads(pickle.dumps(e))]
)
async def test_a_copy_of_a_constructed_instance_is_still_checked(
    redis: Redis, publisher: Publisher, copy_of: Callable[[CitizenDied], CitizenDied]
) -> None:
    invalid = CitizenDied.model_construct(
        nik=A_NIK[:-1], date_of_death=date(2026, 11, 27), kecamatan="35.73.02"
    )
    with pytest.raises(ContractViolation, match="nik"):
        await publisher.publish(copy_of(invalid))
    assert await redis.xlen(STREAM) == 0


def test_only_validation_marks_an_instance_validated() -> None:
    valid = died()
    assert valid.validated
    assert CitizenDied.parse(valid.model_dump(mode="json")).validated
    assert CitizenDied.model_validate_json(valid.model_dump_json()).validated
    constructed = CitizenDied.model_construct(**dict(valid))
    assert not constructed.validated
    assert constructed == valid  # the mark is no field: equality and dumps ignore it
    assert constructed.model_dump_json() == valid.model_dump_json()
    assert not valid.model_copy().validated


async def test_a_validated_instance_is_not_validated_again_on_publish(
    redis: Redis, publisher: Publisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    original = CitizenDied.model_validate_json

    def counting(data: str | bytes, **kwargs: object) -> CitizenDied:
        calls.append("validate")
        return original(data, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(CitizenDied, "model_validate_json", counting)
    await publisher.publish_many([died(), died("3573014107900002")])
    assert calls == []
    await publisher.publish(CitizenDied.model_construct(**dict(died("3573014107900003"))))
    assert calls == ["validate"]
    assert await redis.xlen(STREAM) == 3


async def test_an_id_the_decoder_would_reject_is_refused_before_redis(
    redis: Redis, publisher: Publisher
) -> None:
    # Every consumer dead-letters an entry whose id exceeds 256 characters as undecodable, so
    # the publisher must not write one.
    with pytest.raises(ConfigurationError):
        await publisher.publish(died(), id="x" * 257)
    assert await redis.xlen(STREAM) == 0


@pytest.mark.parametrize("thing", [{"nik": A_NIK}, "event", 42])
async def test_only_contract_instances_can_be_published(
    redis: Redis, publisher: Publisher, thing: object
) -> None:
    with pytest.raises(
        ConfigurationError, match="can only publish instances of a declared contract"
    ):
        await publisher.publish(thing)  # type: ignore[arg-type]
    assert await redis.dbsize() == 0


async def test_models_without_a_wire_identity_cannot_be_published(
    redis: Redis, publisher: Publisher
) -> None:
    class Plain(BaseModel):
        nik: str

    class Abstract(Contract):
        nik: str

    for model in (Plain(nik=A_NIK), Abstract(nik=A_NIK)):
        with pytest.raises(ConfigurationError, match=type(model).__qualname__):
            await publisher.publish(model)  # type: ignore[arg-type]
    assert await redis.dbsize() == 0


def test_configuration_errors() -> None:
    with pytest.raises(ConfigurationError, match="needs a source URN"):
        Publisher(None, source="")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="retention of default must be positive"):
        Retention(timedelta(0))
    with pytest.raises(ConfigurationError, match=r"of dukcapil\.citizen must be positive"):
        Retention(per_aggregate={"dukcapil.citizen": timedelta(seconds=-1)})


# -- what is written ----------------------------------------------------------------------------


async def test_publish_writes_the_envelope_fields(redis: Redis, publisher: Publisher) -> None:
    moment = datetime(2026, 11, 28, 13, 7, 26, 123456, tzinfo=UTC)
    result = await publisher.publish(
        died(), id="e-1", subject="cit-1", time=moment, correlationid="c-1"
    )

    assert (result.event_id, result.stream, result.duplicate) == ("e-1", STREAM, False)
    [(entry, raw)] = await redis.xrange(STREAM)
    assert entry.decode() == result.entry_id
    envelope = Envelope.from_fields(raw)
    assert envelope.time == "2026-11-28T13:07:26.123Z"
    assert envelope.dataschema == "simpul:dukcapil.citizen.died:1.0"
    assert (envelope.subject, envelope.correlationid, envelope.causationid) == (
        "cit-1",
        "c-1",
        None,
    )
    assert CitizenDied.parse(envelope.data) == died()


async def test_without_an_id_each_publish_is_a_new_event(
    redis: Redis, publisher: Publisher
) -> None:
    first = await publisher.publish(died())
    second = await publisher.publish(died())
    assert first.event_id != second.event_id
    assert uuid.UUID(first.event_id).version == 4
    assert await redis.xlen(STREAM) == 2


async def test_an_envelope_is_published_as_is(redis: Redis, publisher: Publisher) -> None:
    envelope = publisher.envelope(died(), id="e-env")
    result = await publisher.publish(envelope)
    [(_, raw)] = await redis.xrange(STREAM)
    assert Envelope.from_fields(raw) == envelope
    assert result.event_id == "e-env"


# -- idempotency ----------------------------------------------------------------------------------


async def test_publishing_an_id_twice_adds_one_entry(redis: Redis) -> None:
    publisher = Publisher(redis, source=SOURCE, dedupe_ttl=timedelta(hours=1))
    first = await publisher.publish(died(), id="e-1")
    again = await publisher.publish(died(), id="e-1", time=datetime.now(UTC) + timedelta(days=1))

    assert not first.duplicate
    assert again.duplicate
    assert again.entry_id == first.entry_id
    assert await redis.xlen(STREAM) == 1
    seen = keys.seen(STREAM, "e-1")
    assert (await redis.get(seen)).decode() == first.entry_id
    assert 3_590_000 < await redis.pttl(seen) <= 3_600_000


async def test_dedupe_is_per_stream(redis: Redis, publisher: Publisher) -> None:
    on_citizen = await publisher.publish(died(), id="same")
    on_parcel = await publisher.publish(ParcelSold(parcel="p-1"), id="same")
    assert not on_citizen.duplicate
    assert not on_parcel.duplicate
    assert on_parcel.stream == "simpul:{testdept.parcel}"


async def test_publish_many_dedupes_each_event_within_one_pipeline(
    redis: Redis, publisher: Publisher
) -> None:
    earlier = await publisher.publish(died(), id="a")
    moved = CitizenMoved(
        nik=A_NIK, address="Jl. Ijen 1", kecamatan="35.73.01", moved_on=date(2026, 11, 1)
    )
    batch = [
        publisher.envelope(died(), id="a"),  # published before
        publisher.envelope(died(), id="b"),
        publisher.envelope(moved, id="b"),  # duplicate within the batch
        died(),  # a contract instance: gets a fresh id
        publisher.envelope(ParcelSold(parcel="p-1"), id="a"),  # same id, another stream
    ]

    results = await publisher.publish_many(batch)

    assert [r.duplicate for r in results] == [True, False, True, False, False]
    assert results[0].entry_id == earlier.entry_id
    assert results[2].entry_id == results[1].entry_id
    assert [r.stream for r in results] == [STREAM] * 4 + ["simpul:{testdept.parcel}"]
    assert await redis.xlen(STREAM) == 3
    assert await redis.xlen("simpul:{testdept.parcel}") == 1
    # Added in batch order.
    entries = [e.decode() for e, _ in await redis.xrange(STREAM)]
    assert entries == [earlier.entry_id, results[1].entry_id, results[3].entry_id]
    assert await publisher.publish_many([]) == []


async def test_publish_runs_the_admins_functions_and_names_a_missing_library(
    redis: Redis, publisher: Publisher
) -> None:
    first = await publisher.publish(died(), id="e-1")
    # FCALL of the library the admin loaded: no script is ever loaded by a client.
    assert await redis.script_exists(SCRIPT_SHA, BATCH_SHA) == [False, False]
    await redis.function_flush()

    with pytest.raises(FunctionsNotLoaded, match=r"simpul functions load"):
        await Publisher(redis, source=publisher.source).publish(died(), id="e-2")
    with pytest.raises(FunctionsNotLoaded, match=r"simpul functions load"):
        await publisher.publish_many([publisher.envelope(died(), id="e-2")])

    await functions.load(redis)  # what `simpul functions load` does
    again = await publisher.publish_many(
        [publisher.envelope(died(), id="e-1"), publisher.envelope(died(), id="e-2")]
    )
    assert [r.duplicate for r in again] == [True, False]
    assert again[0].entry_id == first.entry_id
    assert await redis.xlen(STREAM) == 2


async def test_an_entry_over_the_cap_is_refused_by_the_publish_function(
    redis: Redis, publisher: Publisher
) -> None:
    big = publisher.envelope(died(), id="big")
    fields = big.to_fields()
    fields["data"] = fields["data"][:-1] + ', "pad": "' + "x" * functions.MAX_ENTRY_BYTES + '"}'
    flat = [v for pair in fields.items() for v in pair]
    seen = keys.seen(STREAM, "big")
    with pytest.raises(
        ResponseError,
        match=r"SIMPUL_TOO_LARGE the entry has \d+ bytes; "
        r"the bus admits at most 1048576",
    ):
        await redis.fcall("simpul_1_publish", 2, STREAM, seen, "1000", "", *flat)  # type: ignore[arg-type]
    small = keys.seen(STREAM, "small")
    batch = ["1000", "", "2", "k", "v", str(len(flat)), *flat]  # a small entry, then the big one
    with pytest.raises(ResponseError, match=r"SIMPUL_TOO_LARGE entry 2 of the call"):
        await redis.fcall("simpul_1_publish_batch", 3, STREAM, small, seen, *batch)  # type: ignore[arg-type]
    assert not await redis.exists(STREAM, seen, small)  # nothing added, not even the small one


# -- retention --------------------------------------------------------------------------------


async def _add_entries(redis: Redis, at_ms: int, count: int) -> None:
    async with redis.pipeline(transaction=False) as pipe:
        for seq in range(count):
            pipe.xadd(STREAM, {"k": "v"}, id=f"{at_ms}-{seq}")
        await pipe.execute()


async def test_minid_retention_trims_entries_older_than_the_retention(redis: Redis) -> None:
    now_ms = int(time.time() * 1000)
    old_ms, recent_ms = now_ms - 2 * 86_400_000, now_ms - 3_600_000
    await _add_entries(redis, old_ms, 1_000)
    await _add_entries(redis, recent_ms, 5)
    publisher = Publisher(
        redis,
        source=SOURCE,
        retention=Retention(per_aggregate={"dukcapil.citizen": timedelta(days=1)}),
    )

    result = await publisher.publish(died())

    ids = [e.decode() for e, _ in await redis.xrange(STREAM)]
    old_left = [i for i in ids if i.startswith(f"{old_ms}-")]
    # MINID ~ removes whole macro nodes only: old entries sharing a node with newer ones stay.
    node_size = int((await redis.config_get("stream-node-max-entries"))["stream-node-max-entries"])
    assert len(old_left) < node_size
    assert [i for i in ids if i.startswith(f"{recent_ms}-")] == [
        f"{recent_ms}-{n}" for n in range(5)
    ]
    assert ids[-1] == result.entry_id


async def test_without_retention_nothing_is_trimmed(redis: Redis) -> None:
    old_ms = int(time.time() * 1000) - 400 * 86_400_000
    await _add_entries(redis, old_ms, 300)
    other_aggregate_only = Retention(per_aggregate={"bapenda.tax": timedelta(days=1)})
    for retention in (None, other_aggregate_only):
        await Publisher(redis, source=SOURCE, retention=retention).publish(died())
    assert await redis.xlen(STREAM) == 302


def test_minid_is_now_minus_the_retention() -> None:
    retention = Retention(timedelta(days=7), per_aggregate={"dukcapil.citizen": timedelta(hours=1)})
    now_ms = 1_795_871_246_123
    assert retention.minid("bapenda.tax", now_ms) == "1795266446123-0"
    assert retention.minid("dukcapil.citizen", now_ms) == f"{now_ms - 3_600_000}-0"
    assert Retention().minid("dukcapil.citizen", now_ms) == ""


# -- deterministic ids --------------------------------------------------------------------------


def test_event_id_is_deterministic_and_distinguishes_records() -> None:
    first = event_id(SOURCE, "kematian", 4711, 1)
    assert first == event_id(SOURCE, "kematian", 4711, 1)
    assert first == event_id(SOURCE, "kematian", "4711", "1")  # parts are formatted with str()
    assert first != event_id(SOURCE, "kematian", 4711, 2)
    assert first != event_id("urn:malangkota:dukcapil:other", "kematian", 4711, 1)
    assert event_id(SOURCE, "a", "bc") != event_id(SOURCE, "ab", "c")  # parts are separated


def test_event_id_is_the_documented_uuid5() -> None:
    # docs/wire-format.md, section 2.1: the test vector, and the algorithm PHP/Java implement.
    assert event_id(SOURCE, "kematian", 4711, 1) == "2ee8b89c-643d-57a2-a420-2db15553b5b6"
    namespace = uuid.UUID("5a1b0c2e-3d4f-5a6b-8c7d-9e0f1a2b3c4d")
    digest = bytearray(
        hashlib.sha1(namespace.bytes + f"{SOURCE}\x1fkematian\x1f4711\x1f1".encode()).digest()[:16]
    )
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    assert event_id(SOURCE, "kematian", 4711, 1) == str(uuid.UUID(bytes=bytes(digest)))
    assert uuid.UUID(event_id(SOURCE)).version == 5


@pytest.mark.parametrize(
    "key",
    [("kematian", 4711, 1), ("peristiwa", "ä/ß", "2026-12-07T01:02:03+07:00"), (), ("x" * 300,)],
)
def test_event_id_equals_the_standard_library_uuid5(key: tuple[object, ...]) -> None:
    name = "\x1f".join([SOURCE, *(str(part) for part in key)])
    namespace = uuid.UUID("5a1b0c2e-3d4f-5a6b-8c7d-9e0f1a2b3c4d")
    assert event_id(SOURCE, *key) == str(uuid.uuid5(namespace, name))


async def test_publish_many_keeps_input_order_across_streams_and_chunks(
    redis: Redis, publisher: Publisher
) -> None:
    # 250 events on one stream (three script calls of at most 100) interleaved with another
    # stream's; the results must line up with the input, whatever the grouping.
    moved = CitizenMoved(
        nik=A_NIK, address="Jl. Ijen 1", kecamatan="35.73.02", moved_on="2026-01-01"
    )
    other = "simpul:{testdept.family}"
    events = []
    for i in range(250):
        events.append(publisher.envelope(moved, id=f"m-{i}"))
        if i % 50 == 0:
            events.append(publisher.envelope(FamilyFormed(kk="f"), id=f"f-{i}"))
    results = await publisher.publish_many(events)
    assert [r.event_id for r in results] == [e.id for e in events]
    assert [r.stream for r in results] == [e.stream for e in events]
    assert await redis.xlen(STREAM) == 250 and await redis.xlen(other) == 5
    again = await publisher.publish_many(events)
    assert all(r.duplicate for r in again)
    assert [r.entry_id for r in again] == [r.entry_id for r in results]


def _stream_length_reaches(url: str, stream: str, length: int, within_s: float = 5.0) -> bool:
    """From another connection, blocking (a generator publish_many consumes cannot await)."""
    with SyncRedis.from_url(url) as client:
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            if client.xlen(stream) >= length:
                return True
            time.sleep(0.01)
    return False


async def test_publish_many_sends_each_full_chunk_while_the_events_are_still_being_made(
    redis_url: str, redis: Redis, publisher: Publisher
) -> None:
    # An adapter maps its records in the iterable publish_many consumes: the first chunk's
    # call must reach Redis (and run) while the iterable is still producing the next ones.
    seen_while_mapping: list[bool] = []

    def events() -> Iterator[Envelope]:
        for i in range(250):
            if i in (100, 200):
                seen_while_mapping.append(_stream_length_reaches(redis_url, STREAM, i))
            yield publisher.envelope(died(), id=f"s-{i}")

    results = await publisher.publish_many(events())
    assert seen_while_mapping == [True, True]
    assert [r.event_id for r in results] == [f"s-{i}" for i in range(250)]
    assert not any(r.duplicate for r in results)
    entries = await redis.xrange(STREAM)
    assert [fields[b"id"].decode() for _, fields in entries] == [f"s-{i}" for i in range(250)]


async def test_publish_many_sends_everything_again_when_its_connection_fails_mid_batch(
    redis_url: str, redis: Redis, publisher: Publisher
) -> None:
    # The connection carrying the calls is killed after the first chunk went out: the batch
    # is sent again on a fresh connection, and each event is on the stream once.
    killed: list[int] = []

    def events() -> Iterator[Envelope]:
        for i in range(250):
            if i == 150:
                assert _stream_length_reaches(redis_url, STREAM, 100)
                with SyncRedis.from_url(redis_url) as client:
                    killed.append(client.client_kill_filter(_type="normal", skipme=True))
            yield publisher.envelope(died(), id=f"k-{i}")

    results = await publisher.publish_many(events())
    assert killed and killed[0] >= 1
    assert [r.event_id for r in results] == [f"k-{i}" for i in range(250)]
    # Added by the first attempt, found by the second: reported as duplicates, as a retried
    # pipeline reports them.
    assert [r.duplicate for r in results[:100]] == [True] * 100
    assert not any(r.duplicate for r in results[100:])
    entries = await redis.xrange(STREAM)
    assert [fields[b"id"].decode() for _, fields in entries] == [f"k-{i}" for i in range(250)]
    assert [r.entry_id for r in results] == [e.decode() for e, _ in entries]


async def test_an_iterable_that_raises_leaves_the_calls_sent_before_and_nothing_else(
    redis: Redis, publisher: Publisher
) -> None:
    class Broken(Exception):
        pass

    def events() -> Iterator[Envelope]:
        for i in range(150):
            yield publisher.envelope(died(), id=f"b-{i}")
        raise Broken

    with pytest.raises(Broken):
        await publisher.publish_many(events())
    # The full chunk went out before the failure (as a crash there would leave it); a
    # publish of the same events then finds them, and the pool's connections still work.
    assert await redis.xlen(STREAM) == 100
    again = await publisher.publish_many(
        [publisher.envelope(died(), id=f"b-{i}") for i in range(150)]
    )
    assert [r.duplicate for r in again] == [True] * 100 + [False] * 50
    assert await redis.xlen(STREAM) == 150


async def test_publish_many_writes_each_entry_with_its_own_fields_whatever_its_neighbours(
    redis: Redis, publisher: Publisher
) -> None:
    # Events with and without optional attributes (subject, correlationid, an extension) share
    # one publish_batch.lua call: every entry must hold exactly its envelope's fields, in order.
    plain = publisher.envelope(died(), id="plain-1")
    with_subject = publisher.envelope(died(), id="subject-1", subject="3573014107900002")
    correlated = publisher.envelope(died(), id="corr-1", correlationid="req-7")
    extended = plain.with_attributes(id="ext-1", extensions={"traceflag": "1"})
    plain_again = publisher.envelope(died(), id="plain-2")
    events = [plain, with_subject, correlated, extended, plain_again]
    results = await publisher.publish_many(events)
    assert not any(r.duplicate for r in results)
    entries = await redis.xrange(STREAM)
    assert len(entries) == 5
    for envelope, (_, fields) in zip(events, entries, strict=True):
        assert [(k.decode(), v.decode()) for k, v in fields.items()] == list(
            envelope.to_fields().items()
        )


def test_the_wire_arguments_are_the_fields_in_order_as_bytes(publisher: Publisher) -> None:
    from bus.publisher import _wire  # noqa: PLC0415 - the private encoder publish_many uses

    plain = publisher.envelope(died(), id="plain-1")
    every = plain.with_attributes(
        subject="s",
        correlationid="c",
        causationid="k",
        traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        signature="sig",
        signer="key-1",
    )
    extended = plain.with_attributes(extensions={"traceflag": "1"}, data='{"nik":"é"}')
    for envelope in (plain, every, extended):
        expected = [text.encode() for pair in envelope.to_fields().items() for text in pair]
        assert _wire(envelope) == expected


@pytest.mark.parametrize(
    "args",
    [
        ("FCALL", "simpul_1_publish", 2, b"k1", b"k2", b"\x00\xff", b""),
        ("FCALL", "simpul_1_publish", 1, "k", "é", 7, -3, 0.5, 1e100),
        ("EVAL", "return 1", 0),
        ("XADD", "s", "*", "f", "v"),  # not a function call: redis-py's own packing
    ],
)
def test_function_calls_pack_as_redis_py_packs_them(redis: Redis, args: tuple[object]) -> None:
    connection = redis.connection_pool.make_connection()
    usual = PythonRespSerializer(6000, connection.encoder.encode)
    assert b"".join(connection.pack_command(*args)) == b"".join(usual.pack(*args))


def test_a_function_argument_redis_py_refuses_is_still_refused(redis: Redis) -> None:
    connection = redis.connection_pool.make_connection()
    with pytest.raises(DataError, match="bool"):
        connection.pack_command("FCALL", "simpul_1_publish", 1, True)
