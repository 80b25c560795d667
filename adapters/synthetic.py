"""Synthetic people of Kota Malang for legacy fixtures: plausible, valid, reproducible by seed.

Every function takes a ``random.Random``, so one seed gives the same data on every machine and
Python version (``random.Random`` with an int seed is stable). Generators yield one record at a
time: a million records cost the memory of one.

* :func:`person` — a name in the Javanese manner (given names only, no family name, the style
  depending on the generation), sex, birth date, a NIK consistent with both, the kecamatan that
  issued the NIK and a home address (which need not be the same place: people move);
* :func:`nik`, :func:`kk`, :func:`address`, :func:`name` — the parts, for fixtures of their own;
* :func:`siak_rows` — rows of the SIAK ``peristiwa`` table (``adapters.dukcapil.schema``).

The names and streets come from ``adapters/data/names.json`` (invented for this purpose). The
NIKs are well-formed for Kota Malang and collide with a real person's only by chance: use this
data on test systems only.

    python -m adapters.synthetic --kind siak --count 100000 --seed 7 --out siak.db
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any, Literal

from schemas.regions import kelurahan_codes

__all__ = [
    "Address",
    "Person",
    "address",
    "kk",
    "name",
    "nik",
    "people",
    "person",
    "siak_rows",
]

Sex = Literal["L", "P"]  # laki-laki / perempuan, as SIAK writes it
_CITY = "3573"  # Jawa Timur 35, Kota Malang 73
_OLDEST = date(1935, 1, 1)
_YOUNGEST = date(2025, 12, 31)
_KINDS = ("LAHIR", "KEMATIAN", "PINDAH")
_START = datetime(2026, 1, 5, 8, 0)  # first updated_at of siak_rows, local time (WIB)


@cache
def _names() -> dict[str, Any]:
    text = files("adapters").joinpath("data/names.json").read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


@cache
def _kelurahan() -> tuple[str, ...]:
    return tuple(kelurahan_codes())


@dataclass(frozen=True, slots=True)
class Address:
    """A home address in Kota Malang, in the shape of ``schemas.common.Address``."""

    street: str  # "Jl. Kawi No. 12" or "Jl. Kawi Gg. 3 No. 12"
    rt: str  # 3 digits
    rw: str
    kelurahan: str  # 35.73.0x.10yy
    kecamatan: str  # 35.73.0x

    @property
    def line(self) -> str:
        """The address as one line, as legacy apps keep it in an ``alamat`` column."""
        return f"{self.street}, RT {self.rt}/RW {self.rw}, Malang"


@dataclass(frozen=True, slots=True)
class Person:
    name: str
    sex: Sex
    born: date
    nik: str
    nik_kecamatan: str  # where the NIK was first issued (never changes when people move)
    address: Address


def nik(rng: random.Random, born: date, woman: bool, kecamatan: str) -> str:
    """A well-formed NIK first issued in ``kecamatan`` (35.73.0x): region, birth date with the
    day + 40 for women, serial 0001-9999. Same signature as ``adapters.dukcapil.fixtures.nik``."""
    day = born.day + (40 if woman else 0)
    return f"{_CITY}{kecamatan[-2:]}{day:02d}{born:%m%y}{rng.randint(1, 9999):04d}"


def kk(rng: random.Random, issued: date, kecamatan: str) -> str:
    """A family card number issued in ``kecamatan`` on ``issued``: region, DDMMYY, serial."""
    return f"{_CITY}{kecamatan[-2:]}{issued:%d%m%y}{rng.randint(1, 9999):04d}"


def name(rng: random.Random, *, woman: bool, born: date) -> str:
    """A Javanese-style name: one to three given names, the style of the person's generation."""
    parts = _names()["female" if woman else "male"]
    if born.year < 1960:
        pools, weights = [parts["old"], parts["middle"]], [3, 1]
    elif born.year < 1990:
        pools, weights = [parts["old"], parts["middle"], parts["young"]], [1, 4, 1]
    else:
        pools, weights = [parts["middle"], parts["young"]], [1, 3]
    count = rng.choices((1, 2, 3), weights=(4, 5, 1) if born.year < 1975 else (1, 6, 3))[0]
    chosen: list[str] = []
    while len(chosen) < count:
        part = rng.choice(rng.choices(pools, weights=weights)[0])
        if part not in chosen:
            chosen.append(part)
    return " ".join(chosen)


def address(rng: random.Random, kelurahan: str | None = None) -> Address:
    """A street of Malang with a house number (now and then down a gang), RT and RW."""
    place = kelurahan or rng.choice(_kelurahan())
    street = f"Jl. {rng.choice(_names()['streets'])}"
    if rng.random() < 0.3:
        street += f" Gg. {rng.randint(1, 12)}"
    return Address(
        street=f"{street} No. {rng.randint(1, 250)}",
        rt=f"{rng.randint(1, 15):03d}",
        rw=f"{rng.randint(1, 12):03d}",
        kelurahan=place,
        kecamatan=place[:8],
    )


