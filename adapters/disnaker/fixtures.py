"""Synthetic ``pencaker`` rows for tests and the demo: invented job seekers of Kota Malang,
reproducible by seed, written the way the PHP application writes them.

People come from :mod:`adapters.synthetic` (names, sex, birth dates, NIKs, addresses); what is
the registry's own is added here, with the application's habits: kecamatan names in several
spellings, education labels old and new, KBJI codes as a comma list, ``0000-00-00`` for a date
not known (``tgl_berlaku`` of imported rows, ``tgl_penempatan`` until placed). Rows are
generated lazily. Use this data on test systems only.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from datetime import date, datetime, timedelta
from typing import Any

import pymysql

from adapters import synthetic
from adapters.disnaker.schema import COLUMNS, DDL, SQL_MODE, insert_sql
from bus.adapter import mysql_connection_settings as connection_settings
from schemas.regions import regions

__all__ = ["as_params", "connect", "create", "insert", "row", "rows"]

Row = dict[str, Any]

# A few KBJI 2014 unit groups job seekers in Malang ask for (test data, not a code list).
_OCCUPATIONS = (
    "2411",
    "2512",
    "3221",
    "3322",
    "4110",
    "4311",
    "5120",
    "5131",
    "5223",
    "7212",
    "7231",
    "7411",
    "7412",
    "7531",
    "8322",
    "9112",
)
_EDUCATION = ("SD", "SMP", "SMA", "SMA", "SMK", "SMK", "SMK", "MA", "D3", "S1", "S1", "STM", "SLTA")
_PLACEMENTS = ("AKL", "AKL", "AKL", "AKAD", "AKAN")
_START = datetime(2026, 1, 5, 8, 0)  # first tgl_update, local time (WIB)
_ZERO_DATE = "0000-00-00"


def rows(
    count: int, *, seed: int = 2026, first_serial: int = 1, placed: float = 0.2
) -> Iterator[Row]:
    """``count`` valid rows of people aged 18-45, card serials from ``first_serial``; about
    ``placed`` of them have found work."""
    rng = random.Random(seed)
    moment = _START
    for i in range(count):
        moment += timedelta(seconds=rng.randint(1, 600))
        registered = date(2025, 1, 2) + timedelta(days=rng.randrange(660))
        born = synthetic.birth_date(
            rng,
            earliest=registered - timedelta(days=45 * 365),
            latest=registered - timedelta(days=18 * 366),
        )
        who = synthetic.person(rng, born=born)
        works = _placed_on(rng, registered) if rng.random() < placed else None
        yield row(
            rng,
            who,
            serial=first_serial + i,
            registered=registered,
            updated=moment,
            placed_on=works,
        )


def row(
    rng: random.Random,
    who: synthetic.Person,
    *,
    serial: int,
    registered: date,
    updated: datetime,
    placed_on: date | None = None,
    placement: str | None = None,
) -> Row:
    """The registry's row of one job seeker, placed on ``placed_on`` if given."""
    works = placed_on is not None
    return {
        "thn_daftar": registered.year,
        "no_pendaftaran": serial,
        "nik": who.nik,
        "nama": who.name.upper(),  # the application shouts
        "tempat_lahir": "MALANG",
        "tgl_lahir": who.born,
        "jenis_kelamin": who.sex,
        "alamat": who.address.line,
        "kecamatan": _spelt(rng, regions()[who.address.kecamatan].name),
        "pendidikan_terakhir": rng.choice(_EDUCATION),
        "jurusan": None,
        "kode_jabatan": ",".join(rng.sample(_OCCUPATIONS, rng.randint(1, 3))),
        "keterampilan": "Bisa mengoperasikan komputer" if rng.random() < 0.3 else None,
        "tgl_daftar": registered,
        "tgl_berlaku": _ZERO_DATE if rng.random() < 0.1 else _two_years(registered),
        "sudah_bekerja": int(works),
        "jenis_penempatan": (placement or rng.choice(_PLACEMENTS)) if works else "",
        "kode_jabatan_kerja": rng.choice(_OCCUPATIONS) if works else "",
        "tgl_penempatan": placed_on or _ZERO_DATE,
        "is_hapus": 0,
        "petugas": rng.choice(("admin", "loket1", "loket2")),
        "tgl_update": updated,
    }


def as_params(row: Row) -> tuple[Any, ...]:
    """A row as INSERT parameters, in :data:`~adapters.disnaker.schema.COLUMNS` order."""
    return tuple(row.get(column) for column in COLUMNS)


def connect(url: str) -> pymysql.Connection:
    """A connection to the registry at ``url`` as the application opens one: autocommit, its
    lax ``sql_mode`` (zero dates)."""
    return pymysql.connect(
        **connection_settings(url),
        autocommit=True,
        init_command=f"SET SESSION sql_mode = '{SQL_MODE}'",
    )


def create(url: str, data: Iterable[Row] = ()) -> None:
    """The ``pencaker`` table in the database at ``url`` (a mysql:// URL), holding ``data``."""
    with connect(url) as conn, conn.cursor() as cursor:
        cursor.execute(DDL)
    insert(url, data)


def insert(url: str, data: Iterable[Row]) -> None:
    with connect(url) as conn, conn.cursor() as cursor:
        cursor.executemany(insert_sql(), [as_params(r) for r in data])


def _spelt(rng: random.Random, name: str) -> str:
    return rng.choice((name.upper(), name, f"Kec. {name}", f"KECAMATAN {name.upper()}"))


def _two_years(day: date) -> date:
    return day.replace(year=day.year + 2, day=28 if (day.month, day.day) == (2, 29) else day.day)


def _placed_on(rng: random.Random, registered: date) -> date:
    latest = min(date(2026, 11, 30), registered + timedelta(days=400))
    return registered + timedelta(days=rng.randrange(max((latest - registered).days, 1)))
