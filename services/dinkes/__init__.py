"""Dinas Kesehatan (dinkes): every newborn gets a routine immunisation schedule.

For the puskesmas' immunisation staff: when a birth is registered, the child's schedule of the
national routine infant immunisation is opened at the puskesmas serving the family's kelurahan,
without the family having to bring papers first.

* **Consumes** ``dukcapil.citizen.born.v1``, reading only ``child_ref``, ``born_on`` and
  ``kelurahan``.
* **Publishes** ``dinkes.immunisation.scheduled.v1``: the child by pseudonym, the puskesmas,
  the planned doses.
* **Stores** per child: the pseudonym (``child_ref``), the puskesmas, the date the schedule was
  opened and the planned doses with their due dates.
* **Does not store** the child's NIK, the KK, the kelurahan, names or anything of the birth
  record: children's and health data are specific personal data (UU PDP 27/2022, art. 4(2)); a
  puskesmas that needs more asks dukcapil's system with the pseudonym.

Puskesmas codes in ``data/puskesmas.json`` are placeholders; the schedule in
``data/immunisation_schedule.json`` is to be checked against the current Kemenkes regulation.

Run: ``simpul run services.dinkes:create``. Details: docs/services/dinkes.md.
"""

from services.dinkes.db import Schedule
from services.dinkes.puskesmas import Areas, Puskesmas, default_areas
from services.dinkes.schedule import add_months, due_dates, routine
from services.dinkes.service import SOURCE, Dinkes, create

__all__ = [
    "SOURCE",
    "Areas",
    "Dinkes",
    "Puskesmas",
    "Schedule",
    "add_months",
    "create",
    "default_areas",
    "due_dates",
    "routine",
]
