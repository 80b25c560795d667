"""One ``pencaker`` row -> its disnaker contract: registered, placed, or no event at all.

Pure functions of the row, no I/O, no clock. Messages name the column and the rule, never the
value: they end up in the quarantine and in operators' terminals.

* a row deleted in the application (a CDC delete) or soft-deleted (``is_hapus = 1``) is no
  event (None): an operator removes a registration entered by mistake, and what was published
  about it stays published (see docs/adapters/disnaker.md);
* ``sudah_bekerja = 1`` is a placement (``disnaker.jobseeker.placed.v1``);
* any other row is a registration, or a correction or renewal of one
  (``disnaker.jobseeker.registered.v1``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date
from typing import Any

from bus import Contract
from bus.adapter import Record
from schemas.disnaker import EducationLevel, JobseekerPlaced, JobseekerRegistered, Placement
from schemas.regions import kecamatan_codes, regions

__all__ = ["CARD_YEARS", "EDUCATION", "PLACEMENT", "card_no", "map_pencaker"]

Row = Mapping[str, Any]

CARD_YEARS = 2
"""An AK/I card is valid two years from registration (Permenaker 39/2016 on job placement, as
far as found: check the current rule); the application leaves ``tgl_berlaku`` at 0000-00-00 on
rows imported from its predecessor."""

EDUCATION: dict[str, EducationLevel] = {
    "TIDAK SEKOLAH": EducationLevel.NONE,
    "BELUM TAMAT SD": EducationLevel.PRIMARY_INCOMPLETE,
    "SD": EducationLevel.PRIMARY,
    "MI": EducationLevel.PRIMARY,
    "SMP": EducationLevel.JUNIOR_SECONDARY,
    "MTS": EducationLevel.JUNIOR_SECONDARY,
    "SLTP": EducationLevel.JUNIOR_SECONDARY,
    "SMA": EducationLevel.SENIOR_SECONDARY,
    "MA": EducationLevel.SENIOR_SECONDARY,
    "SLTA": EducationLevel.SENIOR_SECONDARY,
    "SMK": EducationLevel.VOCATIONAL_SECONDARY,
    "STM": EducationLevel.VOCATIONAL_SECONDARY,  # vocational schools before they became SMK
    "SMEA": EducationLevel.VOCATIONAL_SECONDARY,
    "D1": EducationLevel.DIPLOMA_1_2,
    "D2": EducationLevel.DIPLOMA_1_2,
    "D3": EducationLevel.DIPLOMA_3,
    "D4": EducationLevel.BACHELOR,
    "S1": EducationLevel.BACHELOR,
    "S2": EducationLevel.MASTER,
    "S3": EducationLevel.DOCTORATE,
}
"""The application's ``pendidikan_terakhir`` labels (its drop-down, and the older labels of
imported rows) -> the contract's levels."""

PLACEMENT: dict[str, Placement] = {
    "AKL": Placement.LOCAL,
    "AKAD": Placement.INTER_REGIONAL,
    "AKAN": Placement.ABROAD,
}

_ZERO_DATE = "0000-00-00"


def map_pencaker(record: Record) -> Contract | None:
    """The :class:`~bus.adapter.Mapper` of the adapter."""
    row = record.data
    if record.change == "delete" or _flag(row, "is_hapus"):
        return None
    if _flag(row, "sudah_bekerja"):
        return placed(row)
    return registered(row)


def registered(row: Row) -> JobseekerRegistered:
    registered_on = _required_date(row, "tgl_daftar")
    valid_until = _date(row, "tgl_berlaku") or _years_after(registered_on, CARD_YEARS)
    return JobseekerRegistered.parse(
        {
            "card_no": card_no(row),
            "nik": _text(row, "nik"),
            "kecamatan": kecamatan(row),
            "education": education(row),
            "occupations": occupations(row),
            "registered_on": registered_on,
            "valid_until": valid_until,
        }
    )


def placed(row: Row) -> JobseekerPlaced:
    kind = _text(row, "jenis_penempatan").upper()
    if kind not in PLACEMENT:
        raise ValueError(
            f"jenis_penempatan must be one of {', '.join(PLACEMENT)} when sudah_bekerja is 1"
        )
    return JobseekerPlaced.parse(
        {
            "card_no": card_no(row),
            "nik": _text(row, "nik"),
            "placement": PLACEMENT[kind],
            "occupation": _text(row, "kode_jabatan_kerja") or None,
            "placed_on": _required_date(row, "tgl_penempatan"),
        }
    )


def card_no(row: Row) -> str:
    """``3573-YYYY-NNNNNN`` from the year and the zero-filled serial, as the card prints it.
    The MySQL sources read a ZEROFILL column as its padded text (``000412``), a plain driver as
    the number: both are taken."""
    year, serial = _number(row, "thn_daftar"), _number(row, "no_pendaftaran")
    if not 1970 <= year <= 2155:  # 2155: MySQL's last YEAR
        raise ValueError("thn_daftar must be a year (0000 is the application's 'not set')")
    if not 1 <= serial <= 999_999:
        raise ValueError("no_pendaftaran must be a serial from 000001 to 999999")
    return f"3573-{year:04d}-{serial:06d}"


def kecamatan(row: Row) -> str:
    """The Kemendagri code of the kecamatan the operator typed or picked: "LOWOKWARU",
    "Kec. Lowokwaru" and "lowokwaru " are all 35.73.05."""
    name = re.sub(r"^(KECAMATAN\s+|KEC\.\s*|KEC\s+)", "", _text(row, "kecamatan").upper())
    for code in kecamatan_codes():
        if regions()[code].name.upper() == name:
            return code
    raise ValueError("kecamatan must name one of Kota Malang's five kecamatan")


def education(row: Row) -> EducationLevel:
    label = re.sub(r"\s+", " ", _text(row, "pendidikan_terakhir").upper())
    label = re.sub(r"/SEDERAJAT$", "", label)
    if label not in EDUCATION:
        raise ValueError(
            "pendidikan_terakhir is not a label the application uses (SD, SMP, "
            "SMA, SMK, D1-D4, S1-S3, ...)"
        )
    return EDUCATION[label]


def occupations(row: Row) -> list[str]:
    """KBJI codes separated by commas, semicolons or spaces, in the order entered."""
    return [code for code in re.split(r"[,;\s]+", _text(row, "kode_jabatan")) if code]


def _text(row: Row, column: str) -> str:
    value = row[column]
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{column} must be text")
    return value.strip()


def _number(row: Row, column: str) -> int:
    value = row[column]
    if isinstance(value, str) and re.fullmatch("[0-9]{1,10}", value):
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise ValueError(f"{column} must be a whole number")


def _flag(row: Row, column: str) -> bool:
    value = row[column]
    if value in (0, 1, None):  # True/False from the MySQL sources, 0/1 from a plain driver
        return bool(value)
    raise ValueError(f"{column} must be 0 or 1 (a TINYINT(1) flag)")


def _required_date(row: Row, column: str) -> date:
    found = _date(row, column)
    if found is None:
        raise ValueError(f"{column} is empty (0000-00-00)")
    return found


def _date(row: Row, column: str) -> date | None:
    """A date column, None for the application's 0000-00-00 (or NULL)."""
    value = row[column]
    if value is None or value == _ZERO_DATE:
        return None
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            # MySQL keeps partial dates such as 2026-11-00 when the mode allows zero parts.
            raise ValueError(f"{column} is not a whole date (YYYY-MM-DD)") from None
    raise ValueError(f"{column} must be a date")


def _years_after(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February: the card runs to 28 February
        return day.replace(year=day.year + years, day=28)
