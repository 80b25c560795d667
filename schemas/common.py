"""Identifier, region, address, reference and money types shared by every department's contracts.

Validation messages name the rule that failed, never the value: identifiers are personal data.
Digits are ASCII only (``[0-9]``, not ``\\d``, which accepts digits of other scripts).

Each type also carries its rules into the JSON Schema, for apps that are not written in Python:
a ``pattern`` (added with ``json_schema_extra`` so that it documents without validating, and
the validator below keeps its own, precise message) and a ``description`` of the structure. A
field's own ``Field(description=...)`` replaces the type's description in that field's schema;
the pattern stays.
"""

from __future__ import annotations

import functools
import hashlib
import re
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal, cast
from uuid import UUID

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    field_validator,
)

from bus import PERSONAL
from schemas.regions import regions

# Kemendagri province codes (38 provinces, incl. the Papua split of 2022).
PROVINCES = frozenset(
    {
        11,
        12,
        13,
        14,
        15,
        16,
        17,
        18,
        19,
        21,
        31,
        32,
        33,
        34,
        35,
        36,
        51,
        52,
        53,
        61,
        62,
        63,
        64,
        65,
        71,
        72,
        73,
        74,
        75,
        76,
        81,
        82,
        91,
        92,
        93,
        94,
        95,
        96,
        97,
    }
)
CITY = "35.73"


def _documented(description: str, pattern: str) -> Any:
    """JSON Schema documentation of a string type: its pattern (not validated by pydantic, whose
    message would quote the regex instead of naming the rule) and its structure."""
    return Field(description=description, json_schema_extra={"pattern": pattern})


def _digits(value: str, count: int, what: str) -> None:
    if not (value.isascii() and (value.isdigit() or not value)):  # [0-9]*, without a regex
        raise ValueError(
            f"a {what} has ASCII digits 0-9 only (no spaces, separators or digits of other scripts)"
        )
    if len(value) != count:
        raise ValueError(f"a {what} has exactly {count} digits")


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


NIK = Annotated[
    str,
    AfterValidator(_check_nik),
    _documented(
        "NIK (Nomor Induk Kependudukan), 16 ASCII digits PP KK CC DDMMYY SSSS: province, "
        "regency/city and district where the NIK was first issued (not where the person lives), "
        "birth date with the day + 40 for women (41-71), serial 0001-9999.",
        "^[0-9]{16}$",
    ),
]
"""Nomor Induk Kependudukan: PP KK CC DDMMYY SSSS. The region is where it was first issued,
not where the person lives: never infer residence from it."""
KK = Annotated[
    str,
    AfterValidator(_check_kk),
    _documented(
        "Kartu Keluarga (family card) number, 16 ASCII digits PP KK CC DDMMYY SSSS: province, "
        "regency/city, district, issue date, serial. A different identifier from the NIK.",
        "^[0-9]{16}$",
    ),
]
"""Kartu Keluarga (family card) number: 16 digits, region + issue date + serial."""
NIB = Annotated[
    str,
    AfterValidator(_check_nib),
    _documented(
        "NIB (Nomor Induk Berusaha), the business id issued by the national OSS system: "
        "13 ASCII digits.",
        "^[0-9]{13}$",
    ),
]
"""Nomor Induk Berusaha: business id from the national OSS system, 13 digits."""
NOP = Annotated[
    str,
    AfterValidator(_check_nop),
    _documented(
        "NOP (Nomor Objek Pajak), the property tax object, 18 ASCII digits without separators: "
        "province 2, regency/city 2, district 3, village 3, block 3, serial 4, type 1.",
        "^[0-9]{18}$",
    ),
]
"""Nomor Objek Pajak: property tax object, 18 digits (province, city, district, village,
block, serial, type)."""
NIP = Annotated[
    str,
    AfterValidator(_check_nip),
    _documented(
        "NIP (Nomor Induk Pegawai), the civil servant id, 18 ASCII digits: birth date YYYYMMDD, "
        "appointment month YYYYMM, gender (1 man, 2 woman), serial 3.",
        "^[0-9]{18}$",
    ),
]
"""Nomor Induk Pegawai: civil servant id, 18 digits (birth date, appointment month, gender,
serial)."""

Scheme = Literal["nik", "kk", "nib", "nop", "nip"]
_RULES: dict[str, tuple[Any, str]] = {
    "nik": (_check_nik, "^[0-9]{16}$"),
    "kk": (_check_kk, "^[0-9]{16}$"),
    "nib": (_check_nib, "^[0-9]{13}$"),
    "nop": (_check_nop, "^[0-9]{18}$"),
    "nip": (_check_nip, "^[0-9]{18}$"),
}


