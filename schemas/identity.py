"""City account events ("one user, one account"), produced by the city super-app's identity
service run by Diskominfo.

A NIK is linked to at most one city account at a time: linking it to a new account unlinks it
from the old one first, and both facts are published.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import Field

from bus import PERSONAL, Classification, Contract
from schemas.common import NIK, AccountId, Timestamp


class Verification(StrEnum):
    """How the account holder proved the NIK is theirs."""

    DUKCAPIL_FACE_MATCH = "dukcapil-face-match"  # selfie matched by Dukcapil's service
    KTP_EL_READER = "ktp-el-reader"  # e-KTP chip read at a counter
    COUNTER = "counter"  # documents checked in person by an officer


class AccountLinked(
    Contract,
    event_type="identity.account.linked.v1",
    minor=0,
    owner="diskominfo",
    classification=Classification.PERSONAL,
):
    """A city account was linked to a verified NIK."""

    # The verification's evidence (photos, biometric scores) stays with the identity service.
    account_id: Annotated[AccountId, PERSONAL] = Field(description="The city account.")
    nik: Annotated[NIK, PERSONAL] = Field(description="The NIK now linked to the account.")
    verification: Verification = Field(description="How the NIK was verified.")
    linked_at: Timestamp = Field(description="When (RFC 3339 with offset).")


class UnlinkReason(StrEnum):
    """Why a NIK was unlinked from its account."""

    DEATH = "death"  # after dukcapil.citizen.died
    HOLDER_REQUEST = "holder-request"
    RELINKED = "relinked"  # linked to another account (one user, one account)
    FRAUD = "fraud"  # the link was obtained with another person's documents


class AccountUnlinked(
    Contract,
    event_type="identity.account.unlinked.v1",
    minor=0,
    owner="diskominfo",
    classification=Classification.PERSONAL,
):
    """A NIK was unlinked from a city account."""

    account_id: Annotated[AccountId, PERSONAL] = Field(description="The city account.")
    nik: Annotated[NIK, PERSONAL] = Field(description="The NIK no longer linked to it.")
    reason: UnlinkReason = Field(description="Why.")
    unlinked_at: Timestamp = Field(description="When (RFC 3339 with offset).")
