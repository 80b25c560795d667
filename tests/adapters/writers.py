"""Concurrent SIAK writers that commit out of order, as PHP apps do, and what reached the bus.

Each writer runs multi-statement transactions with think time in between (insert, a second
query or some work, commit), so transactions commit in another order than their ids, their
``updated_at`` stamps and their outbox ids were taken in.
"""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from datetime import datetime
from typing import Any

import psycopg
from redis.asyncio import Redis

from adapters import dukcapil
from adapters.dukcapil.fixtures import as_params, rows
from adapters.dukcapil.schema import insert_sql
from bus import event_id, keys

STREAM = keys.stream("dukcapil.citizen")
Version = tuple[int, int]  # (id_peristiwa, versi)


def now_wib() -> datetime:
    """How SIAK stamps updated_at: the application's clock, local time, no zone."""
    return datetime.now(dukcapil.WIB).replace(tzinfo=None)


async def write(url: str, *, writer: int, transactions: int, seed: int) -> list[Version]:
    """One writer's transactions; returns the row versions it committed."""
    rng = random.Random(seed * 100 + writer)
    fresh = rows(transactions * 2, seed=seed + writer, first_id=(writer + 1) * 100_000)
    mine: dict[int, int] = {}  # id_peristiwa -> versi committed
    committed: list[Version] = []
    async with await psycopg.AsyncConnection.connect(url) as conn:
        for _ in range(transactions):
            written: list[Version] = []
            async with conn.transaction():
                for _ in range(rng.choice((1, 1, 2))):
                    if mine and rng.random() < 0.4:
                        written.append(await _update(conn, rng, mine))
                    else:
                        row = {**next(fresh), "updated_at": now_wib()}
                        await conn.execute(
                            insert_sql("postgresql"),  # type: ignore[arg-type]
                            as_params(row, "postgresql"),
                        )
                        written.append((row["id_peristiwa"], 1))
                    await asyncio.sleep(rng.uniform(0.0, 0.03))  # the PHP request's other work
            for key, versi in written:
                mine[key] = versi
            committed += written
    return committed


async def _update(
    conn: psycopg.AsyncConnection[Any], rng: random.Random, mine: dict[int, int]
) -> Version:
    key = rng.choice(list(mine))
    versi = mine[key] + 1
    mine[key] = versi  # within the transaction; the caller keeps it only if it commits
    await conn.execute(
        "UPDATE peristiwa SET versi = %s, alamat = %s, updated_at = %s WHERE id_peristiwa = %s",
        [versi, f"Jl. Kawi No. {versi}, Malang", now_wib(), key],
    )
    return (key, versi)


async def write_concurrently(
    url: str, *, writers: int, transactions: int, seed: int
) -> list[Version]:
    done = await asyncio.gather(
        *(write(url, writer=w, transactions=transactions, seed=seed) for w in range(writers))
    )
    return [version for committed in done for version in committed]


async def published(redis: Redis, versions: list[Version]) -> list[Version]:
    """The row versions on the stream, in stream order (unknown ids fail the lookup)."""
    by_id = {event_id(dukcapil.SOURCE, dukcapil.TABLE, k, v): (k, v) for k, v in versions}
    entries = await redis.xrange(STREAM)
    return [by_id.get(f[b"id"].decode(), (-1, -1)) for _, f in entries]


def assert_each_version_once_latest_last(stream: list[Version], committed: list[Version]) -> None:
    assert len(stream) == len(set(stream)), "a row version was published twice"
    missing = set(committed) - set(stream)
    assert not missing, f"{len(missing)} of {len(committed)} committed row versions never published"
    assert set(stream) == set(committed), "something was published that was never committed"
    last: dict[int, int] = defaultdict(int)
    for key, versi in stream:
        assert versi > last[key], f"row {key}: version {versi} published after {last[key]}"
        last[key] = versi
