"""A small, reproducible SIAK-like table of civil-registry events (deaths and moves)."""

from __future__ import annotations

import random
from datetime import date, timedelta
from typing import Any

STREETS = ["Jl. Ijen", "Jl. Soekarno Hatta", "Jl. Veteran", "Jl. Kawi", "Jl. Semeru", "Jl. Bandung",
           "Jl. Mayjen Panjaitan", "Jl. Danau Toba", "Jl. Sulfat", "Jl. Galunggung"]  # fmt: skip
KECAMATAN = ["35.73.01", "35.73.02", "35.73.03", "35.73.04", "35.73.05"]


def nik(rng: random.Random) -> str:
    """A well-formed Kota Malang NIK (region 35.73.0x, birth date, women's day + 40, serial)."""
    born = date(1940, 1, 1) + timedelta(days=rng.randrange(365 * 80))
    day = born.day + (40 if rng.random() < 0.5 else 0)
    district, serial = rng.randint(1, 5), rng.randint(1, 9999)
    return f"3573{district:02d}{day:02d}{born.month:02d}{born.year % 100:02d}{serial:04d}"


def rows(count: int, *, seed: int = 2026, bad: int = 2) -> list[dict[str, Any]]:
    """``count`` legacy rows; the last ``bad`` ones are broken the way legacy data breaks."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        kind = "KEMATIAN" if rng.random() < 0.4 else "PINDAH"
        out.append({
            "id_peristiwa": 10_000 + i,
            "versi": 1,
            "jenis_peristiwa": kind,
            "nik": nik(rng),
            "alamat": f"{rng.choice(STREETS)} No. {rng.randint(1, 200)}, Malang",
            "kode_kecamatan": rng.choice(KECAMATAN),
            "tgl_peristiwa": (date(2026, 11, 1) + timedelta(days=rng.randrange(27))).isoformat(),
        })  # fmt: skip
    for row in out[len(out) - bad :]:
        row["nik"] = row["nik"][:15]  # a truncated NIK, as typed into an old form
    return out
