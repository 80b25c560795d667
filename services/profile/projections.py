"""What the profile's subscriptions show (deploy/topology.yaml, decision 0012) where that is less
than the contract: not the child's birth date or pseudonym, not a permit's site, not a
taxpayer's business address, not the household card of a grant. The profile keeps none of
these, so its inbox does not carry them."""

from __future__ import annotations

from datetime import date
from typing import Literal

from bus import Projection
from schemas.bapenda import NPWPD, TaxKind, Taxpayer, TaxpayerRegistered
from schemas.common import KK, NIK, KelurahanCode, PastDate, RecordNo, Rupiah
from schemas.dinsos import AssistanceGranted, Programme
from schemas.dpmptsp import Applicant, PermitApplied, PermitIssued, PermitKind
from schemas.dukcapil import CitizenBorn

__all__ = ["Birth", "Grant", "IssuedPermit", "PermitApplication", "Registration"]


class Birth(Projection, of=CitizenBorn):
    nik: NIK
    kk: KK
    kelurahan: KelurahanCode
    registered_on: PastDate


class PermitApplication(Projection, of=PermitApplied):
    application_no: RecordNo
    kind: PermitKind  # before applicant: its validator reads it
    applicant: Applicant
    applied_on: PastDate


class IssuedPermit(Projection, of=PermitIssued):
    application_no: RecordNo
    permit_no: RecordNo
    kind: PermitKind
    applicant: Applicant
    issued_on: PastDate
    valid_until: date | None = None
    retribution: Rupiah | None = None


class Registration(Projection, of=TaxpayerRegistered):
    npwpd: NPWPD
    taxpayer: Taxpayer
    tax_kinds: tuple[TaxKind, ...]
    permit_no: RecordNo | None = None
    registered_on: PastDate


class Grant(Projection, of=AssistanceGranted):
    grant_no: RecordNo
    programme: Programme
    recipient: NIK
    kelurahan: KelurahanCode
    amount: Rupiah
    frequency: Literal["monthly", "quarterly", "once"]
    starts_on: date
    ends_on: date | None = None
    granted_on: PastDate
