"""The canonical event (CloudEvents 1.0) and its wire encoding: one stream field per attribute.

``Envelope.to_fields()`` and ``Envelope.from_fields()`` are the only way events go into and
come out of Redis. Every value is a UTF-8 string; ``data`` is the JSON payload as text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

from bus import keys
from bus.contracts import DATASCHEMA_PATTERN
from bus.errors import ContractViolation, DecodeError
from bus.replies import repeated_names

SPECVERSION = "1.0"
CONTENT_TYPE = "application/json"

# Attributes defined by wire format v1, in the order they are written.
REQUIRED = ("specversion", "id", "source", "type", "time", "datacontenttype", "dataschema", "data")
OPTIONAL = ("subject", "correlationid", "causationid", "traceparent", "signature", "signer")
_KNOWN = frozenset(REQUIRED + OPTIONAL)
# CloudEvents extension attribute names: lowercase ASCII letters and digits, at most 20.
_EXTENSION_NAME = re.compile(r"^[a-z0-9]{1,20}$")
MAX_ID = 256
# RFC 3339 date-time as section 2.2 allows it: seconds and an offset required, upper-case T
# and Z. datetime.fromisoformat alone accepts far more of ISO 8601 (a lower-case t, no
# seconds, "20261128T130726Z"), which a non-Python consumer following the spec would refuse.
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?(?:Z|[+-][0-9]{2}:[0-9]{2})"
)


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with millisecond precision, e.g. ``2026-11-28T20:07:26.123Z``."""
    if moment.tzinfo is None:
        raise ValueError("event time must be timezone-aware (use datetime.now(UTC))")
    # isoformat(timespec="milliseconds") with Z, written out: ~1 µs less, once per event.
    u = moment.astimezone(UTC)
    return "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ" % (  # noqa: UP031 - the fastest form here
        u.year,
        u.month,
        u.day,
        u.hour,
        u.minute,
        u.second,
        u.microsecond // 1000,
    )


# Not frozen: a frozen dataclass costs ~1 us more per event on the consume hot path. Treat
# envelopes as immutable all the same; with_attributes() returns a changed copy.
@dataclass(slots=True, eq=False)
class Envelope:
    """One event as it travels: its CloudEvents attributes and its JSON payload (``data``)."""

    id: str
    source: str
    type: str
    time: str
    dataschema: str
    data: str
    subject: str | None = None
    correlationid: str | None = None
    causationid: str | None = None
    traceparent: str | None = None
    signature: str | None = None
    signer: str | None = None
    datacontenttype: str = CONTENT_TYPE
    specversion: str = SPECVERSION
    extensions: Mapping[str, str] | None = None  # CloudEvents extension attributes we don't model

    def __eq__(self, other: object) -> bool:  # equal by value, whatever the subclass
        if not isinstance(other, Envelope):
            return NotImplemented
        return all(getattr(self, f.name) == getattr(other, f.name) for f in fields(Envelope))

    __hash__ = None  # type: ignore[assignment]  # mutable by construction: not hashable

    @property
    def stream(self) -> str:
        """The stream this event belongs on (a partitioned aggregate: its subject's partition).

        Raises ContractViolation for a partitioned type without a subject."""
        aggregate = keys.aggregate_of(self.type)
        count = keys.partitions(aggregate)
        if count > 1 and not self.subject:
            problem = f"required: {aggregate} is partitioned by subject ({count} partitions)"
            raise ContractViolation(self.type, [("subject", problem)])
        return keys.stream_of(self.type, self.subject)

    @property
    def timestamp(self) -> datetime:
        return datetime.fromisoformat(self.time)

    def with_attributes(self, **changes: Any) -> Envelope:
        """A changed copy (always a plain Envelope: the changes are unchecked)."""
        values = {f.name: getattr(self, f.name) for f in fields(Envelope)}
        values.update(changes)
        return Envelope(**values)

    def to_fields(self) -> dict[str, str]:
        fields = {
            "specversion": self.specversion,
            "id": self.id,
            "source": self.source,
            "type": self.type,
            "time": self.time,
            "datacontenttype": self.datacontenttype,
            "dataschema": self.dataschema,
        }
        for name in OPTIONAL:
            value = getattr(self, name)
            if value is not None:
                fields[name] = value
        if self.extensions:
            fields.update(self.extensions)
        fields["data"] = self.data
        return fields

    @classmethod
    def from_fields(cls, raw: Mapping[bytes, bytes] | Mapping[str, str]) -> Envelope:
        """Decode a stream entry; raise DecodeError (keeping the raw entry) if it is not v1."""
        # A plain mapping cannot repeat a name; bus.replies keeps the pairs when Redis did.
        if getattr(raw, "pairs", None) is not None and (repeated := repeated_names(raw)):
            raise DecodeError(
                f"field name(s) {[name[:40] for name in repeated]} appear more than once; "
                "a field name appears at most once in an entry",
                _raw(raw),
            )
        try:
            fields = _texts(raw)
        except UnicodeDecodeError as exc:
            raise DecodeError(
                f"entry is not UTF-8 text ({exc.reason} at byte {exc.start})", _raw(raw)
            ) from None
        try:
            return _decode(fields)
        except DecodeError as exc:
            exc.raw = _raw(raw)
            raise


