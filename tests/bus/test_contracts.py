"""Contracts: wire identity from class keywords, strict and tolerant parsing, the type registry."""

from __future__ import annotations

import traceback
from datetime import date
from typing import Annotated

import pytest
from pydantic import ValidationError

from bus.contracts import (
    PERSONAL,
    Classification,
    Contract,
    ContractInfo,
    Registry,
    default_registry,
)
from bus.errors import ConfigurationError, ContractViolation, UnknownEventType
from schemas.common import NIK
from schemas.dukcapil import CitizenDied

A_NIK = "3573014107900001"  # synthetic, but a valid NIK: personal data for all the code knows


class ParcelRegistered(
    Contract,
    event_type="testdept.parcel.registered.v2",
    minor=3,
    classification=Classification.PERSONAL,
    register=False,
):
    owner_nik: Annotated[NIK, PERSONAL]
    owner_name: Annotated[str, PERSONAL]
    area_m2: int
    registered_on: date


class ParcelSold(Contract, event_type="testdept.parcel.sold.v1", owner="bpn", register=False):
    parcel: str


def parcel(**changes: object) -> dict[str, object]:
    return {
        "owner_nik": A_NIK,
        "owner_name": "Siti",
        "area_m2": 120,
        "registered_on": "2026-11-27",
    } | changes


def test_class_keywords_make_the_contract_info() -> None:
    info = ParcelRegistered.__contract__
    assert info == ContractInfo(
        event_type="testdept.parcel.registered.v2",
        minor=3,
        owner="testdept",
        classification=Classification.PERSONAL,
        personal_fields=frozenset({"owner_nik", "owner_name"}),
        field_paths=frozenset({"owner_nik", "owner_name", "area_m2", "registered_on"}),
    )
    assert not info.personal_subject  # unless the class statement says personal_subject=True
    assert info.major == 2
    assert info.aggregate == "testdept.parcel"
    assert info.stream == "simpul:{testdept.parcel}"
    assert info.dataschema == "simpul:testdept.parcel.registered:2.3"


def test_defaults_owner_from_the_type_unless_given() -> None:
    info = ParcelSold.__contract__
    assert info.owner == "bpn"
    assert info.minor == 0
    assert info.classification is Classification.INTERNAL
    assert info.personal_fields == frozenset()
    assert info.dataschema == "simpul:testdept.parcel.sold:1.0"


def test_register_false_keeps_the_default_registry_clean() -> None:
    assert "testdept.parcel.registered.v2" not in default_registry
    assert "testdept.parcel.sold.v1" not in default_registry


def test_contracts_are_frozen() -> None:
    event = ParcelSold(parcel="p-1")
    with pytest.raises(ValidationError):
        event.parcel = "p-2"  # type: ignore[misc]


def test_strict_parse_forbids_extra_fields_and_tolerant_parse_ignores_them() -> None:
    newer = parcel(zoning="R1")  # a field added by a newer minor version

    with pytest.raises(ValidationError, match="extra"):
        ParcelRegistered.model_validate(newer)
    with pytest.raises(ContractViolation, match=r"zoning: Extra inputs are not permitted"):
        ParcelRegistered.parse(newer)

    event = ParcelRegistered.parse(newer, tolerant=True)
    assert type(event) is ParcelRegistered
    assert event == ParcelRegistered.parse(parcel())  # same class, same fields: equal
    assert event.area_m2 == 120
    assert not hasattr(event, "zoning")


def test_tolerant_parse_still_validates_declared_fields() -> None:
    with pytest.raises(ContractViolation, match="area_m2"):
        ParcelRegistered.parse(parcel(area_m2="big"), tolerant=True)


def test_parse_accepts_mappings_and_json() -> None:
    from_dict = ParcelRegistered.parse(parcel())
    from_json = ParcelRegistered.parse(from_dict.model_dump_json())
    from_bytes = ParcelRegistered.parse(from_dict.model_dump_json().encode())
    assert from_dict == from_json == from_bytes
    assert from_dict.registered_on == date(2026, 11, 27)


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (parcel(owner_nik=A_NIK[:-1]), "owner_nik"),  # 15 digits: a typo'd NIK
        (parcel(owner_nik=A_NIK[:6] + "99" + A_NIK[8:]), "owner_nik"),  # impossible birth day
        (parcel(owner_nik=int(A_NIK)), "owner_nik"),
        (parcel(area_m2=A_NIK + "x"), "area_m2"),
        (parcel(unexpected=A_NIK), "unexpected"),
    ],
)
def test_contract_violation_names_the_field_but_never_the_value(
    payload: dict[str, object], field: str
) -> None:
    value = str(payload[field])
    with pytest.raises(ContractViolation) as caught:
        ParcelRegistered.parse(payload)
    violation = caught.value

    assert violation.event_type == "testdept.parcel.registered.v2"
    assert field in [path for path, _ in violation.problems]
    assert f"{field}: " in str(violation)
    assert value not in str(violation)
    assert value not in repr(violation)
    assert all(value not in problem for _, problem in violation.problems)


