"""The CSV drop folder source, through the Bapenda adapter, on a real Redis."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from adapters import bapenda
from adapters.bapenda.fixtures import rows, write_csv
from bus import keys
from bus.adapter.checkpoint import RedisCheckpoints
from bus.adapter.quarantine import Quarantine
from bus.adapter.sources.csvdrop import CsvDropSource
from bus.errors import ConfigurationError

STREAM = keys.stream("bapenda.payment")
HEADER = ";".join(bapenda.COLUMNS)


def runner(redis: Redis, folder: Path, **options: Any) -> Any:
    return bapenda.adapter(redis, folder, settle_seconds=0, **options)


def line(row: dict[str, str], delimiter: str = ";") -> str:
    return delimiter.join(row[c] for c in bapenda.COLUMNS)


def drop(folder: Path, name: str, body: bytes) -> Path:
    (folder / "incoming").mkdir(parents=True, exist_ok=True)
    path = folder / "incoming" / name
    path.write_bytes(body)
    return path


def report(folder: Path, outcome: str, name: str) -> dict[str, Any]:
    return json.loads((folder / outcome / f"{name}.report.json").read_text())  # type: ignore[no-any-return]


async def payment_refs(redis: Redis) -> list[str]:
    entries: Any = await redis.xrange(STREAM)
    return [json.loads(fields[b"data"])["payment_ref"] for _, fields in entries]


async def problems(redis: Redis) -> list[str]:
    entries = await Quarantine(redis, bapenda.NAME).entries()
    return [p.problem for e in entries for p in e.problems]


async def test_files_in_name_order_each_moved_to_done_with_its_report(
    tmp_path: Path, redis: Redis
) -> None:
    data = list(rows(30, seed=1))
    (tmp_path / "incoming").mkdir()
    write_csv(tmp_path / "incoming" / "b.csv", data[10:])
    write_csv(tmp_path / "incoming" / "a.csv", data[:10])

    progress = await runner(redis, tmp_path, batch_size=7).run_once()

    assert (progress.read, progress.published) == (30, 30)
    refs = await payment_refs(redis)
    assert refs == [r["nomor_bukti_bayar"] for r in data]
    assert sorted(os.listdir(tmp_path / "done")) == [
        "a.csv",
        "a.csv.report.json",
        "b.csv",
        "b.csv.report.json",
    ]
    assert not os.listdir(tmp_path / "incoming")
    got = report(tmp_path, "done", "b.csv")
    assert (got["rows"], got["published"], got["duplicates"], got["quarantined"]) == (20, 20, 0, 0)


async def test_utf8_bom_and_comma_delimiter(tmp_path: Path, redis: Redis) -> None:
    data = [{**r, "jumlah_bayar": "125000"} for r in rows(3, seed=2)]  # no "," in a value
    body = "\n".join([HEADER.replace(";", ","), *(line(r, ",") for r in data)])
    drop(tmp_path, "bom.csv", b"\xef\xbb\xbf" + body.encode())
    assert (await runner(redis, tmp_path, delimiter=",").run_once()).published == 3


async def test_latin1_rows_decode_with_the_fallback(tmp_path: Path, redis: Redis) -> None:
    row = {**next(rows(1, seed=3)), "nama_wp": "Kafé Ijen"}
    drop(tmp_path, "win.csv", f"{HEADER}\r\n{line(row)}\r\n".encode("latin-1"))
    progress = await runner(redis, tmp_path, fallback_encoding="latin-1").run_once()
    assert progress.published == 1


async def test_bad_bytes_are_quarantined_with_the_reason(tmp_path: Path, redis: Redis) -> None:
    good, bad = list(rows(2, seed=4))
    body = f"{HEADER}\n{line(good)}\n".encode() + line(bad).encode().replace(b"Rp", b"") + b"\x81\n"
    drop(tmp_path, "x.csv", body.replace(bad["nama_wp"].encode(), b"Kaf\xe9"))

    progress = await runner(redis, tmp_path, fallback_encoding=None).run_once()

    assert (progress.published, progress.quarantined) == (1, 1)
    (reason,) = await problems(redis)
    assert "row 2" in reason and "is not utf-8" in reason and "0xe9" in reason
    got = report(tmp_path, "done", "x.csv")
    assert (got["rows"], got["published"], got["quarantined"]) == (2, 1, 1)
    entries = await Quarantine(redis, bapenda.NAME).entries()
    assert got["quarantine_entries"] == [e.entry_id for e in entries]


async def test_cp1252_fallback_still_quarantines_bytes_it_cannot_decode(
    tmp_path: Path, redis: Redis
) -> None:
    row = next(rows(1, seed=5))
    drop(tmp_path, "x.csv", f"{HEADER}\n".encode() + line(row).encode() + b"\x81\n")
    assert (await runner(redis, tmp_path).run_once()).quarantined == 1
    assert "utf-8 nor cp1252" in (await problems(redis))[0]


async def test_wrong_field_count_is_quarantined_and_the_rest_flows(
    tmp_path: Path, redis: Redis
) -> None:
    a, b, c = list(rows(3, seed=6))
    drop(tmp_path, "x.csv", "\n".join([HEADER, line(a), line(b) + ";extra", line(c)]).encode())
    progress = await runner(redis, tmp_path).run_once()
    assert (progress.published, progress.quarantined) == (2, 1)
    assert "has 16 field(s), the header 15" in (await problems(redis))[0]


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"no_sspd;versi\nA;1\n", "lacks column(s)"),
        (HEADER.replace(";", ",").encode() + b"\n", "lacks column(s)"),
        (b"", "empty"),
        (b"PK\x03\x04binary", "workbook"),
        ("\ufeff".encode("utf-16-le") + HEADER.encode("utf-16-le"), "UTF-16"),
    ],
)
async def test_unreadable_files_go_to_failed_with_a_report(
    tmp_path: Path, redis: Redis, body: bytes, problem: str
) -> None:
    drop(tmp_path, "bad.csv", body)
    ok = list(rows(2, seed=7))
    write_csv(tmp_path / "incoming" / "ok.csv", ok)

    assert (await runner(redis, tmp_path).run_once()).published == 2

    assert sorted(os.listdir(tmp_path / "failed")) == ["bad.csv", "bad.csv.report.json"]
    got = report(tmp_path, "failed", "bad.csv")
    assert got["status"] == "failed" and problem in got["problem"]


async def test_partial_and_growing_files_are_left_alone(tmp_path: Path, redis: Redis) -> None:
    data = list(rows(3, seed=8))
    drop(tmp_path, "a.csv.part", f"{HEADER}\n{line(data[0])}\n".encode())
    drop(tmp_path, "b.tmp", f"{HEADER}\n{line(data[1])}\n".encode())
    drop(tmp_path, ".c.csv", f"{HEADER}\n{line(data[1])}\n".encode())
    drop(tmp_path, "fresh.csv", f"{HEADER}\n{line(data[2])}\n".encode())

    settled = await bapenda.adapter(redis, tmp_path, settle_seconds=60).run_once()
    assert settled.read == 0
    assert len(os.listdir(tmp_path / "incoming")) == 4

    old = time.time() - 120
    os.utime(tmp_path / "incoming" / "fresh.csv", (old, old))
    assert (await bapenda.adapter(redis, tmp_path, settle_seconds=60).run_once()).published == 1


async def test_resumes_mid_file_from_the_checkpoint(tmp_path: Path, redis: Redis) -> None:
    data = list(rows(10, seed=9))
    write_csv(drop(tmp_path, "a.csv", b"").with_name("a.csv"), data)
    source = CsvDropSource(
        tmp_path,
        name=bapenda.TABLE,
        key="no_sspd",
        version="versi",
        delimiter=";",
        settle_seconds=0,
    )
    first = runner(redis, tmp_path)
    source.attach(first)
    batch = await anext(source.batches(None, size=4))
    await RedisCheckpoints(redis).save(bapenda.NAME, batch[-1].position)

    progress = await first.run_once()

    assert (progress.read, progress.published) == (6, 6)
    refs = await payment_refs(redis)
    assert refs == [r["nomor_bukti_bayar"] for r in data[4:]]
    assert report(tmp_path, "done", "a.csv")["rows"] == 10


async def test_finished_file_still_in_incoming_is_moved_without_reading(
    tmp_path: Path, redis: Redis
) -> None:
    path = write_csv(drop(tmp_path, "a.csv", b""), list(rows(5, seed=10)))
    first = runner(redis, tmp_path)
    await first.run_once()
    (tmp_path / "done" / "a.csv").replace(
        path
    )  # as if killed after the checkpoint, before the move
    (tmp_path / "done" / "a.csv.report.json").unlink()

    again = await runner(redis, tmp_path).run_once()

    assert again.read == 0 and await redis.xlen(STREAM) == 5
    assert report(tmp_path, "done", "a.csv")["rows"] == 5


async def test_a_replaced_file_with_the_same_name_is_read_from_its_start(
    tmp_path: Path, redis: Redis
) -> None:
    data = list(rows(8, seed=11))
    write_csv(drop(tmp_path, "a.csv", b""), data[:4])
    await runner(redis, tmp_path).run_once()
    write_csv(tmp_path / "incoming" / "a.csv", data)  # the next night, same name, more rows

    again = await runner(redis, tmp_path).run_once()

    assert (again.read, again.published, again.duplicates) == (8, 4, 4)
    assert len([n for n in os.listdir(tmp_path / "done") if n.endswith(".csv")]) == 2
    reports = [json.loads(p.read_text()) for p in (tmp_path / "done").glob("*.report.json")]
    assert sorted((r["published"], r["duplicates"]) for r in reports) == [(4, 0), (4, 4)]


async def test_an_unattached_source_refuses_to_run(tmp_path: Path) -> None:
    source = bapenda.source(tmp_path)
    with pytest.raises(ConfigurationError, match="attach"):
        await anext(source.batches(None, size=10))
