"""The envelope's wire encoding: one UTF-8 field per CloudEvents attribute (docs/wire-format.md)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis import Redis as SyncRedis

from bus.envelope import OPTIONAL, REQUIRED, Envelope, format_time
from bus.errors import DecodeError

DATA = json.dumps(
    {"nik": "3573014107900001", "date_of_death": "2026-11-27", "kecamatan": "35.73.02"}
)


def full_envelope() -> Envelope:
    return Envelope(
        id="2ee8b89c-643d-57a2-a420-2db15553b5b6",
        source="urn:malangkota:dukcapil:siak",
        type="dukcapil.citizen.died.v1",
        time="2026-11-28T13:07:26.123Z",
        dataschema="simpul:dukcapil.citizen.died:1.3",
        data=DATA,
        subject="cit-5f0c7d1e",
        correlationid="corr-1",
        causationid="cause-1",
        traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        signature="c2lnbmF0dXJl",
        signer="dukcapil-2026",
        extensions={"tenant": "kota-malang", "batch42": "7"},
    )


def valid_fields() -> dict[str, str]:
    return {
        "specversion": "1.0",
        "id": "e-1",
        "source": "urn:malangkota:dukcapil:siak",
        "type": "dukcapil.citizen.died.v1",
        "time": "2026-11-28T13:07:26.123Z",
        "datacontenttype": "application/json",
        "dataschema": "simpul:dukcapil.citizen.died:1.0",
        "data": DATA,
    }


def as_bytes(fields: dict[str, str]) -> dict[bytes, bytes]:
    return {k.encode(): v.encode() for k, v in fields.items()}


# -- encoding -------------------------------------------------------------------------------


def test_to_fields_writes_every_attribute_as_a_string_with_data_last() -> None:
    fields = full_envelope().to_fields()

    assert all(isinstance(k, str) and isinstance(v, str) for k, v in fields.items())
    assert set(fields) == set(REQUIRED) | set(OPTIONAL) | {"tenant", "batch42"}
    assert list(fields)[:7] == list(REQUIRED[:7])
    assert list(fields)[-1] == "data"
    assert fields["specversion"] == "1.0"
    assert fields["datacontenttype"] == "application/json"


def test_absent_optional_attributes_are_not_written() -> None:
    fields = Envelope.from_fields(valid_fields()).to_fields()
    assert set(fields) == set(REQUIRED)


@pytest.mark.parametrize("keyed_by", ["bytes", "str"])
def test_round_trip_through_fields(keyed_by: str) -> None:
    envelope = full_envelope()
    fields = envelope.to_fields()
    raw = as_bytes(fields) if keyed_by == "bytes" else fields
    assert Envelope.from_fields(raw) == envelope


def test_field_order_is_not_significant() -> None:
    fields = full_envelope().to_fields()
    reversed_fields = dict(reversed(list(fields.items())))
    assert Envelope.from_fields(as_bytes(reversed_fields)) == full_envelope()


def test_extension_attributes_are_kept_and_written_back() -> None:
    fields = valid_fields() | {"tenant": "kota-malang", "x1": ""}
    envelope = Envelope.from_fields(as_bytes(fields))
    assert envelope.extensions == {"tenant": "kota-malang", "x1": ""}
    assert envelope.to_fields()["tenant"] == "kota-malang"
    assert Envelope.from_fields(envelope.to_fields()) == envelope


def test_stream_and_timestamp_are_derived() -> None:
    envelope = full_envelope()
    assert envelope.stream == "simpul:{dukcapil.citizen}"
    assert envelope.timestamp == datetime(2026, 11, 28, 13, 7, 26, 123000, tzinfo=UTC)


def test_format_time_is_utc_milliseconds_with_z() -> None:
    moment = datetime(2026, 11, 28, 20, 7, 26, 123456, tzinfo=timezone(timedelta(hours=7)))
    assert format_time(moment) == "2026-11-28T13:07:26.123Z"
    with pytest.raises(ValueError, match="timezone-aware"):
        format_time(datetime(2026, 11, 28, 13, 7, 26))


@pytest.mark.parametrize(
    "moment",
    [
        datetime(2026, 1, 1, 0, 30, 0, 999999, tzinfo=timezone(timedelta(hours=7))),
        datetime(999, 12, 31, 23, 59, 59, 1000, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999, tzinfo=timezone(timedelta(hours=5))),
        datetime(2026, 6, 1, 12, 0, tzinfo=timezone(timedelta(hours=5, minutes=45))),
    ],
)
def test_format_time_is_isoformat_in_milliseconds(moment: datetime) -> None:
    expected = moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    assert format_time(moment) == expected


@pytest.mark.parametrize(
    "time",
    [
        "2026-11-28T13:07:26.123Z",
        "2026-11-28T13:07:26Z",
        "2026-11-28T20:07:26.123+07:00",
        "2026-11-28T06:07:26-07:00",
        "2026-11-28T13:07:26.123456789Z",  # Java's Instant.toString() may print nanoseconds
    ],
)
def test_rfc3339_times_with_an_offset_are_accepted_verbatim(time: str) -> None:
    envelope = Envelope.from_fields(valid_fields() | {"time": time})
    assert envelope.time == time
    assert envelope.timestamp.utcoffset() is not None


# -- decode errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"specversion": "0.3"}, r"specversion is '0\.3', expected '1\.0'"),
        ({"datacontenttype": "text/plain"}, r"datacontenttype is 'text/plain'"),
        ({"id": "x" * 257}, r"id is 257 characters long, at most 256"),
        ({"type": "Dukcapil.Citizen.Died.v1"}, r"type 'Dukcapil\.Citizen\.Died\.v1' is not <dept>"),
        ({"type": "dukcapil.citizen.died"}, r"is not <dept>\.<aggregate>\.<verb>\.v<major>"),
        ({"dataschema": "simpul:dukcapil.citizen.moved:1.0"}, r"does not match type"),
        (
            {"dataschema": "simpul:dukcapil.citizen.died:2.0"},
            r"expected 'simpul:dukcapil\.citizen\.died:1\.<minor>'",
        ),
        (
            {"dataschema": "dukcapil.citizen.died"},
            r"dataschema 'dukcapil\.citizen\.died' does not match",
        ),
        ({"time": "28/11/2026 13:07"}, r"time '28/11/2026 13:07' is not RFC 3339"),
        ({"time": "2026-11-28T13:07:26.123"}, r"has no UTC offset"),
        ({"time": "2026-11-28"}, r"has no UTC offset"),
        # Python's fromisoformat accepts these; RFC 3339 (section 2.2) does not.
        ({"time": "2026-11-28t13:07:26Z"}, r"time '2026-11-28t13:07:26Z' is not RFC 3339"),
        ({"time": "2026-11-28T13:07Z"}, r"time '2026-11-28T13:07Z' is not RFC 3339"),
        ({"time": "2026-11-28T13:07:26.123z"}, r"is not RFC 3339"),
        ({"time": "2026-11-28 13:07:26Z"}, r"is not RFC 3339"),
        ({"time": "20261128T130726Z"}, r"is not RFC 3339"),
        ({"time": "2026-11-28T13:07:26+0700"}, r"is not RFC 3339"),
        ({"time": "2026-11-28T13:07:60Z"}, r"is not a valid date and time"),
        ({"time": "2026-13-28T13:07:26Z"}, r"is not a valid date and time"),
        ({"Tenant": "x"}, r"\['Tenant'\] are not CloudEvents attribute names"),
        ({"dlq.reason": "x"}, r"\['dlq\.reason'\] are not CloudEvents attribute names"),
        ({"a" * 21: "x"}, r"are not CloudEvents attribute names \(\[a-z0-9\]\{1,20\}\)"),
    ],
)
def test_decode_error_names_the_problem_and_keeps_the_raw_entry(
    change: dict[str, str], message: str
) -> None:
    raw = as_bytes(valid_fields() | change)
    with pytest.raises(DecodeError, match=message) as caught:
        Envelope.from_fields(raw)
    assert caught.value.raw == raw


@pytest.mark.parametrize("name", REQUIRED)
@pytest.mark.parametrize("how", ["missing", "empty"])
def test_a_missing_or_empty_required_field_is_named(name: str, how: str) -> None:
    fields = valid_fields()
    if how == "missing":
        del fields[name]
    else:
        fields[name] = ""
    raw = as_bytes(fields)
    with pytest.raises(
        DecodeError, match=rf"lacks required field\(s\) {name}; is it wire format v1\?"
    ) as caught:
        Envelope.from_fields(raw)
    assert caught.value.raw == raw


def test_several_missing_fields_are_all_named() -> None:
    with pytest.raises(
        DecodeError, match=r"lacks required field\(s\) specversion, id, source, type"
    ):
        Envelope.from_fields({b"data": b"{}", b"time": b"2026-11-28T13:07:26Z"})


def test_non_utf8_entry_is_undecodable_and_kept_byte_for_byte() -> None:
    raw = as_bytes(valid_fields()) | {b"data": b"\xff\xfe{}"}
    with pytest.raises(
        DecodeError, match=r"entry is not UTF-8 text \(invalid start byte at byte 0\)"
    ) as caught:
        Envelope.from_fields(raw)
    assert caught.value.raw == raw


def test_a_str_entry_keeps_its_raw_fields_as_bytes() -> None:
    fields = valid_fields() | {"specversion": "2.0"}
    with pytest.raises(DecodeError) as caught:
        Envelope.from_fields(fields)
    assert caught.value.raw == as_bytes(fields)


def test_an_oversized_bad_value_is_cut_short_in_the_message() -> None:
    with pytest.raises(DecodeError) as caught:
        Envelope.from_fields(valid_fields() | {"specversion": "9" * 1000})
    assert len(str(caught.value)) < 100


# -- property: any valid attribute values survive the wire -------------------------------------

_text = st.text(st.characters(codec="utf-8"), max_size=40)
_segment = st.from_regex(r"\A[a-z][a-z0-9_-]{0,10}\Z")
_offsets = st.integers(-(23 * 60 + 59), 23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))
_times = st.one_of(
    st.datetimes(
        min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1), timezones=_offsets
    ).map(datetime.isoformat),
    st.datetimes(
        min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
    ).map(format_time),
)
_extension_names = st.from_regex(r"\A[a-z0-9]{1,20}\Z").filter(
    lambda n: n not in REQUIRED + OPTIONAL
)


@st.composite
def envelopes(draw: st.DrawFn) -> Envelope:
    dept, aggregate, verb = draw(_segment), draw(_segment), draw(_segment)
    major, minor = draw(st.integers(1, 10_000)), draw(st.integers(0, 10_000))
    optional = {name: draw(st.none() | _text) for name in OPTIONAL}
    return Envelope(
        id=draw(st.text(st.characters(codec="utf-8"), min_size=1, max_size=256)),
        source=draw(_text.filter(bool)),
        type=f"{dept}.{aggregate}.{verb}.v{major}",
        time=draw(_times),
        dataschema=f"simpul:{dept}.{aggregate}.{verb}:{major}.{minor}",
        data=draw(_text.filter(bool)),
        extensions=draw(
            st.none() | st.dictionaries(_extension_names, _text, min_size=1, max_size=3)
        ),
        **optional,
    )


@given(envelopes())
def test_any_valid_envelope_round_trips_through_fields(envelope: Envelope) -> None:
    assert Envelope.from_fields(as_bytes(envelope.to_fields())) == envelope


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(envelope=envelopes())
def test_any_valid_envelope_round_trips_through_a_redis_stream(
    redis_url: str, envelope: Envelope
) -> None:
    with SyncRedis.from_url(redis_url) as client:
        entry = client.xadd("roundtrip", envelope.to_fields())
        [(_, raw)] = client.xrange("roundtrip", entry, entry)
        client.xdel("roundtrip", entry)
    assert Envelope.from_fields(raw) == envelope
