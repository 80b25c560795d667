"""One-stop licensing (DPMPTSP) adapter: the permit system's decision webhook -> permit events.

The licensing application POSTs every state change of a permit application (submitted, issued,
rejected) to this webhook; see :mod:`adapters.dpmptsp.payload` for its fields. The mapping is
the adapter: a payload in, a validated contract out. The event id comes from (source URN,
``keputusan_izin``, ``nomor_permohonan``, ``<status_permohonan>/<revisi>``): the application
POSTing the same decision again is a no-op, a corrected decision (``revisi`` + 1) a new event.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import timedelta, timezone
from typing import Any, Literal

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict
from redis.asyncio import Redis

from adapters.dpmptsp.payload import APPLIED, ISSUED, KINDS, REASONS, REJECTED, STATUSES
from bus import ComponentSettings, ConfigurationError, Contract, Publisher, Signer, event_id
from bus.adapter import WEBHOOK_MAX_BODY as MAX_BODY
from bus.adapter import Quarantine, Record, Webhook
from schemas.dpmptsp import PermitApplied, PermitIssued, PermitRejected

__all__ = [
    "NAME",
    "SOURCE",
    "SOURCE_NAME",
    "SicantikMapper",
    "from_env",
    "map_payload",
    "version_of",
    "webhook",
]

NAME = "dpmptsp-sicantik"  # the adapter's name: its quarantine
SOURCE = "urn:malangkota:dpmptsp:sicantik"
SOURCE_NAME = "keputusan_izin"  # the record set inside the licensing system: part of event ids
WIB = timezone(timedelta(hours=7), "WIB")  # the application writes local time
TOKEN_ENV = "SIMPUL_DPMPTSP_TOKEN"


class DpmptspSettings(ComponentSettings):
    """The webhook's knobs, from ``SIMPUL_DPMPTSP_*``."""

    model_config = SettingsConfigDict(env_prefix="SIMPUL_DPMPTSP_")

    token: SecretStr | None = Field(
        default=None, description="the bearer token the licensing application sends"
    )


Payload = Mapping[str, Any]
_DAY_FIRST = re.compile(r"([0-9]{2})[-/]([0-9]{2})[-/]([0-9]{4})")
_GROUPED = re.compile(r"[0-9]{1,3}(\.[0-9]{3})+")


def version_of(payload: Payload) -> str:
    """``TERBIT/2``: the decision and its revision. Empty (quarantined) if either is missing."""
    status = str(payload.get("status_permohonan") or "").strip().upper()
    revision = str(payload.get("revisi") or "").strip()
    return f"{status}/{revision}" if status and revision else ""


class SicantikMapper:
    """One decision payload -> its dpmptsp contract, by ``status_permohonan``.

    Messages of the errors raised here name fields and allowed codes, never a value: they go
    back to the licensing application in the 422 answer.
    """

    def __init__(self) -> None:
        self._by_status: dict[str, Callable[[Payload], Contract]] = {
            APPLIED: self.applied,
            ISSUED: self.issued,
            REJECTED: self.rejected,
        }

    def __call__(self, record: Record) -> Contract:
        return self.map(record.data)

    def map(self, payload: Payload) -> Contract:
        status = str(payload.get("status_permohonan", "")).strip().upper()
        if status not in self._by_status:
            raise ValueError(f"status_permohonan must be one of {', '.join(STATUSES)}")
        return self._by_status[status](payload)

    def applied(self, payload: Payload) -> PermitApplied:
        return PermitApplied.parse(
            {
                **_application(payload),
                "site": _site(payload),
                "applied_on": _date(payload.get("tanggal_permohonan")),
            }
        )

    def issued(self, payload: Payload) -> PermitIssued:
        return PermitIssued.parse(
            {
                **_application(payload),
                "permit_no": payload.get("nomor_izin"),
                "site": _site(payload),
                "issued_on": _date(payload.get("tanggal_keputusan")),
                "valid_until": _date(payload.get("masa_berlaku_sampai")),
                "retribution": _rupiah(payload.get("retribusi")),
            }
        )

    def rejected(self, payload: Payload) -> PermitRejected:
        reason = str(payload.get("kode_alasan_penolakan", "")).strip().upper()
        if reason not in REASONS:
            raise ValueError(f"kode_alasan_penolakan must be one of {', '.join(REASONS)}")
        return PermitRejected.parse(
            {
                **_application(payload),
                "reason": REASONS[reason],
                "rejected_on": _date(payload.get("tanggal_keputusan")),
            }
        )


