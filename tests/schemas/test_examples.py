"""The example vectors of schemas/examples/ against the contracts they illustrate.

Non-Python apps use the same files as conformance vectors (schemas/examples/README.md), so
this test is what keeps them true: every valid example parses and round-trips, every invalid
one fails on the field it names, and a violation never repeats an identifier of the payload.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

import schemas
from bus import Contract, ContractViolation
from bus.cli.contracts import load

EXAMPLES = Path(schemas.__file__).parent / "examples"
CONTRACTS = {model.__contract__.event_type: model for model in load("schemas")}
FOLDERS = sorted(p.name for p in EXAMPLES.iterdir() if p.is_dir())
VALID = sorted(EXAMPLES.glob("*/valid-*.json"))
INVALID = sorted(EXAMPLES.glob("*/invalid-*.json"))
# Identifiers of people and businesses are 13-18 digits (NIB 13, NIK/KK 16, NOP/NIP 18); a
# 15-digit run is a mistyped NIK, still personal data.
IDENTIFIER_LIKE = re.compile(r"[0-9]{13,}")


def _name(path: Path) -> str:
    return f"{path.parent.name}/{path.stem}"


def _read(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _contract(path: Path) -> type[Contract]:
    return CONTRACTS[path.parent.name]


def test_the_registry_holds_the_contracts_of_every_department() -> None:
    owners = {model.__contract__.owner for model in CONTRACTS.values()}
    assert owners >= {"dukcapil", "dpmptsp", "bapenda", "dinsos", "dinkes", "diskominfo"}
    assert len(CONTRACTS) >= 16


@pytest.mark.parametrize("event_type", sorted(CONTRACTS))
def test_every_contract_has_examples(event_type: str) -> None:
    folder = EXAMPLES / event_type
    assert folder.is_dir(), f"add valid-*.json and invalid-*.json examples under {folder}"
    assert len(list(folder.glob("valid-*.json"))) >= 2, "at least 2 valid examples"
    assert len(list(folder.glob("invalid-*.json"))) >= 3, "at least 3 invalid examples"


def test_every_example_folder_belongs_to_a_contract() -> None:
    assert [f for f in FOLDERS if f not in CONTRACTS] == []


def test_example_folders_hold_nothing_but_examples() -> None:
    strays = [
        _name(p)
        for folder in FOLDERS
        for p in (EXAMPLES / folder).iterdir()
        if not re.fullmatch(r"(valid|invalid)-[a-z0-9-]+\.json", p.name)
    ]
    assert strays == []


@pytest.mark.parametrize("path", VALID, ids=_name)
def test_a_valid_example_parses_and_round_trips(path: Path) -> None:
    model = _contract(path)
    payload = _read(path)

    event = model.parse(payload)

    assert model.parse(path.read_bytes()) == event  # as a consumer reads it off the wire
    assert model.parse(event.model_dump_json()) == event
    assert model.parse(event.model_dump(mode="json")) == event


@pytest.mark.parametrize("path", VALID, ids=_name)
def test_a_valid_example_satisfies_the_published_json_schema(path: Path) -> None:
    # What a non-Python app validates with: patterns, enums, conditional NOP, ...
    schema = _contract(path).model_json_schema()
    Draft202012Validator.check_schema(schema)
    errors = [e.message for e in Draft202012Validator(schema).iter_errors(_read(path))]
    assert errors == []


@pytest.mark.parametrize("path", INVALID, ids=_name)
def test_an_invalid_example_fails_on_the_field_it_names(path: Path) -> None:
    case = _read(path)
    assert set(case) == {"payload", "error_field", "why"}, "see schemas/examples/README.md"
    assert case["why"].strip()

    for wire in (case["payload"], json.dumps(case["payload"], ensure_ascii=False)):
        with pytest.raises(ContractViolation) as caught:
            _contract(path).parse(wire)
        violation = caught.value
        assert violation.event_type == path.parent.name
        assert case["error_field"] in [field for field, _ in violation.problems]


@pytest.mark.parametrize("path", INVALID, ids=_name)
def test_a_violation_never_repeats_an_identifier_of_the_payload(path: Path) -> None:
    payload = _read(path)["payload"]
    identifiers = set(IDENTIFIER_LIKE.findall(json.dumps(payload, ensure_ascii=False)))

    with pytest.raises(ContractViolation) as caught:
        _contract(path).parse(payload)

    said = f"{caught.value}\n{caught.value!r}\n{caught.value.problems}"
    assert [value for value in identifiers if value in said] == []
