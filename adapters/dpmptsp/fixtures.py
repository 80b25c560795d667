"""Synthetic decision payloads of the licensing application: plausible, valid, reproducible by seed.

Payloads are generated lazily, as the application would POST them: JSON-ready dicts whose dates
are printed ``DD-MM-YYYY`` and amounts as text, like its forms. Names, NIKs and NIBs are invented
(well-formed, belonging to nobody on purpose): use this data on test systems only.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any
from urllib.parse import urlencode

from adapters.dpmptsp.payload import APPLIED, ISSUED, REASONS, REJECTED
from schemas.regions import kelurahan_codes

Payload = dict[str, Any]

_NAMES = (
    "Agus Santoso",
    "Dewi Rahmawati",
    "Budi Setiawan",
    "Siti Handayani",
    "Eko Prasetyo",
    "Rina Utami",
    "CV Arema Jaya",
    "PT Bromo Sentosa",
    "UD Tugu Makmur",
)
_STREETS = (
    "Jl. Ijen",
    "Jl. Soekarno Hatta",
    "Jl. Veteran",
    "Jl. Kawi",
    "Jl. Semeru",
    "Jl. Borobudur",
    "Jl. Sulfat",
    "Jl. Galunggung",
    "Jl. MT Haryono",
)
_PREFIX = {"PBG": "PBG", "SLF": "SLF", "REKLAME": "RKL", "IZIN_USAHA": "OSS"}
_START = date(2026, 1, 5)  # decisions fall in Jan..Oct 2026: in the past for PastDate


def payloads(count: int, *, seed: int = 2026, first_no: int = 1) -> Iterator[Payload]:
    """``count`` valid payloads, application numbers counting from ``first_no``; a mix of
    applications (40%), issued (40%) and rejected (20%) permits, revision 1."""
    rng = random.Random(seed)
    for i in range(count):
        yield _payload(rng, first_no + i)


def as_form(payload: Payload) -> str:
    """The payload as an ``application/x-www-form-urlencoded`` body (every value text)."""
    return urlencode({k: "" if v is None else str(v) for k, v in payload.items()})


def _payload(rng: random.Random, number: int) -> Payload:
    kind = rng.choice(list(_PREFIX))
    status = rng.choices((APPLIED, ISSUED, REJECTED), weights=(4, 4, 2))[0]
    applied = _START + timedelta(days=rng.randrange(240))
    decided = applied + timedelta(days=rng.randint(3, 30))
    business = kind == "IZIN_USAHA" or rng.random() < 0.3
    place = rng.choice(kelurahan_codes())
    application_no = f"{_PREFIX[kind]}/{applied:%Y}/{applied:%m}/{number:06d}"
    return {
        "nomor_permohonan": application_no,
        "status_permohonan": status,
        "revisi": 1,
        "jenis_izin": kind,
        **_applicant(rng, business, place[:8]),
        "alamat_lokasi": f"{rng.choice(_STREETS)} No. {rng.randint(1, 200)}",
        "rt": f"{rng.randint(1, 15):03d}",
        "rw": f"{rng.randint(1, 12):03d}",
        "kode_kelurahan": place,
        "kode_kecamatan": place[:8],
        "tanggal_permohonan": f"{applied:%d-%m-%Y}",
        **_decision(rng, status, kind, number, decided),
        "catatan": "",
        "waktu_proses": f"{(decided if status != APPLIED else applied):%Y-%m-%d} 10:15:00",
    }


def _applicant(rng: random.Random, business: bool, kecamatan: str) -> Payload:
    born = date(1960, 1, 1) + timedelta(days=rng.randrange(15_000))
    return {
        "nik_pemohon": _nik(rng, born, rng.random() < 0.5, kecamatan),
        "nama_pemohon": rng.choice(_NAMES),
        "nib": f"{rng.randint(1, 9)}{rng.randrange(10**12):012d}" if business else "",
    }


def _decision(rng: random.Random, status: str, kind: str, number: int, on: date) -> Payload:
    blank = dict.fromkeys(
        (
            "tanggal_keputusan",
            "nomor_izin",
            "masa_berlaku_sampai",
            "retribusi",
            "kode_alasan_penolakan",
        ),
        "",
    )
    if status == ISSUED:
        return {**blank, **_issued(rng, kind, number, on)}
    if status == REJECTED:
        reason = rng.choice(list(REASONS))
        return {**blank, "tanggal_keputusan": f"{on:%d-%m-%Y}", "kode_alasan_penolakan": reason}
    return blank


def _issued(rng: random.Random, kind: str, number: int, on: date) -> Payload:
    expires = on + timedelta(days=364) if kind == "REKLAME" else None  # billboards: a year
    return {
        "tanggal_keputusan": f"{on:%d-%m-%Y}",
        "nomor_izin": f"503/{_PREFIX[kind]}/{number:06d}/35.73.406/{on:%Y}",
        "masa_berlaku_sampai": f"{expires:%d-%m-%Y}" if expires else "",
        # retribution on building approvals, printed with thousands dots now and then
        "retribusi": _amount(rng, rng.randrange(50, 5000) * 10_000) if kind == "PBG" else "",
    }


def _amount(rng: random.Random, rupiah: int) -> str:
    return f"{rupiah:,}".replace(",", ".") if rng.random() < 0.3 else str(rupiah)


def _nik(rng: random.Random, born: date, woman: bool, kecamatan: str) -> str:
    """A well-formed NIK first issued in a kecamatan of Kota Malang (35.73.0x)."""
    day = born.day + (40 if woman else 0)
    return f"3573{kecamatan[-2:]}{day:02d}{born:%m%y}{rng.randint(1, 9999):04d}"
