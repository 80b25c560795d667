"""Dinas Kesehatan (health) events.

Health data and children's data are specific personal data (UU PDP 27/2022, art. 4(2)): these
events refer to the child by pseudonym and say what is planned, never what was found or given.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from bus import PERSONAL, Classification, Contract
from schemas.common import Date, PastDate, Pseudonym


def _check_puskesmas(value: str) -> str:
    if not re.fullmatch("P35730[1-5][0-9]{4}", value):
        raise ValueError(
            "a puskesmas code of Kota Malang is P + the kecamatan code without dots "
            "(357301-357305) + 4 digits"
        )
    return value


PuskesmasCode = Annotated[
    str,
    AfterValidator(_check_puskesmas),
    Field(
        description="Kemenkes code of a puskesmas in Kota Malang: P + the kecamatan code "
        "without dots (357301-357305) + 4 digits. Check codes against Kemenkes' master list.",
        json_schema_extra={"pattern": "^P35730[1-5][0-9]{4}$"},
    ),
]
"""Kemenkes code of a puskesmas (community health centre) in Kota Malang."""


class Vaccine(StrEnum):
    """Antigens of the national routine immunisation schedule for infants (imunisasi dasar)."""

    HB0 = "hb0"  # hepatitis B birth dose
    BCG = "bcg"
    POLIO_ORAL = "polio-oral"  # bOPV
    DPT_HB_HIB = "dpt-hb-hib"  # pentavalent
    POLIO_INJECTED = "polio-injected"  # IPV
    PCV = "pcv"  # pneumococcal
    ROTAVIRUS = "rotavirus"
    MR = "mr"  # measles-rubella


class ScheduledDose(BaseModel):
    """One planned dose: which vaccine, which dose of it, from when."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    vaccine: Vaccine = Field(description="The vaccine.")
    dose: int = Field(ge=1, le=5, description="Which dose of this vaccine (1 = first).")
    due_on: Date = Field(description="The day the dose is due from.")


class ImmunisationScheduled(
    Contract,
    event_type="dinkes.immunisation.scheduled.v1",
    minor=1,  # 1.1: the subject is marked personal
    owner="dinkes",
    classification=Classification.SPECIFIC,
    personal_subject=True,  # dinkes publishes with the child's pseudonym (child_ref) as subject
):
    """A child's routine immunisation schedule was opened at a puskesmas."""

    child_ref: Annotated[Pseudonym, PERSONAL] = Field(
        description="Keyed pseudonym of the child, as in dukcapil.citizen.born."
    )
    puskesmas: PuskesmasCode = Field(description="The puskesmas responsible for the child.")
    schedule: tuple[ScheduledDose, ...] = Field(
        min_length=1, max_length=30, description="The doses planned, in order of due date."
    )
    scheduled_on: PastDate = Field(description="Date the schedule was opened.")

    @field_validator("schedule")
    @classmethod
    def _in_order(cls, schedule: tuple[ScheduledDose, ...]) -> tuple[ScheduledDose, ...]:
        if [d.due_on for d in schedule] != sorted(d.due_on for d in schedule):
            raise ValueError("doses must be in order of due date")
        if len({(d.vaccine, d.dose) for d in schedule}) != len(schedule):
            raise ValueError("lists a dose of a vaccine twice")
        return schedule
