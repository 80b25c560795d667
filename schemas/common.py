"""Identifier and region types shared by every department's contracts."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, StringConstraints

# Province codes (Kemendagri) that can open a NIK; 11..94 with gaps.
PROVINCES = frozenset(
    {11, 12, 13, 14, 15, 16, 17, 18, 19, 21, 31, 32, 33, 34, 35, 36, 51, 52, 53, 61, 62, 63, 64,
     65, 71, 72, 73, 74, 75, 76, 81, 82, 91, 92, 93, 94, 95, 96, 97}
)  # fmt: skip
_SIXTEEN = re.compile(r"^[0-9]{16}\Z")  # not \d: that accepts digits of other scripts


def _check_nik(value: str) -> str:
    # Messages name the rule, never the value: a NIK is personal data.
    if not _SIXTEEN.match(value):
        raise ValueError("a NIK is exactly 16 ASCII digits")
    if int(value[0:2]) not in PROVINCES:
        raise ValueError("NIK digits 1-2 are not a known province code")
    day, month = int(value[6:8]), int(value[8:10])
    if not (1 <= day <= 31 or 41 <= day <= 71):
        raise ValueError("NIK digits 7-8 (birth day, +40 for women) must be 01-31 or 41-71")
    if not 1 <= month <= 12:
        raise ValueError("NIK digits 9-10 (birth month) must be 01-12")
    if value[12:] == "0000":
        raise ValueError("NIK digits 13-16 (serial) must not be 0000")
    return value


NIK = Annotated[str, AfterValidator(_check_nik)]
"""Nomor Induk Kependudukan: PP KK CC DDMMYY SSSS (region of first issue, birth date, serial)."""

KecamatanCode = Annotated[str, StringConstraints(pattern=r"^35\.73\.0[1-5]$")]
"""Kemendagri code of one of Kota Malang's five kecamatan (35.73.01 .. 35.73.05)."""
