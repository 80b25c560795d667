"""A day in Kota Malang, as the departments' legacy applications record it.

One seeded population, and what happens to it in one day, written the way each legacy system
keeps it: SIAK rows for the civil registry, webhook bodies of the licensing application, a
nightly CSV export of tax payments — plus the city super-app's account links, the e-mail
addresses citizens gave it, and the assistance Dinas Sosial already pays. The same people appear
across departments, so a death stops assistance, a permit makes a taxpayer and an e-mail, a
birth opens an immunisation schedule. A few records are broken the way legacy data breaks.

Everything is invented (names, NIKs, addresses): well-formed, belonging to nobody on purpose.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol

from adapters import synthetic
from adapters.bapenda import fixtures
from adapters.disnaker import fixtures as pencaker
from adapters.dpmptsp.payload import APPLIED, ISSUED, REJECTED
from adapters.synthetic import Person
from schemas.identity import AccountLinked, Verification

DAY = date(2026, 11, 30)
"""The day played. Fixed, so the demo tells the same story every run (and dates are past)."""

_START = datetime(2026, 11, 30, 7, 30)


@dataclass(frozen=True, slots=True)
class Account:
    """A resident's city account in the super-app, with the e-mail they gave it."""

    account_id: str
    nik: str
    email: str


class AccountHolder(Protocol):
    @property
    def account_id(self) -> str: ...

    @property
    def nik(self) -> str: ...


LINKED_AT = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
"""When the super-app linked the first account (months before the day)."""


def account_links(
    holders: Iterable[AccountHolder], *, at: datetime = LINKED_AT, step: timedelta
) -> list[AccountLinked]:
    """The super-app's links of each holder's account to their NIK, one ``step`` apart from
    ``at``, each verified by a face match against Dukcapil's record."""
    return [
        AccountLinked(
            account_id=h.account_id,
            nik=h.nik,
            verification=Verification.DUKCAPIL_FACE_MATCH,
            linked_at=at + step * i,
        )
        for i, h in enumerate(holders)
    ]


@dataclass(frozen=True, slots=True)
class Grant:
    """Assistance Dinas Sosial pays already (its own records, before the day starts)."""

    recipient: str
    kk: str
    kelurahan: str
    programme: str
    amount: int

    def terms(self) -> dict[str, Any]:
        """The keyword arguments of ``Dinsos.grant``: paid monthly from 1 January 2026, granted
        on 15 December 2025."""
        return {
            "recipient": self.recipient,
            "kk": self.kk,
            "kelurahan": self.kelurahan,
            "programme": self.programme,
            "amount": self.amount,
            "frequency": "monthly",
            "starts_on": date(2026, 1, 1),
            "granted_on": date(2025, 12, 15),
        }


@dataclass
class Day:
    """The population, its standing records, and the day's legacy records (bad ones included)."""

    residents: list[Person]
    kk: dict[str, str]  # NIK -> family card
    accounts: list[Account]
    grants: list[Grant]
    siak: list[dict[str, Any]]  # rows of SIAK's peristiwa table
    permits: list[dict[str, Any] | str]  # webhook bodies (a str is sent as it is)
    payments: list[dict[str, str]]  # rows of the payment export
    notes: dict[str, str] = field(default_factory=dict)  # what to expect, for the summary
    pencaker: list[dict[str, Any]] = field(default_factory=list)  # job-seeker registry rows


def play(seed: int = 2026) -> Day:
    """The day: deterministic for a seed."""
    rng = random.Random(seed)
    residents = [p for p in synthetic.people(120, seed=seed) if p.born.year <= 2006][:40]
    kk = {
        p.nik: synthetic.kk(rng, date(2015, 1, 1) + timedelta(rng.randrange(3000)), p.nik[4:6])
        for p in residents
    }
    accounts = [
        Account(
            str(uuid.UUID(int=rng.getrandbits(128), version=4)), p.nik, f"warga{i + 1}@example.org"
        )
        for i, p in enumerate(residents[:12])
    ]
    programmes = ("pkh", "bpnt", "bansos-daerah")
    grants = [
        Grant(p.nik, kk[p.nik], p.address.kelurahan, programmes[i % 3], (i % 3 + 2) * 100_000)
        for i, p in enumerate(residents[6:16])
    ]
    day = Day(residents, kk, accounts, grants, [], [], [])
    _registry(day, rng)
    _licensing(day, rng)
    _payments(day, rng)
    _jobs(day, rng)
    return day


