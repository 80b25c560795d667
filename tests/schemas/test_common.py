"""The shared types of schemas/common.py: each rule of each identifier fails with its own
message (and never the value), regions, addresses, money, references and their JSON Schema."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

import pytest
from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from bus import PERSONAL
from schemas.common import (
    KK,
    NIB,
    NIK,
    NIP,
    NOP,
    AccountId,
    Address,
    Identifier,
    KecamatanCode,
    KelurahanCode,
    PastDate,
    Pseudonym,
    RecordNo,
    Rupiah,
    pseudonym,
)
from schemas.regions import kecamatan_codes, kelurahan_codes, regions

MAN = "3573051708850003"  # 17-08-1985, Lowokwaru: synthetic
WOMAN = "3573025203900002"  # 12-03-1990, day 12 + 40, Klojen
KK_NO = "3573051203150004"  # issued 12-03-2015
NIB_NO = "9120001234567"
NOP_NO = "357305000300200450"
NIP_NO = "198503172010011002"  # born 17-03-1985, appointed 01-2010, man, serial 002


def problem(annotation: Any, value: object) -> str:
    """The one problem pydantic reports for ``value``; the test fails if it is accepted."""
    with pytest.raises(ValidationError) as caught:
        TypeAdapter(annotation).validate_python(value)
    errors = caught.value.errors()
    assert len(errors) == 1
    message = str(errors[0]["msg"])
    if isinstance(value, str) and len(value) >= 8:  # shorter values are common words
        assert value not in message
    return message


def with_digits(value: str, start: int, digits: str) -> str:
    """``value`` with the digits at 1-based position ``start`` replaced."""
    return value[: start - 1] + digits + value[start - 1 + len(digits) :]


# -- NIK ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "nik",
    [
        MAN,
        WOMAN,
        with_digits(MAN, 7, "01"),  # first day
        with_digits(MAN, 7, "31"),
        with_digits(MAN, 7, "41"),  # a woman born on the 1st
        with_digits(MAN, 7, "71"),  # a woman born on the 31st
        with_digits(MAN, 1, "11"),  # Aceh: a NIK issued elsewhere is as valid in Malang
        with_digits(MAN, 13, "0001"),
    ],
)
def test_a_well_formed_nik_is_accepted(nik: str) -> None:
    assert TypeAdapter(NIK).validate_python(nik) == nik


@pytest.mark.parametrize(
    ("nik", "rule"),
    [
        (MAN[:-1], "a NIK has exactly 16 digits"),
        (MAN + "1", "a NIK has exactly 16 digits"),
        ("", "a NIK has exactly 16 digits"),
        (with_digits(MAN, 16, "\u0663"), "ASCII digits 0-9 only"),  # Arabic-Indic three
        (with_digits(MAN, 1, "\uff13"), "ASCII digits 0-9 only"),  # fullwidth three
        ("3573 0517 0885 0003", "ASCII digits 0-9 only"),
        (with_digits(MAN, 1, "99"), "NIK digits 1-2 are not a known province code"),
        (with_digits(MAN, 1, "00"), "NIK digits 1-2 are not a known province code"),
        (with_digits(MAN, 9, "00"), "NIK digits 9-10 (birth month) must be 01-12"),
        (with_digits(MAN, 9, "13"), "NIK digits 9-10 (birth month) must be 01-12"),
        (with_digits(MAN, 7, "00"), "NIK digits 7-8 (birth day, +40 for women) must be"),
        (with_digits(MAN, 7, "32"), "NIK digits 7-8 (birth day, +40 for women) must be"),
        (with_digits(MAN, 7, "40"), "NIK digits 7-8 (birth day, +40 for women) must be"),
        (with_digits(MAN, 7, "72"), "NIK digits 7-8 (birth day, +40 for women) must be"),
        (with_digits(MAN, 13, "0000"), "NIK digits 13-16 (serial) must not be 0000"),
    ],
)
def test_each_broken_nik_rule_has_its_own_message(nik: str, rule: str) -> None:
    assert rule in problem(NIK, nik)


def test_a_nik_is_a_string_not_a_number() -> None:
    # As a number a NIK would lose nothing here, but a NOP or NIP starting with 0 would.
    assert problem(NIK, int(MAN)) == "Input should be a valid string"


# -- KK, NIB, NOP, NIP -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("annotation", "value"),
    [(KK, KK_NO), (NIB, NIB_NO), (NOP, NOP_NO), (NIP, NIP_NO), (NIP, "197202292000012001")],
)
def test_well_formed_identifiers_are_accepted(annotation: Any, value: str) -> None:
    assert TypeAdapter(annotation).validate_python(value) == value


@pytest.mark.parametrize(
    ("annotation", "value", "rule"),
    [
        (KK, KK_NO[:-1], "a KK number has exactly 16 digits"),
        (KK, with_digits(KK_NO, 3, "\u0667"), "a KK number has ASCII digits 0-9 only"),
        (KK, with_digits(KK_NO, 1, "99"), "KK number digits 1-2 are not a known province code"),
        (KK, with_digits(KK_NO, 7, "41"), "KK number digits 7-12 must be the issue date DDMMYY"),
        (KK, with_digits(KK_NO, 9, "13"), "KK number digits 7-12 must be the issue date DDMMYY"),
        (NIB, NIB_NO[:-1], "a NIB has exactly 13 digits"),
        (NIB, NIB_NO + "0", "a NIB has exactly 13 digits"),
        (NIB, "912-000-123456", "a NIB has ASCII digits 0-9 only"),
        (NOP, NOP_NO[:-1], "a NOP has exactly 18 digits"),
        (NOP, "35.73.050.003.002-0045.0", "a NOP has ASCII digits 0-9 only"),
        (NOP, with_digits(NOP_NO, 1, "99"), "NOP digits 1-2 are not a known province code"),
        (NIP, NIP_NO[:-1], "a NIP has exactly 18 digits"),
        (NIP, with_digits(NIP_NO, 5, "02" + "30"), "NIP digits 1-8 must be a real birth date"),
        (NIP, with_digits(NIP_NO, 1, "1971" + "0229"), "NIP digits 1-8 must be a real birth date"),
        (NIP, with_digits(NIP_NO, 13, "13"), "NIP digits 9-14 must be the appointment month"),
        (NIP, with_digits(NIP_NO, 13, "00"), "NIP digits 9-14 must be the appointment month"),
        (NIP, with_digits(NIP_NO, 15, "3"), "NIP digit 15 (gender) must be 1 or 2"),
        (NIP, with_digits(NIP_NO, 15, "0"), "NIP digit 15 (gender) must be 1 or 2"),
    ],
)
def test_each_broken_identifier_rule_has_its_own_message(
    annotation: Any, value: str, rule: str
) -> None:
    assert rule in problem(annotation, value)


# -- Identifier --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scheme", "value"),
    [("nik", WOMAN), ("kk", KK_NO), ("nib", NIB_NO), ("nop", NOP_NO), ("nip", NIP_NO)],
)
def test_an_identifier_pairs_a_scheme_with_a_value_valid_for_it(scheme: str, value: str) -> None:
    identifier = Identifier.model_validate({"scheme": scheme, "value": value})
    assert (identifier.scheme, identifier.value) == (scheme, value)


@pytest.mark.parametrize(
    ("data", "field", "rule"),
    [
        ({"scheme": "nop", "value": MAN}, "value", "a NOP has exactly 18 digits"),
        ({"scheme": "nik", "value": NIB_NO}, "value", "a NIK has exactly 16 digits"),
        ({"scheme": "nik", "value": with_digits(MAN, 9, "13")}, "value", "birth month"),
        ({"scheme": "npwp", "value": MAN}, "scheme", "Input should be 'nik', 'kk', 'nib'"),
        ({"scheme": "nik"}, "value", "Field required"),
        ({"scheme": "nik", "value": MAN, "name": "Budi"}, "name", "Extra inputs"),
    ],
)
def test_an_identifier_names_the_part_that_is_wrong(
    data: dict[str, str], field: str, rule: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        Identifier.model_validate(data)
    [error] = caught.value.errors()
    assert error["loc"] == (field,)
    assert rule in error["msg"]


def test_an_identifier_value_is_personal() -> None:
    assert PERSONAL in Identifier.model_fields["value"].metadata


# -- regions -----------------------------------------------------------------------------------


def test_kota_malang_has_5_kecamatan_and_57_kelurahan() -> None:
    assert kecamatan_codes() == [f"35.73.0{k}" for k in range(1, 6)]
    assert len(kelurahan_codes()) == 57
    counts = [len(kelurahan_codes(k)) for k in kecamatan_codes()]
    assert counts == [11, 11, 12, 11, 12]  # Blimbing, Klojen, Kedungkandang, Sukun, Lowokwaru
    assert regions()["35.73.05.1001"].name == "Tunggulwulung"
    assert regions()["35.73"].parent == "35"


@pytest.mark.parametrize("code", ["35.73.01", "35.73.05"])
def test_kecamatan_codes_of_the_city_are_accepted(code: str) -> None:
    assert TypeAdapter(KecamatanCode).validate_python(code) == code


@pytest.mark.parametrize(
    "code", ["35.73.06", "35.07.01", "3573010", "35.73", "35.73.01.1001", "35.73.1", ""]
)
def test_other_kecamatan_codes_are_refused(code: str) -> None:
    assert "not a kecamatan code of Kota Malang" in problem(KecamatanCode, code)


def test_every_kelurahan_code_of_the_data_file_is_accepted() -> None:
    adapter = TypeAdapter(KelurahanCode)
    assert [adapter.validate_python(code) for code in kelurahan_codes()] == kelurahan_codes()


@pytest.mark.parametrize(
    "code", ["35.73.03.1013", "35.73.01.1012", "35.73.06.1001", "3573050010", "35.73.05", ""]
)
def test_other_kelurahan_codes_are_refused(code: str) -> None:
    assert "not a kelurahan code of Kota Malang" in problem(KelurahanCode, code)


ADDRESS = {
    "street": "Jl. Ijen No. 25",
    "rt": "003",
    "rw": "005",
    "kelurahan": "35.73.02.1008",
    "kecamatan": "35.73.02",
}


def test_an_address_in_the_city_is_accepted_and_its_street_is_personal() -> None:
    assert Address.model_validate(ADDRESS).kelurahan == "35.73.02.1008"
    assert PERSONAL in Address.model_fields["street"].metadata


@pytest.mark.parametrize(
    ("changes", "field", "rule"),
    [
        ({"kecamatan": "35.73.05"}, "kecamatan", "must be the kecamatan of the kelurahan"),
        ({"kelurahan": "35.73.05.1001"}, "kecamatan", "must be the kecamatan of the kelurahan"),
        ({"kelurahan": "35.73.02.1012"}, "kelurahan", "not a kelurahan code"),
        ({"rt": "3"}, "rt", "RT and RW numbers are 3 ASCII digits"),
        ({"rw": "0\u0665"}, "rw", "RT and RW numbers are 3 ASCII digits"),
        ({"street": ""}, "street", "at least 1 character"),
    ],
)
def test_a_broken_address_names_its_field(changes: dict[str, str], field: str, rule: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Address.model_validate(ADDRESS | changes)
    [error] = caught.value.errors()
    assert error["loc"] == (field,)
    assert rule in error["msg"]


# -- money, dates, references ------------------------------------------------------------------


@pytest.mark.parametrize("amount", [0, 1, 386_400, 10**15])
def test_rupiah_are_whole_non_negative_integers(amount: int) -> None:
    assert TypeAdapter(Rupiah).validate_python(amount) == amount
    assert TypeAdapter(Rupiah).validate_json(str(amount)) == amount


@pytest.mark.parametrize(
    ("amount", "rule"),
    [
        (1.5, "valid integer"),
        (1.0, "valid integer"),  # even a whole float: amounts are never floats on the wire
        ("386400", "valid integer"),
        (True, "valid integer"),
        (False, "valid integer"),
        (-1, "greater than or equal to 0"),
        (10**15 + 1, "less than or equal to"),
    ],
)
def test_rupiah_refuse_floats_strings_bools_and_negatives(amount: object, rule: str) -> None:
    assert rule in problem(Rupiah, amount)


def test_rupiah_refuse_a_float_in_json_too() -> None:
    with pytest.raises(ValidationError, match="valid integer"):
        TypeAdapter(Rupiah).validate_json("386400.0")


def test_a_past_date_may_be_today_but_not_in_the_future() -> None:
    today = datetime.now(UTC).date()
    assert TypeAdapter(PastDate).validate_python(today) == today
    assert TypeAdapter(PastDate).validate_python("2026-01-01") == date(2026, 1, 1)
    assert "must not be in the future" in problem(PastDate, today + timedelta(days=2))


def test_a_pseudonym_is_a_stable_keyed_hash() -> None:
    key = b"a test key"
    ref = pseudonym(key, "nik", MAN)
    assert ref == pseudonym(key, "nik", MAN)
    assert ref != pseudonym(b"another key", "nik", MAN)
    assert ref != pseudonym(key, "kk", MAN)  # the scheme is part of what is hashed
    assert TypeAdapter(Pseudonym).validate_python(ref) == ref
    assert MAN not in ref


@pytest.mark.parametrize("value", [MAN, "", "3573031109263749", "é" * 40])
def test_a_pseudonym_is_the_base32_of_the_first_half_of_an_hmac_sha256(value: str) -> None:
    for key in (b"bench-pseudonym-key-0123456789abcdef", b"k" * 64, b"a longer key " * 9):
        digest = hmac.new(key, f"nik:{value}".encode(), hashlib.sha256).digest()
        expected = base64.b32encode(digest[:16]).decode().rstrip("=").lower()
        assert pseudonym(key, "nik", value) == expected


@pytest.mark.parametrize("value", [MAN, "WRZC36NYNECYOE6HKELR7ELWWQ", "wrzc36nynecyoe6hkelr7elww"])
def test_a_pseudonym_is_never_an_identifier(value: str) -> None:
    assert "a pseudonym is 26 characters a-z and 2-7" in problem(Pseudonym, value)


def test_an_account_id_is_a_uuid_and_its_error_quotes_nothing() -> None:
    message = problem(AccountId, "user-18821")
    assert message == "Value error, an account id is a UUID: 32 hex digits as 8-4-4-4-12"
    assert "`" not in message  # pydantic's own message quotes a character of the input


@pytest.mark.parametrize("value", ["", "a b", "x" * 65, "-PBG-1", "PBG/2026/11/000412\n"])
def test_record_numbers_are_short_ascii_codes(value: str) -> None:
    assert "a record number is 3-64 ASCII" in problem(RecordNo, value)


# -- JSON Schema: what apps in other languages see ---------------------------------------------

DOCUMENTED = [
    (NIK, "^[0-9]{16}$", "birth date with the day + 40 for women", MAN),
    (KK, "^[0-9]{16}$", "Kartu Keluarga", KK_NO),
    (NIB, "^[0-9]{13}$", "OSS", NIB_NO),
    (NOP, "^[0-9]{18}$", "province 2, regency/city 2, district 3", NOP_NO),
    (NIP, "^[0-9]{18}$", "appointment month", NIP_NO),
    (KecamatanCode, r"^35\.73\.0[1-5]$", "35.73.04 Sukun", "35.73.04"),
    (KelurahanCode, r"^35\.73\.0[1-5]\.10[0-9]{2}$", "57 codes", "35.73.03.1012"),
    (Pseudonym, "^[a-z2-7]{26}$", "HMAC-SHA256", pseudonym(b"k", "nik", MAN)),
    (RecordNo, "^[A-Za-z0-9][A-Za-z0-9./_-]{2,63}$", "record number", "PBG/2026/11/000412"),
]


@pytest.mark.parametrize(("annotation", "pattern", "words", "example"), DOCUMENTED)
def test_string_types_publish_their_pattern_and_structure(
    annotation: Any, pattern: str, words: str, example: str
) -> None:
    schema = TypeAdapter(annotation).json_schema()
    assert schema["type"] == "string"
    assert schema["pattern"] == pattern
    assert words in schema["description"]
    assert re.fullmatch(pattern.strip("^$"), example)  # the pattern accepts what Python accepts


def test_the_pattern_documents_without_replacing_the_rule_message() -> None:
    # Had the pattern been a pydantic constraint, the message would be "String should match
    # pattern '^[0-9]{16}$'", which names no rule.
    assert problem(NIK, "x") == (
        "Value error, a NIK has ASCII digits 0-9 only (no spaces, separators or digits of "
        "other scripts)"
    )


def test_a_field_description_describes_the_role_and_the_pattern_stays() -> None:
    class Death(BaseModel):
        nik: Annotated[NIK, PERSONAL, Field(description="The deceased's NIK.")]

    schema = Death.model_json_schema()["properties"]["nik"]
    assert schema["description"] == "The deceased's NIK."
    assert schema["pattern"] == "^[0-9]{16}$"
    assert schema["x-personal"] is True


def test_rupiah_publish_integer_bounds() -> None:
    schema = TypeAdapter(Rupiah).json_schema()
    assert schema == {
        "type": "integer",
        "minimum": 0,
        "maximum": 10**15,
        "description": "An amount in whole rupiah: an integer, not negative.",
    }


def test_an_identifier_publishes_the_pattern_of_each_scheme() -> None:
    schema = Identifier.model_json_schema()
    rules = {
        rule["if"]["properties"]["scheme"]["const"]: rule["then"]["properties"]["value"]["pattern"]
        for rule in schema["allOf"]
    }
    assert rules == {
        "nik": "^[0-9]{16}$",
        "kk": "^[0-9]{16}$",
        "nib": "^[0-9]{13}$",
        "nop": "^[0-9]{18}$",
        "nip": "^[0-9]{18}$",
    }
    assert schema["properties"]["value"]["x-personal"] is True
