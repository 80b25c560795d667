"""Synthetic Bapenda payment exports for tests and demos: plausible, reproducible by seed.

Rows are generated lazily and written row by row, so a million of them cost no memory. NIKs,
NIBs and NOPs are well-formed Kota Malang identifiers that belong to nobody on purpose; some
business names carry accents (``Kafé``), to exercise Latin-1 / cp1252 exports.
"""

from __future__ import annotations

import csv
import random
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

from adapters.bapenda import COLUMNS

Row = dict[str, str]

_BUSINESSES = [
    "Warung Bu Siti",
    "Kafé Ijen",
    "Rumah Makan Inggil",
    "Hotel Tugu",
    "Depot Hok Lay",
    "Bakso Président",
    "Parkir Kayutangan",
    "Toko Oen",
    "Crème Bakery Soehat",
    "Hotel Pelangi",
]
_PEOPLE = [
    "Agus Santoso",
    "Dewi Lestari",
    "Siti Rahmawati",
    "Budi Wijaya",
    "Rina Utami",
    "Joko Prasetyo",
    "Ayu Handayani",
    "Wahyu Nugroho",
]
_ON_PROPERTY = ["PBB-P2"] * 9 + ["BPHTB"]
_ON_TAXPAYER = [
    "PBJT MAKANAN DAN MINUMAN",
    "PBJT PERHOTELAN",
    "PBJT PARKIR",
    "REKLAME",
    "AIR TANAH",
    "PBJT KESENIAN DAN HIBURAN",
]
_BANKS = {"BJTM": "Bank Jatim", "BRI": "BRI", "BNI": "BNI", "MDR": "Bank Mandiri"}
_CHANNELS = ["TELLER", "VA", "QRIS", "MARKETPLACE", "LOKET BAPENDA"]
_START = datetime(2025, 11, 3, 7, 30)


def nop(rng: random.Random) -> str:
    """A NOP of Kota Malang as the tax system prints it: ``35.73.050.003.002-0045.0``."""
    district, village = rng.randint(1, 5) * 10, rng.randint(1, 12)
    block, serial = rng.randint(1, 40), rng.randint(1, 9999)
    return f"35.73.{district:03d}.{village:03d}.{block:03d}-{serial:04d}.{rng.randint(0, 9)}"


def nik(rng: random.Random) -> str:
    day = rng.randint(1, 28) + (40 if rng.random() < 0.5 else 0)
    born = f"{day:02d}{rng.randint(1, 12):02d}{rng.randint(50, 99):02d}"
    return f"35730{rng.randint(1, 5)}{born}{rng.randint(1, 9999):04d}"


def rupiah(amount: int, rng: random.Random) -> str:
    """How the export writes an amount: mostly ``1.250.000``, sometimes plain or with ``,00``."""
    dotted = f"{amount:,}".replace(",", ".")
    return rng.choice([dotted, dotted, dotted, str(amount), f"{dotted},00"])


def rows(count: int, *, seed: int = 2026, first_no: int = 1) -> Iterator[Row]:
    """``count`` valid payment rows, slips numbered from ``first_no``, version 1."""
    rng = random.Random(seed)
    moment = _START
    for i in range(count):
        moment += timedelta(seconds=rng.randint(5, 600))
        yield _row(rng, first_no + i, moment)


def _row(rng: random.Random, number: int, moment: datetime) -> Row:
    on_property = rng.random() < 0.6
    kind = rng.choice(_ON_PROPERTY if on_property else _ON_TAXPAYER)
    bank = rng.choice(list(_BANKS))
    object_no = nop(rng) if on_property else ""
    person = on_property and rng.random() < 0.9
    return {
        "no_sspd": f"SSPD-{moment:%Y}-{number:07d}",
        "versi": "1",
        "nomor_bukti_bayar": f"{bank}-{moment:%Y%m%d}-{number:06d}",
        "no_ketetapan": _assessment(rng, moment, object_no),
        "jenis_pajak": kind,
        "nop": object_no,
        "npwpd": "" if on_property else f"P.{rng.randint(1, 2)}.{rng.randint(1, 99999):07d}.35.73",
        "masa_pajak": f"{moment:%Y}" if on_property else f"{moment:%Y-%m}",
        "jenis_identitas": "NIK" if person else "NIB",
        "no_identitas": nik(rng) if person else f"91200{rng.randint(0, 99_999_999):08d}",
        "nama_wp": rng.choice(_PEOPLE if person else _BUSINESSES),
        "jumlah_bayar": rupiah(rng.randint(5, 50_000) * 1_000, rng),
        "tanggal_bayar": f"{moment:%d/%m/%Y %H:%M:%S}",
        "bank": _BANKS[bank],
        "saluran_bayar": rng.choice(_CHANNELS),
    }


def _assessment(rng: random.Random, moment: datetime, object_no: str) -> str:
    if object_no:
        return f"SPPT-{moment:%Y}-{object_no.replace('.', '').replace('-', '')}"
    return f"SKPD/PBJT/{moment:%Y/%m}/{rng.randint(1, 99999):05d}"


def write_csv(
    path: str | Path,
    data: Iterable[Row],
    *,
    delimiter: str = ";",
    encoding: str = "utf-8",
    bom: bool = False,
) -> Path:
    """Write an export as the legacy system does: to ``<path>.part``, renamed into place."""
    path = Path(path)
    part = path.with_name(path.name + ".part")
    with part.open("w", encoding="utf-8-sig" if bom else encoding, newline="") as out:
        writer = csv.DictWriter(out, fieldnames=COLUMNS, delimiter=delimiter, lineterminator="\r\n")
        writer.writeheader()
        writer.writerows(data)
    part.replace(path)
    return path


def write_drop(
    folder: str | Path,
    count: int,
    *,
    files: int = 3,
    seed: int = 2026,
    delimiter: str = ";",
    encoding: str = "utf-8",
) -> list[Path]:
    """``count`` rows split over ``files`` nightly exports in ``folder/incoming``."""
    incoming = Path(folder) / "incoming"
    incoming.mkdir(parents=True, exist_ok=True)
    data = rows(count, seed=seed)
    per_file = -(-count // files)
    paths = []
    for night in range(files):
        chunk = (row for _, row in zip(range(per_file), data, strict=False))
        name = incoming / f"pembayaran_{(_START + timedelta(days=night)):%Y%m%d}.csv"
        paths.append(write_csv(name, chunk, delimiter=delimiter, encoding=encoding))
    return paths
