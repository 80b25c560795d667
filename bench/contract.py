"""The benchmark's event: a realistic civil-registry record of ~600 bytes on the wire.

Registered in the default registry like any department contract (type
``bench.citizen.recorded.v1``, stream ``simpul:{bench.citizen}``), so the Simpul paths run
exactly as they would for a real contract: NIK validator, personal-field metadata, dates.
"""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Literal

from bus import PERSONAL, Classification, Contract
from schemas.common import NIK, KecamatanCode

EVENT_TYPE = "bench.citizen.recorded.v1"
SOURCE = "urn:malangkota:dukcapil:siak-bench"


class CitizenRecorded(
    Contract,
    event_type=EVENT_TYPE,
    minor=0,
    owner="bench",
    classification=Classification.PERSONAL,
):
    """A citizen's full registry record was created or corrected (benchmark only)."""

    nik: Annotated[NIK, PERSONAL]
    kk: Annotated[str, PERSONAL]  # nomor kartu keluarga
    full_name: Annotated[str, PERSONAL]
    birth_place: str
    birth_date: Annotated[date, PERSONAL]
    gender: Literal["L", "P"]
    religion: str
    marital_status: str
    occupation: str
    address: Annotated[str, PERSONAL]
    rt: str
    rw: str
    kelurahan: str
    kecamatan: KecamatanCode
    recorded_on: date
    recorded_at: datetime


_FIRST = ["Budi", "Siti", "Agus", "Dewi", "Eko", "Sri", "Hadi", "Rina", "Joko", "Wulan"]
_LAST = ["Santoso", "Rahayu", "Wijaya", "Kusuma", "Pratama", "Lestari", "Hidayat", "Saputra"]
_KELURAHAN = [
    ("Klojen", "35.73.01"),
    ("Oro-oro Dowo", "35.73.01"),
    ("Bunulrejo", "35.73.02"),
    ("Sawojajar", "35.73.03"),
    ("Bandungrejosari", "35.73.04"),
    ("Tlogomas", "35.73.05"),
]
_JOBS = ["Pegawai Negeri Sipil", "Wiraswasta", "Karyawan Swasta", "Pelajar/Mahasiswa", "Petani"]


def make_events(count: int, seed: int = 7) -> list[CitizenRecorded]:
    """``count`` distinct, valid records (deterministic for a given seed)."""
    rng = random.Random(seed)
    base = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)
    events = []
    for i in range(count):
        born = date(1950, 1, 1) + timedelta(days=rng.randrange(0, 365 * 60))
        female = rng.random() < 0.5
        day = born.day + (40 if female else 0)
        nik = f"357301{day:02d}{born.month:02d}{born.year % 100:02d}{i % 9999 + 1:04d}"
        kelurahan, kecamatan = rng.choice(_KELURAHAN)
        events.append(
            CitizenRecorded(
                nik=nik,
                kk=f"3573{rng.randrange(10**11, 10**12):012d}",
                full_name=f"{rng.choice(_FIRST)} {rng.choice(_FIRST)} {rng.choice(_LAST)}",
                birth_place="Malang",
                birth_date=born,
                gender="P" if female else "L",
                religion="Islam",
                marital_status=rng.choice(["Belum Kawin", "Kawin", "Cerai Mati"]),
                occupation=rng.choice(_JOBS),
                address=f"Jl. Kawi Atas No. {rng.randrange(1, 200)}, Griya Santa "
                f"{rng.choice('ABCDEF')}{rng.randrange(1, 40)}",
                rt=f"{rng.randrange(1, 15):03d}",
                rw=f"{rng.randrange(1, 12):03d}",
                kelurahan=kelurahan,
                kecamatan=kecamatan,
                recorded_on=(base + timedelta(minutes=i)).date(),
                recorded_at=base + timedelta(seconds=i),
            )
        )
    return events
