"""Dinas Komunikasi dan Informatika events: the city's public complaint channels.

A complaint's text can hold anything, specific personal data included, so it stays in the
complaint system: the event routes the complaint (category, department, place) and the
department reads the text there by ``complaint_no``.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, Field, ValidationInfo, field_validator

from bus import PERSONAL, Classification, Contract
from schemas.common import AccountId, KelurahanCode, RecordNo, Timestamp


class ComplaintChannel(StrEnum):
    """Where a complaint came in."""

    SAMBAT_ONLINE = "sambat-online"  # Kota Malang's complaint service (web and app)
    SP4N_LAPOR = "sp4n-lapor"  # the national LAPOR! system, forwarded to the city
    SUPER_APP = "super-app"  # the city's citizen app
    CALL_CENTER = "call-center"
    WALK_IN = "walk-in"  # at a service counter


class ComplaintCategory(StrEnum):
    """What a complaint is about, for routing and statistics."""

    INFRASTRUCTURE = "infrastructure"  # roads, drainage, street lights
    ENVIRONMENT = "environment"  # waste, parks, pollution
    TRAFFIC = "traffic"
    PUBLIC_ORDER = "public-order"
    HEALTH_SERVICE = "health-service"
    EDUCATION = "education"
    SOCIAL_ASSISTANCE = "social-assistance"
    CIVIL_REGISTRY = "civil-registry"
    TAXES = "taxes"
    LICENSING = "licensing"
    OTHER = "other"


def _check_department(value: str) -> str:
    if not re.fullmatch("[a-z][a-z0-9-]{1,31}", value):
        raise ValueError("a department code is 2-32 lowercase ASCII letters, digits and dashes")
    return value


DepartmentCode = Annotated[
    str,
    AfterValidator(_check_department),
    Field(
        description="Short code of a perangkat daerah, as in event types (dukcapil, dinsos, ...).",
        json_schema_extra={"pattern": "^[a-z][a-z0-9-]{1,31}$"},
    ),
]
"""Short code of a department (perangkat daerah): the first segment of its event types."""


class ComplaintReceived(
    Contract,
    event_type="diskominfo.complaint.received.v1",
    minor=0,
    owner="diskominfo",
    classification=Classification.PERSONAL,
):
    """A public complaint was received and routed to the department responsible."""

    complaint_no: RecordNo = Field(description="Ticket number in the complaint system.")
    channel: ComplaintChannel = Field(description="Where the complaint came in.")
    category: ComplaintCategory = Field(description="What it is about.")
    department: DepartmentCode = Field(description="The department that must respond.")
    kelurahan: KelurahanCode | None = Field(
        default=None, description="Where the problem is, when it has a place in the city."
    )
    reporter_account: Annotated[AccountId | None, PERSONAL] = Field(
        default=None,
        description="City account of the reporter, for replies; null for an anonymous complaint.",
    )
    received_at: Timestamp = Field(description="When it came in (RFC 3339 with offset).")
    respond_by: Timestamp = Field(description="Deadline for the department's first response.")

    @field_validator("respond_by")
    @classmethod
    def _after_receipt(cls, respond_by: datetime, info: ValidationInfo) -> datetime:
        received_at = info.data.get("received_at")
        if received_at is not None and respond_by <= received_at:
            raise ValueError("must be after received_at")
        return respond_by