def _decode(fields: dict[str, str]) -> Envelope:
    if not all(map(fields.get, REQUIRED)):
        missing = [name for name in REQUIRED if not fields.get(name)]
        raise DecodeError(
            f"entry lacks required field(s) {', '.join(missing)}; is it wire format v1?"
        )
    if fields["specversion"] != SPECVERSION:
        raise DecodeError(f"specversion is {fields['specversion'][:20]!r}, expected '1.0'")
    if fields["datacontenttype"] != CONTENT_TYPE:
        raise DecodeError(
            f"datacontenttype is {fields['datacontenttype'][:60]!r}, expected {CONTENT_TYPE!r}"
        )
    if len(fields["id"]) > MAX_ID:
        raise DecodeError(f"id is {len(fields['id'])} characters long, at most {MAX_ID} allowed")
    if (fields["type"], fields["dataschema"]) not in _valid_schemas:
        _check_type(fields["type"], fields["dataschema"])
    _check_time(fields["time"])
    extensions: dict[str, str] | None = None
    if len(fields) > len(REQUIRED):
        extensions = {k: fields[k] for k in fields.keys() - _KNOWN} or None
        bad = sorted(k[:40] for k in extensions or () if not _EXTENSION_NAME.match(k))
        if bad:
            raise DecodeError(
                f"field name(s) {bad} are not CloudEvents attribute names ([a-z0-9]{{1,20}})"
            )
    return Envelope(
        id=fields["id"],
        source=fields["source"],
        type=fields["type"],
        time=fields["time"],
        dataschema=fields["dataschema"],
        data=fields["data"],
        subject=fields.get("subject"),
        correlationid=fields.get("correlationid"),
        causationid=fields.get("causationid"),
        traceparent=fields.get("traceparent"),
        signature=fields.get("signature"),
        signer=fields.get("signer"),
        extensions=extensions,
    )


# (type, dataschema) pairs already checked: types repeat, so the hot path skips two regexes.
_valid_schemas: set[tuple[str, str]] = set()
_VALID_SCHEMAS_MAX = 4096


def _check_type(event_type: str, dataschema: str) -> None:
    match = keys.TYPE_PATTERN.match(event_type)
    if match is None:
        raise DecodeError(f"type {event_type[:80]!r} is not <dept>.<aggregate>.<verb>.v<major>")
    schema = DATASCHEMA_PATTERN.match(dataschema)
    name, _, major = event_type.rpartition(".v")
    if schema is None or schema[1] != name or schema[2] != major:
        raise DecodeError(
            f"dataschema {dataschema[:80]!r} does not match type {event_type!r}; "
            f"expected 'simpul:{name}:{major}.<minor>'"
        )
    if len(_valid_schemas) < _VALID_SCHEMAS_MAX:
        _valid_schemas.add((event_type, dataschema))


def is_rfc3339(value: str) -> bool:
    """``value`` has the form of section 2.2 (its ranges are ``datetime.fromisoformat``'s)."""
    return _RFC3339.fullmatch(value) is not None


def _check_time(value: str) -> None:
    if _RFC3339.fullmatch(value) is None:
        if _NO_OFFSET.fullmatch(value):
            raise DecodeError(f"time {value[:40]!r} has no UTC offset; RFC 3339 requires one")
        raise DecodeError(f"time {value[:40]!r} is not RFC 3339; {_TIME_FORM}")
    try:
        datetime.fromisoformat(value)  # the ranges: month 13, hour 24, a leap second :60
    except ValueError:
        raise DecodeError(f"time {value[:40]!r} is not a valid date and time") from None


_NO_OFFSET = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}(?:T[0-9:.]*)?")
_TIME_FORM = "expected YYYY-MM-DDTHH:MM:SS[.fraction] and Z or ±HH:MM (docs/wire-format.md 2.2)"


def _texts(raw: Mapping[bytes, bytes] | Mapping[str, str]) -> dict[str, str]:
    try:
        return {k.decode(): v.decode() for k, v in raw.items()}  # type: ignore[union-attr]
    except AttributeError:  # already text (a str mapping, or a decode_responses client)
        return {str(k): v if isinstance(v, str) else v.decode() for k, v in raw.items()}


def _raw(raw: Mapping[bytes, bytes] | Mapping[str, str]) -> dict[bytes, bytes]:
    return {
        (k.encode() if isinstance(k, str) else k): (v.encode() if isinstance(v, str) else v)
        for k, v in raw.items()
    }
