"""The source-kind contract for CSV drop folders, through the Bapenda adapter."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from adapters import bapenda
from adapters.bapenda.fixtures import rows, write_csv
from tests.adapters.contract import check_kind

Row = dict[str, str]


@dataclass
class CsvKind:
    """Each feed is a new nightly export in incoming/; settling is one pass over the folder."""

    folder: Path
    redis: Redis
    name: str = "csv"
    adapter: str = bapenda.NAME
    streams: tuple[str, ...] = ("bapenda.payment",)
    fed: list[Path] = field(default_factory=list)

    def good(self, count: int, *, seed: int) -> list[Any]:
        return list(rows(count, seed=seed, first_no=seed * 1_000))

    def bad(self) -> Any:
        row = next(rows(1, seed=99, first_no=99_000))
        return {**row, "jenis_pajak": "PBB-P2", "nop": "35.73.050"}  # a cut NOP

    def corrected(self, record: Any) -> Any:
        return {**record, "versi": str(int(record["versi"]) + 1), "saluran_bayar": "TELLER"}

    async def feed(self, records: list[Any]) -> None:
        incoming = self.folder / "incoming"
        incoming.mkdir(parents=True, exist_ok=True)
        self.fed.append(write_csv(incoming / f"pembayaran_{len(self.fed):03d}.csv", records))

    async def settle(self) -> None:
        await bapenda.adapter(self.redis, self.folder, settle_seconds=0).run_once()


async def test_csv_drop_folder_honours_the_source_contract(tmp_path: Path, redis: Redis) -> None:
    kind = CsvKind(tmp_path, redis)
    await check_kind(kind, redis)
    assert not list((tmp_path / "incoming").iterdir())
    assert len(list((tmp_path / "done").glob("*.report.json"))) == len(kind.fed)
