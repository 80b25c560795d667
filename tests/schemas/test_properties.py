"""Property tests: contracts round-trip, and no mutation of a valid payload slips through.

Every mutated payload (a required field missing, an extra field, a wrong type, a 15- or
17-digit or non-ASCII NIK, an impossible date) must be rejected with a ContractViolation that
names a field and repeats no identifier — never accepted, never another exception.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

import schemas
from bus import Contract, ContractViolation
from bus.cli.contracts import load
from schemas.common import NIK, PROVINCES

EXAMPLES = Path(schemas.__file__).parent / "examples"
CONTRACTS = {model.__contract__.event_type: model for model in load("schemas")}
VALID = {
    event_type: [
        json.loads(p.read_text()) for p in sorted((EXAMPLES / event_type).glob("valid-*.json"))
    ]
    for event_type in CONTRACTS
}
IDENTIFIER_LIKE = re.compile(r"[0-9]{13,}")
SIXTEEN = "^[0-9]{16}$"
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _leaves(schema: dict[str, Any], model: type[Contract]) -> dict[str, dict[str, Any]]:
    """Top-level property schemas with their $refs resolved."""
    defs = schema.get("$defs", {})
    out = {}
    for name, prop in schema.get("properties", {}).items():
        ref = prop.get("$ref")
        out[name] = defs[ref.rsplit("/", 1)[1]] if ref else prop
    return out


def _assert_rejected(model: type[Contract], payload: dict[str, Any], field: str) -> None:
    with pytest.raises(ContractViolation) as caught:
        model.parse(payload)
    fields = [path for path, _ in caught.value.problems]
    assert any(path == field or path.startswith(f"{field}.") for path in fields), (field, fields)
    for value in IDENTIFIER_LIKE.findall(json.dumps(payload)):
        assert value not in str(caught.value)


@pytest.mark.parametrize("event_type", sorted(CONTRACTS))
@FAST
@given(data=st.data())
def test_every_mutation_is_rejected_naming_the_field(event_type: str, data: st.DataObject) -> None:
    model = CONTRACTS[event_type]
    schema = model.model_json_schema()
    payload = dict(data.draw(st.sampled_from(VALID[event_type])))
    props = _leaves(schema, model)
    required = [f for f in schema.get("required", []) if f in payload]
    kind = data.draw(st.sampled_from(["missing", "extra", "wrong-type", "identifier", "date"]))
    if kind == "missing" and required:
        field = data.draw(st.sampled_from(required))
        del payload[field]
    elif kind == "extra":
        field = data.draw(st.from_regex(r"\A[a-z][a-z_]{0,15}\Z").filter(lambda f: f not in props))
        payload[field] = data.draw(st.one_of(st.integers(), st.text(max_size=5), st.none()))
    elif kind == "identifier" and (
        ids := [f for f, p in props.items() if p.get("pattern") == SIXTEEN and f in payload]
    ):
        field = data.draw(st.sampled_from(ids))
        payload[field] = data.draw(_bad_sixteen_digits(payload[field]))
    elif kind == "date" and (
        dates := [f for f, p in props.items() if p.get("format") == "date" and f in payload]
    ):
        field = data.draw(st.sampled_from(dates))
        payload[field] = data.draw(
            st.sampled_from(["2026-02-30", "2026-13-01", "2025-00-10", "tomorrow"])
        )
    else:  # wrong type: an object where a value (or a differently shaped object) belongs
        field = data.draw(st.sampled_from(sorted(payload)))
        payload[field] = {"unexpected": [1, 2]}
    _assert_rejected(model, payload, field)


def _bad_sixteen_digits(valid: str) -> st.SearchStrategy[str]:
    arabic_indic = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")
    return st.one_of(
        st.just(valid[:15]),  # 15 digits
        st.just(valid + "1"),  # 17 digits
        st.integers(0, 15).map(
            lambda i: valid[:i] + valid[i].translate(arabic_indic) + valid[i + 1 :]
        ),
        st.just(valid[:8] + "13" + valid[10:]),  # month 13
        st.just("99" + valid[2:]),  # no such province
    )


@pytest.mark.parametrize("event_type", sorted(CONTRACTS))
@FAST
@given(data=st.data())
def test_round_trip_keeps_every_valid_payload(event_type: str, data: st.DataObject) -> None:
    model = CONTRACTS[event_type]
    event = model.parse(data.draw(st.sampled_from(VALID[event_type])))
    assert model.parse(event.model_dump_json()) == event
    assert model.parse(event.model_dump(mode="json")) == event


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@pytest.mark.parametrize("event_type", sorted(CONTRACTS))
@FAST
@given(junk=st.dictionaries(st.text(max_size=12), JSON, max_size=8) | JSON)
def test_junk_never_crashes_the_validator(event_type: str, junk: Any) -> None:
    model = CONTRACTS[event_type]
    try:
        model.parse(junk if isinstance(junk, dict) else json.dumps(junk))
    except ContractViolation as exc:
        assert exc.problems  # a clear error, with at least one field and problem


def _valid_nik() -> st.SearchStrategy[str]:
    return st.builds(
        lambda province, rest, day, month, year, serial: (
            f"{province:02d}{rest:04d}{day:02d}{month:02d}{year:02d}{serial:04d}"
        ),
        st.sampled_from(sorted(PROVINCES)),
        st.integers(0, 9999),
        st.integers(1, 31) | st.integers(41, 71),
        st.integers(1, 12),
        st.integers(0, 99),
        st.integers(1, 9999),
    )


@settings(max_examples=300, deadline=None)
@given(nik=_valid_nik(), bad=st.data())
def test_nik_rules_accept_every_well_formed_nik_and_reject_each_broken_one(
    nik: str, bad: st.DataObject
) -> None:
    adapter = TypeAdapter(NIK)
    assert adapter.validate_python(nik) == nik
    broken = bad.draw(_bad_sixteen_digits(nik))
    with pytest.raises(ValidationError) as caught:
        adapter.validate_python(broken)
    [error] = caught.value.errors()
    assert "NIK" in error["msg"] and broken not in error["msg"]  # the rule, never the value
