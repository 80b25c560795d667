"""One contract every kind of adapter source must honour (SQL polling, webhook, CSV drop folder).

Each kind provides a :class:`Kind` harness over its own reference adapter; ``check_kind`` runs
the same scenario against it on real Redis: good records become exactly one event each, a
replay adds nothing, a bad record lands in the quarantine with its reason while the rest
flows, and a record seen again in a new version is a new event.
"""

from __future__ import annotations

from typing import Any, Protocol

from redis.asyncio import Redis

from bus import keys


class Kind(Protocol):
    """A source kind wired to its reference adapter, over one real Redis."""

    name: str  # "sql", "webhook", "csv"
    adapter: str  # the adapter's name: its quarantine and checkpoint
    streams: tuple[str, ...]  # the aggregate streams its events land on

    def good(self, count: int, *, seed: int) -> list[Any]:
        """``count`` legacy records that map, each with a distinct key (version 1)."""

    def bad(self) -> Any:
        """One legacy record that cannot map (e.g. a 15-digit NIK)."""

    def corrected(self, record: Any) -> Any:
        """The same record in its next version (a correction in the legacy app)."""

    async def feed(self, records: list[Any]) -> None:
        """Put records where the adapter reads them (rows, a CSV file, webhook POSTs)."""

    async def settle(self) -> None:
        """Let the adapter process everything fed so far (a pass, a folder scan, nothing)."""


async def _events(redis: Redis, kind: Kind) -> list[bytes]:
    ids = []
    for aggregate in kind.streams:
        ids += [fields[b"id"] for _, fields in await redis.xrange(keys.stream(aggregate))]
    return ids


async def check_kind(kind: Kind, redis: Redis) -> None:
    records = kind.good(20, seed=11)
    await kind.feed(records)
    await kind.settle()
    first = await _events(redis, kind)
    assert len(first) == len(set(first)) == 20, f"{kind.name}: one event per record"

    await kind.feed(records)  # the legacy app sends (or exports) the same records again
    await kind.settle()
    assert await _events(redis, kind) == first, f"{kind.name}: a replay publishes nothing"

    await kind.feed([kind.bad(), *kind.good(3, seed=12)])
    await kind.settle()
    assert len(await _events(redis, kind)) == 23, f"{kind.name}: the good ones flow past a bad one"
    assert await redis.xlen(keys.quarantine(kind.adapter)) == 1, f"{kind.name}: bad one quarantined"

    await kind.feed([kind.corrected(records[0])])
    await kind.settle()
    assert len(await _events(redis, kind)) == 24, f"{kind.name}: a new version is a new event"
