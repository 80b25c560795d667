"""A contract's constructor fails as ``.parse()`` does: ContractViolation naming fields and
rules, never quoting a value (pydantic's own message quotes the input: ``input_value='3573...'``).
"""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import pytest
from pydantic import ValidationError
from redis.asyncio import Redis

from bus import ContractViolation
from bus.adapter import Record
from schemas.bapenda import TaxAssessed
from schemas.dukcapil import CitizenDied
from tests.bus.adapter.test_runner import runner

NIK = "3573014107900001"  # synthetic
SHORT_NIK = "357301410790000"  # one digit short: no 16-digit pattern masks it


@pytest.mark.parametrize(
    "payload",
    [
        {"nik": int(NIK), "date_of_death": "2026-11-27", "kecamatan": "35.73.02"},
        {"nik": SHORT_NIK, "date_of_death": "2026-11-27", "kecamatan": "35.73.02"},
        {"nik": NIK, "date_of_death": f"{NIK}-11-27", "kecamatan": "35.73.02"},
    ],
)
def test_the_constructor_raises_the_same_violation_as_parse_without_the_value(
    payload: dict[str, Any],
) -> None:
    with pytest.raises(ContractViolation) as built:
        CitizenDied(**payload)
    with pytest.raises(ContractViolation) as parsed:
        CitizenDied.parse(payload)
    assert str(built.value) == str(parsed.value)
    assert built.value.problems == parsed.value.problems
    for secret in (NIK, SHORT_NIK, "input_value"):
        assert secret not in str(built.value)
        assert secret not in repr(built.value)


def test_nested_values_are_not_quoted_either() -> None:
    with pytest.raises(ContractViolation) as caught:
        TaxAssessed(taxpayer={"scheme": "nik", "value": SHORT_NIK})  # type: ignore[arg-type]
    assert "taxpayer.value" in [field for field, _ in caught.value.problems]
    assert SHORT_NIK not in str(caught.value)


def test_model_validate_does_not_quote_the_input() -> None:
    with pytest.raises(ValidationError) as caught:
        CitizenDied.model_validate({"nik": SHORT_NIK, "date_of_death": "x", "kecamatan": "y"})
    assert SHORT_NIK not in str(caught.value) and "input_value" not in str(caught.value)


async def test_a_mapper_using_the_constructor_quarantines_field_problems_without_values(
    redis: Redis,
) -> None:
    def mapper(record: Record) -> CitizenDied:  # department code, building the event directly
        return CitizenDied(
            nik=record.data["nik"], date_of_death=date(2026, 11, 1), kecamatan="35.73.02"
        )

    await runner(redis, [{"key": 1, "nik": SHORT_NIK}], mapper=mapper).run_once()

    [(_, raw)] = await redis.xrange("simpul:quarantine:{test}")
    stored = b" ".join(raw.values()).decode()
    problems = json.loads(raw[b"errors"])
    assert SHORT_NIK in stored  # the raw record is kept, for the fix: only there
    assert problems == [{"field": "nik", "problem": "Value error, a NIK has exactly 16 digits"}]
