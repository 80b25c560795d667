"""Payloads generated from docs/asyncapi.json, as a developer without Python would make them.

Read as AsyncAPI reads it (JSON Schema draft-07), each payload schema must mean what the
contract's own JSON Schema (draft 2020-12) means; the contract check then accepts a generated
payload or refuses it naming fields — rules beyond JSON Schema (a NIK's birth date, a known
kelurahan, dates not in the future) — and never quotes an identifier, never crashes.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft7Validator, Draft202012Validator, FormatChecker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

import schemas
from bus import ContractViolation
from bus.cli.contracts import docs_files, load

CONTRACTS = {model.__contract__.event_type: model for model in load("schemas")}
DOC: dict[str, Any] = json.loads(docs_files()["asyncapi.json"])
DOC_URI = "urn:simpul:asyncapi"
REGISTRY = Registry().with_resource(DOC_URI, Resource(contents=DOC, specification=DRAFT7))
IDENTIFIER_LIKE = re.compile(r"[0-9]{13,}")
FAST = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    """Follow a ``$ref`` into the document; draft-07 ignores its siblings."""
    while "$ref" in schema:
        node: Any = DOC
        for part in schema["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Both schemas at once, for the keywords the contracts use: properties merged, required
    united, an enum narrowed, any other keyword of ``extra`` winning."""
    merged = {**base, **{k: v for k, v in extra.items() if k not in ("properties", "required")}}
    if "enum" in base and "enum" in extra:
        merged["enum"] = [v for v in base["enum"] if v in extra["enum"]]
    properties = dict(base.get("properties", {}))
    for name, sub in extra.get("properties", {}).items():
        properties[name] = _merge(_resolve(properties.get(name, {})), _resolve(sub))
    if properties:
        merged["properties"] = properties
    required = [*base.get("required", ()), *extra.get("required", ())]
    if required:
        merged["required"] = list(dict.fromkeys(required))
    return merged


