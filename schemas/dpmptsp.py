"""Dinas Tenaga Kerja, Penanaman Modal dan PTSP (one-stop licensing) events.

A permit goes applied -> issued or rejected; all three events of one application carry the same
``application_no``. The applicant is a person (NIK) or a business (NIB): an identifier pair.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, ValidationInfo, field_validator

from bus import PERSONAL, Classification, Contract
from schemas.common import Address, Date, Identifier, PastDate, RecordNo, Rupiah


class PermitKind(StrEnum):
    """The permits the city's one-stop service decides."""

    PBG = "pbg"  # Persetujuan Bangunan Gedung (building approval, formerly IMB)
    SLF = "slf"  # Sertifikat Laik Fungsi (building fit for use)
    REKLAME = "reklame"  # izin penyelenggaraan reklame (advertisement)
    IZIN_USAHA = "izin-usaha"  # perizinan berusaha through OSS, for a business with an NIB


def _check_applicant(applicant: Identifier, info: ValidationInfo) -> Identifier:
    if applicant.scheme not in ("nik", "nib"):
        raise ValueError("an applicant is a person (scheme nik) or a business (scheme nib)")
    if info.data.get("kind") == PermitKind.IZIN_USAHA and applicant.scheme != "nib":
        raise ValueError("a business permit (izin-usaha) is applied for with the business's NIB")
    return applicant


Applicant = Annotated[
    Identifier,
    PERSONAL,
    AfterValidator(_check_applicant),  # declare ``kind`` before ``applicant``: it reads it
    Field(
        description="The applicant: a person (scheme nik) or a business (scheme nib). "
        "A business permit (izin-usaha) needs an NIB.",
        json_schema_extra={"properties": {"scheme": {"enum": ["nik", "nib"]}}},
    ),
]
"""Who applied for a permit: a person (NIK) or a business (NIB)."""


class PermitApplied(
    Contract,
    event_type="dpmptsp.permit.applied.v1",
    minor=0,
    owner="dpmptsp",
    classification=Classification.PERSONAL,
):
    """A permit application was submitted complete and entered the review."""

    application_no: RecordNo = Field(description="Registration number of the application.")
    kind: PermitKind = Field(description="Which permit is applied for.")
    applicant: Applicant
    site: Address = Field(description="Where the building, billboard or business is.")
    applied_on: PastDate = Field(description="Date the application was complete.")


class PermitIssued(
    Contract,
    event_type="dpmptsp.permit.issued.v1",
    minor=0,
    owner="dpmptsp",
    classification=Classification.PERSONAL,
):
    """A permit was issued to its applicant."""

    application_no: RecordNo = Field(description="Registration number of the application.")
    permit_no: RecordNo = Field(description="Number of the permit as printed on it.")
    kind: PermitKind = Field(description="Which permit was issued.")
    applicant: Applicant
    site: Address = Field(description="Where the building, billboard or business is.")
    issued_on: PastDate = Field(description="Date of the decision.")
    valid_until: Date | None = Field(
        default=None, description="Last day the permit is valid; null when it does not expire."
    )
    retribution: Rupiah | None = Field(
        default=None, description="Retribution charged for the permit (e.g. for a PBG), if any."
    )

    @field_validator("valid_until")
    @classmethod
    def _after_issue(cls, valid_until: date | None, info: ValidationInfo) -> date | None:
        issued_on = info.data.get("issued_on")
        if valid_until is not None and issued_on is not None and valid_until < issued_on:
            raise ValueError("must not be before issued_on")
        return valid_until


RejectionReason = Literal[
    "incomplete-documents",  # not completed within the deadline
    "zoning-mismatch",  # the site's spatial plan (RDTR) does not allow it
    "technical-review-failed",  # e.g. the building plan failed the technical review
    "not-eligible",  # the applicant cannot hold this permit
]


class PermitRejected(
    Contract,
    event_type="dpmptsp.permit.rejected.v1",
    minor=0,
    owner="dpmptsp",
    classification=Classification.PERSONAL,
):
    """A permit application was rejected."""

    # A coded reason only: the decision letter's free text may name people and stays in the
    # licensing system.
    application_no: RecordNo = Field(description="Registration number of the application.")
    kind: PermitKind = Field(description="Which permit was applied for.")
    applicant: Applicant
    reason: RejectionReason = Field(description="Why, as a code; the letter says the details.")
    rejected_on: PastDate = Field(description="Date of the decision.")
