"""House rules every contract of schemas/ follows: naming, documentation, classification and
the marking of personal data (docs/contracts.md)."""

from __future__ import annotations

import json
from datetime import date
from typing import Annotated, Any, get_args, get_origin

import pytest
from pydantic import (
    AwareDatetime,
    BaseModel,
    FutureDate,
    FutureDatetime,
    NaiveDatetime,
    PastDate,
    PastDatetime,
)

from bus import Classification, Contract
from bus.cli.contracts import load, snapshot_root
from bus.keys import TYPE_PATTERN
from bus.specs.gate import check
from schemas.common import _iso_date, _rfc3339

CONTRACTS = load("schemas")
# Published before these rules; their fields are frozen until a .v2 (docs/contracts.md).
UNDOCUMENTED_FIELDS = {"dukcapil.citizen.died.v1", "dukcapil.citizen.moved.v1"}
# Patterns of the types that identify a person: a field holding one must be marked PERSONAL.
PERSON_PATTERNS = ("^[0-9]{16}$", "^[a-z2-7]{26}$")  # NIK and KK, Pseudonym
# identity: the super-app's identity service is Diskominfo's; disnaker: Kota Malang's labour
# office is part of the Dinas Tenaga Kerja, Penanaman Modal dan PTSP.
OWNERS = {"identity": "diskominfo", "disnaker": "dpmptsp"}


def by_type(model: type[Contract]) -> str:
    return model.__contract__.event_type


@pytest.mark.parametrize("model", CONTRACTS, ids=by_type)
def test_the_type_is_dept_aggregate_past_tense_verb_and_major(model: type[Contract]) -> None:
    info = model.__contract__
    match = TYPE_PATTERN.match(info.event_type)
    assert match is not None
    dept, _, verb, _ = match.groups()
    assert info.owner == OWNERS.get(dept, dept)
    assert verb.endswith(("ed", "born")), "the verb says what happened, in the past tense"


@pytest.mark.parametrize("model", CONTRACTS, ids=by_type)
def test_the_class_docstring_is_one_line_for_the_catalogue(model: type[Contract]) -> None:
    doc = (model.__doc__ or "").strip()
    assert doc and "\n" not in doc and doc.endswith(".")


@pytest.mark.parametrize(
    "model", [m for m in CONTRACTS if by_type(m) not in UNDOCUMENTED_FIELDS], ids=by_type
)
def test_every_field_is_described(model: type[Contract]) -> None:
    undescribed = [name for name, f in model.model_fields.items() if not f.description]
    assert undescribed == []


@pytest.mark.parametrize("model", CONTRACTS, ids=by_type)
def test_fields_that_identify_a_person_are_marked_personal(model: type[Contract]) -> None:
    schema = model.model_json_schema()
    objects = [schema, *schema.get("$defs", {}).values()]
    unmarked = [
        name
        for obj in objects
        for name, prop in obj.get("properties", {}).items()
        if _identifies_a_person(prop) and not prop.get("x-personal")
    ]
    assert unmarked == []


def _identifies_a_person(prop: dict[str, Any]) -> bool:
    text = json.dumps(prop)
    return any(json.dumps(p)[1:-1] in text for p in PERSON_PATTERNS) or '"uuid"' in text


@pytest.mark.parametrize("model", CONTRACTS, ids=by_type)
def test_the_classification_agrees_with_the_personal_fields(model: type[Contract]) -> None:
    info = model.__contract__
    personal = info.classification in (Classification.PERSONAL, Classification.SPECIFIC)
    assert personal == bool(info.personal_fields)


def test_specific_data_travels_thin() -> None:
    # Children's and health data: a reference and what the consumer needs, not the record.
    specific = {by_type(m): m for m in CONTRACTS if m.__contract__.classification == "specific"}
    assert set(specific) >= {"dukcapil.citizen.born.v1", "dinkes.immunisation.scheduled.v1"}
    assert "child_ref" in specific["dukcapil.citizen.born.v1"].model_fields
    assert "child_ref" in specific["dinkes.immunisation.scheduled.v1"].model_fields
    for model in specific.values():
        names = set(model.model_fields)
        assert not names & {"name", "birth_weight_grams", "diagnosis", "notes", "text"}


def test_every_contract_matches_its_committed_snapshots() -> None:
    # What `simpul contracts check` runs in CI: a new contract needs `simpul contracts snapshot`.
    assert [str(p) for p in check(CONTRACTS, snapshot_root("schemas"))] == []


# pydantic's own time types (not datetime subclasses); datetime is a date subclass.
PYDANTIC_TIMES = {AwareDatetime, NaiveDatetime, PastDatetime, FutureDatetime, PastDate, FutureDate}


def _leaves(annotation: Any, metadata: tuple[Any, ...] = ()) -> list[tuple[Any, tuple[Any, ...]]]:
    """(type, its Annotated metadata) of each alternative of ``annotation`` (unions, lists)."""
    if get_origin(annotation) is Annotated:
        base, *extra = get_args(annotation)
        return _leaves(base, (*metadata, *extra))
    if args := get_args(annotation):
        return [leaf for arg in args for leaf in _leaves(arg, metadata)]
    return [(annotation, metadata)]


def _timed(model: type[BaseModel], prefix: str = "") -> list[tuple[str, bool]]:
    """(dotted path, whether it refuses other forms) of every date and time field, nested
    models and lists of them included."""
    found = []
    for name, info in model.model_fields.items():
        for kind, metadata in _leaves(info.annotation, tuple(info.metadata)):
            if isinstance(kind, type) and issubclass(kind, BaseModel):
                found += _timed(kind, f"{prefix}{name}.")
            elif kind in PYDANTIC_TIMES or (isinstance(kind, type) and issubclass(kind, date)):
                checked = {getattr(m, "func", None) for m in metadata} & {_iso_date, _rfc3339}
                found.append((prefix + name, bool(checked)))
    return found


@pytest.mark.parametrize("model", CONTRACTS, ids=by_type)
def test_dates_and_times_are_the_shared_types_that_refuse_other_forms(
    model: type[Contract],
) -> None:
    """`Date`, `PastDate`, `Timestamp`: never a bare date or AwareDatetime (docs/contracts.md)."""
    assert [path for path, checked in _timed(model) if not checked] == []
