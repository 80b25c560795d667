"""Prototypes of publish-path optimisations, measured against the current Publisher.

    .venv/bin/python -m bench.experiments [--runs 3] [--n 50000]

Nothing here changes bus/: each variant subclasses Publisher in this file, so the bus owner can
see what a change would buy before making it. Variants, each on top of the previous:

* ``current``: ``Publisher.publish_many`` as it is (one EVALSHA of publish.lua per event).
* ``batched_lua``: one EVALSHA per stream per batch, a script looping over the batch's events
  (same checks and writes per event; the dedupe keys are still declared in KEYS, so it stays
  valid on Redis Cluster, where they share the stream's hash tag).
* ``lean_client``: also no re-validation of the dump, the time formatted once per batch and no
  per-event debug log call.
"""

from __future__ import annotations

import argparse
import asyncio
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from importlib.resources import files
from typing import Any

from bench import throughput
from bench.common import BATCH, STREAM, Meter, Payloads, Target, median
from bus import Envelope, Publisher, keys
from bus.contracts import Contract
from bus.envelope import format_time
from bus.logging import configure
from bus.publisher import Published

# The batched script the prototype proposed is now bus/publish_batch.lua: read it from there.
BATCH_SCRIPT = files("bus").joinpath("publish_batch.lua").read_text()


class BatchedLuaPublisher(Publisher):
    """One script call per stream per batch instead of one per event."""

    _batch_sha: str | None = None

    async def publish_many(self, events: Iterable[Contract | Envelope]) -> list[Published]:
        envelopes = [self._wrap(e, {}) for e in events]
        return await self._send(envelopes)

    async def _send(self, envelopes: list[Envelope]) -> list[Published]:
        if not envelopes:
            return []
        if self._batch_sha is None:
            self._batch_sha = await self.redis.script_load(BATCH_SCRIPT)
        now_ms = int(datetime.now(UTC).timestamp() * 1000)
        by_stream: dict[str, list[Envelope]] = {}
        for envelope in envelopes:
            by_stream.setdefault(envelope.stream, []).append(envelope)
        async with self.redis.pipeline(transaction=False) as pipe:
            for stream, group in by_stream.items():
                minid = self.retention.minid(keys.aggregate_of(group[0].type), now_ms)
                seen = [keys.seen(stream, e.id) for e in group]
                args: list[str] = [self._dedupe_ttl_ms, minid]
                for envelope in group:
                    fields = envelope.to_fields()
                    args.append(str(2 * len(fields)))
                    for name, value in fields.items():
                        args += (name, value)
                pipe.evalsha(self._batch_sha, 1 + len(seen), stream, *seen, *args)
            replies: list[list[Any]] = await pipe.execute()
        results = []
        for (stream, group), reply in zip(by_stream.items(), replies, strict=True):
            for i, envelope in enumerate(group):
                added, entry = reply[2 * i], reply[2 * i + 1]
                results.append(Published(envelope.id, stream, entry.decode(), not added))
        return results


class LeanPublisher(BatchedLuaPublisher):
    """Also: validate once (pydantic built the object), one timestamp per batch, no debug log."""

    async def publish_many(self, events: Iterable[Contract | Envelope]) -> list[Published]:
        now = format_time(datetime.now(UTC))
        envelopes = []
        for event in events:
            if isinstance(event, Envelope):
                envelopes.append(event)
                continue
            info = type(event).__contract__
            envelopes.append(
                Envelope(
                    id=str(uuid.uuid4()),
                    source=self.source,
                    type=info.event_type,
                    time=now,
                    dataschema=info.dataschema,
                    data=event.model_dump_json(),
                )
            )
        return await self._send(envelopes)


async def _publish(
    target: Target, payloads: Payloads, n: int, cls: type[Publisher]
) -> dict[str, float]:
    await target.reset()
    redis = target.client()
    publisher = cls(redis, source=payloads.publisher.source)
    try:
        await publisher.publish_many([payloads.model(0)])  # loads the script: not timed
        await target.reset()
        async with Meter(redis, n) as meter:
            for start in range(0, n, BATCH):
                batch = [payloads.model(i) for i in range(start, min(start + BATCH, n))]
                await publisher.publish_many(batch)
        return meter.result
    finally:
        await redis.aclose()


async def main(runs: int, n: int) -> None:
    variants = {
        "raw pipelined XADD": None,
        "current publish_many": Publisher,
        "batched_lua": BatchedLuaPublisher,
        "lean_client + batched_lua": LeanPublisher,
    }
    with Target.open() as target:
        payloads = Payloads(target.client())
        results: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
        for _ in range(runs):
            for name, cls in variants.items():
                if cls is None:
                    result = await throughput.publish_raw(target, payloads, n)
                else:
                    result = await _publish(target, payloads, n, cls)
                results[name].append(result)
        # check the prototype writes what the real one writes
        redis = target.client()
        last: Any = await redis.xrevrange(STREAM, count=1)
        Envelope.from_fields(last[0][1])
        await redis.aclose()
    raw = median([r["rate"] for r in results["raw pipelined XADD"]])
    print(f"{'variant':<28} {'events/s':>9} {'vs raw':>7} {'client µs/ev':>13} {'Redis µs/ev':>12}")
    for name, rows in results.items():
        rate = median([r["rate"] for r in rows])
        client = median([r["client_us"] for r in rows])
        server = median([r["redis_us"] for r in rows])
        print(f"{name:<28} {rate:>9,.0f} {rate / raw:>7.0%} {client:>13.1f} {server:>12.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.experiments")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--n", type=int, default=50_000)
    args = parser.parse_args()
    configure(level="warning", fmt="json")
    asyncio.run(main(args.runs, args.n))