class Identifier(BaseModel):
    """An identifier as a (scheme, value) pair, so new schemes fit without new fields."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        # The value's pattern per scheme, for JSON Schema validators (2019-09 and later).
        json_schema_extra={
            "allOf": [
                {
                    "if": {"properties": {"scheme": {"const": scheme}}},
                    "then": {"properties": {"value": {"pattern": pattern}}},
                }
                for scheme, (_, pattern) in _RULES.items()
            ]
        },
    )

    scheme: Scheme = Field(description="Which identifier: nik, kk, nib, nop or nip.")
    value: Annotated[str, PERSONAL] = Field(
        description="The identifier, ASCII digits without separators, valid for its scheme."
    )

    @field_validator("value")
    @classmethod
    def _valid_for_scheme(cls, value: str, info: ValidationInfo) -> str:
        scheme = info.data.get("scheme")  # absent when the scheme itself was invalid
        if scheme in _RULES:
            _RULES[scheme][0](value)
        return value


def _check_kecamatan(value: str) -> str:
    if value.count(".") != 2 or value not in regions():
        raise ValueError("not a kecamatan code of Kota Malang (35.73.01 .. 35.73.05)")
    return value


def _check_kelurahan(value: str) -> str:
    if value.count(".") != 3 or value not in regions():
        raise ValueError("not a kelurahan code of Kota Malang (35.73.0x.10yy, see regions.json)")
    return value


KecamatanCode = Annotated[
    str,
    AfterValidator(_check_kecamatan),
    _documented(
        "Kemendagri code of a kecamatan of Kota Malang: 35.73.01 Blimbing, 35.73.02 Klojen, "
        "35.73.03 Kedungkandang, 35.73.04 Sukun, 35.73.05 Lowokwaru. Not a BPS code.",
        r"^35\.73\.0[1-5]$",
    ),
]
"""Kemendagri code of one of Kota Malang's five kecamatan (35.73.01 .. 35.73.05)."""
KelurahanCode = Annotated[
    str,
    AfterValidator(_check_kelurahan),
    _documented(
        "Kemendagri code of a kelurahan of Kota Malang: its kecamatan's code + .10yy, one of the "
        "57 codes listed in schemas/data/regions.json (e.g. 35.73.05.1001 Tunggulwulung). "
        "Not a BPS code.",
        r"^35\.73\.0[1-5]\.10[0-9]{2}$",
    ),
]
"""Kemendagri code of one of Kota Malang's 57 kelurahan (35.73.0x.10yy)."""


_THREE_DIGITS = re.compile("[0-9]{3}")


def _check_rt_rw(value: str) -> str:
    if not _THREE_DIGITS.fullmatch(value):
        raise ValueError("RT and RW numbers are 3 ASCII digits, zero-padded (e.g. 004)")
    return value


RtRw = Annotated[
    str,
    AfterValidator(_check_rt_rw),
    _documented("RT or RW (neighbourhood unit) number: 3 ASCII digits, e.g. 004.", "^[0-9]{3}$"),
]
"""RT/RW (rukun tetangga / rukun warga) number, 3 digits zero-padded."""