def birth_date(rng: random.Random, earliest: date = _OLDEST, latest: date = _YOUNGEST) -> date:
    return earliest + timedelta(days=rng.randrange((latest - earliest).days + 1))


def person(rng: random.Random, *, born: date | None = None, woman: bool | None = None) -> Person:
    """One resident: most NIKs were issued where the person lives, some elsewhere in the city."""
    woman = rng.random() < 0.5 if woman is None else woman
    born = born or birth_date(rng)
    home = address(rng)
    issued_in = home.kecamatan if rng.random() < 0.8 else rng.choice(_kelurahan())[:8]
    return Person(
        name=name(rng, woman=woman, born=born),
        sex="P" if woman else "L",
        born=born,
        nik=nik(rng, born, woman, issued_in),
        nik_kecamatan=issued_in,
        address=home,
    )


def people(count: int, *, seed: int = 2026) -> Iterator[Person]:
    """``count`` residents, lazily."""
    rng = random.Random(seed)
    for _ in range(count):
        yield person(rng)


def siak_rows(count: int, *, seed: int = 2026, first_id: int = 1) -> Iterator[dict[str, Any]]:
    """Rows of SIAK's ``peristiwa`` table (births, deaths, moves), ids from ``first_id``.

    About 30% of rows share the ``updated_at`` of the row before them, as a busy registry's do:
    the adapter must break such ties by the primary key.
    """
    rng = random.Random(seed)
    moment = _START
    for i in range(count):
        if rng.random() < 0.7:
            moment += timedelta(seconds=rng.randint(1, 90), microseconds=rng.randint(0, 999_999))
        kind = rng.choice(_KINDS)
        happened = date(2026, 1, 1) + timedelta(days=rng.randrange(300))
        if kind == "LAHIR":
            who = person(rng, born=happened)
        else:
            who = person(rng, born=birth_date(rng, latest=happened - timedelta(days=1)))
        home = who.address
        yield {
            "id_peristiwa": first_id + i,
            "versi": 1,
            "jenis_peristiwa": kind,
            "nik": who.nik,
            "no_kk": kk(rng, _kk_issued(rng, who.born, kind, happened), home.kecamatan),
            "nama_lengkap": who.name,
            "tgl_lahir": who.born,
            "jenis_kelamin": who.sex,
            "alamat": home.line,
            "kode_kecamatan": home.kecamatan,
            "kode_kelurahan": home.kelurahan,
            "tgl_peristiwa": happened,
            "tgl_lapor": happened + timedelta(days=rng.randrange(14)),
            "updated_at": moment,
        }


def _kk_issued(rng: random.Random, born: date, kind: str, happened: date) -> date:
    """A birth reissues the family card that day; otherwise the card dates from some change
    in the family since the person was born (cards of this format exist since 1990)."""
    if kind == "LAHIR":
        return happened
    return birth_date(rng, earliest=min(max(born, date(1990, 1, 1)), happened), latest=happened)


# -- command line -------------------------------------------------------------------------------


def _write_csv(path: Path, records: Iterator[dict[str, Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as out:
        first = next(records, None)
        if first is None:
            return
        writer = csv.DictWriter(out, fieldnames=list(first))
        writer.writeheader()
        writer.writerow(first)
        writer.writerows(records)


def _flat(p: Person) -> dict[str, Any]:
    row = asdict(p)
    row.update({f"address_{k}": v for k, v in row.pop("address").items()})
    return row


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m adapters.synthetic", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument("--kind", choices=("siak", "people"), default="siak")
    parser.add_argument("--count", type=int, default=1_000, help="records, 1 to 10,000,000")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--out", type=Path, required=True, help="FILE.db (SQLite) or FILE.csv")
    args = parser.parse_args(argv)
    if not 1 <= args.count <= 10_000_000:
        parser.error(f"--count must be 1 to 10,000,000, got {args.count}")
    if args.out.exists():
        parser.error(f"{args.out} exists: remove it or choose another --out")
    records: Iterator[dict[str, Any]] = (
        siak_rows(args.count, seed=args.seed)
        if args.kind == "siak"
        else (_flat(p) for p in people(args.count, seed=args.seed))
    )
    if args.out.suffix == ".csv":
        _write_csv(args.out, records)
    elif args.out.suffix == ".db" and args.kind == "siak":
        from adapters.dukcapil.fixtures import create_sqlite  # noqa: PLC0415 - only for .db

        create_sqlite(args.out, records)
    else:
        parser.error("--out must end in .csv (any kind) or .db (--kind siak)")
    print(f"wrote {args.count:,} {args.kind} records to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
