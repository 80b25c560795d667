"""The Bapenda adapter: mapping of the export's columns, and kill -9 during a 10,000-row drop."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from redis import Redis as SyncRedis
from redis.asyncio import Redis

from adapters import bapenda
from adapters.bapenda.fixtures import rows, write_csv, write_drop
from bus import keys
from bus.adapter.quarantine import Quarantine
from bus.errors import ContractViolation
from schemas.bapenda import PaymentChannel, TaxKind
from tests.adapters.crashing import kill_repeatedly

STREAM = keys.stream("bapenda.payment")
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("text", "amount"),
    [
        ("1.250.000", 1_250_000),
        ("1250000", 1_250_000),
        ("Rp 1.250.000,00", 1_250_000),
        ("Rp. 386.400", 386_400),
        ("950", 950),
        (" 12.650.000 ", 12_650_000),
    ],
)
def test_amounts_in_indonesian_formats(text: str, amount: int) -> None:
    assert bapenda.parse_amount(text) == amount


@pytest.mark.parametrize("text", ["1,250,000", "1.250.000,50", "1.25.000", "", "-5000", "1 250"])
def test_amounts_that_are_not_whole_rupiah_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="whole rupiah"):
        bapenda.parse_amount(text)


def test_dates_are_day_first_in_wib() -> None:
    paid = bapenda.parse_paid_at("05/01/2026 10:42:17")
    assert paid == datetime(2026, 1, 5, 10, 42, 17, tzinfo=bapenda.WIB)
    assert bapenda.parse_paid_at("05/01/2026 10:42").second == 0
    for bad in ("2026-01-05 10:42:17", "31/02/2026 10:00", "05/01/2026"):
        with pytest.raises(ValueError, match="dd/mm/yyyy"):
            bapenda.parse_paid_at(bad)


@pytest.mark.parametrize(
    "text",
    ["05/01/2026 10:42:17", "31/12/2025 23:59:59", "29/02/2028 00:00", "5/1/2026 9:42:17"],
)
def test_dates_read_as_strptime_reads_them(text: str) -> None:
    expected = datetime.strptime(
        text, "%d/%m/%Y %H:%M:%S" if text.count(":") == 2 else "%d/%m/%Y %H:%M"
    )
    assert bapenda.parse_paid_at(f" {text} ") == expected.replace(tzinfo=bapenda.WIB)


@pytest.mark.parametrize("text", ["29/02/2026 10:00", "05/01/2026 24:00", "05/01/2026 10:42:60"])
def test_dates_that_do_not_exist_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="dd/mm/yyyy"):
        bapenda.parse_paid_at(text)


def test_a_pbb_row_maps_to_a_payment_on_its_nop() -> None:
    row = {
        **next(rows(1, seed=1)),
        "jenis_pajak": "PBB-P2",
        "nop": "35.73.050.003.002-0045.0",
        "saluran_bayar": "QRIS",
        "jumlah_bayar": "386.400",
    }
    event = bapenda.map_payment(row)
    assert event.nop == "357305000300200450" and event.tax_kind is TaxKind.PBB_P2
    assert (event.amount, event.channel) == (386_400, PaymentChannel.QRIS)
    assert event.paid_at.utcoffset() is not None


def test_bad_nop_and_unknown_codes_do_not_map() -> None:
    row = {**next(rows(1, seed=1)), "jenis_pajak": "PBB-P2"}
    with pytest.raises(ContractViolation) as caught:
        bapenda.map_payment({**row, "nop": "35.73.050.003-0045"})
    assert [f for f, _ in caught.value.problems] == ["nop"]
    with pytest.raises(ValueError, match="unknown saluran_bayar"):
        bapenda.map_payment({**row, "saluran_bayar": "TUNAI"})
    with pytest.raises(ContractViolation):
        bapenda.map_payment({**row, "jumlah_bayar": "0"})


async def test_bad_rows_of_a_drop_land_in_quarantine(tmp_path: Path, redis: Redis) -> None:
    good = list(rows(6, seed=2))
    pbb = {**good[0], "jenis_pajak": "PBB-P2", "no_sspd": "SSPD-X-1"}
    bad = [
        {**pbb, "nop": "3573"},  # a cut NOP
        {**pbb, "no_sspd": "SSPD-X-2", "jumlah_bayar": "1,250,000"},
        {**pbb, "no_sspd": "SSPD-X-3", "tanggal_bayar": "2025-11-03"},
    ]
    (tmp_path / "incoming").mkdir()
    write_csv(tmp_path / "incoming" / "pembayaran.csv", good[:3] + bad + good[3:])

    progress = await bapenda.adapter(redis, tmp_path, settle_seconds=0).run_once()

    assert (progress.published, progress.quarantined) == (6, 3)
    entries = await Quarantine(redis, bapenda.NAME).entries()
    assert [e.record_key for e in entries] == ["SSPD-X-1", "SSPD-X-2", "SSPD-X-3"]
    assert entries[0].problems[0].field == "nop"
    assert "whole rupiah" in entries[1].problems[0].problem


# --- kill -9 during a 10,000-row drop ------------------------------------------------------

RECORDS = 10_000
KILLS = 4


def start(folder: Path, redis_url: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "adapters.bapenda",
            str(folder),
            "--batch-size",
            "250",
            "--settle-seconds",
            "0",
        ],
        cwd=ROOT,
        env={**os.environ, "SIMPUL_REDIS_URL": redis_url},
        stderr=subprocess.PIPE,
    )


@pytest.mark.slow
def test_sigkill_during_a_drop_leaves_one_entry_per_row_and_every_file_done(
    tmp_path: Path, redis_url: str
) -> None:
    files = write_drop(tmp_path, RECORDS, files=3, seed=77, encoding="cp1252")
    expected = {r["nomor_bukti_bayar"] for r in rows(RECORDS, seed=77)}
    redis = SyncRedis.from_url(redis_url)
    kill_repeatedly(
        lambda: start(tmp_path, redis_url), redis, STREAM, records=RECORDS, kills=KILLS, seed=5_2026
    )

    entries: Any = redis.xrange(STREAM)
    refs = [json.loads(f[b"data"])["payment_ref"] for _, f in entries]
    assert len(refs) == len(set(refs)) == RECORDS
    assert set(refs) == expected
    assert os.listdir(tmp_path / "incoming") == []
    done = sorted(os.listdir(tmp_path / "done"))
    assert done == sorted([f.name for f in files] + [f"{f.name}.report.json" for f in files])
    reports = [json.loads((tmp_path / "done" / f"{f.name}.report.json").read_text()) for f in files]
    assert sum(r["rows"] for r in reports) == RECORDS
    assert all(r["quarantined"] == 0 for r in reports)
    redis.close()
