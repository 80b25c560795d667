"""The README's adapter and service snippets run as written."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from bus import Service
from bus.testing import deliver, quick_settings, wait_until
from schemas.dukcapil import CitizenDied

README = (Path(__file__).parent.parent / "README.md").read_text()
ADAPTER, SERVICE = re.findall(r"```python\n(.*?)```", README, flags=re.S)[:2]
ROWS = [
    {
        "id": 7,
        "versi": 1,
        "nik": "3573014506900001",
        "tgl_meninggal": "2026-11-01",
        "kode_kecamatan": "35.73.01",
    },
    {
        "id": 8,
        "versi": 1,
        "nik": "3573010101500002",
        "tgl_meninggal": "2026-11-02",
        "kode_kecamatan": "35.73.05",
    },
]


async def test_readme_adapter_publishes_each_row_once(redis_url: str, redis: Any) -> None:
    namespace: dict[str, Any] = {}
    exec(ADAPTER, namespace)
    await namespace["publish"](ROWS, redis_url)
    await namespace["publish"](ROWS, redis_url)  # a re-run publishes nothing new
    entries = await redis.xrange("simpul:{dukcapil.citizen}")
    assert len(entries) == 2
    assert {fields[b"type"] for _, fields in entries} == {b"dukcapil.citizen.died.v1"}


async def test_readme_service_handles_an_event(redis_url: str, redis: Any) -> None:
    namespace: dict[str, Any] = {}  # the README's file runs as it stands: nothing supplied
    exec(SERVICE, namespace)
    service: Service = namespace["service"]
    suspended: dict[str, str] = namespace["suspended"]
    died = CitizenDied(nik="3573014506900001", date_of_death="2026-11-01", kecamatan="35.73.01")
    await deliver(service, died)  # in memory
    assert suspended == {"3573014506900001": "died 2026-11-01"}

    service.settings = quick_settings(redis_url)  # and through Redis, with once=True
    adapter: dict[str, Any] = {}
    exec(ADAPTER, adapter)
    async with service.running():
        await adapter["publish"](ROWS, redis_url)
        await wait_until(lambda: "3573010101500002" in suspended)
    assert suspended == {
        "3573014506900001": "died 2026-11-01",
        "3573010101500002": "died 2026-11-02",
    }
