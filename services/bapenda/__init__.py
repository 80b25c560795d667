"""Badan Pendapatan Daerah (bapenda): local taxpayers registered from permits.

For Bapenda's tax officers: a business or person whose permit carries a self-assessed local tax
(reklame, PBJT) is registered as a taxpayer without a second visit, bills follow the person's
registered moves, and a taxpayer's death opens a status review.

* **Consumes** ``dpmptsp.permit.issued.v1`` (register the holder: an NPWPD, the taxes of the
  permit kind per a rule table), ``dukcapil.citizen.moved.v1`` (billing address of the person's
  registrations, newest move wins) and ``dukcapil.citizen.died.v1`` (status review).
* **Publishes** ``bapenda.taxpayer.registered.v1`` when a permit registers a taxpayer or adds
  taxes to one.
* **Stores** per taxpayer the NPWPD, the identifier (NIK or NIB), the taxes, the billing address;
  per permit its number, kind and site; the reviews. Of a NIK without a registration: its
  latest move (date, street line, kecamatan) and its death (date), for ``keep_unmatched`` (90
  days), applied if a permit registers the person later (the permit travels on another stream
  and may arrive after them; both orders end in the same billing address and review).
* **Does not store** names, the permit's application or retribution, the death's kecamatan, or
  anything else of a person without a registration (UU PDP 27/2022, data minimisation).

Run: ``simpul run services.bapenda:create``. Details: docs/services/bapenda.md.
"""

from services.bapenda.db import BillingAddress, Review, TaxpayerRecord
from services.bapenda.rules import default_rules, npwpd_for
from services.bapenda.service import SOURCE, Bapenda, create

__all__ = [
    "SOURCE",
    "Bapenda",
    "BillingAddress",
    "Review",
    "TaxpayerRecord",
    "create",
    "default_rules",
    "npwpd_for",
]