def test_contract_violation_traceback_does_not_leak_the_value() -> None:
    # Adapters log exceptions with their traceback; the chained pydantic ValidationError
    # (`raise ... from exc`) prints `input_value='<the NIK>'`, and a 15-digit typo'd NIK
    # is not caught by the log processor's 16-digit mask.
    bad_nik = A_NIK[:-1]
    with pytest.raises(ContractViolation) as caught:
        ParcelRegistered.parse(parcel(owner_nik=bad_nik))
    printed = "".join(traceback.format_exception(caught.value))
    assert bad_nik not in printed


def test_a_missing_field_is_named() -> None:
    payload = parcel()
    del payload["registered_on"]
    with pytest.raises(ContractViolation, match=r"registered_on: Field required"):
        ParcelRegistered.parse(payload)


def test_invalid_json_is_a_violation_of_the_whole_payload() -> None:
    with pytest.raises(ContractViolation, match=r"\(payload\): Invalid JSON"):
        ParcelRegistered.parse('{"owner_nik": "' + A_NIK)


# -- registry ---------------------------------------------------------------------------------


def test_registry_resolves_registered_types_only() -> None:
    registry = Registry()
    registry.register(ParcelRegistered)
    registry.register(ParcelSold)
    registry.register(ParcelSold)  # the same class again (a re-import) is harmless

    assert registry.resolve("testdept.parcel.sold.v1") is ParcelSold
    assert "testdept.parcel.registered.v2" in registry
    assert list(registry) == [ParcelRegistered, ParcelSold]
    assert registry.personal_field_names() == {"owner_nik", "owner_name"}
    with pytest.raises(UnknownEventType, match=r"'testdept\.parcel\.moved\.v1'"):
        registry.resolve("testdept.parcel.moved.v1")


def test_a_type_declared_twice_is_a_configuration_error() -> None:
    registry = Registry()
    registry.register(ParcelSold)

    class SoldAgain(Contract, event_type="testdept.parcel.sold.v1", register=False):
        parcel: str

    with pytest.raises(
        ConfigurationError, match=r"'testdept\.parcel\.sold\.v1' is declared twice"
    ) as caught:
        registry.register(SoldAgain)
    assert "ParcelSold" in str(caught.value)
    assert "SoldAgain" in str(caught.value)
    assert registry.resolve("testdept.parcel.sold.v1") is ParcelSold


def test_a_type_declared_twice_in_the_default_registry_fails_at_class_creation() -> None:
    assert default_registry.resolve("dukcapil.citizen.died.v1") is CitizenDied
    with pytest.raises(ConfigurationError, match="declared twice"):

        class DiedAgain(Contract, event_type="dukcapil.citizen.died.v1"):
            nik: str


@pytest.mark.parametrize(
    "bad",
    ["testdept.parcel.registered", "TestDept.parcel.registered.v1", "testdept.parcel.v1", "x"],
)
def test_a_bad_event_type_is_a_configuration_error(bad: str) -> None:
    with pytest.raises(
        ConfigurationError, match=r"contract .*Bad: event type .* is not of the form"
    ):

        class Bad(Contract, event_type=bad, register=False):
            value: int


def test_a_negative_minor_is_a_configuration_error() -> None:
    # minor=-1 yields dataschema 'simpul:testdept.parcel.fenced:1.-1', which the decoder rejects:
    # every event of such a contract would be dead-lettered as undecodable by every consumer.
    with pytest.raises(ConfigurationError):

        class Fenced(Contract, event_type="testdept.parcel.fenced.v1", minor=-1, register=False):
            value: int


def test_intermediate_classes_without_a_type_have_no_identity() -> None:
    class WithAudit(Contract):
        recorded_by: str

    class Surveyed(WithAudit, event_type="testdept.parcel.surveyed.v1", register=False):
        surveyor: str

    assert not hasattr(WithAudit, "__contract__")
    assert Surveyed.__contract__.event_type == "testdept.parcel.surveyed.v1"
    assert set(Surveyed.model_fields) == {"recorded_by", "surveyor"}
