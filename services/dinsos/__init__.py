"""Dinas Sosial P3AP2KB (dinsos): social assistance kept in step with the civil registry.

For the city's social assistance caseworkers and the paying banks: a grant stops paying when
its recipient dies, and a caseworker is told when a household changes or a recipient moves.

* **Owns** grants: :meth:`Dinsos.grant` records one and publishes
  ``dinsos.assistance.granted.v1``.
* **Consumes** ``dukcapil.citizen.died.v1`` (suspend the recipient's grants, publish
  ``dinsos.assistance.suspended.v1`` per grant; a household member's death marks the
  household's grants for re-verification), ``dukcapil.citizen.born.v1`` (child added to the
  household, its grants re-verified), ``dukcapil.citizen.moved.v1`` (area re-check when the
  recipient moved to another kecamatan), ``dukcapil.family.card-issued.v1`` (the household's
  members) and ``disnaker.jobseeker.placed.v1`` (a recipient or a household member found work:
  the household's grants are re-verified).
* **Stores** grants (recipient NIK, KK, kelurahan, amount, dates, status), the members (NIKs) of
  households that have a grant, re-checks, and deaths (NIK, date): of household members and
  recipients while they are, of anyone else for ``keep_unmatched`` (90 days), in case a card
  listing the person arrives after the death (the streams are consumed independently; both
  orders end in the same household and re-checks).
* **Does not store** names, addresses, birth dates, the child's pseudonym, anything of a job
  (employer, occupation, AK/I card: only the re-check it opens), the welfare
  assessment (DTKS/DTSEN stays with Kemensos), nor any household without a grant: dinsos is not
  a copy of the family register (UU PDP 27/2022, data minimisation).

Run: ``simpul run services.dinsos:create``. Details: docs/services/dinsos.md.
"""

from services.dinsos.db import Grant, GrantConflict, Recheck
from services.dinsos.service import SOURCE, Dinsos, create

__all__ = ["SOURCE", "Dinsos", "Grant", "GrantConflict", "Recheck", "create"]