# -- SIAK: births, deaths, moves ----------------------------------------------------------------


def _registry(day: Day, rng: random.Random) -> None:
    r = day.residents
    moment = _START
    rows = day.siak

    def add(kind: str, who: Person, *, kk: str, alamat: str, kelurahan: str, on: date) -> None:
        nonlocal moment
        moment += timedelta(minutes=rng.randint(3, 25))
        rows.append(
            {
                "id_peristiwa": 90_000 + len(rows),
                "versi": 1,
                "jenis_peristiwa": kind,
                "nik": who.nik,
                "no_kk": kk,
                "nama_lengkap": who.name,
                "tgl_lahir": who.born,
                "jenis_kelamin": who.sex,
                "alamat": alamat,
                "kode_kecamatan": kelurahan[:8],
                "kode_kelurahan": kelurahan,
                "tgl_peristiwa": on,
                "tgl_lapor": DAY,
                "updated_at": moment,
            }
        )

    def at_home(kind: str, who: Person, on: date) -> None:
        add(
            kind,
            who,
            kk=day.kk[who.nik],
            alamat=who.address.line,
            kelurahan=who.address.kelurahan,
            on=on,
        )

    # Deaths: a recipient with an account, a recipient, a billboard permit holder (a taxpayer).
    for who in (r[6], r[12], r[2]):
        at_home("KEMATIAN", who, DAY - timedelta(days=2))
    # Moves: recipients to another kecamatan and within theirs, an account holder, and one
    # into Kedungkandang (35.73.03), where the archive demo's volume is full.
    for who, kelurahan in (
        (r[7], _elsewhere(r[7])),
        (r[13], r[13].address.kelurahan),
        (r[0], _elsewhere(r[0])),
        (r[21], "35.73.03.1001"),
    ):
        new = synthetic.address(rng, kelurahan)
        add(
            "PINDAH",
            who,
            kk=day.kk[who.nik],
            alamat=new.line,
            kelurahan=kelurahan,
            on=DAY - timedelta(days=1),
        )
    # Births into families: two receiving assistance, two not.
    for parent in (r[8], r[14], r[22], r[23]):
        born = DAY - timedelta(days=rng.randint(3, 12))
        child = synthetic.person(rng, born=born)
        add(
            "LAHIR",
            child,
            kk=day.kk[parent.nik],
            alamat=parent.address.line,
            kelurahan=parent.address.kelurahan,
            on=born,
        )
    # Broken the way legacy data breaks: a NIK cut to 15 digits, a kecamatan that does not exist.
    at_home("KEMATIAN", r[30], DAY - timedelta(days=3))
    rows[-1]["nik"] = rows[-1]["nik"][:15]
    at_home("PINDAH", r[31], DAY - timedelta(days=1))
    rows[-1]["kode_kecamatan"], rows[-1]["kode_kelurahan"] = "35.73.09", "35.73.09.1001"
    day.notes["siak"] = "11 good rows (3 deaths, 4 moves, 4 births), 2 broken"


def _elsewhere(who: Person) -> str:
    """A kelurahan in another kecamatan than the person's."""
    other = "35.73.02" if who.address.kecamatan != "35.73.02" else "35.73.05"
    return f"{other}.1003"


# -- the licensing application's webhook --------------------------------------------------------


