"""The routine infant immunisation schedule (``data/immunisation_schedule.json``) and its dates."""

from __future__ import annotations

import calendar
import json
from dataclasses import dataclass
from datetime import date
from functools import cache
from importlib.resources import files

from schemas.dinkes import ScheduledDose, Vaccine


@dataclass(frozen=True, slots=True)
class PlannedDose:
    """A dose of the national schedule: due at an age in whole months."""

    vaccine: Vaccine
    dose: int
    months: int


@cache
def routine() -> tuple[PlannedDose, ...]:
    """The national routine schedule, in the order of the data file."""
    path = files(__package__).joinpath("data/immunisation_schedule.json")
    raw = json.loads(path.read_text("utf-8"))
    return tuple(
        PlannedDose(Vaccine(d["vaccine"]), int(d["dose"]), int(d["months"])) for d in raw["doses"]
    )


def add_months(day: date, months: int) -> date:
    """The same day ``months`` later, clamped to the month's end (31 Jan + 1 = 28/29 Feb)."""
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def due_dates(born_on: date, plan: tuple[PlannedDose, ...] | None = None) -> list[ScheduledDose]:
    """Each dose with its due date from the birth date, in order of due date (stable)."""
    doses = [
        ScheduledDose(vaccine=p.vaccine, dose=p.dose, due_on=add_months(born_on, p.months))
        for p in (routine() if plan is None else plan)
    ]
    return sorted(doses, key=lambda d: d.due_on)
