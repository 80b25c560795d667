"""Synthetic SIAK rows for tests and demos: plausible, valid for Kota Malang, reproducible by seed.

Rows are generated lazily, so a million of them take no more memory than ten. Names and
addresses are invented; NIKs are well-formed but belong to nobody on purpose only by chance —
use this data on test systems only.
"""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Iterable, Iterator
from datetime import date, datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import Any

from adapters.dukcapil.schema import COLUMNS, Dialect, ddl, insert_sql
from schemas.regions import kelurahan_codes

Row = dict[str, Any]

_GIVEN = [
    "Agus",
    "Budi",
    "Dewi",
    "Siti",
    "Eko",
    "Sri",
    "Wahyu",
    "Rina",
    "Joko",
    "Ayu",
    "Bambang",
    "Nur",
    "Putri",
    "Rudi",
    "Fitri",
    "Hendra",
    "Indah",
    "Yusuf",
    "Lestari",
    "Dimas",
]
_FAMILY = [
    "Santoso",
    "Wijaya",
    "Hidayat",
    "Rahmawati",
    "Setiawan",
    "Kurniawan",
    "Susanti",
    "Prasetyo",
    "Lestari",
    "Saputra",
    "Nugroho",
    "Handayani",
    "Purnomo",
    "Utami",
]
_STREETS = [
    "Jl. Ijen",
    "Jl. Soekarno Hatta",
    "Jl. Veteran",
    "Jl. Kawi",
    "Jl. Semeru",
    "Jl. Bandung",
    "Jl. Mayjen Panjaitan",
    "Jl. Danau Toba",
    "Jl. Sulfat",
    "Jl. Galunggung",
]
_KINDS = ("LAHIR", "KEMATIAN", "PINDAH")
_START = datetime(2026, 1, 5, 8, 0)


def nik(rng: random.Random, born: date, woman: bool, kecamatan: str) -> str:
    """A well-formed NIK first issued in a kecamatan of Kota Malang."""
    day = born.day + (40 if woman else 0)
    serial = rng.randint(1, 9999)
    return f"3573{kecamatan[-2:]}{day:02d}{born.month:02d}{born.year % 100:02d}{serial:04d}"


def rows(count: int, *, seed: int = 2026, first_id: int = 1) -> Iterator[Row]:
    """``count`` valid rows, ids from ``first_id``; some share an ``updated_at`` (ties)."""
    rng = random.Random(seed)
    moment = _START
    kelurahan = kelurahan_codes()
    for i in range(count):
        if rng.random() < 0.7:  # ~30% of rows share the instant of the row before them
            moment += timedelta(seconds=rng.randint(1, 90), microseconds=rng.randint(0, 999_999))
        kind = rng.choice(_KINDS)
        place = rng.choice(kelurahan)
        happened = date(2026, 1, 1) + timedelta(days=rng.randrange(300))
        born = happened if kind == "LAHIR" else date(1940, 1, 1) + timedelta(rng.randrange(29_000))
        woman = rng.random() < 0.5
        yield {
            "id_peristiwa": first_id + i,
            "versi": 1,
            "jenis_peristiwa": kind,
            "nik": nik(rng, born, woman, place[:8]),
            "no_kk": f"3573{place[6:8]}{happened:%d%m%y}{rng.randint(1, 9999):04d}",
            "nama_lengkap": f"{rng.choice(_GIVEN)} {rng.choice(_FAMILY)}",
            "tgl_lahir": born,
            "jenis_kelamin": "P" if woman else "L",
            "alamat": f"{rng.choice(_STREETS)} No. {rng.randint(1, 200)}, Malang",
            "kode_kecamatan": place[:8],
            "kode_kelurahan": place,
            "tgl_peristiwa": happened,
            "tgl_lapor": happened + timedelta(days=rng.randrange(14)),
            "updated_at": moment,
        }


def as_params(row: Row, dialect: Dialect) -> tuple[Any, ...]:
    """A row as INSERT parameters; SQLite gets fixed-width text, so text order is time order."""
    values = [row.get(column) for column in COLUMNS]
    if dialect == "sqlite":
        values = [_sqlite(v) for v in values]
    return tuple(values)


def _sqlite(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, date):
        return value.isoformat()
    return value


def create_sqlite(path: str | Path, data: Iterable[Row] = (), *, chunk: int = 5_000) -> None:
    """A SQLite SIAK database at ``path`` holding ``data`` (inserted in chunks)."""
    with sqlite3.connect(path) as conn:
        conn.executescript(ddl("sqlite"))
        insert_sqlite(conn, data, chunk=chunk)
    conn.close()


def insert_sqlite(conn: sqlite3.Connection, data: Iterable[Row], *, chunk: int = 5_000) -> None:
    iterator = iter(data)
    while batch := list(islice(iterator, chunk)):
        conn.executemany(insert_sql("sqlite"), [as_params(r, "sqlite") for r in batch])
    conn.commit()
