"""The job-seeker registry's mapper: pencaker rows as MySQL drivers return them -> contracts.

Pure functions of a row: these tests need no database. The adapter on a real MariaDB is in
tests/adapters/test_disnaker.py.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import pytest

from adapters.disnaker import fixtures, map_pencaker
from adapters.disnaker.mapping import EDUCATION
from bus import ContractViolation
from bus.adapter import Change, Record
from schemas.disnaker import EducationLevel, JobseekerPlaced, JobseekerRegistered, Placement

NIK = "3573051708050003"


def row(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id_pencaker": 7,
        "thn_daftar": 2026,
        "no_pendaftaran": 412,  # INT(6) ZEROFILL: the driver returns the number
        "nik": NIK,
        "nama": "BAGUS SETYO",
        "tempat_lahir": "MALANG",
        "tgl_lahir": date(2005, 8, 17),
        "jenis_kelamin": "L",
        "alamat": "Jl. Kalpataru No. 12, RT 004/RW 007, Malang",
        "kecamatan": "Kec. Lowokwaru",
        "pendidikan_terakhir": "SMK",
        "jurusan": "Teknik Instalasi Tenaga Listrik",
        "kode_jabatan": "7411, 7412",
        "keterampilan": "Instalasi listrik rumah",
        "tgl_daftar": date(2026, 11, 16),
        "tgl_berlaku": date(2028, 11, 16),
        "sudah_bekerja": 0,
        "jenis_penempatan": "",
        "kode_jabatan_kerja": "",
        "tgl_penempatan": "0000-00-00",  # PyMySQL returns a zero date as this string
        "is_hapus": 0,
        "petugas": "loket1",
        "tgl_update": datetime(2026, 11, 16, 9, 12, 5),
    }
    return base | changes


def mapped(data: dict[str, Any], change: Change | None = None) -> Any:
    return map_pencaker(Record("7", "v", None, data, change=change))


def test_a_registration_maps_to_registered_with_codes_not_labels() -> None:
    event = mapped(row())

    assert event == JobseekerRegistered.parse(
        {
            "card_no": "3573-2026-000412",
            "nik": NIK,
            "kecamatan": "35.73.05",
            "education": "vocational-secondary",
            "occupations": ["7411", "7412"],
            "registered_on": "2026-11-16",
            "valid_until": "2028-11-16",
        }
    )


def test_nothing_personal_beyond_the_nik_and_card_travels() -> None:
    data = mapped(row()).model_dump(mode="json")

    assert not {"nama", "alamat", "tgl_lahir", "jurusan", "keterampilan"} & set(data)
    assert "BAGUS" not in str(data) and "Kalpataru" not in str(data)


@pytest.mark.parametrize(
    ("spelt", "code"),
    [
        ("LOWOKWARU", "35.73.05"),
        ("klojen ", "35.73.02"),
        ("KECAMATAN SUKUN", "35.73.04"),
        ("Kec.Blimbing", "35.73.01"),
        ("Kedungkandang", "35.73.03"),
    ],
)
def test_kecamatan_names_as_operators_type_them_map_to_kemendagri_codes(
    spelt: str, code: str
) -> None:
    assert mapped(row(kecamatan=spelt)).kecamatan == code


@pytest.mark.parametrize(
    ("label", "level"),
    [
        ("SMA", EducationLevel.SENIOR_SECONDARY),
        ("stm", EducationLevel.VOCATIONAL_SECONDARY),
        ("SLTA/SEDERAJAT", EducationLevel.SENIOR_SECONDARY),
        ("D4", EducationLevel.BACHELOR),
        ("TIDAK  SEKOLAH", EducationLevel.NONE),
    ],
)
def test_education_labels_old_and_new_map_to_levels(label: str, level: EducationLevel) -> None:
    assert mapped(row(pendidikan_terakhir=label)).education is level


def test_every_education_label_the_fixtures_write_is_known() -> None:
    written = {r["pendidikan_terakhir"] for r in fixtures.rows(300, seed=3)}
    assert written <= set(EDUCATION)


@pytest.mark.parametrize(
    ("serial", "flag", "zero_date"), [(412, 0, "0000-00-00"), ("000412", False, None)]
)
def test_values_as_a_plain_driver_and_as_the_mysql_sources_decode_them_map_alike(
    serial: Any, flag: Any, zero_date: Any
) -> None:
    event = mapped(row(no_pendaftaran=serial, sudah_bekerja=flag, tgl_penempatan=zero_date))
    assert (event.card_no, type(event)) == ("3573-2026-000412", JobseekerRegistered)


def test_a_zero_valid_until_is_two_years_after_registration() -> None:
    leap = row(tgl_daftar=date(2024, 2, 29), tgl_berlaku="0000-00-00")
    assert mapped(row(tgl_berlaku=None)).valid_until == date(2028, 11, 16)
    assert mapped(leap).valid_until == date(2026, 2, 28)


def test_a_placement_maps_to_placed() -> None:
    event = mapped(
        row(
            sudah_bekerja=1,
            jenis_penempatan="akad",
            kode_jabatan_kerja="7411",
            tgl_penempatan=date(2026, 11, 30),
        )
    )

    assert event == JobseekerPlaced(
        card_no="3573-2026-000412",
        nik=NIK,
        placement=Placement.INTER_REGIONAL,
        occupation="7411",
        placed_on=date(2026, 11, 30),
    )


def test_a_placement_without_an_occupation_has_none() -> None:
    event = mapped(row(sudah_bekerja=1, jenis_penempatan="AKL", tgl_penempatan="2026-11-30"))
    assert event.occupation is None and event.placed_on == date(2026, 11, 30)


@pytest.mark.parametrize(
    ("data", "change"),
    [(row(), "delete"), (row(is_hapus=1), None), (row(is_hapus=1, sudah_bekerja=1), "update")],
)
def test_deleted_and_soft_deleted_rows_are_no_event(
    data: dict[str, Any], change: Change | None
) -> None:
    assert mapped(data, change) is None


@pytest.mark.parametrize(
    ("changes", "field", "rule"),
    [
        ({"tgl_daftar": "0000-00-00"}, "(record)", "tgl_daftar is empty (0000-00-00)"),
        ({"tgl_daftar": None}, "(record)", "tgl_daftar is empty (0000-00-00)"),
        ({"tgl_daftar": "2026-11-00"}, "(record)", "tgl_daftar is not a whole date"),
        ({"thn_daftar": 0}, "(record)", "thn_daftar must be a year"),
        ({"no_pendaftaran": 0}, "(record)", "no_pendaftaran must be a serial"),
        ({"no_pendaftaran": "00041a"}, "(record)", "no_pendaftaran must be a whole number"),
        ({"kecamatan": "Batu"}, "(record)", "kecamatan must name one of Kota Malang's"),
        ({"pendidikan_terakhir": "Kursus"}, "(record)", "pendidikan_terakhir is not a label"),
        ({"sudah_bekerja": 2}, "(record)", "sudah_bekerja must be 0 or 1"),
        ({"sudah_bekerja": 1, "jenis_penempatan": "AKL"}, "(record)", "tgl_penempatan is empty"),
        ({"sudah_bekerja": 1, "tgl_penempatan": "2026-11-30"}, "(record)", "jenis_penempatan"),
        ({"nik": "3573051713050003"}, "nik", "birth month"),
        ({"kode_jabatan": ""}, "occupations", "at least 1 item"),
        ({"kode_jabatan": "7411,74"}, "occupations.1", "4 ASCII digits"),
        ({"tgl_berlaku": date(2026, 11, 16)}, "valid_until", "must be after registered_on"),
    ],
)
def test_a_bad_row_fails_naming_the_column_or_field_and_the_rule_never_the_value(
    changes: dict[str, Any], field: str, rule: str
) -> None:
    try:
        mapped(row(**changes))
    except ContractViolation as exc:
        problems = exc.problems
    except ValueError as exc:
        problems = [("(record)", str(exc))]
    else:
        pytest.fail("the row mapped")
    assert [f for f, _ in problems] == [field]
    assert rule in problems[0][1]
    message = problems[0][1]
    quoted = [v for v in changes.values() if isinstance(v, str) and len(v) > 4 and v in message]
    assert quoted in ([], ["0000-00-00"])  # the legacy "no date" may be named: it is no value
    assert NIK not in str(problems) and "3573051713050003" not in str(problems)


def test_fixture_rows_all_map_and_some_are_placed() -> None:
    events = [mapped(r) for r in fixtures.rows(200, seed=11)]

    placed = [e for e in events if isinstance(e, JobseekerPlaced)]
    assert all(isinstance(e, JobseekerRegistered | JobseekerPlaced) for e in events)
    assert 20 <= len(placed) <= 70
    assert len({e.card_no for e in events}) == 200
