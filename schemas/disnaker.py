"""Job-seeker registry (AK/I card, "kartu kuning") events of the labour office.

In Kota Malang the labour office is part of the Dinas Tenaga Kerja, Penanaman Modal dan PTSP,
so the owner is ``dpmptsp``; the type prefix ``disnaker`` names the labour office's registry,
as ``identity`` names the super-app's identity service of Diskominfo.

A job seeker registers and is given an AK/I card (``card_no``), valid for two years; a
correction or a renewal of the registration is published again under the same ``card_no``.
When the job seeker reports that they found work, ``placed`` says so. Only what other
departments act on travels: no name, address, school or free-text skills (UU PDP 27/2022,
data minimisation).
"""

from __future__ import annotations

import re
from datetime import date
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, Field, ValidationInfo, field_validator

from bus import PERSONAL, Classification, Contract
from schemas.common import NIK, Date, KecamatanCode, PastDate


def _check_card_no(value: str) -> str:
    if not re.fullmatch("3573-[0-9]{4}-[0-9]{6}", value):
        raise ValueError(
            "an AK/I card number is 3573-YYYY-NNNNNN: Kota Malang's region code, the year of "
            "registration and a 6-digit serial, ASCII digits and dashes"
        )
    if int(value[5:9]) < 1970 or value[10:] == "000000":
        raise ValueError("an AK/I card number has a year from 1970 and a serial from 000001")
    return value


CardNo = Annotated[
    str,
    AfterValidator(_check_card_no),
    Field(
        description="Number of the AK/I card (kartu tanda bukti pendaftaran pencari kerja) as "
        "Kota Malang's registry prints it: 3573-YYYY-NNNNNN, the city's region code, the year of "
        "registration and a serial. Identifies a person.",
        json_schema_extra={"pattern": "^3573-[0-9]{4}-[0-9]{6}$"},
    ),
]
"""AK/I card number: ``3573-YYYY-NNNNNN`` (region code of Kota Malang, year, serial)."""


def _check_kbji(value: str) -> str:
    if not re.fullmatch("[0-9]{4}", value):
        raise ValueError("a KBJI 2014 occupation code is a unit group: 4 ASCII digits")
    return value


KbjiCode = Annotated[
    str,
    AfterValidator(_check_kbji),
    Field(
        description="Occupation as a KBJI 2014 unit group (Klasifikasi Baku Jabatan Indonesia, "
        "built on ISCO-08): 4 ASCII digits, e.g. 7411 building electricians.",
        json_schema_extra={"pattern": "^[0-9]{4}$"},
    ),
]
"""KBJI 2014 unit group code of an occupation (4 digits, ISCO-08 based)."""


class EducationLevel(StrEnum):
    """Highest education completed, in the order of the Kemendagri (SIAK) codes 1-10.

    SIAK code 5 (SLTA/sederajat) is split in two, general and vocational, because employers ask
    for SMK graduates; both map back to 5 (:data:`KEMENDAGRI_CODE`).
    """

    NONE = "none"  # 1 tidak/belum sekolah
    PRIMARY_INCOMPLETE = "primary-incomplete"  # 2 belum tamat SD/sederajat
    PRIMARY = "primary"  # 3 tamat SD/sederajat
    JUNIOR_SECONDARY = "junior-secondary"  # 4 SLTP/sederajat (SMP, MTs)
    SENIOR_SECONDARY = "senior-secondary"  # 5 SLTA/sederajat: SMA, MA
    VOCATIONAL_SECONDARY = "vocational-secondary"  # 5 SLTA/sederajat: SMK
    DIPLOMA_1_2 = "diploma-1-2"  # 6 diploma I/II
    DIPLOMA_3 = "diploma-3"  # 7 akademi/diploma III/sarjana muda
    BACHELOR = "bachelor"  # 8 diploma IV/strata I
    MASTER = "master"  # 9 strata II
    DOCTORATE = "doctorate"  # 10 strata III


KEMENDAGRI_CODE: dict[EducationLevel, int] = {
    EducationLevel.NONE: 1,
    EducationLevel.PRIMARY_INCOMPLETE: 2,
    EducationLevel.PRIMARY: 3,
    EducationLevel.JUNIOR_SECONDARY: 4,
    EducationLevel.SENIOR_SECONDARY: 5,
    EducationLevel.VOCATIONAL_SECONDARY: 5,
    EducationLevel.DIPLOMA_1_2: 6,
    EducationLevel.DIPLOMA_3: 7,
    EducationLevel.BACHELOR: 8,
    EducationLevel.MASTER: 9,
    EducationLevel.DOCTORATE: 10,
}
"""The Kemendagri (SIAK ``pendidikan``) code of each level, for joining with civil-registry data."""


class JobseekerRegistered(
    Contract,
    event_type="disnaker.jobseeker.registered.v1",
    minor=0,
    owner="dpmptsp",
    classification=Classification.PERSONAL,
):
    """A job seeker was registered for an AK/I card, or the registration corrected or renewed."""

    card_no: Annotated[CardNo, PERSONAL] = Field(
        description="The AK/I card number; the same in every event of this registration."
    )
    nik: Annotated[NIK, PERSONAL] = Field(description="NIK of the job seeker.")
    kecamatan: KecamatanCode = Field(
        description="Kecamatan of the job seeker's domicile in Kota Malang, as registered."
    )
    education: EducationLevel = Field(description="Highest education completed.")
    occupations: tuple[KbjiCode, ...] = Field(
        min_length=1,
        max_length=3,
        description="The occupations sought, most wanted first: 1-3 KBJI 2014 unit groups.",
    )
    registered_on: PastDate = Field(description="Date of registration (the card's issue date).")
    valid_until: Date = Field(
        description="Last day the card is valid (two years after registration, unless renewed)."
    )

    @field_validator("occupations")
    @classmethod
    def _distinct(cls, occupations: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(occupations)) != len(occupations):
            raise ValueError("lists an occupation twice")
        return occupations

    @field_validator("valid_until")
    @classmethod
    def _after_registration(cls, valid_until: date, info: ValidationInfo) -> date:
        registered_on = info.data.get("registered_on")
        if registered_on is not None and valid_until <= registered_on:
            raise ValueError("must be after registered_on")
        return valid_until


class Placement(StrEnum):
    """Where the job is, as the labour office counts placements (antar kerja)."""

    LOCAL = "local"  # AKL, antar kerja lokal: within the province
    INTER_REGIONAL = "inter-regional"  # AKAD, antar kerja antar daerah: another province
    ABROAD = "abroad"  # AKAN, antar kerja antar negara: a migrant worker (PMI)


class JobseekerPlaced(
    Contract,
    event_type="disnaker.jobseeker.placed.v1",
    minor=0,
    owner="dpmptsp",
    classification=Classification.PERSONAL,
):
    """A registered job seeker found work and their AK/I card was closed as placed."""

    # The employer and the wage stay in the registry: other departments act on the fact that
    # the person works (e.g. dinsos re-verifies a household's means), not on the job.
    card_no: Annotated[CardNo, PERSONAL] = Field(description="The AK/I card number closed.")
    nik: Annotated[NIK, PERSONAL] = Field(description="NIK of the job seeker placed.")
    placement: Placement = Field(description="Where the job is: local, inter-regional, abroad.")
    occupation: KbjiCode | None = Field(
        default=None, description="The job's occupation (KBJI 2014 unit group), if reported."
    )
    placed_on: PastDate = Field(description="First day of work, as reported.")
