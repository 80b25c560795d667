"""Bapenda adapter: nightly CSV exports of local tax payments -> bapenda.payment.received.v1.

The legacy tax system (SIMPATDA-like) exports the day's payments as a CSV file into a drop
folder (see docs/adapters/csv.md). One row is one payment slip (SSPD): ``no_sspd`` is its key,
``versi`` is bumped when Bapenda corrects it, so a re-exported row is not published twice and a
correction is a new event. Amounts come as Indonesian text (``1.250.000``), dates as
``dd/mm/yyyy HH:MM:SS`` in WIB.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict
from redis.asyncio import Redis

from bus import ComponentSettings, ConfigurationError, Publisher, Signer
from bus.adapter import (
    Adapter,
    CsvDropSource,
    ProgressHook,
    Quarantine,
    Record,
    RedisCheckpoints,
    drop_adapter,
)
from schemas.bapenda import PaymentChannel, PaymentReceived, TaxKind

__all__ = [
    "COLUMNS",
    "NAME",
    "SOURCE",
    "TABLE",
    "WIB",
    "adapter",
    "from_env",
    "map_payment",
    "parse_amount",
    "parse_paid_at",
    "source",
]

NAME = "bapenda-pembayaran"  # the adapter's name: its checkpoint and its quarantine
SOURCE = "urn:malangkota:bapenda:simpatda"
TABLE = "pembayaran"  # the record set inside the tax system: part of every event id
WIB = timezone(timedelta(hours=7), "WIB")
DROP_ENV = "SIMPUL_BAPENDA_DROP"


class BapendaSettings(ComponentSettings):
    """The adapter's knobs, from ``SIMPUL_BAPENDA_*``."""

    model_config = SettingsConfigDict(env_prefix="SIMPUL_BAPENDA_")

    drop: str | None = Field(default=None, description="the drop folder (holding incoming/)")
    delimiter: str = Field(default=";", min_length=1, max_length=1)
    encoding: str = Field(
        default="cp1252", description="fallback encoding of non-UTF-8 files; none: UTF-8 only"
    )


# The export's columns, in its order. nama_wp, npwpd, masa_pajak and bank are exported but
# not part of the payment event.
COLUMNS = (
    "no_sspd",
    "versi",
    "nomor_bukti_bayar",
    "no_ketetapan",
    "jenis_pajak",
    "nop",
    "npwpd",
    "masa_pajak",
    "jenis_identitas",
    "no_identitas",
    "nama_wp",
    "jumlah_bayar",
    "tanggal_bayar",
    "bank",
    "saluran_bayar",
)

TAX_KINDS = {
    "PBB-P2": TaxKind.PBB_P2,
    "PBB": TaxKind.PBB_P2,
    "BPHTB": TaxKind.BPHTB,
    "PBJT MAKANAN DAN MINUMAN": TaxKind.PBJT_MAKANAN_MINUMAN,
    "PBJT PERHOTELAN": TaxKind.PBJT_PERHOTELAN,
    "PBJT PARKIR": TaxKind.PBJT_PARKIR,
    "PBJT KESENIAN DAN HIBURAN": TaxKind.PBJT_KESENIAN_HIBURAN,
    "PBJT TENAGA LISTRIK": TaxKind.PBJT_TENAGA_LISTRIK,
    "REKLAME": TaxKind.REKLAME,
    "AIR TANAH": TaxKind.AIR_TANAH,
}
CHANNELS = {
    "TELLER": PaymentChannel.BANK_TELLER,
    "VA": PaymentChannel.VIRTUAL_ACCOUNT,
    "VIRTUAL ACCOUNT": PaymentChannel.VIRTUAL_ACCOUNT,
    "QRIS": PaymentChannel.QRIS,
    "MARKETPLACE": PaymentChannel.MARKETPLACE,
    "LOKET BAPENDA": PaymentChannel.BAPENDA_COUNTER,
}
IDENTITY_SCHEMES = {"NIK": "nik", "NIB": "nib"}

_RUPIAH = re.compile(r"(?:[0-9]{1,3}(?:\.[0-9]{3})+|[0-9]+)(?:,0{1,2})?")
_PAID_AT = "%d/%m/%Y %H:%M:%S"
_PAID_AT_PLAIN = re.compile(
    r"([0-9]{2})/([0-9]{2})/([0-9]{4}) ([0-9]{2}):([0-9]{2})(?::([0-9]{2}))?", re.ASCII
)
_NOP_SEPARATORS = re.compile(r"[.\- ]")

Row = Mapping[str, str]


def parse_amount(text: str) -> int:
    """``1.250.000``, ``1250000``, ``Rp 1.250.000,00`` -> 1250000 (whole rupiah)."""
    value = text.strip().removeprefix("Rp").removeprefix(".").strip()
    if not _RUPIAH.fullmatch(value):
        raise ValueError(
            "jumlah_bayar is not whole rupiah written as 1.250.000 or 1250000 (optionally ,00): "
            "no sen, no comma thousands separators"
        )
    return int(value.split(",")[0].replace(".", ""))


