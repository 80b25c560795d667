"""bus.privacy: the one masking rule of logs, tail, pending, dlq, the dashboard and exporter."""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel, Field, ValidationError

from bus.contracts import default_registry
from bus.privacy import (
    BUS_EXTENSIONS,
    MASK,
    contract_of,
    error_text,
    mask_attribute,
    mask_data,
    mask_error,
    mask_quoted,
    mask_subject,
)
from bus.projection import FORWARDING_FIELDS
from bus.signing import SIGNED_AT
from schemas.dinkes import ImmunisationScheduled
from schemas.dukcapil import FamilyCardIssued

NIKS = [f"35730145069{i:05d}" for i in range(1, 9)]  # synthetic 16-digit NIKs
CARD = FamilyCardIssued.__contract__


def test_declared_personal_paths_are_masked_and_the_rest_shows() -> None:
    assert {"members", "address", "address.street"} <= CARD.personal_fields
    data = {
        "kk": "3573010101010001",
        "head": NIKS[0],
        "members": [NIKS[0], NIKS[1]],
        "address": {"street": "Jl. Ijen 1", "kecamatan": "35.73.02", "rt": "001"},
        "reason": "new-family",
    }
    masked = mask_data(data, CARD)
    assert masked["members"] == MASK and masked["kk"] == MASK and masked["head"] == MASK
    assert masked["address"] == {"street": MASK, "kecamatan": "35.73.02", "rt": "001"}
    assert masked["reason"] == "new-family"


def test_a_personal_path_of_an_unexpected_shape_is_masked_whole() -> None:
    """A contract violation: the address object sent as text, a list where a NIK belongs."""
    data = {"address": "Jl. Ijen 1, Klojen", "head": [NIKS[0], "Siti"], "members": {"a": 1}}
    assert mask_data(data, CARD) == {"address": MASK, "head": MASK, "members": MASK}
    listed = mask_data({"address": ["Jl. Ijen 1", {"street": "Jl. Kawi 2", "rt": "001"}]}, CARD)
    assert listed == {"address": [MASK, {"street": MASK, "rt": "001"}]}
    quoted = {"address": ["Jl. Ijen 1", {"street": "Jl. Kawi 2", "rt": "001"}]}
    error = mask_error("no Jl. Ijen 1 or Jl. Kawi 2 (001)", CARD, quoted)
    assert error == "no *** or *** (001)"
    # A payload that is not an object has no fields the contract could describe.
    assert mask_data(["Siti Rahayu", NIKS[0]], CARD) == ["<text, 11 characters>", "<16 digits>"]


def test_a_field_the_contract_does_not_declare_shows_only_its_shape() -> None:
    masked = mask_data({"reason": "birth", "note": "Siti Rahayu", "extra": {"n": 3}}, CARD)
    assert masked == {
        "reason": "birth",
        "note": "<text, 11 characters>",
        "extra": {"n": "<1 digit>"},
    }


def test_sixteen_digits_anywhere_in_a_declared_field_are_masked() -> None:
    assert mask_data({"reason": f"copy of {NIKS[2]}"}, CARD) == {"reason": f"copy of {MASK}"}


def test_without_a_contract_or_json_every_value_shows_only_its_shape() -> None:
    """No contract says which fields are personal, and names have no pattern."""
    value = {
        "who": NIKS[0],
        "mail": "warga@example.id",
        "count": 3,
        "big": 3573014506900001,
        "nested": [{"nik": "123", "name": "Siti Rahayu"}],
        "flag": True,
        "none": None,
    }
    assert mask_data(value, None) == {
        "who": "<16 digits>",
        "mail": "<text, 16 characters>",
        "count": "<1 digit>",
        "big": "<16 digits>",
        "nested": [{"nik": "<3 digits>", "name": "<text, 11 characters>"}],
        "flag": True,
        "none": None,
    }
    assert mask_data("Jl. Ijen 1", CARD) == "<text, 10 characters>"  # data that is not JSON


def test_errors_mask_what_the_payload_rule_masks_where_quoted() -> None:
    data = {"address": "Jl. Ijen 1", "reason": "birth", "note": "Siti Rahayu"}
    error = "no household at Jl. Ijen 1 for Siti Rahayu (birth), nik 3573014506900001"
    assert mask_error(error, CARD, data) == "no household at *** for *** (birth), nik ***"
    assert mask_error("nik 3573014506900001", None, None) == "nik ***"
    unknown = mask_error("bad account 100200300400 of ani", None, {"a": "100200300400"})
    assert unknown == "bad account *** of ani"


