"""What the notifier's subscriptions show of permits and payments (deploy/topology.yaml,
decision 0012): who to tell and what to say — not the permit's site, not the assessment."""

from __future__ import annotations

from datetime import date

from pydantic import AwareDatetime

from bus import Projection
from schemas.bapenda import PaymentChannel, PaymentReceived, TaxKind, Taxpayer
from schemas.common import PastDate, RecordNo, Rupiah
from schemas.dpmptsp import Applicant, PermitIssued, PermitKind

__all__ = ["IssuedPermit", "Payment"]


class IssuedPermit(Projection, of=PermitIssued):
    """A permit issued, without its site."""

    application_no: RecordNo
    permit_no: RecordNo
    kind: PermitKind  # before applicant: its validator reads it
    applicant: Applicant
    issued_on: PastDate
    valid_until: date | None = None
    retribution: Rupiah | None = None


class Payment(Projection, of=PaymentReceived):
    """A tax payment received, without the assessment it settles or the tax object."""

    payment_ref: RecordNo
    tax_kind: TaxKind
    taxpayer: Taxpayer
    amount: Rupiah
    channel: PaymentChannel
    paid_at: AwareDatetime
