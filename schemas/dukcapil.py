"""Dinas Kependudukan dan Pencatatan Sipil (civil registry) events."""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Annotated

from pydantic import Field, ValidationInfo, field_validator

from bus import PERSONAL, Classification, Contract
from schemas.common import (
    KK,
    NIK,
    Address,
    Date,
    KecamatanCode,
    KelurahanCode,
    PastDate,
    Pseudonym,
)


class CitizenDied(
    Contract,
    event_type="dukcapil.citizen.died.v1",
    minor=0,
    owner="dukcapil",
    classification=Classification.PERSONAL,
):
    """A death was recorded in the civil registry."""

    nik: Annotated[NIK, PERSONAL]
    date_of_death: Date
    kecamatan: KecamatanCode


class CitizenMoved(
    Contract,
    event_type="dukcapil.citizen.moved.v1",
    minor=0,
    owner="dukcapil",
    classification=Classification.PERSONAL,
):
    """A citizen's registered address changed (within or into Kota Malang)."""

    nik: Annotated[NIK, PERSONAL]
    address: Annotated[str, PERSONAL]
    kecamatan: KecamatanCode
    moved_on: Date


class CitizenBorn(
    Contract,
    event_type="dukcapil.citizen.born.v1",
    minor=0,
    owner="dukcapil",
    classification=Classification.SPECIFIC,
):
    """A birth was registered and the child was given a NIK."""

    # Children's data is specific personal data (UU PDP art. 4(2)): the event says that a
    # child of this family was born, when and where the family lives, and nothing of the
    # birth record itself (name, parents, place, weight, attendant).
    child_ref: Annotated[Pseudonym, PERSONAL] = Field(
        description="Keyed pseudonym of the child's NIK: the reference other events use."
    )
    nik: Annotated[NIK, PERSONAL] = Field(description="The child's new NIK.")
    kk: Annotated[KK, PERSONAL] = Field(description="Family card the child was added to.")
    born_on: Annotated[PastDate, PERSONAL] = Field(description="Date of birth.")
    kelurahan: KelurahanCode = Field(
        description="Kelurahan of the family's registered address (its first 3 parts are the "
        "kecamatan)."
    )
    registered_on: PastDate = Field(description="Date the birth was registered.")

    @field_validator("registered_on")
    @classmethod
    def _after_birth(cls, registered_on: date, info: ValidationInfo) -> date:
        born_on = info.data.get("born_on")
        if born_on is not None and registered_on < born_on:
            raise ValueError("must not be before born_on")
        return registered_on


class FamilyCardReason(StrEnum):
    """Why a family card (KK) was issued or reissued."""

    NEW_FAMILY = "new-family"  # marriage, or a household splitting off
    BIRTH = "birth"
    DEATH = "death"
    MOVE_IN = "move-in"
    MOVE_OUT = "move-out"
    CORRECTION = "correction"


class FamilyCardIssued(
    Contract,
    event_type="dukcapil.family.card-issued.v1",
    minor=0,
    owner="dukcapil",
    classification=Classification.SPECIFIC,
):
    """A family card (KK) was issued or reissued with its current members."""

    # Specific: the member list identifies the family's children. Only NIKs travel: names,
    # relationships, education and occupation stay in SIAK.
    kk: Annotated[KK, PERSONAL] = Field(description="The family card number.")
    head: Annotated[NIK, PERSONAL] = Field(description="NIK of the head of the family.")
    members: Annotated[tuple[NIK, ...], PERSONAL] = Field(
        min_length=1, max_length=50, description="NIKs of every member, the head included."
    )
    address: Address = Field(description="The family's registered address.")
    reason: FamilyCardReason = Field(description="Why the card was issued.")
    issued_on: PastDate = Field(description="Issue date printed on the card.")

    @field_validator("members")
    @classmethod
    def _head_is_a_member(cls, members: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        head = info.data.get("head")  # absent when the head's NIK itself was invalid
        if head is not None and head not in members:
            raise ValueError("must include the head of the family")
        if len(set(members)) != len(members):
            raise ValueError("lists a NIK twice")
        return members
