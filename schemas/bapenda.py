"""Badan Pendapatan Daerah (local taxes) events.

Local taxes per UU 1/2022 (HKPD): PBB-P2 and BPHTB are levied on a tax object (NOP); PBJT,
reklame and air tanah on a registered taxpayer (NPWPD). Amounts are whole rupiah.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated

from pydantic import (
    AfterValidator,
    ConfigDict,
    Field,
    JsonValue,
    ValidationInfo,
    field_validator,
)

from bus import PERSONAL, Classification, Contract
from schemas.common import NOP, Address, Date, Identifier, PastDate, RecordNo, Rupiah, Timestamp


class TaxKind(StrEnum):
    """The local taxes Bapenda assesses and collects."""

    PBB_P2 = "pbb-p2"  # property tax, rural and urban; on a NOP
    BPHTB = "bphtb"  # duty on acquiring land and building rights; on a NOP
    PBJT_MAKANAN_MINUMAN = "pbjt-makanan-minuman"  # restaurants
    PBJT_PERHOTELAN = "pbjt-perhotelan"  # hotels
    PBJT_PARKIR = "pbjt-parkir"  # parking
    PBJT_KESENIAN_HIBURAN = "pbjt-kesenian-hiburan"  # arts and entertainment
    PBJT_TENAGA_LISTRIK = "pbjt-tenaga-listrik"  # electricity
    REKLAME = "reklame"  # advertisement
    AIR_TANAH = "air-tanah"  # groundwater


ON_TAX_OBJECT = frozenset({TaxKind.PBB_P2, TaxKind.BPHTB})
"""Taxes levied on a property (NOP) rather than on a registered taxpayer."""


_NPWPD = re.compile("[A-Z0-9][A-Z0-9.-]{4,29}")


def _check_npwpd(value: str) -> str:
    if not _NPWPD.fullmatch(value):
        raise ValueError("an NPWPD is 5-30 ASCII capitals, digits, dots and dashes")
    return value


NPWPD = Annotated[
    str,
    PERSONAL,  # a person's NPWPD (P.1...) leads to them as surely as a NOP leads to its owner
    AfterValidator(_check_npwpd),
    Field(
        description="NPWPD (Nomor Pokok Wajib Pajak Daerah), the local taxpayer number as "
        "Bapenda Kota Malang prints it.",
        json_schema_extra={"pattern": "^[A-Z0-9][A-Z0-9.-]{4,29}$"},
    ),
]
"""Nomor Pokok Wajib Pajak Daerah: local taxpayer number (Bapenda's own format)."""


def _check_taxpayer(taxpayer: Identifier) -> Identifier:
    if taxpayer.scheme not in ("nik", "nib"):
        raise ValueError("a taxpayer is a person (scheme nik) or a business (scheme nib)")
    return taxpayer


Taxpayer = Annotated[
    Identifier,
    PERSONAL,
    AfterValidator(_check_taxpayer),
    Field(
        description="The taxpayer: a person (scheme nik) or a business (scheme nib).",
        json_schema_extra={"properties": {"scheme": {"enum": ["nik", "nib"]}}},
    ),
]
"""Who owes a tax: a person (NIK) or a business (NIB)."""


def _nop_when_on_object(nop: str | None, info: ValidationInfo) -> str | None:
    kind = info.data.get("tax_kind")  # absent when the tax kind itself was invalid
    if kind in ON_TAX_OBJECT and nop is None:
        raise ValueError("required for pbb-p2 and bphtb (the tax object)")
    if kind is not None and kind not in ON_TAX_OBJECT and nop is not None:
        raise ValueError("only pbb-p2 and bphtb are levied on a tax object (NOP)")
    return nop


TaxObject = Annotated[
    NOP | None,
    PERSONAL,  # a NOP leads to its owner
    AfterValidator(_nop_when_on_object),  # declare ``tax_kind`` before it: it reads it
    Field(
        validate_default=True,  # so a missing NOP is checked against the tax kind too
        description="The tax object (NOP): required for pbb-p2 and bphtb, null for the others.",
    ),
]
"""The NOP of a tax levied on a property; null for a tax on a registered taxpayer."""

# The same rule for JSON Schema validators: a model with a ``tax_kind`` and a ``nop`` adds it.
_ON_OBJECT: list[JsonValue] = [kind.value for kind in sorted(ON_TAX_OBJECT)]
NOP_RULE = ConfigDict(
    json_schema_extra={
        "allOf": [
            {
                "if": {"properties": {"tax_kind": {"enum": _ON_OBJECT}}, "required": ["tax_kind"]},
                "then": {"properties": {"nop": {"type": "string"}}, "required": ["nop"]},
                "else": {"properties": {"nop": {"type": "null"}}},
            }
        ]
    }
)


AssessmentNo = Annotated[
    RecordNo,
    PERSONAL,  # a PBB-P2 SPPT number embeds the NOP (SPPT-2026-357305000300200450)
]
"""The number of an assessment (SPPT, SKPD, SSPD): personal, as it can carry the NOP."""


_PERIOD = re.compile("[0-9]{4}(-(0[1-9]|1[0-2]))?")


def _check_period(value: str) -> str:
    if not _PERIOD.fullmatch(value):
        raise ValueError("a tax period is a year YYYY or a month YYYY-MM")
    return value


TaxPeriod = Annotated[
    str,
    AfterValidator(_check_period),
    Field(
        description="Tax period: a year (YYYY, e.g. for PBB-P2) or a month (YYYY-MM).",
        json_schema_extra={"pattern": "^[0-9]{4}(-(0[1-9]|1[0-2]))?$"},
    ),
]
"""A tax period: a year (YYYY) or a month (YYYY-MM)."""


class TaxpayerRegistered(
    Contract,
    event_type="bapenda.taxpayer.registered.v1",
    minor=1,  # 1.1: npwpd marked personal, and the subject (bapenda publishes it by NPWPD)
    owner="bapenda",
    classification=Classification.PERSONAL,
    personal_subject=True,
):
    """A person or business was registered as a local taxpayer (NPWPD issued)."""

    npwpd: NPWPD = Field(description="The new local taxpayer number.")
    taxpayer: Taxpayer
    tax_kinds: tuple[TaxKind, ...] = Field(
        min_length=1, description="The self-assessed taxes the taxpayer is registered for."
    )
    address: Address = Field(description="Where the taxed business or activity is.")
    permit_no: RecordNo | None = Field(
        default=None, description="The dpmptsp permit that led to the registration, if any."
    )
    registered_on: PastDate = Field(description="Date the NPWPD was issued.")

    @field_validator("tax_kinds")
    @classmethod
    def _self_assessed(cls, kinds: tuple[TaxKind, ...]) -> tuple[TaxKind, ...]:
        if ON_TAX_OBJECT & set(kinds):
            raise ValueError("pbb-p2 and bphtb are levied on a tax object, not on a registration")
        if len(set(kinds)) != len(kinds):
            raise ValueError("lists a tax kind twice")
        return kinds


class TaxAssessed(
    Contract,
    event_type="bapenda.tax.assessed.v1",
    minor=1,  # 1.1: assessment_no (an SPPT number holds the NOP) and npwpd marked personal
    owner="bapenda",
    classification=Classification.PERSONAL,
):
    """A tax was assessed (SPPT, SKPD or a validated self-assessment): an amount is due."""

    model_config = NOP_RULE

    assessment_no: AssessmentNo = Field(description="Number of the assessment (SPPT, SKPD, SSPD).")
    tax_kind: TaxKind = Field(description="Which tax.")
    nop: TaxObject = None
    npwpd: NPWPD | None = Field(
        default=None, description="The taxpayer's NPWPD, for taxes on a registered taxpayer."
    )
    taxpayer: Taxpayer
    period: TaxPeriod = Field(description="The period taxed.")
    amount: Rupiah = Field(description="Amount due, in rupiah.")
    due_on: Date = Field(description="Last day to pay without a penalty.")
    assessed_on: PastDate = Field(description="Date of the assessment.")


class PaymentChannel(StrEnum):
    """How a tax payment reached the city's account (the kas daerah)."""

    BANK_TELLER = "bank-teller"
    VIRTUAL_ACCOUNT = "virtual-account"
    QRIS = "qris"
    MARKETPLACE = "marketplace"  # e-commerce and payment apps
    BAPENDA_COUNTER = "bapenda-counter"


class PaymentReceived(
    Contract,
    event_type="bapenda.payment.received.v1",
    minor=1,  # 1.1: assessment_no marked personal (an SPPT number holds the NOP)
    owner="bapenda",
    classification=Classification.PERSONAL,
):
    """A tax payment was received and reconciled against its assessment."""

    model_config = NOP_RULE

    payment_ref: RecordNo = Field(description="Reference of the payment at the bank or channel.")
    assessment_no: AssessmentNo = Field(description="The assessment the payment settles.")
    tax_kind: TaxKind = Field(description="Which tax.")
    nop: TaxObject = None
    taxpayer: Taxpayer
    amount: Rupiah = Field(description="Amount received, in rupiah, penalties included.")
    channel: PaymentChannel = Field(description="How it was paid.")
    paid_at: Timestamp = Field(description="When it was paid (RFC 3339 with offset).")

    @field_validator("amount")
    @classmethod
    def _not_zero(cls, amount: int) -> int:
        if amount == 0:
            raise ValueError("a payment is more than 0 rupiah")
        return amount