def parse_paid_at(text: str) -> datetime:
    """``05/01/2026 10:42:17`` (WIB; seconds optional) -> an aware datetime."""
    value = text.strip()
    # The export's own form read by hand: strptime costs ~10 µs a row, this ~1.5. Whatever
    # this does not take goes through strptime, so both read the same values the same way.
    plain = _PAID_AT_PLAIN.fullmatch(value)
    if plain is not None:
        day, month, year, hour, minute, second = plain.groups()
        with contextlib.suppress(ValueError):  # e.g. 31/02: strptime says why below
            return datetime(
                int(year), int(month), int(day), int(hour), int(minute), int(second or 0), 0, WIB
            )
    for pattern in (_PAID_AT, "%d/%m/%Y %H:%M"):
        try:
            return datetime.strptime(value, pattern).replace(tzinfo=WIB)
        except ValueError:
            continue
    raise ValueError("tanggal_bayar is not a date and time dd/mm/yyyy HH:MM[:SS] (WIB)")


def _paid_at_or_none(row: Row) -> datetime | None:
    try:
        return parse_paid_at(row.get("tanggal_bayar", ""))
    except ValueError:
        return None  # the mapper quarantines the row with the reason


def _lookup(table: Mapping[str, object], column: str, row: Row) -> object:
    value = row[column].strip().upper()
    try:
        return table[value]
    except KeyError:
        raise ValueError(f"unknown {column} {value!r} (expected {', '.join(table)})") from None


def _nop(text: str) -> str | None:
    """``35.73.050.003.002-0045.0`` -> 18 digits; empty -> None (taxes not on a property)."""
    digits = _NOP_SEPARATORS.sub("", text.strip())
    return digits or None


def map_payment(row: Row, *, paid_at: datetime | None = None) -> PaymentReceived:
    """One exported payment row -> its event. Raises ValueError or ContractViolation.

    ``paid_at``: ``tanggal_bayar`` as the source already read it (the record's time), so it is
    not parsed twice; None parses it here (and says why it cannot be)."""
    return PaymentReceived.parse(
        {
            "payment_ref": row["nomor_bukti_bayar"].strip(),
            "assessment_no": row["no_ketetapan"].strip(),
            "tax_kind": _lookup(TAX_KINDS, "jenis_pajak", row),
            "nop": _nop(row["nop"]),
            "taxpayer": {
                "scheme": _lookup(IDENTITY_SCHEMES, "jenis_identitas", row),
                "value": row["no_identitas"].strip(),
            },
            "amount": parse_amount(row["jumlah_bayar"]),
            "channel": _lookup(CHANNELS, "saluran_bayar", row),
            "paid_at": paid_at or parse_paid_at(row["tanggal_bayar"]),
        }
    )


def _map_record(record: Record) -> PaymentReceived:
    return map_payment(record.data, paid_at=record.time)  # the source's _paid_at_or_none


def source(
    folder: str | Path,
    *,
    delimiter: str = ";",
    fallback_encoding: str | None = "cp1252",
    settle_seconds: float = 2.0,
) -> CsvDropSource:
    """The drop folder of Bapenda's exports: ``;``-separated (Excel, Indonesian locale), UTF-8
    or, for the old Windows export, cp1252."""
    return CsvDropSource(
        folder,
        name=TABLE,
        key="no_sspd",
        version="versi",
        columns=COLUMNS,
        delimiter=delimiter,
        fallback_encoding=fallback_encoding,
        time=_paid_at_or_none,
        settle_seconds=settle_seconds,
    )


def adapter(
    redis: Redis,
    folder: str | Path,
    *,
    delimiter: str = ";",
    fallback_encoding: str | None = "cp1252",
    settle_seconds: float = 2.0,
    batch_size: int = 500,
    on_progress: ProgressHook | None = None,
    signer: Signer | Literal["environment"] | None = "environment",
) -> Adapter:
    """The Bapenda adapter, wired: drop folder, mapper, publisher, checkpoints, quarantine."""
    drop = source(
        folder,
        delimiter=delimiter,
        fallback_encoding=fallback_encoding,
        settle_seconds=settle_seconds,
    )
    return drop_adapter(
        NAME,
        source=drop,
        mapper=_map_record,
        publisher=Publisher(redis, source=SOURCE, signer=signer),
        checkpoints=RedisCheckpoints(redis),
        quarantine=Quarantine(redis, NAME),
        batch_size=batch_size,
        on_progress=on_progress,
    )


def from_env(redis: Redis) -> Adapter:
    """The adapter as ``simpul adapter run adapters.bapenda:from_env`` builds it.

    SIMPUL_BAPENDA_DROP: the drop folder (with incoming/, done/, failed/);
    SIMPUL_BAPENDA_DELIMITER (default ``;``), SIMPUL_BAPENDA_ENCODING (the fallback, default
    ``cp1252``; ``none`` for UTF-8 only).
    """
    settings = BapendaSettings.load()
    folder = settings.drop
    if not folder:
        raise ConfigurationError(f"set {DROP_ENV} to Bapenda's drop folder (holding incoming/)")
    fallback = settings.encoding
    return adapter(
        redis,
        folder,
        delimiter=settings.delimiter,
        fallback_encoding=None if fallback.lower() == "none" else fallback,
    )