def _application(payload: Payload) -> dict[str, Any]:
    kind = str(payload.get("jenis_izin", "")).strip().upper()
    if kind not in KINDS:
        raise ValueError(f"jenis_izin must be one of {', '.join(KINDS)}")
    nib = str(payload.get("nib") or "").strip()
    applicant = (
        {"scheme": "nib", "value": nib}
        if nib
        else {"scheme": "nik", "value": payload.get("nik_pemohon")}
    )
    # kind before applicant: the contract checks the applicant against the kind.
    return {
        "application_no": payload.get("nomor_permohonan"),
        "kind": KINDS[kind],
        "applicant": applicant,
    }


def _site(payload: Payload) -> dict[str, Any]:
    return {
        "street": payload.get("alamat_lokasi"),
        "rt": payload.get("rt"),
        "rw": payload.get("rw"),
        "kelurahan": payload.get("kode_kelurahan"),
        "kecamatan": payload.get("kode_kecamatan"),
    }


def _date(value: Any) -> Any:
    """``12-11-2026`` or ``12/11/2026`` (how the application prints dates) -> ISO; empty ->
    None; anything else as it came, for the contract to judge."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    match = _DAY_FIRST.fullmatch(value.strip()) if isinstance(value, str) else None
    return f"{match[3]}-{match[2]}-{match[1]}" if match else value


def _rupiah(value: Any) -> Any:
    """Whole rupiah as an int: ``4750000`` or ``4.750.000`` (form bodies send text)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, str):
        text = value.strip()
        if text.isascii() and (text.isdigit() or _GROUPED.fullmatch(text)):
            return int(text.replace(".", ""))
    return value


def map_payload(payload: Payload) -> tuple[Contract, str]:
    """One payload -> (event, event id), as the webhook publishes it. Raises ContractViolation
    or ValueError for a payload that won't map."""
    event = SicantikMapper().map(payload)
    return event, event_id(SOURCE, SOURCE_NAME, payload["nomor_permohonan"], version_of(payload))


def webhook(
    redis: Redis,
    *,
    token: str | None = None,
    max_body: int = MAX_BODY,
    signer: Signer | Literal["environment"] | None = "environment",
) -> Webhook:
    """The licensing webhook, wired: mapper, publisher and quarantine on ``redis``; ``signer``
    as :class:`~bus.publisher.Publisher` takes it (default: ``SIMPUL_SIGNING_KEY_FILE``)."""
    return Webhook(
        NAME,
        source_name=SOURCE_NAME,
        mapper=SicantikMapper(),
        publisher=Publisher(redis, source=SOURCE, signer=signer),
        quarantine=Quarantine(redis, NAME),
        key="nomor_permohonan",
        version=version_of,
        time="waktu_proses",
        naive_timezone=WIB,
        max_body=max_body,
        token=token,
    )


def from_env(redis: Redis) -> Webhook:
    """The webhook as ``simpul adapter serve adapters.dpmptsp:from_env`` builds it.

    SIMPUL_DPMPTSP_TOKEN: the bearer token the licensing application sends (16+ characters);
    required, because the webhook publishes in the department's name.
    """
    secret = DpmptspSettings.load().token
    token = secret.get_secret_value() if secret else None
    if not token:
        raise ConfigurationError(
            f"set {TOKEN_ENV} to the bearer token the licensing application sends (16+ chars)"
        )
    return webhook(redis, token=token)
