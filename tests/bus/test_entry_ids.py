"""bus.entry_ids: stream ids compare as number pairs, and the id after the last sequence of a
millisecond is the next millisecond's first."""

import pytest

from bus import entry_ids


def test_ids_compare_as_numbers_not_text() -> None:
    assert entry_ids.parts("1700000000000-3") == (1700000000000, 3)
    assert entry_ids.parts("5") == (5, 0)
    assert entry_ids.parts("9-0") < entry_ids.parts("10-0")  # "9-0" > "10-0" as text


def test_parts_refuses_what_is_not_an_id_and_parts_or_zero_puts_it_first() -> None:
    with pytest.raises(ValueError):
        entry_ids.parts("$")
    assert entry_ids.parts_or_zero("$") == entry_ids.ZERO
    assert entry_ids.parts_or_zero("12-1") == (12, 1)


def test_after_is_the_smallest_greater_id() -> None:
    assert entry_ids.after("12-1") == "12-2"
    assert entry_ids.after(f"12-{entry_ids.MAX_SEQ}") == "13-0"


def test_age_is_seconds_since_the_id_and_never_negative() -> None:
    assert entry_ids.age_s("1000-0", now_ms=3500) == 2.5
    assert entry_ids.age_s("9000-0", now_ms=3500) == 0.0