class Address(BaseModel):
    """A registered address in Kota Malang. The street line is personal data."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    street: Annotated[str, PERSONAL] = Field(
        min_length=1, max_length=200, description="Street, number and building, as registered."
    )
    rt: RtRw = Field(description="RT (rukun tetangga) number, 3 digits.")
    rw: RtRw = Field(description="RW (rukun warga) number, 3 digits.")
    kelurahan: KelurahanCode = Field(description="Kemendagri code of the kelurahan.")
    kecamatan: KecamatanCode = Field(description="Kemendagri code of the kelurahan's kecamatan.")

    @field_validator("kecamatan")
    @classmethod
    def _contains_kelurahan(cls, kecamatan: str, info: ValidationInfo) -> str:
        kelurahan = info.data.get("kelurahan")  # absent when the kelurahan itself was invalid
        if kelurahan is not None and not kelurahan.startswith(kecamatan + "."):
            raise ValueError("must be the kecamatan of the kelurahan (its code's first 3 parts)")
        return kecamatan


Rupiah = Annotated[
    StrictInt,
    Field(ge=0, le=10**15, description="An amount in whole rupiah: an integer, not negative."),
]
"""An amount in whole rupiah: an integer (never a float, never a string), not negative."""


# What the JSON Schema's "format": "date" and "date-time" allow of a JSON text: pydantic alone
# would also take a number (seconds since 1970), a date-time at midnight for a date, and a time
# without seconds or with an offset lacking its colon, which a consumer validating with the
# published schema refuses. A date or datetime object (an adapter's own) is pydantic's to judge.
_ISO_DATE = re.compile("[0-9]{4}-[0-9]{2}-[0-9]{2}")
_RFC3339 = re.compile(
    "[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}([.][0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})"
)


def _iso_date(value: object) -> object:
    if isinstance(value, str | int | float) and not (
        isinstance(value, str) and _ISO_DATE.fullmatch(value)
    ):
        raise ValueError("must be a date as text, YYYY-MM-DD")
    return value


def _rfc3339(value: object) -> object:
    if isinstance(value, str | int | float) and not (
        isinstance(value, str) and _RFC3339.fullmatch(value)
    ):
        raise ValueError(
            "must be a time as RFC 3339 text with seconds and an offset, "
            "YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)"
        )
    return value


Date = Annotated[date, BeforeValidator(_iso_date)]
"""A calendar date: ISO 8601 text, YYYY-MM-DD (not a number, not a date-time)."""

Timestamp = Annotated[AwareDatetime, BeforeValidator(_rfc3339)]
"""A moment: RFC 3339 text with seconds and an offset (`2026-11-14T10:42:17+07:00`)."""


def _check_past(value: date) -> date:
    # A day of slack: the producer's "today" in WIB (UTC+7) may be tomorrow for a UTC clock.
    if value > datetime.now(UTC).date() + timedelta(days=1):
        raise ValueError("must not be in the future")
    return value


PastDate = Annotated[
    date,
    BeforeValidator(_iso_date),
    AfterValidator(_check_past),
    Field(description="A calendar date (ISO 8601, YYYY-MM-DD), not in the future."),
]
"""A calendar date on which something happened (ISO 8601, YYYY-MM-DD), not in the future."""


_RECORD_NO = re.compile("[A-Za-z0-9][A-Za-z0-9./_-]{2,63}")


def _check_record_no(value: str) -> str:
    if not _RECORD_NO.fullmatch(value):
        raise ValueError(
            "a record number is 3-64 ASCII letters, digits and . / _ - starting with a letter "
            "or digit"
        )
    return value


RecordNo = Annotated[
    str,
    AfterValidator(_check_record_no),
    _documented(
        "A record number as the producing system prints it (application, permit, assessment, "
        "ticket): 3-64 ASCII letters, digits and . / _ -. Not personal data.",
        "^[A-Za-z0-9][A-Za-z0-9./_-]{2,63}$",
    ),
]
"""A record number of the producing system (application, permit, assessment, ticket)."""


_PSEUDONYM = re.compile("[a-z2-7]{26}")


def _check_pseudonym(value: str) -> str:
    if not _PSEUDONYM.fullmatch(value):
        raise ValueError(
            "a pseudonym is 26 characters a-z and 2-7 (base32 of a keyed hash; see "
            "schemas.common.pseudonym), never an identifier itself"
        )
    return value


Pseudonym = Annotated[
    str,
    AfterValidator(_check_pseudonym),
    _documented(
        "A keyed pseudonym of a person: lowercase base32 without padding of the first 16 bytes "
        "of HMAC-SHA256(city pseudonym key, '<scheme>:<value>'), e.g. of 'nik:<NIK>'. Stable per "
        "person, not reversible without the key. Still personal data (pseudonymised).",
        "^[a-z2-7]{26}$",
    ),
]
"""A keyed pseudonym of a person (26 base32 characters): the reference that specific personal
data travels by instead of the record."""


def _as_uuid(value: object, handler: ValidatorFunctionWrapHandler) -> UUID:
    try:
        return cast(UUID, handler(value))
    except ValidationError:
        # pydantic's own message quotes a character of the input.
        raise ValueError("an account id is a UUID: 32 hex digits as 8-4-4-4-12") from None


AccountId = Annotated[
    UUID,
    WrapValidator(_as_uuid),
    Field(description="Id of a city account (the super-app's identity service): a UUID."),
]
"""Id of a city account in the super-app: a UUID, personal data once linked to a NIK."""


_BASE32 = "abcdefghijklmnopqrstuvwxyz234567"  # RFC 4648 base32, lowercase
_BASE32_PAIRS = tuple(a + b for a in _BASE32 for b in _BASE32)  # 10 bits -> 2 characters
_BASE32_SHIFTS = tuple(range(120, -1, -10))


@functools.lru_cache(maxsize=8)
def _hmac_pads(key: bytes) -> tuple[Any, Any]:
    """SHA-256 states after the key's inner and outer pads (RFC 2104): each pseudonym then
    hashes only its message. OpenSSL 3 sets up a new HMAC in ~4 µs; copying these, ~0.8."""
    block = (hashlib.sha256(key).digest() if len(key) > 64 else key).ljust(64, b"\0")
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))
    return inner, outer


def pseudonym(key: bytes, scheme: Scheme, value: str) -> str:
    """The :data:`Pseudonym` of an identifier under the city's pseudonym key.

    ``base64.b32encode(hmac.digest(key, f"{scheme}:{value}", "sha256")[:16])``, lowercase,
    without padding, written out: a backfill derives one per birth, and this takes ~1.5 µs
    against ~10 (tests/schemas/test_common.py compares the two)."""
    inner, outer = _hmac_pads(key)
    inner, outer = inner.copy(), outer.copy()
    inner.update(f"{scheme}:{value}".encode())
    outer.update(inner.digest())
    bits = int.from_bytes(outer.digest()[:16]) << 2  # 130 bits: 26 characters of 5 bits
    return "".join([_BASE32_PAIRS[(bits >> shift) & 1023] for shift in _BASE32_SHIFTS])