def _flatten(schema: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The schema with its ``allOf`` merged in, and the conditionals (``if``) it holds."""
    schema = _resolve(schema)
    rules = []
    merged = {k: v for k, v in schema.items() if k != "allOf"}
    for part in map(_resolve, schema.get("allOf", ())):
        if "if" in part:
            rules.append(part)
        else:
            inner, more = _flatten(part)
            merged, rules = _merge(inner, merged), [*rules, *more]
    return merged, rules


def _string(schema: dict[str, Any]) -> st.SearchStrategy[str]:
    if "pattern" in schema:
        pattern = schema["pattern"].removeprefix("^").removesuffix("$")
        return st.from_regex(pattern, fullmatch=True)
    match schema.get("format"):
        case "date":
            return st.dates(date(1990, 1, 1), date.today()).map(date.isoformat)
        case "date-time":
            offsets = st.sampled_from([UTC, timezone(timedelta(hours=7))])
            moments = st.datetimes(datetime(1990, 1, 1), datetime(2026, 1, 1), timezones=offsets)
            return moments.map(lambda moment: moment.isoformat())
        case "uuid":
            return st.uuids().map(str)
    return st.text(min_size=schema.get("minLength", 0), max_size=schema.get("maxLength", 30))


def payloads(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values of ``schema`` (the subset of draft-07 the contracts' schemas use)."""
    schema, rules = _flatten(schema)
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "anyOf" in schema:
        return st.one_of([payloads(option) for option in schema["anyOf"]])
    return _of_type(schema, rules)


def _of_type(schema: dict[str, Any], rules: list[dict[str, Any]]) -> st.SearchStrategy[Any]:
    match schema.get("type"):
        case "string":
            found: st.SearchStrategy[Any] = _string(schema)
        case "integer":
            found = st.integers(schema.get("minimum"), schema.get("maximum"))
        case "null":
            found = st.none()
        case "array":
            sizes = {"min_size": schema.get("minItems", 0), "max_size": schema.get("maxItems", 4)}
            found = st.lists(payloads(schema["items"]), **sizes)
        case "object":
            found = _object(schema, rules)
        case other:
            raise AssertionError(f"no strategy for type {other!r} ({sorted(schema)})")
    return found


def _object(schema: dict[str, Any], rules: list[dict[str, Any]]) -> st.SearchStrategy[Any]:
    properties = schema.get("properties", {})
    required = set(schema.get("required", ()))
    fields = st.fixed_dictionaries(
        {name: payloads(sub) for name, sub in properties.items() if name in required},
        optional={name: payloads(sub) for name, sub in properties.items() if name not in required},
    )

    @st.composite
    def conditioned(draw: st.DrawFn) -> dict[str, Any]:
        value = dict(draw(fields))
        for rule in rules:  # draw what the branch that applies demands
            branch = rule.get("then" if Draft7Validator(rule["if"]).is_valid(value) else "else")
            for name, sub in (branch or {}).get("properties", {}).items():
                if name in value or name in (branch or {}).get("required", ()):
                    value[name] = draw(payloads(_merge(_resolve(properties.get(name, {})), sub)))
        return value

    return conditioned()


def _validator(event_type: str) -> Draft7Validator:
    pointer = f"{DOC_URI}#/components/messages/{event_type}/payload"
    return Draft7Validator({"$ref": pointer}, registry=REGISTRY)


@pytest.mark.parametrize("event_type", sorted(CONTRACTS))
@FAST
@given(data=st.data())
def test_a_payload_the_document_allows_the_contracts_schema_allows_and_the_check_handles(
    event_type: str, data: st.DataObject
) -> None:
    model = CONTRACTS[event_type]
    message = DOC["components"]["messages"][event_type]
    payload = data.draw(payloads(message["payload"]).filter(_validator(event_type).is_valid))
    own = Draft202012Validator(model.model_json_schema())
    errors = [f"{list(e.absolute_path)}: {e.message[:120]}" for e in own.iter_errors(payload)]
    assert errors == [], "docs/asyncapi.json allows what the contract's JSON Schema refuses"
    try:
        model.parse(payload)
    except ContractViolation as exc:
        assert exc.problems
        for field, rule in exc.problems:
            assert field.split(".")[0] in payload, field
            assert rule
        shown = str(exc) + repr(exc.problems)
        assert not [n for n in IDENTIFIER_LIKE.findall(json.dumps(payload)) if n in shown]


def test_the_strategies_generate_payloads_the_contracts_accept() -> None:
    """The generator is no straw man: it reaches accepted payloads too (a contract without
    rules beyond JSON Schema, the complaint, is accepted from its schema alone)."""
    accepted = []

    @FAST
    @given(data=st.data())
    def draw(data: st.DataObject) -> None:
        model = CONTRACTS["diskominfo.complaint.received.v1"]
        schema = DOC["components"]["messages"]["diskominfo.complaint.received.v1"]["payload"]
        payload = data.draw(payloads(schema))
        try:
            model.parse(payload)
        except ContractViolation:
            return
        accepted.append(payload)

    draw()
    assert accepted


# The JSON Schema formats by their definitions: "date" is RFC 3339's full-date, "date-time" its
# date-time (T and Z in either case, seconds, an offset with its colon).
FORMATS = FormatChecker(formats=())


@FORMATS.checks("date")
def _full_date(value: object) -> bool:
    if not isinstance(value, str) or not re.fullmatch("[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
        return False
    date.fromisoformat(value)
    return True


@FORMATS.checks("date-time", raises=ValueError)
def _date_time(value: object) -> bool:
    day, offset = "[0-9]{4}-[0-9]{2}-[0-9]{2}", "([Zz]|[+-][0-9]{2}:[0-9]{2})"
    grammar = f"{day}[Tt][0-9]{{2}}:[0-9]{{2}}:[0-9]{{2}}([.][0-9]+)?{offset}"
    if not isinstance(value, str) or not re.fullmatch(grammar, value):
        return False
    datetime.fromisoformat(value.upper())
    return True


OTHER_FORMS = {  # what a producer in another language might write instead
    "date": ["2026-10-02T00:00:00", "2026-10-02T00:00:00Z", 1790000000 - 1790000000 % 86400],
    "date-time": [
        1795000000,
        "2026-11-14T10:42+07:00",
        "2026-11-14T10:42:17+0700",
        "2026-11-14 10:42:17+07:00",
        "2026-11-14t10:42:17z",
        "2026-11-14T10:42:17.123456Z",
    ],
}


def _timed_fields(event_type: str) -> list[tuple[str, str]]:
    """(field, format) of the payload's top-level dates and times."""
    properties = DOC["components"]["messages"][event_type]["payload"]["properties"]
    found = []
    for name, schema in properties.items():
        for option in [schema, *schema.get("anyOf", ())]:
            if option.get("format") in OTHER_FORMS:
                found.append((name, option["format"]))
    return found


@pytest.mark.parametrize("event_type", sorted(t for t in CONTRACTS if _timed_fields(t)))
def test_the_contract_check_takes_no_date_or_time_the_published_schema_refuses(
    event_type: str,
) -> None:
    """A consumer validating with docs/asyncapi.json must not refuse what the router admitted:
    pydantic alone takes a number of seconds, a date-time at midnight for a date, a time without
    seconds."""
    model = CONTRACTS[event_type]
    folder = Path(schemas.__file__).parent / "examples" / event_type
    example = json.loads(sorted(folder.glob("valid-*.json"))[0].read_text(encoding="utf-8"))
    pointer = f"{DOC_URI}#/components/messages/{event_type}/payload"
    validator = Draft7Validator({"$ref": pointer}, registry=REGISTRY, format_checker=FORMATS)
    for name, form in _timed_fields(event_type):
        for value in OTHER_FORMS[form]:
            payload = {**example, name: value}
            try:
                model.parse(json.dumps(payload), tolerant=True)
            except ContractViolation as exc:
                assert [field for field, _ in exc.problems] == [name], value
                continue
            assert validator.is_valid(payload), (
                f"{name} = {value!r}: admitted, refused by the schema"
            )
