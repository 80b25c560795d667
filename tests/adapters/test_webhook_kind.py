"""The source-kind contract test for webhooks: the dpmptsp adapter over a real socket and Redis."""

from __future__ import annotations

from typing import Any

import httpx
from redis.asyncio import Redis

from adapters import dpmptsp
from adapters.dpmptsp.fixtures import as_form, payloads
from bus.adapter.sources.webhook import running
from tests.adapters.contract import Kind, check_kind

TOKEN = "webhook-kind-token-0123"


class WebhookKind:
    """Feeding is POSTing; the answer comes once the record is published or quarantined, so
    there is nothing to settle. Records alternate JSON and form bodies."""

    name = "webhook"
    adapter = dpmptsp.NAME
    streams: tuple[str, ...] = ("dpmptsp.permit",)

    def __init__(self, client: httpx.AsyncClient, url: str) -> None:
        self.client = client
        self.url = url

    def good(self, count: int, *, seed: int) -> list[dict[str, Any]]:
        return list(payloads(count, seed=seed, first_no=seed * 1000))

    def bad(self) -> dict[str, Any]:
        record = next(payloads(1, seed=99, first_no=99_000))
        return {**record, "nik_pemohon": record["nik_pemohon"][:15], "nib": ""}

    def corrected(self, record: dict[str, Any]) -> dict[str, Any]:
        return {**record, "revisi": record["revisi"] + 1, "alamat_lokasi": "Jl. Ijen No. 1"}

    async def feed(self, records: list[dict[str, Any]]) -> None:
        for i, record in enumerate(records):
            if i % 2:
                answer = await self.client.post(
                    self.url,
                    content=as_form(record),
                    headers={"content-type": "application/x-www-form-urlencoded"},
                )
            else:
                answer = await self.client.post(self.url, json=record)
            assert answer.status_code in (200, 201, 422), answer.text

    async def settle(self) -> None:
        return None


async def test_the_webhook_kind_honours_the_source_contract(redis: Redis) -> None:
    app = dpmptsp.webhook(redis, token=TOKEN).app()
    async with (
        running(app) as url,
        httpx.AsyncClient(headers={"authorization": f"Bearer {TOKEN}"}, timeout=10) as client,
    ):
        kind: Kind = WebhookKind(client, url)
        await check_kind(kind, redis)