def _licensing(day: Day, rng: random.Random) -> None:
    r = day.residents
    number = 7000

    def payload(status: str, kind: str, who: Person, *, nib: str = "") -> dict[str, Any]:
        nonlocal number
        number += 1
        prefix = {"PBG": "PBG", "SLF": "SLF", "REKLAME": "RKL", "IZIN_USAHA": "OSS"}[kind]
        site = synthetic.address(rng)
        issued = status == ISSUED
        return {
            "nomor_permohonan": f"{prefix}/2026/11/{number:06d}",
            "status_permohonan": status,
            "revisi": 1,
            "jenis_izin": kind,
            "nik_pemohon": who.nik,
            "nama_pemohon": who.name,
            "nib": nib,
            "alamat_lokasi": site.street,
            "rt": site.rt,
            "rw": site.rw,
            "kode_kelurahan": site.kelurahan,
            "kode_kecamatan": site.kecamatan,
            "tanggal_permohonan": f"{DAY - timedelta(days=20):%d-%m-%Y}",
            "tanggal_keputusan": f"{DAY:%d-%m-%Y}" if status != APPLIED else "",
            "nomor_izin": f"503/{prefix}/{number:06d}/35.73.406/2026" if issued else "",
            "masa_berlaku_sampai": f"{DAY + timedelta(days=364):%d-%m-%Y}"
            if issued and kind == "REKLAME"
            else "",
            "retribusi": "1.250.000" if issued and kind == "PBG" else "",
            "kode_alasan_penolakan": "TIDAK_SESUAI_RDTR" if status == REJECTED else "",
            "catatan": "",
            "waktu_proses": f"{DAY:%Y-%m-%d} 10:15:00",
        }

    day.permits += [
        payload(ISSUED, "REKLAME", r[0]),  # billboard permits to account holders: e-mails
        payload(ISSUED, "REKLAME", r[1]),
        payload(ISSUED, "REKLAME", r[2]),
        payload(ISSUED, "IZIN_USAHA", r[24], nib="9120045678901"),  # a business: its NIB
        payload(APPLIED, "PBG", r[3]),
        payload(REJECTED, "SLF", r[4]),
    ]
    broken = payload(ISSUED, "REKLAME", r[25])
    broken["nik_pemohon"] = broken["nik_pemohon"][:12] + "O" + broken["nik_pemohon"][13:]
    day.permits += [broken, '{"nomor_permohonan": "RKL/2026/11/007999", "status_permohonan": ']
    day.notes["permits"] = "6 decisions (4 issued), 2 broken bodies"


# -- the nightly payment export of the tax system -----------------------------------------------


def _payments(day: Day, rng: random.Random) -> None:
    r = day.residents
    moment = datetime.combine(DAY, datetime.min.time()) + timedelta(hours=8)
    for number, who in enumerate((r[0], r[3], r[5], r[9], r[17]), start=1):
        moment += timedelta(minutes=rng.randint(5, 90))
        nop = fixtures.nop(rng)
        amount = rng.randint(150, 2_500) * 1_000
        day.payments.append(
            {
                "no_sspd": f"SSPD-2026-{number:07d}",
                "versi": "1",
                "nomor_bukti_bayar": f"BJTM-{moment:%Y%m%d}-{number:06d}",
                "no_ketetapan": f"SPPT-2026-{nop.replace('.', '').replace('-', '')}",
                "jenis_pajak": "PBB-P2",
                "nop": nop,
                "npwpd": "",
                "masa_pajak": "2026",
                "jenis_identitas": "NIK",
                "no_identitas": who.nik,
                "nama_wp": who.name,
                "jumlah_bayar": f"{amount:,}".replace(",", "."),
                "tanggal_bayar": f"{moment:%d/%m/%Y %H:%M:%S}",
                "bank": "Bank Jatim",
                "saluran_bayar": "QRIS",
            }
        )
    bad = dict(day.payments[-1], no_sspd="SSPD-2026-0000099", jumlah_bayar="1,2 juta")
    day.payments.append(bad)
    day.notes["payments"] = "5 PBB-P2 payments, 1 with an amount in words"


# -- the labour office's job-seeker registry (MySQL) --------------------------------------------


def _jobs(day: Day, rng: random.Random) -> None:
    """AK/I cards: registrations from the year, two recipients of assistance placed on the day
    (dinsos re-verifies their grants), and rows broken the way the registry's are."""
    r = day.residents
    moment = datetime.combine(DAY, datetime.min.time()) + timedelta(hours=9)

    def add(
        who: Person, registered: date, placed: tuple[date, str] | None = None, **broken: str
    ) -> None:
        nonlocal moment
        moment += timedelta(minutes=rng.randint(2, 20))
        on, where = placed or (None, None)
        row = pencaker.row(
            rng,
            who,
            serial=len(day.pencaker) + 101,
            registered=registered,
            updated=moment,
            placed_on=on,
            placement=where,
        )
        day.pencaker.append(row | broken)

    for who in (r[26], r[27], r[28]):
        add(who, DAY - timedelta(days=rng.randint(30, 300)))
    add(r[9], date(2026, 3, 2), (DAY - timedelta(days=1), "AKL"))
    add(r[15], date(2026, 5, 11), (DAY, "AKAD"))
    # A registration without its date (imported from the old application), and a kecamatan
    # outside the city.
    add(r[29], date(2026, 8, 3), tgl_daftar="0000-00-00")
    add(r[32], date(2026, 9, 14), kecamatan="Kota Batu")
    day.notes["pencaker"] = "5 good rows (2 placements of recipients), 2 broken"
