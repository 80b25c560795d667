"""What the services share (services/_common.py) and the kecamatan of a kelurahan."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from bus.store import Store
from schemas.regions import kecamatan_codes, kecamatan_of, kelurahan_codes, regions
from services._common import (
    WIB,
    Migration,
    bearer_token,
    now_text,
    same_token,
    today_in_malang,
    utc_text,
)


def test_the_kecamatan_of_every_kelurahan_is_its_parent() -> None:
    codes = kelurahan_codes()
    assert len(codes) > 50
    for code in codes:
        assert kecamatan_of(code) == regions()[code].parent
    assert {kecamatan_of(code) for code in codes} == set(kecamatan_codes())


@pytest.mark.parametrize("bad", ["35.73.05", "35.73.05.1001.1", "35.73.xx.1001", ""])
def test_a_code_that_is_no_kelurahan_is_refused_without_quoting_it(bad: str) -> None:
    with pytest.raises(ValueError, match="not a kelurahan code") as caught:
        kecamatan_of(bad)
    assert not bad or bad not in str(caught.value)


def test_malang_is_seven_hours_ahead_of_utc_all_year() -> None:
    assert WIB.utcoffset(None) == timedelta(hours=7)
    late_evening_utc = datetime(2026, 11, 30, 18, 0, tzinfo=UTC)
    assert late_evening_utc.astimezone(WIB).date().isoformat() == "2026-12-01"
    assert today_in_malang() == datetime.now(WIB).date()


def test_utc_text_has_one_width_so_texts_sort_as_times() -> None:
    jakarta = timezone(timedelta(hours=7))
    moments = [
        datetime(2026, 11, 30, 8, 0, tzinfo=jakarta),  # 01:00 UTC
        datetime(2026, 11, 30, 1, 0, 0, 1, tzinfo=UTC),
        datetime(2026, 11, 29, 23, 59, 59, tzinfo=timezone(timedelta(hours=-5))),  # 04:59 UTC
    ]
    texts = [utc_text(m) for m in moments]
    assert texts[0] == "2026-11-30T01:00:00.000000+00:00"
    assert len({len(t) for t in [*texts, now_text()]}) == 1
    assert sorted(texts) == [utc_text(m) for m in sorted(moments)]


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc-123", "abc-123"),
        ("bearer   abc-123  ", "abc-123"),
        ("BEARER abc-123", "abc-123"),
        ("Bearer", None),
        ("Bearer    ", None),
        ("Basic abc-123", None),
        ("", None),
    ],
)
def test_the_bearer_token_of_a_header(header: str, token: str | None) -> None:
    assert bearer_token({"authorization": header} if header else {}) == token


def test_tokens_are_compared_whole() -> None:
    assert same_token("s3cret-token-for-the-app", b"s3cret-token-for-the-app")
    assert not same_token("s3cret-token-for-the-ap", b"s3cret-token-for-the-app")
    assert not same_token("s3cret-token-for-the-appx", b"s3cret-token-for-the-app")


async def test_a_migration_runs_once_per_instance(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'x.db'}")
    migration = Migration(store, ["CREATE TABLE IF NOT EXISTS t (a TEXT)"])
    try:
        await migration()
        await store.run(lambda tx: tx.execute("DROP TABLE t"))
        await migration()  # done already: not run again
        assert migration.done
        tables = await store.run(
            lambda tx: tx.all("SELECT name FROM sqlite_master WHERE type = 'table'")
        )
        assert "t" not in {row["name"] for row in tables}
    finally:
        await store.close()
