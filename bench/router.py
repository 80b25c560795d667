"""The router's cost (decision 0011), side by side with the direct path, in one run.

    .venv/bin/python -m bench.router [--events N] [--rate R] [--seconds S]

* throughput: N signed deaths waiting in an intake, routed (admission: signature, contract;
  fan-out to the 5 subscriptions of deaths, each projected and router-signed) against a raw loop
  doing the same copies with XREADGROUP + XADD (+ XACK), no checks;
* end-to-end p99 at R events/s for S seconds: publish -> router -> inbox read, against publish ->
  the department stream read (today's direct path), both by a plain XREAD reader;
* memory per retained event with three subscriptions (identity.account.linked.v1: profile,
  notifier, audit): used_memory per event direct, routed, and routed once the groups acked and
  the inboxes were trimmed.

A private EmbeddedRedis (no ACL: the ACL's cost is not measured here).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from bus import keys
from bus.access.topology import Topology, contracts
from bus.connection import connect
from bus.contracts import default_registry
from bus.local.redis import EmbeddedRedis
from bus.publisher import Publisher
from bus.router import Router, RouterConfig, trim_inbox
from bus.signing import KeyRing, Signer
from schemas.dukcapil import CitizenDied
from schemas.identity import AccountLinked

ROOT = Path(__file__).parent.parent
PRODUCER = "adapter-dukcapil"
IDENTITY = "adapter-identitas"


def _topology() -> Topology:
    document = yaml.safe_load((ROOT / "deploy/topology.yaml").read_text())
    document["delivery"] = "router"
    return Topology.parse(document, registry=contracts())


def _example(model: Any) -> Any:
    folder = ROOT / "schemas/examples" / model.__contract__.event_type
    return model.parse(sorted(folder.glob("valid-*.json"))[0].read_text())


def _signer(topology: Topology, principal: str) -> Signer:
    if principal == "router":
        assert topology.router is not None
        key_id = topology.router.keys[0].id
    else:
        key_id = next(k.key_id for k in topology.signing_keys() if k.principal == principal)
    return Signer.from_file(ROOT / "deploy/keys" / f"{key_id}.key", key_id)


def _router(redis: Any, topology: Topology, **config: Any) -> Router:
    return Router(
        redis,
        topology,
        default_registry,
        keyring=KeyRing(topology.signing_keys()),
        signer=_signer(topology, "router"),
        config=RouterConfig(**{"block_ms": 20, "batch_size": 200, "trim_every_s": 3600, **config}),
    )


async def _drain(router: Router, sources: list[str]) -> None:
    """Route until every source has nothing new or pending (one replica, no leases' waits)."""
    for source in sources:
        await router._ensure_group(source)
    while True:
        busy = False
        for source in sources:
            entries = await router._read(source, ">", block=None)
            if entries:
                await router.route(source, entries)
                busy = True
        if not busy:
            return


async def throughput(redis: Any, topology: Topology, events: int) -> dict[str, float]:
    publisher = Publisher(
        redis, source="urn:bench", signer=_signer(topology, PRODUCER), intake=PRODUCER
    )
    example = _example(CitizenDied)
    for i in range(0, events, 500):
        await publisher.publish_many(
            [publisher.envelope(example, id=f"t-{k}") for k in range(i, min(i + 500, events))]
        )
    intake, stream = keys.intake(PRODUCER), keys.stream("dukcapil.citizen")
    raw_entries = await redis.xrange(intake)  # the same entries, for the raw loop
    router = _router(redis, topology)
    started = time.perf_counter()
    await _drain(router, [intake])
    await _drain(router, [stream])
    routed_s = time.perf_counter() - started
    inboxes = [r.inbox for r in router.routes[stream]["dukcapil.citizen.died.v1"]]
    assert all([await redis.xlen(i) == events for i in inboxes]), "router lost events"
    # The raw loop: read a copy of the intake as a group, XADD each entry to a stream and to
    # the same number of inboxes, ack; pipelined per batch, no checks at all.
    copy, out = "bench:raw:intake", "bench:raw:stream"
    for i in range(0, len(raw_entries), 500):
        async with redis.pipeline(transaction=False) as pipe:
            for _, fields in raw_entries[i : i + 500]:
                pipe.xadd(copy, fields)
            await pipe.execute()
    await redis.xgroup_create(copy, "raw", "0")
    started = time.perf_counter()
    while True:
        reply = await redis.xreadgroup("raw", "c", {copy: ">"}, count=200)
        if not reply:
            break
        batch = reply[0][1]
        async with redis.pipeline(transaction=False) as pipe:
            for _, fields in batch:
                pipe.xadd(out, fields)
                for n in range(len(inboxes)):
                    pipe.xadd(f"bench:raw:inbox:{n}", fields)
            pipe.xack(copy, "raw", *(e for e, _ in batch))
            await pipe.execute()
    raw_s = time.perf_counter() - started
    return {
        "events": events,
        "fan_out": len(inboxes),
        "router_per_s": events / routed_s,
        "raw_per_s": events / raw_s,
        "ratio": raw_s / routed_s,
    }


async def latency(redis: Any, topology: Topology, rate: int, seconds: float) -> dict[str, float]:
    example = _example(CitizenDied)
    stream = keys.stream("dukcapil.citizen")
    results = {}
    for mode in ("direct", "routed"):
        await redis.flushall()
        publisher = Publisher(
            redis,
            source="urn:bench",
            signer=_signer(topology, PRODUCER),
            intake=PRODUCER if mode == "routed" else None,
        )
        watched = keys.inbox(stream, "dinsos") if mode == "routed" else stream
        sent: dict[bytes, float] = {}
        delays: list[float] = []
        router = _router(redis, topology, block_ms=5, lease_ms=10_000)
        task = asyncio.create_task(router.run()) if mode == "routed" else None
        reader_redis = connect(_url(redis))
        total = int(rate * seconds)

        async def read(
            watched: str = watched,
            total: int = total,
            delays: list[float] = delays,
            sent: dict[bytes, float] = sent,
            reader_redis: Any = reader_redis,
        ) -> None:
            last = "0-0"
            while len(delays) < total:
                reply = await reader_redis.xread({watched: last}, block=200, count=500)
                for _, entries in reply or []:
                    for entry, fields in entries:
                        last = entry
                        at = sent.get(fields[b"id"])
                        if at is not None:
                            delays.append(time.perf_counter() - at)

        reader = asyncio.create_task(read())
        await asyncio.sleep(0.5)  # the router's groups and leases in place
        start = time.perf_counter()
        for i in range(total):
            due = start + i / rate
            pause = due - time.perf_counter()
            if pause > 0:
                await asyncio.sleep(pause)
            event_id = f"l-{mode}-{i}"
            sent[event_id.encode()] = time.perf_counter()
            await publisher.publish(example, id=event_id)
        await asyncio.wait_for(reader, 60)
        if task is not None:
            router.stop()
            await task
        await reader_redis.aclose()
        delays.sort()
        results[f"{mode}_p50_ms"] = statistics.median(delays) * 1000
        results[f"{mode}_p99_ms"] = delays[int(len(delays) * 0.99) - 1] * 1000
    results["p99_ratio"] = results["routed_p99_ms"] / results["direct_p99_ms"]
    return results


async def memory(redis: Any, topology: Topology, events: int) -> dict[str, float]:
    example = _example(AccountLinked)
    stream = keys.stream("identity.account")
    out: dict[str, float] = {}
    await redis.flushall()
    base = (await redis.info("memory"))["used_memory"]
    direct = Publisher(redis, source="urn:bench", signer=_signer(topology, IDENTITY), intake=None)
    for i in range(0, events, 500):
        await direct.publish_many(
            [direct.envelope(example, id=f"m-{k}") for k in range(i, min(i + 500, events))]
        )
    out["direct_bytes_per_event"] = ((await redis.info("memory"))["used_memory"] - base) / events
    await redis.flushall()
    base = (await redis.info("memory"))["used_memory"]
    routed = Publisher(
        redis, source="urn:bench", signer=_signer(topology, IDENTITY), intake=IDENTITY
    )
    for i in range(0, events, 500):
        await routed.publish_many(
            [routed.envelope(example, id=f"m-{k}") for k in range(i, min(i + 500, events))]
        )
    router = _router(redis, topology)
    await _drain(router, [keys.intake(IDENTITY)])
    await _drain(router, [stream])
    routes = router.routes[stream]["identity.account.linked.v1"]
    out["subscriptions"] = len(routes)
    out["routed_bytes_per_event"] = ((await redis.info("memory"))["used_memory"] - base) / events
    for route in routes:  # every group reads and acks everything; the router trims
        await redis.xgroup_create(route.inbox, route.group, "0")
        while reply := await redis.xreadgroup(route.group, "c", {route.inbox: ">"}, count=1000):
            await redis.xack(route.inbox, route.group, *(e for e, _ in reply[0][1]))
        await trim_inbox(redis, route.inbox, route.group)
    out["routed_trimmed_bytes_per_event"] = (
        (await redis.info("memory"))["used_memory"] - base
    ) / events
    return out


def _url(redis: Any) -> str:
    kwargs = redis.connection_pool.connection_kwargs
    return f"redis://{kwargs['host']}:{kwargs['port']}/0"


async def main(events: int, rate: int, seconds: float) -> dict[str, Any]:
    topology = _topology()
    with (
        tempfile.TemporaryDirectory() as folder,
        EmbeddedRedis(Path(folder), appendfsync="everysec") as server,
    ):
        redis = connect(server.url)
        try:
            results = {"throughput": await throughput(redis, topology, events)}
            await redis.flushall()
            results["latency"] = await latency(redis, topology, rate, seconds)
            results["memory"] = await memory(redis, topology, events)
        finally:
            await redis.aclose()
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.router")
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--rate", type=int, default=1_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    found = asyncio.run(main(args.events, args.rate, args.seconds))
    for section, values in found.items():
        print(section)
        for name, value in values.items():
            print(f"  {name}: {value:,.2f}")
