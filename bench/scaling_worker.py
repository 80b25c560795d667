"""One consumer replica of bench/scaling.py, in a process of its own (as ``simpul run`` starts one).

    python -m bench.scaling_worker --url URL --mode simpul|raw --consumer NAME [--partitions K]

Starts consuming at once and prints ``ready``; counts its CPU time from the first line on stdin
(bench/scaling.py's "go") until stdin's end, then stops and prints one JSON line: those CPU
seconds and the entries it handled. Both read the group ``bench`` with XREADGROUP COUNT 100:
``raw`` is bench/throughput.py's hand-written loop (validate ``data``, one XACK per batch) on
every stream of the aggregate (with K partitions: all K, whoever else reads them); ``simpul``
one :class:`bus.Service` with a trivial handler, reading what bus/ gives it (on partitions:
those its leases hold, bus/partitions.py).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import sys
import time
import types
from typing import Any

from redis.asyncio import Redis

from bench.common import BATCH
from bench.contract import CitizenRecorded
from bus import Classification, Contract, Service, Settings
from bus.logging import configure

GROUP = "bench"
STOP_S = 20.0  # bench/scaling.py waits 30 s for a stopped replica's report


@functools.cache
def citizen_contract(partitions: int) -> type[Contract]:
    """The bench event on ``partitions`` partition streams: 1 is ``bench.citizen.recorded.v1``
    itself; k > 1 the same contract as ``bench.citizen<k>.recorded.v1``, declared with
    ``partitions=k`` (an aggregate's partition count is fixed by its contracts, so each layout
    needs an aggregate of its own): its streams are ``simpul:{bench.citizen<k>.p<p>}``."""
    if partitions == 1:
        return CitizenRecorded
    model: type[Contract] = types.new_class(
        f"CitizenRecorded{partitions}",
        (CitizenRecorded,),
        {
            "event_type": f"bench.citizen{partitions}.recorded.v1",
            "owner": "bench",
            "classification": Classification.PERSONAL,
            "partitions": partitions,
        },
    )
    model.__module__ = __name__
    return model


# -- the two replicas ---------------------------------------------------------------------------


class Replica:
    def __init__(self, url: str, consumer: str, partitions: int) -> None:
        self.url, self.consumer = url, consumer
        self.model = citizen_contract(partitions)
        self.streams = self.model.__contract__.streams
        self.handled = 0

    async def consume(self, started: asyncio.Event, stop: asyncio.Event) -> None:
        """Consume from now on; set ``started`` once consuming, return after ``stop``."""
        raise NotImplementedError


class RawReplica(Replica):
    """bench/throughput.py's consume_raw loop, until stopped."""

    async def consume(self, started: asyncio.Event, stop: asyncio.Event) -> None:
        redis = Redis.from_url(self.url, decode_responses=False)
        started.set()
        try:
            # Not cancelled: a cancelled XREADGROUP BLOCK can leave redis-py waiting forever
            # for its reply. The loop sees ``stop`` after at most one block (2 s).
            await self._loop(redis, stop)
        finally:
            await redis.aclose()

    async def _loop(self, redis: Redis, stop: asyncio.Event) -> None:
        model = self.model
        fresh = dict.fromkeys(self.streams, ">")
        while not stop.is_set():
            reply: Any = await redis.xreadgroup(
                GROUP,
                self.consumer,
                fresh,  # type: ignore[arg-type]
                count=BATCH,
                block=2_000,
            )
            for stream, entries in reply or []:
                ids = []
                for entry_id, data in entries:
                    model.model_validate_json(data[b"data"])
                    ids.append(entry_id)
                self.handled += len(ids)  # before the ack, like Simpul's handler
                await redis.xack(stream, GROUP, *ids)


class SimpulReplica(Replica):
    """One bus.Service (production settings, batch 100) with a trivial handler."""

    async def consume(self, started: asyncio.Event, stop: asyncio.Event) -> None:
        # Unsigned entries, verification off (bench/throughput.py's simpul_settings says why).
        settings = Settings.load(
            redis_url=self.url,
            batch_size=BATCH,
            consumer=self.consumer,
            log_level="warning",
            signatures="off",
        )
        service = Service(GROUP, settings=settings)

        @service.on(self.model)
        async def count(event: Contract) -> None:
            self.handled += 1

        async with service.running():
            started.set()
            await stop.wait()
        if service.health.counters.get("dead_lettered", 0):
            raise AssertionError("entries were dead-lettered: the benchmark is wrong")


async def serve(replica: Replica) -> dict[str, float]:
    """Consume at once (bench/scaling.py opens the group's backlog when all replicas are in
    place), say ``ready``; the first stdin line marks where CPU counting starts, its end stops."""
    started, stop = asyncio.Event(), asyncio.Event()
    consuming = asyncio.create_task(replica.consume(started, stop))
    await asyncio.wait(
        [consuming, asyncio.create_task(started.wait())], return_when="FIRST_COMPLETED"
    )
    if consuming.done():
        consuming.result()  # raises what stopped it
        raise RuntimeError("the replica stopped before it started consuming")
    print("ready", flush=True)
    cpu0 = _cpu_s() if await asyncio.to_thread(sys.stdin.readline) else None
    while await asyncio.to_thread(sys.stdin.readline):
        pass
    cpu1 = _cpu_s()
    stop.set()
    try:
        await asyncio.wait_for(asyncio.shield(consuming), STOP_S)
    except TimeoutError:  # a stuck stop shows where, in the replica's log
        print(f"{type(replica).__name__} did not stop in {STOP_S:.0f} s", file=sys.stderr)
        for task in asyncio.all_tasks():
            task.print_stack(file=sys.stderr)
        raise
    return {"cpu_s": cpu1 - cpu0 if cpu0 is not None else 0.0, "handled": replica.handled}


def _cpu_s() -> float:
    return time.process_time()  # all threads, ns resolution (os.times: 10 ms ticks)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.scaling_worker")
    parser.add_argument("--url", required=True)
    parser.add_argument("--mode", choices=("raw", "simpul"), required=True)
    parser.add_argument("--consumer", required=True)
    parser.add_argument("--partitions", type=int, default=1)
    args = parser.parse_args(argv)
    configure(level="warning", fmt="json")
    kind = RawReplica if args.mode == "raw" else SimpulReplica
    result = asyncio.run(serve(kind(args.url, args.consumer, args.partitions)))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