def test_errors_mask_a_quoted_value_in_any_case() -> None:
    """Code quotes a name or street as a register spells it (upper case) or lower-cased."""
    data = {"address": "Jl. Ijen 1", "reason": "birth", "note": "Siti Rahayu"}
    error = "no household at JL. IJEN 1 for siti rahayu (Birth); Siti Rahayu.Jl. Ijen 1"
    masked = mask_error(error, CARD, data)
    assert masked == "no household at *** for *** (Birth); ***.***"
    assert "siti" not in masked.lower() and "ijen" not in masked.lower()


def test_a_subject_is_masked_when_the_contract_says_it_is_personal() -> None:
    dinkes = ImmunisationScheduled.__contract__
    assert dinkes.personal_subject and not CARD.personal_subject
    assert mask_subject("gkav6eimasog7zxmwar3hyboi4", dinkes) == MASK
    assert mask_subject("cit-5f0c7d1e", CARD) == "cit-5f0c7d1e"
    assert mask_subject(NIKS[0], CARD) == MASK  # the spec forbids it; masked all the same
    error = "child gkav6eimasog7zxmwar3hyboi4 unknown"
    assert mask_error(error, dinkes, {}, "gkav6eimasog7zxmwar3hyboi4") == "child *** unknown"


def test_the_personal_subject_flag_is_in_the_json_schema() -> None:
    schema = ImmunisationScheduled.model_json_schema()
    assert schema["x-personal-subject"] is True
    assert "x-personal-subject" not in json.dumps(FamilyCardIssued.model_json_schema())


def test_contract_of_a_type_without_a_contract_is_none() -> None:
    assert contract_of("kominfo.ticket.opened.v1", default_registry) is None
    assert contract_of(None) is None
    assert contract_of("dukcapil.family.card-issued.v1") is CARD


def test_errors_mask_a_value_quoted_escaped_or_cut() -> None:
    """repr() writes a line break as \\n and JSON an accent as \\u00e9; pydantic shows a long
    input as its first and last characters around '...' (a handler's own model)."""
    street = "Jl. Kenari Gg. Manggis No. 7\nRT 003 RW 004 Kelurahan Bandulan"
    data = {"address": street, "reason": "birth", "note": "Siti Ré"}
    assert mask_error(f"no geocode for {street!r}", CARD, data) == "no geocode for '***'"
    assert mask_error(json.dumps({"who": "Siti Ré"}), CARD, data) == '{"who": "***"}'
    cut = f"input_value='{repr(street)[1:25]}...{repr(street)[-24:]}"
    assert mask_error(cut, CARD, data) == "input_value='***...***'"


def test_a_validation_error_is_told_without_its_input() -> None:
    class Geocode(BaseModel):
        street: str = Field(max_length=10)
        rt: int

    with pytest.raises(ValidationError) as raised:
        Geocode(street="Jl. Kenari Gg. Manggis No. 7", rt="RT tiga")  # type: ignore[arg-type]
    told = error_text(raised.value)
    assert told == (
        "2 validation error(s) for Geocode: street: String should have at most 10 characters; "
        "rt: Input should be a valid integer, unable to parse string as an integer"
    )
    assert error_text(LookupError("no Jl. Kenari")) == "no Jl. Kenari"  # others: as they say


def test_the_bus_extensions_shown_are_the_ones_the_bus_writes() -> None:
    assert {SIGNED_AT, *FORWARDING_FIELDS} == BUS_EXTENSIONS
    assert (
        mask_attribute("signedat", "2026-11-28T13:07:26.500Z", CARD) == "2026-11-28T13:07:26.500Z"
    )
    assert mask_attribute("tenant", "kota-malang", CARD) == "<text, 11 characters>"
    assert mask_attribute("id", f"odd-{NIKS[0]}", CARD) == f"odd-{MASK}"


def test_a_raw_records_values_are_masked_where_quoted_only() -> None:
    """A legacy record's columns have no contract: a value is masked where a message quotes it
    (as repr() does), not wherever its letters appear in the message's own words."""
    record = {"jenis": "Sri Wahyuningsih", "kota": "Malang", "alamat": "Jl. Kenari 7\nRT 003"}
    message = "unknown jenis 'SRI WAHYUNINGSIH' in Kota Malang, at 'Jl. Kenari 7\\nRT 003'"
    assert mask_quoted(message, record) == "unknown jenis '***' in Kota Malang, at '***'"
    assert mask_quoted(f"nik {NIKS[0]}", record) == f"nik {MASK}"
