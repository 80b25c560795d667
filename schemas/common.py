"""Identifier, region, address and money types shared by every department's contracts.

Validation messages name the rule that failed, never the value: identifiers are personal data.
Digits are ASCII only (``[0-9]``, not ``\\d``, which accepts digits of other scripts).
"""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt, model_validator

from bus import PERSONAL
from schemas.regions import regions

# Kemendagri province codes (38 provinces, incl. the Papua split of 2022).
PROVINCES = frozenset(
    {11, 12, 13, 14, 15, 16, 17, 18, 19, 21, 31, 32, 33, 34, 35, 36, 51, 52, 53, 61, 62, 63, 64,
     65, 71, 72, 73, 74, 75, 76, 81, 82, 91, 92, 93, 94, 95, 96, 97}
)  # fmt: skip
CITY = "35.73"


def _digits(value: str, count: int, what: str) -> None:
    if not re.fullmatch(f"[0-9]{{{count}}}", value):
        raise ValueError(f"a {what} is exactly {count} ASCII digits")


def _province(value: str, what: str) -> None:
    if int(value[0:2]) not in PROVINCES:
        raise ValueError(f"{what} digits 1-2 are not a known province code")


def _check_nik(value: str) -> str:
    _digits(value, 16, "NIK")
    _province(value, "NIK")
    day, month = int(value[6:8]), int(value[8:10])
    if not (1 <= day <= 31 or 41 <= day <= 71):
        raise ValueError("NIK digits 7-8 (birth day, +40 for women) must be 01-31 or 41-71")
    if not 1 <= month <= 12:
        raise ValueError("NIK digits 9-10 (birth month) must be 01-12")
    if value[12:] == "0000":
        raise ValueError("NIK digits 13-16 (serial) must not be 0000")
    return value


def _check_kk(value: str) -> str:
    _digits(value, 16, "KK number")
    _province(value, "KK number")
    day, month = int(value[6:8]), int(value[8:10])
    if not (1 <= day <= 31 and 1 <= month <= 12):
        raise ValueError("KK number digits 7-12 must be the issue date DDMMYY")
    return value


def _check_nib(value: str) -> str:
    _digits(value, 13, "NIB")
    return value


def _check_nop(value: str) -> str:
    _digits(value, 18, "NOP")
    _province(value, "NOP")
    return value


def _check_nip(value: str) -> str:
    _digits(value, 18, "NIP")
    try:
        date(int(value[0:4]), int(value[4:6]), int(value[6:8]))
    except ValueError:
        raise ValueError("NIP digits 1-8 must be a real birth date YYYYMMDD") from None
    if not 1 <= int(value[12:14]) <= 12:
        raise ValueError("NIP digits 9-14 must be the appointment month YYYYMM")
    if value[14] not in "12":
        raise ValueError("NIP digit 15 (gender) must be 1 or 2")
    return value


NIK = Annotated[str, AfterValidator(_check_nik)]
"""Nomor Induk Kependudukan: PP KK CC DDMMYY SSSS. The region is where it was first issued,
not where the person lives: never infer residence from it."""
KK = Annotated[str, AfterValidator(_check_kk)]
"""Kartu Keluarga (family card) number: 16 digits, region + issue date + serial."""
NIB = Annotated[str, AfterValidator(_check_nib)]
"""Nomor Induk Berusaha: business id from the national OSS system, 13 digits."""
NOP = Annotated[str, AfterValidator(_check_nop)]
"""Nomor Objek Pajak: property tax object, 18 digits (province, city, district, village,
block, serial, type)."""
NIP = Annotated[str, AfterValidator(_check_nip)]
"""Nomor Induk Pegawai: civil servant id, 18 digits (birth date, appointment month, gender,
serial)."""

_CHECKS = {"nik": _check_nik, "kk": _check_kk, "nib": _check_nib, "nop": _check_nop, "nip": _check_nip}
Scheme = Literal["nik", "kk", "nib", "nop", "nip"]


class Identifier(BaseModel):
    """An identifier as a (scheme, value) pair, so new schemes fit without new fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    scheme: Scheme
    value: Annotated[str, PERSONAL]

    @model_validator(mode="after")
    def _valid_for_scheme(self) -> Identifier:
        _CHECKS[self.scheme](self.value)
        return self


def _check_kecamatan(value: str) -> str:
    if value.count(".") != 2 or value not in regions():
        raise ValueError("not a kecamatan code of Kota Malang (35.73.01 .. 35.73.05)")
    return value


def _check_kelurahan(value: str) -> str:
    if value.count(".") != 3 or value not in regions():
        raise ValueError("not a kelurahan code of Kota Malang (35.73.0x.10yy, see regions.json)")
    return value


KecamatanCode = Annotated[str, AfterValidator(_check_kecamatan)]
"""Kemendagri code of one of Kota Malang's five kecamatan (35.73.01 .. 35.73.05)."""
KelurahanCode = Annotated[str, AfterValidator(_check_kelurahan)]
"""Kemendagri code of one of Kota Malang's 57 kelurahan (35.73.0x.10yy)."""

Rupiah = Annotated[StrictInt, Field(ge=0, le=10**15)]
"""An amount in whole rupiah: an integer (never a float), not negative."""


class Address(BaseModel):
    """A registered address in Kota Malang. Every line is personal data."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    street: Annotated[str, PERSONAL, Field(min_length=1, max_length=200)]
    rt: Annotated[str, Field(pattern=r"^[0-9]{3}$")]
    rw: Annotated[str, Field(pattern=r"^[0-9]{3}$")]
    kelurahan: KelurahanCode
    kecamatan: KecamatanCode

    @model_validator(mode="after")
    def _kelurahan_in_kecamatan(self) -> Address:
        if not self.kelurahan.startswith(self.kecamatan + "."):
            raise ValueError("kelurahan is not in the given kecamatan")
        return self


PastDate = Annotated[date, Field(le=date(2100, 1, 1))]
"""A calendar date (ISO 8601, YYYY-MM-DD)."""
