"""The synthetic data generator: valid Malang identifiers, reproducible, lazy."""

from __future__ import annotations

import csv
import random
import sqlite3
import subprocess
import sys
import tracemalloc
from datetime import date
from pathlib import Path

from adapters import dukcapil, synthetic
from schemas.common import Address
from schemas.regions import kecamatan_codes, kelurahan_codes

KEY = b"test-pseudonym-key-0123456789"
REPO = Path(__file__).resolve().parents[2]


def test_same_seed_same_people_other_seed_others() -> None:
    first = list(synthetic.people(50, seed=1))
    assert first == list(synthetic.people(50, seed=1))
    assert first != list(synthetic.people(50, seed=2))


def test_nik_agrees_with_birth_date_sex_and_issuing_kecamatan() -> None:
    for p in synthetic.people(2_000, seed=3):
        day = p.born.day + (40 if p.sex == "P" else 0)
        assert p.nik[:4] == "3573"
        assert f"35.73.{p.nik[4:6]}" == p.nik_kecamatan in kecamatan_codes()
        assert p.nik[6:12] == f"{day:02d}{p.born:%m%y}"
        assert p.nik[12:] != "0000"


def test_names_are_given_names_only_and_varied() -> None:
    names = [p.name for p in synthetic.people(2_000, seed=4)]
    assert all(1 <= len(n.split()) <= 3 and len(set(n.split())) == len(n.split()) for n in names)
    assert len(set(names)) > 1_000


def test_addresses_fit_the_address_contract() -> None:
    rng = random.Random(5)
    for _ in range(500):
        a = synthetic.address(rng)
        Address(street=a.street, rt=a.rt, rw=a.rw, kelurahan=a.kelurahan, kecamatan=a.kecamatan)
        assert a.line.startswith("Jl. ") and a.line.endswith(", Malang")
    assert {synthetic.address(rng).kelurahan for _ in range(3_000)} == set(kelurahan_codes())


def test_kk_carries_region_and_issue_date() -> None:
    assert synthetic.kk(random.Random(1), date(2024, 3, 9), "35.73.02")[:12] == "357302090324"


def test_siak_rows_map_to_valid_contracts() -> None:
    mapper = dukcapil.SiakMapper(KEY)
    kinds = set()
    for row in synthetic.siak_rows(1_000, seed=6):
        event = mapper.map(row)  # raises on an invalid row
        kinds.add(type(event).__name__)
        assert row["tgl_lahir"] <= row["tgl_peristiwa"]
    assert kinds == {"CitizenBorn", "CitizenDied", "CitizenMoved"}


def test_memory_stays_flat_however_many_rows() -> None:
    def peak(count: int) -> int:
        tracemalloc.start()
        for _ in synthetic.siak_rows(count, seed=8):
            pass
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return peak

    small, large = peak(1_000), peak(20_000)
    assert large < small * 1.5 + 50_000, (small, large)


def test_command_line_writes_sqlite_and_csv(tmp_path: Path) -> None:
    db, table = tmp_path / "siak.db", tmp_path / "people.csv"
    for args in (["--kind", "siak", "--out", db], ["--kind", "people", "--out", table]):
        subprocess.run(
            [sys.executable, "-m", "adapters.synthetic", "--count", "25", "--seed", "9", *args],
            cwd=REPO,
            check=True,
            capture_output=True,
        )
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM peristiwa").fetchone() == (25,)
    conn.close()
    with table.open() as f:
        read = list(csv.DictReader(f))
    assert len(read) == 25
    assert read[0]["nik"] == next(synthetic.people(1, seed=9)).nik
