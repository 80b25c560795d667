"""``python -m demo``: one adapter publishing, two services consuming, a dead letter shown."""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import timedelta
from typing import Any

from rich.console import Console
from rich.table import Table

from adapters import dukcapil
from bus import ContractViolation, EventContext, Publisher, Retention, Service, keys
from bus.connection import connect
from bus.embedded import redis_url_or_embedded
from bus.logging import configure
from bus.testing import quick_settings, wait_until
from demo.legacy import rows
from schemas.dukcapil import CitizenDied, CitizenMoved
from services import dinsos

console = Console()
STREAM = keys.stream("dukcapil.citizen")

# A second consumer whose storage is "full" for one kecamatan: its events fail every time and
# end in its dead letters after max_deliveries, while everything else flows.
archive = Service("arsip-demo")
archived: list[str] = []


@archive.on(CitizenMoved)
async def archive_move(event: CitizenMoved, ctx: EventContext) -> None:
    if event.kecamatan == "35.73.03":
        raise OSError("archive volume for Kedungkandang is full")
    archived.append(ctx.event_id)


async def publish_legacy(
    publisher: Publisher, table: list[dict[str, Any]]
) -> tuple[int, int, list[str]]:
    events, rejected = [], []
    for row in table:
        try:
            event, event_id = dukcapil.map_record(row)
        except ContractViolation as exc:
            rejected.append(
                f"row {row['id_peristiwa']}: {'; '.join(f'{f}: {p}' for f, p in exc.problems)}"
            )
            continue
        events.append(publisher.envelope(event, id=event_id))
    results = await publisher.publish_many(events)
    return sum(not r.duplicate for r in results), sum(r.duplicate for r in results), rejected


async def run(url: str) -> None:
    redis = connect(url)
    # A fresh start each run: the stream, its dead letters, dedupe markers and groups.
    stale = [key async for key in redis.scan_iter(match=f"{STREAM}*", count=1000)]
    if stale:
        await redis.delete(*stale)
    table = rows(40)
    dinsos.registry.active.update(row["nik"] for row in table)  # everyone receives assistance
    settings = quick_settings(url, max_deliveries=3)
    dinsos.service.settings = archive.settings = settings
    publisher = Publisher(redis, source=dukcapil.SOURCE, retention=Retention(timedelta(days=30)))

    async with dinsos.service.running(url), archive.running(url):
        added, dup, rejected = await publish_legacy(publisher, table)
        console.print(
            f"[bold]dukcapil adapter[/bold] published {added} events from {len(table)} SIAK rows"
        )
        for line in rejected:
            console.print(f"  [yellow]rejected[/yellow] {line}")
        again, dup, _ = await publish_legacy(
            publisher, table
        )  # an adapter restart replays everything
        console.print(f"  replayed the same rows: {again} new, {dup} recognised as duplicates")
        await wait_until(lambda: _settled(redis), timeout=30)
    await summary(redis, table)
    await redis.aclose()


async def _settled(redis: Any) -> bool:
    """Both groups have read everything and hold nothing pending (one XINFO reply: no race)."""
    last = (await redis.xinfo_stream(STREAM))["last-generated-id"]
    groups = await redis.xinfo_groups(STREAM)
    return len(groups) == 2 and all(
        g["last-delivered-id"] == last and g["pending"] == 0 for g in groups
    )


async def summary(redis: Any, table: list[dict[str, Any]]) -> None:
    deaths = sum(
        e[b"type"] == CitizenDied.__contract__.event_type.encode()
        for _, e in await redis.xrange(STREAM)
    )
    services = Table(title="services")
    for column in ("service", "acked", "effect"):
        services.add_column(column)
    services.add_row("dinsos", str(dinsos.service.health.counters.get("acked", 0)),
                     f"{len(dinsos.registry.suspended)} assistance suspended (of {deaths} deaths), "
                     f"{len(dinsos.registry.rechecks)} area re-checks")  # fmt: skip
    services.add_row(
        "arsip-demo",
        str(archive.health.counters.get("acked", 0)),
        f"{len(archived)} moves archived",
    )
    console.print(services)
    dead = Table(title=f"dead letters of arsip-demo ({keys.dead_letters(STREAM, 'arsip-demo')})")
    for column in ("entry", "reason", "attempts", "error"):
        dead.add_column(column)
    for _, fields in await redis.xrange(keys.dead_letters(STREAM, "arsip-demo")):
        dead.add_row(
            *(
                fields[f"dlq.{name}".encode()].decode()
                for name in ("entry", "reason", "attempts", "error")
            )
        )
    console.print(dead)
    console.print(
        "Look yourself:  redis-cli -u $SIMPUL_REDIS_URL XINFO GROUPS 'simpul:{dukcapil.citizen}'"
    )
    console.print("Run a service:  simpul run services.dinsos:service   (see README.md)")


def main() -> None:
    configure(os.environ.get("SIMPUL_LOG_LEVEL", "warning"), "console")
    url = os.environ.get("SIMPUL_REDIS_URL") or None
    with redis_url_or_embedded(url, ".simpul/demo-redis") as resolved:
        console.print(f"[dim]Redis at {resolved}[/dim]")
        asyncio.run(run(resolved))


if __name__ == "__main__":
    sys.exit(main())
