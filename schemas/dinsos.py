"""Dinas Sosial P3AP2KB (social assistance) events.

A grant is one recipient in one programme, named by the same ``grant_no`` in all its events.
Programmes are keyed by the recipient's NIK and administered per household (KK): both travel.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator

from bus import PERSONAL, Classification, Contract
from schemas.common import KK, NIK, Date, KelurahanCode, PastDate, RecordNo, Rupiah


class Programme(StrEnum):
    """Social assistance programmes administered by the city."""

    PKH = "pkh"  # Program Keluarga Harapan: national conditional cash transfer
    BPNT = "bpnt"  # Bantuan Pangan Non Tunai (Program Sembako): national food assistance
    BANSOS_DAERAH = "bansos-daerah"  # the city's own assistance, from the APBD


class AssistanceGranted(
    Contract,
    event_type="dinsos.assistance.granted.v1",
    minor=0,
    owner="dinsos",
    classification=Classification.PERSONAL,
):
    """A person was granted social assistance under a programme."""

    # Receiving assistance says something about a family's means: personal data. Only what
    # paying and stopping the grant need travels, not the eligibility assessment (DTKS/DTSEN
    # welfare data).
    grant_no: RecordNo = Field(description="Number of the grant, the same in later events.")
    programme: Programme = Field(description="The programme.")
    recipient: Annotated[NIK, PERSONAL] = Field(description="NIK of the recipient.")
    kk: Annotated[KK, PERSONAL] = Field(description="Family card of the recipient's household.")
    kelurahan: KelurahanCode = Field(description="Kelurahan the grant is administered in.")
    amount: Rupiah = Field(description="Amount per disbursement, in rupiah.")
    frequency: Literal["monthly", "quarterly", "once"] = Field(
        description="How often the amount is disbursed."
    )
    starts_on: Date = Field(description="First day of the first period granted.")
    ends_on: Date | None = Field(
        default=None, description="Last day of the grant; null until the programme ends it."
    )
    granted_on: PastDate = Field(description="Date of the decision.")

    @field_validator("ends_on")
    @classmethod
    def _after_start(cls, ends_on: date | None, info: ValidationInfo) -> date | None:
        starts_on = info.data.get("starts_on")
        if ends_on is not None and starts_on is not None and ends_on < starts_on:
            raise ValueError("must not be before starts_on")
        return ends_on


class SuspensionReason(StrEnum):
    """Why a grant stopped paying."""

    DEATH = "death"  # e.g. after dukcapil.citizen.died
    MOVED_AWAY = "moved-away"  # the household left Kota Malang
    NO_LONGER_ELIGIBLE = "no-longer-eligible"  # re-verification
    DUPLICATE = "duplicate"  # the household already receives it
    RECIPIENT_REQUEST = "recipient-request"


class AssistanceSuspended(
    Contract,
    event_type="dinsos.assistance.suspended.v1",
    minor=0,
    owner="dinsos",
    classification=Classification.PERSONAL,
):
    """A grant of social assistance was suspended: no more disbursements."""

    grant_no: RecordNo = Field(description="Number of the grant suspended.")
    programme: Programme = Field(description="The grant's programme.")
    recipient: Annotated[NIK, PERSONAL] = Field(description="NIK of the recipient.")
    reason: SuspensionReason = Field(description="Why, as a code.")
    suspended_on: PastDate = Field(description="Date of the decision.")
    effective_from: Date = Field(description="First day no disbursement is made.")
