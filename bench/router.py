"""The router's cost (decision 0011), side by side with the direct path, in one run.

    .venv/bin/python -m bench.router [--events N] [--rate R] [--seconds S] [--runs K]

* throughput: N signed deaths waiting in an intake, routed by one replica (admission:
  signature, contract; fan-out to the 5 subscriptions of deaths: the router signs each
  distinct projection once, the audit, approved for every field, gets the original) against
  a raw loop doing the same copies with XREADGROUP + XADD (+ XACK), no checks; K runs,
  alternating, medians. Wall-clock rates, and
  the CPU per event of the client process and of Redis (the stable figures on a shared
  machine);
* end-to-end p99 at R events/s for S seconds: publish -> router -> dinsos' inbox read, against
  publish -> the department stream read (today's direct path), both by a plain XREAD reader in
  the publishing process. The router runs as it is deployed: a process of its own (this module
  with ``--serve``), default settings (reads fenced by the lease behind XREAD BLOCK 500 ms,
  a batch's writes sent with the source's next read, batches of 100), every source of the
  topology; its CPU per routed event is measured too;
* memory per retained event with three subscriptions (identity.account.linked.v1: profile,
  notifier, audit): used_memory per event direct, routed, and routed once the groups acked and
  the inboxes were trimmed.

``--only one`` (not part of the full run): deaths one at a time through a router process, each
awaited in dinsos' inbox before the next (batches of one: the per-batch cost), the router's and
Redis's CPU per death. ``--only`` runs one section; ``SIMPUL_BENCH_PROFILE=<file>`` writes a
cProfile of the served router process.

A private EmbeddedRedis (no ACL: the ACL's cost is not measured here), flushed between
workloads.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from bench.common import Meter, machine_busy_s, median, percentile, progress, redis_cpu_s
from bus import keys
from bus.access.topology import Topology, contracts
from bus.connection import connect
from bus.contracts import Registry
from bus.local.redis import EmbeddedRedis
from bus.publisher import Publisher
from bus.router import Router, RouterConfig, trim_inbox
from bus.signing import KeyRing, Signer
from schemas.dukcapil import CitizenDied
from schemas.identity import AccountLinked

ROOT = Path(__file__).parent.parent
PRODUCER = "adapter-dukcapil"
IDENTITY = "adapter-identitas"
TARGET_RATIO = 0.50  # router throughput >= 50% of the raw copy loop
TARGET_P99 = 2.0  # routed p99 <= 2x the direct path's at 1,000 events/s


def _registry() -> Registry:
    """The city's contracts (schemas/), without the throughput bench's own (bench/contract.py,
    registered when bench.run imports it): the archive of the topology must subscribe to every
    registered type."""
    registry = Registry()
    for model in contracts():
        if model.__module__.startswith("schemas."):
            registry.register(model)
    return registry


def _topology() -> Topology:
    document = yaml.safe_load((ROOT / "deploy/topology.yaml").read_text())
    document["delivery"] = "router"
    return Topology.parse(document, registry=_registry())


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
        _registry(),
        keyring=KeyRing(topology.signing_keys()),
        signer=_signer(topology, "router"),
        config=RouterConfig(**config),
    )


async def _drain(router: Router, sources: list[str]) -> None:
    """Route until every source has nothing new or pending (one replica, no leases' waits)."""
    for source in sources:
        await router._ensure_group(source)
    while True:
        busy = False
        for source in sources:
            # its reads are fenced by the lease: take it, renewed once a third has passed
            assert await router._hold(source), f"{source} is leased to another replica"
            entries = await router._read(source, ">", block=None)
            if entries:
                await router.route(source, entries)
                busy = True
        if not busy:
            return


# -- throughput ---------------------------------------------------------------------------------


async def _fill(redis: Any, topology: Topology, events: int) -> list[Any]:
    """N signed deaths in the producer's intake, and the same entries in the raw loop's."""
    publisher = Publisher(
        redis, source="urn:bench", signer=_signer(topology, PRODUCER), intake=PRODUCER
    )
    example = _example(CitizenDied)
    for i in range(0, events, 500):
        await publisher.publish_many(
            [publisher.envelope(example, id=f"t-{k}") for k in range(i, min(i + 500, events))]
        )
    raw_entries: list[Any] = await redis.xrange(keys.intake(PRODUCER))
    for i in range(0, len(raw_entries), 500):
        async with redis.pipeline(transaction=False) as pipe:
            for _, fields in raw_entries[i : i + 500]:
                pipe.xadd("bench:raw:intake", fields)
            await pipe.execute()
    await redis.xgroup_create("bench:raw:intake", "raw", "0")
    return raw_entries


async def _route_once(redis: Any, topology: Topology, events: int) -> dict[str, float]:
    router = _router(redis, topology, batch_size=100)
    intake, stream = keys.intake(PRODUCER), keys.stream("dukcapil.citizen")
    async with Meter(redis, events) as meter:
        await _drain(router, [intake])
        await _drain(router, [stream])
    inboxes = [r.inbox for r in router.routes[stream]["dukcapil.citizen.died.v1"]]
    assert all([await redis.xlen(i) == events for i in inboxes]), "router lost events"
    return {**meter.result, "fan_out": len(inboxes)}


async def _drain_child(url: str, source: str, expected: int) -> None:
    """``--drain``: one replica (a process) routing one source, as replicas share sources by
    lease; it waits for the ``go`` signal, routes until ``expected`` entries went through, then
    prints its CPU time as JSON."""
    redis = connect(url)
    router = _router(redis, _topology(), batch_size=100, one_hop=False)  # the two stages
    await router._ensure_group(source)
    await redis.blpop(["bench:router:go:" + source], timeout=120)
    cpu0 = time.process_time()
    routed = 0
    while routed < expected:
        assert await router._hold(source), f"{source} is leased to another replica"
        entries = await router._read(source, ">", block=100)
        if entries:
            await router.route(source, entries)
            routed += len(entries)
    print(json.dumps({"cpu_s": time.process_time() - cpu0}), flush=True)
    await redis.aclose()


async def _route_two(redis: Any, url: str, events: int, fan_out: int) -> dict[str, float]:
    """Two replicas, two processes, the two stages a Redis Cluster runs (decision 0014): one
    admits from the intake while the other fans out from the department stream (how replicas
    spread sources). Client CPU is both processes'."""
    intake, stream = keys.intake(PRODUCER), keys.stream("dukcapil.citizen")
    await redis.xgroup_create(stream, keys.ROUTER_GROUP, id="0", mkstream=True)
    children = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.router",
            "--drain",
            url,
            source,
            str(events),
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            env={**os.environ, "SIMPUL_LOG_LEVEL": "warning"},
        )
        for source in (intake, stream)
    ]
    await asyncio.sleep(3)  # both imported and connected: BLPOP waiting
    last_inbox = keys.inbox(stream, "notifier")
    async with Meter(redis, events) as meter:
        for source in (intake, stream):
            await redis.rpush("bench:router:go:" + source, 1)
        outs = [await asyncio.wait_for(c.communicate(), 300) for c in children]
    assert await redis.xlen(last_inbox) == events, "two replicas lost events"
    cpu = sum(json.loads(out.decode().splitlines()[-1])["cpu_s"] for out, _ in outs)
    return {**meter.result, "client_us": 1e6 * cpu / events, "fan_out": fan_out}


async def _copy_once(redis: Any, events: int, fan_out: int) -> dict[str, float]:
    """The raw loop: read the intake's copy as a group, XADD each entry to a stream and to
    the same number of inboxes, ack; pipelined per batch of 100, no checks at all."""
    async with Meter(redis, events) as meter:
        while True:
            reply = await redis.xreadgroup("raw", "c", {"bench:raw:intake": ">"}, count=100)
            if not reply:
                break
            batch = reply[0][1]
            async with redis.pipeline(transaction=False) as pipe:
                for _, fields in batch:
                    pipe.xadd("bench:raw:stream", fields)
                    for n in range(fan_out):
                        pipe.xadd(f"bench:raw:inbox:{n}", fields)
                await pipe.execute()
            await redis.xack("bench:raw:intake", "raw", *(e for e, _ in batch))
    assert await redis.xlen(f"bench:raw:inbox:{fan_out - 1}") == events
    return meter.result


async def throughput(
    redis: Any, url: str, topology: Topology, events: int, runs: int
) -> dict[str, Any]:
    found: dict[str, list[dict[str, float]]] = {"router": [], "raw": [], "two": []}
    for run in range(runs):
        await redis.flushall()
        await _fill(redis, topology, events)
        routed = await _route_once(redis, topology, events)
        raw = await _copy_once(redis, events, int(routed["fan_out"]))
        await redis.flushall()
        await _fill(redis, topology, events)
        two = await _route_two(redis, url, events, int(routed["fan_out"]))
        found["router"].append(routed)
        found["raw"].append(raw)
        found["two"].append(two)
        progress(
            f"router run {run + 1}/{runs}: router {routed['rate']:,.0f}/s "
            f"({routed['client_us']:.0f} + {routed['redis_us']:.0f} µs/event), raw "
            f"{raw['rate']:,.0f}/s ({raw['client_us']:.0f} + {raw['redis_us']:.0f} µs/event), "
            f"two replicas {two['rate']:,.0f}/s, "
            f"others {max(routed['others_pct'], raw['others_pct']):.0f}%"
        )
    out: dict[str, Any] = {"events": events, "runs": runs, "fan_out": found["router"][0]["fan_out"]}
    for name, results in found.items():
        for key in ("rate", "client_us", "redis_us", "others_pct"):
            out[f"{name}_{key}"] = median([r[key] for r in results])
        out[f"{name}_rates"] = [r["rate"] for r in results]
    # Per run: router rate / raw rate of the same run (they share its load), then the median.
    out["ratio"] = median(
        [a["rate"] / b["rate"] for a, b in zip(found["router"], found["raw"], strict=True)]
    )
    out["ratios"] = [
        a["rate"] / b["rate"] for a, b in zip(found["router"], found["raw"], strict=True)
    ]
    out["two_ratio"] = median(
        [a["rate"] / b["rate"] for a, b in zip(found["two"], found["raw"], strict=True)]
    )
    out["cpu_ratio"] = (out["raw_client_us"] + out["raw_redis_us"]) / (
        out["router_client_us"] + out["router_redis_us"]
    )
    return out


# -- latency ------------------------------------------------------------------------------------


async def _serve(url: str) -> None:
    """``--serve``: one router replica as deployed (default settings, every source), until
    SIGTERM; then its CPU time on stdout as JSON."""
    redis = connect(url)
    router = _router(redis, _topology())
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, router.stop)
    profile = os.environ.get("SIMPUL_BENCH_PROFILE")  # a cProfile of the replica, to that file
    profiler = None
    if profile:
        import cProfile  # noqa: PLC0415  (only when asked for)

        profiler = cProfile.Profile()
        profiler.enable()
    cpu0 = time.process_time()
    await router.run()
    await redis.aclose()
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(profile)
    print(
        json.dumps(
            {
                "cpu_s": time.process_time() - cpu0,
                "admitted": router.counts.admitted,
                "forwarded": router.counts.forwarded,
            }
        ),
        flush=True,
    )


async def _start_router(url: str, redis: Any) -> asyncio.subprocess.Process:
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.router",
        "--serve",
        url,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "SIMPUL_LOG_LEVEL": "warning"},
    )
    intake, stream = keys.intake(PRODUCER), keys.stream("dukcapil.citizen")
    deadline = time.monotonic() + 60
    leases = (keys.router_lease(intake), keys.router_lease(stream))
    while await redis.exists(*leases) < len(leases):
        if time.monotonic() > deadline or child.returncode is not None:
            child.kill()
            raise RuntimeError("the router process did not take its sources within 60 s")
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)  # its groups in place on every source
    return child


async def _stop_router(child: asyncio.subprocess.Process) -> dict[str, Any]:
    child.send_signal(signal.SIGTERM)
    out, _ = await asyncio.wait_for(child.communicate(), 60)
    lines = [line for line in out.decode().splitlines() if line.startswith("{")]
    return dict(json.loads(lines[-1])) if lines else {}


async def _window(
    redis: Any, url: str, topology: Topology, mode: str, *, rate: int, seconds: float
) -> dict[str, Any]:
    """One window of ``rate`` events/s for ``seconds``: each event's delay from its publish
    call to its arrival at the reader."""
    await redis.flushall()
    example = _example(CitizenDied)
    stream = keys.stream("dukcapil.citizen")
    publisher = Publisher(
        redis,
        source="urn:bench",
        signer=_signer(topology, PRODUCER),
        intake=PRODUCER if mode == "routed" else None,
    )
    watched = keys.inbox(stream, "dinsos") if mode == "routed" else stream
    child = await _start_router(url, redis) if mode == "routed" else None
    sent: dict[bytes, float] = {}
    delays: list[float] = []
    total = int(rate * seconds)
    reader_redis = connect(url)

    async def read() -> None:
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
    try:
        await asyncio.sleep(0.2)
        busy0, own0 = machine_busy_s(), time.process_time()
        start = time.perf_counter()
        for i in range(total):
            pause = start + i / rate - time.perf_counter()
            if pause > 0:
                await asyncio.sleep(pause)
            event_id = f"l-{mode}-{i}"
            sent[event_id.encode()] = time.perf_counter()
            await publisher.publish(example, id=event_id)
        published_s = time.perf_counter() - start
        await asyncio.wait_for(reader, 60)
        wall = time.perf_counter() - start
        busy, own = machine_busy_s() - busy0, time.process_time() - own0
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        await reader_redis.aclose()
        served = await _stop_router(child) if child is not None else {}
    delays.sort()
    result = {
        "p50_ms": statistics.median(delays) * 1000,
        "p99_ms": percentile(delays, 99) * 1000,
        "max_ms": delays[-1] * 1000,
        "received": len(delays),
        "samples": delays,
        # one awaited publish at a time: a loaded machine may not keep the pace asked for
        "achieved_rate": total / published_s,
        # the machine's busy share of a core beyond this process (Redis and the router too)
        "machine_pct": 100 * (busy - own) / wall,
    }
    if served:
        result["router_cpu_us"] = 1e6 * served["cpu_s"] / total
        result["router_cpu_pct"] = 100 * served["cpu_s"] / wall
    return result


async def latency(
    redis: Any, url: str, topology: Topology, *, rate: int, seconds: float, runs: int
) -> dict[str, Any]:
    windows: dict[str, list[dict[str, Any]]] = {"direct": [], "routed": []}
    for run in range(runs):
        for mode, found_so_far in windows.items():
            found = await _window(redis, url, topology, mode, rate=rate, seconds=seconds)
            found_so_far.append(found)
            progress(
                f"router latency run {run + 1}/{runs} {mode:<6}: p50 {found['p50_ms']:.2f} ms, "
                f"p99 {found['p99_ms']:.2f} ms"
                + (
                    f", router {found['router_cpu_us']:.0f} µs/event"
                    if "router_cpu_us" in found
                    else ""
                )
            )
    out: dict[str, Any] = {"rate": rate, "seconds": seconds, "runs": runs}
    for mode, found in windows.items():
        pooled = sorted(d for f in found for d in f.pop("samples"))
        out[f"{mode}_p50_ms"] = percentile(pooled, 50) * 1000
        out[f"{mode}_p99_ms"] = percentile(pooled, 99) * 1000
        out[f"{mode}_max_ms"] = pooled[-1] * 1000
        out[f"{mode}_p99_runs"] = [f["p99_ms"] for f in found]
        out[f"{mode}_received"] = sum(f["received"] for f in found)
        out[f"{mode}_achieved_rate"] = median([f["achieved_rate"] for f in found])
    out["router_cpu_us"] = median([f["router_cpu_us"] for f in windows["routed"]])
    out["router_cpu_pct"] = median([f["router_cpu_pct"] for f in windows["routed"]])
    out["p99_ratio"] = out["routed_p99_ms"] / out["direct_p99_ms"]
    return out


async def one_at_a_time(redis: Any, url: str, topology: Topology, events: int) -> dict[str, Any]:
    """The router's cost per death at the smallest batches: each death published alone and
    awaited in dinsos' inbox before the next, through a router process as in the latency
    windows — so every batch holds one death and every per-batch cost (round trips, wake-ups)
    is paid per death, as at low and moderate rates. The router's and Redis's CPU per death,
    and each death's delay."""
    await redis.flushall()
    example = _example(CitizenDied)
    stream = keys.stream("dukcapil.citizen")
    publisher = Publisher(
        redis, source="urn:bench", signer=_signer(topology, PRODUCER), intake=PRODUCER
    )
    watched = keys.inbox(stream, "dinsos")
    child = await _start_router(url, redis)
    reader = connect(url)
    delays: list[float] = []
    last = "0-0"  # the inbox is new: "$" could miss a death routed before the first read
    try:
        redis0 = await redis_cpu_s(redis)
        start = time.perf_counter()
        for i in range(events):
            sent = time.perf_counter()
            await publisher.publish(example, id=f"one-{i}")
            while True:
                reply = await reader.xread({watched: last}, block=5_000, count=10)
                if not reply:
                    raise RuntimeError(f"death one-{i} did not reach the inbox within 5 s")
                last = reply[0][1][-1][0]
                if any(f[b"id"] == f"one-{i}".encode() for _, f in reply[0][1]):
                    break
            delays.append(time.perf_counter() - sent)
        wall = time.perf_counter() - start
        server = await redis_cpu_s(redis) - redis0
    finally:
        await reader.aclose()
        served = await _stop_router(child)
    delays.sort()
    return {
        "events": events,
        "router_cpu_us": 1e6 * served["cpu_s"] / events,
        "redis_us": 1e6 * server / events,  # the publish and the reads included
        "p50_ms": statistics.median(delays) * 1000,
        "p99_ms": percentile(delays, 99) * 1000,
        "rate": events / wall,
    }


# -- memory -------------------------------------------------------------------------------------


async def memory(redis: Any, topology: Topology, events: int) -> dict[str, float]:
    example = _example(AccountLinked)
    stream = keys.stream("identity.account")
    out: dict[str, float] = {"events": events}
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
    markers = 0
    async for key in redis.scan_iter(match="*:seen:*", count=1000):
        markers += int(await redis.memory_usage(key) or 0)
    out["markers_bytes_per_event"] = markers / events
    return out


# -- the run ------------------------------------------------------------------------------------


async def run(
    *,
    events: int = 10_000,
    rate: int = 1_000,
    seconds: float = 10.0,
    runs: int = 3,
    only: str | None = None,
) -> dict[str, Any]:
    """Every section on a private Redis (``only``: that one); what ``make bench`` (bench/run.py)
    calls."""
    topology = _topology()
    with (
        tempfile.TemporaryDirectory() as folder,
        EmbeddedRedis(Path(folder), appendfsync="everysec") as server,
    ):
        redis = connect(server.url)
        try:
            results: dict[str, Any] = {}
            if only in {None, "throughput"}:
                results["throughput"] = await throughput(redis, server.url, topology, events, runs)
            if only in {None, "latency"}:
                results["latency"] = await latency(
                    redis, server.url, topology, rate=rate, seconds=seconds, runs=runs
                )
            if only == "one":  # not part of the full run: a comparison of per-batch costs
                results["one"] = await one_at_a_time(
                    redis, server.url, topology, min(events, 3_000)
                )
            if only in {None, "memory"}:
                results["memory"] = await memory(redis, topology, min(events, 5_000))
        finally:
            await redis.aclose()
    if only is None:
        results["verdicts"] = verdicts(results)
    return results


def verdicts(found: dict[str, Any]) -> list[tuple[str, str, float, bool, str, str]]:
    """Rows for the targets table of docs/performance.md (bench/run.py)."""
    t, lat = found["throughput"], found["latency"]
    return [
        (
            "router throughput",
            f"router / raw copy loop >= {TARGET_RATIO:.0%}",
            t["ratio"],
            t["ratio"] >= TARGET_RATIO,
            f"{t['ratio']:.0%}",
            f"short by {TARGET_RATIO - t['ratio']:.0%} of raw",
        ),
        (
            "p99 latency at 1k/s through the router",
            f"routed p99 <= {TARGET_P99:.0f}x direct p99",
            lat["p99_ratio"],
            lat["p99_ratio"] <= TARGET_P99,
            f"{lat['p99_ratio']:.2f}x",
            f"{lat['p99_ratio'] / TARGET_P99:.2f}x over the limit",
        ),
    ]


def table(found: dict[str, Any]) -> list[str]:
    """The section's rows, as Markdown."""
    t, lat, mem = found["throughput"], found["latency"], found["memory"]

    def rates(values: list[float]) -> str:
        return f"{min(values):,.0f}-{max(values):,.0f}" if len(values) > 1 else "-"

    lines = [
        "| | events/s (median) | range | vs raw | client CPU µs/event | Redis CPU µs/event |",
        "|---|--:|--:|--:|--:|--:|",
        f"| raw copy loop (XREADGROUP 100, 1 + {t['fan_out']} XADD each, XACK) | "
        f"{t['raw_rate']:,.0f} | {rates(t['raw_rates'])} | 100% | {t['raw_client_us']:.0f} | "
        f"{t['raw_redis_us']:.0f} |",
        f"| **router**, one replica (admission forwarding to {t['fan_out']} inboxes) | "
        f"{t['router_rate']:,.0f} | {rates(t['router_rates'])} | **{t['ratio']:.0%}** | "
        f"{t['router_client_us']:.0f} | {t['router_redis_us']:.0f} |",
        f"| router, two stages as on a Redis Cluster: two replicas in two processes (one "
        "admits, one fans out) | "
        f"{t['two_rate']:,.0f} | {rates(t['two_rates'])} | {t['two_ratio']:.0%} | "
        f"{t['two_client_us']:.0f} | {t['two_redis_us']:.0f} |",
        "",
        f"CPU per event (client + Redis), raw / router (one replica): **{t['cpu_ratio']:.0%}**.",
        "",
        f"| path at {lat['rate']:,} events/s | published/s | p50 ms | p99 ms | p99 per run "
        "| max ms | p99 vs direct |",
        "|---|--:|--:|--:|--:|--:|--:|",
    ]
    for mode, label in (
        ("direct", "publish → department stream → XREAD (direct path)"),
        ("routed", "publish → intake → router → dinsos' inbox → XREAD"),
    ):
        per_run = ", ".join(f"{v:.1f}" for v in lat[f"{mode}_p99_runs"])
        lines.append(
            f"| {label} | {lat[f'{mode}_achieved_rate']:,.0f} | {lat[f'{mode}_p50_ms']:.2f} | "
            f"{lat[f'{mode}_p99_ms']:.2f} | {per_run} | "
            f"{lat[f'{mode}_max_ms']:.1f} | "
            f"{lat[f'{mode}_p99_ms'] / lat['direct_p99_ms']:.2f}x |"
        )
    lines += [
        "",
        f"The router process at {lat['rate']:,} events/s: {lat['router_cpu_us']:.0f} µs of CPU "
        f"per event ({lat['router_cpu_pct']:.0f}% of a core over the window, until the last "
        "event was read).",
        "",
        f"Memory per retained event, {mem['subscriptions']:.0f} subscriptions "
        f"(identity.account.linked.v1, {mem['events']:,.0f} events): direct "
        f"**{mem['direct_bytes_per_event']:,.0f} B**; routed "
        f"**{mem['routed_bytes_per_event']:,.0f} B**; routed once every group acked and the "
        f"router trimmed the inboxes **{mem['routed_trimmed_bytes_per_event']:,.0f} B** "
        f"({mem['routed_trimmed_bytes_per_event'] / mem['direct_bytes_per_event']:.1f}x direct), "
        f"of which the dedupe markers (`:seen:`, in the intake and on the department stream, "
        f"kept for the dedupe TTL; an inbox keeps one high-water mark) "
        f"{mem['markers_bytes_per_event']:,.0f} B.",
    ]
    return lines


SECTION = "## 6. The router (decision 0011): throughput, latency, memory"


def section(found: dict[str, Any] | None) -> list[str]:
    """The router's section of docs/performance.md (bench/run.py renders it after section 5)."""
    if not found:
        return []
    if "skipped" in found:
        return [SECTION, "", f"Not measured in this run: {found['skipped']}.", ""]
    t, lat = found["throughput"], found["latency"]
    return [
        SECTION,
        "",
        "`bench/router.py`, a private Redis (AOF everysec, no ACL) of its own. An event goes "
        "producer → intake → router (admission: size, decoding, the producer's right to the type, "
        "its signature, the contract; then per subscription a need-to-know projection the router "
        "signs, one signature per distinct projection, a subscription approved for every field "
        "getting the producer-signed original) → one function call writing the department "
        "stream and every inbox (decision 0014; a Redis Cluster has the fan-out read the "
        "department stream as a second stage). "
        f"**Throughput**: {t['events']:,} signed deaths (5 subscriptions: 5 inbox entries,"
        " 1 projection to sign, the audit's the original) waiting in the producer's "
        "intake, routed by one replica "
        "in one process; the raw loop reads the same entries from a copy of the intake as a "
        "group and XADDs each to a stream and to 5 inboxes, no checks, then acks; "
        f"{t['runs']} run(s), router and raw alternately, median. **Latency**: "
        f"{lat['rate']:,} deaths/s for {lat['seconds']:.0f} s per window, {lat['runs']} window(s) "
        "per path, alternately; the direct path is today's (publish onto the department stream, "
        "read there), the routed one publishes into the intake and reads dinsos' inbox; both "
        "read by a plain XREAD in the publishing process. The router runs as deployed: a process "
        "of its own with default settings (every source of the topology, reads fenced by the "
        "lease behind XREAD BLOCK 500 ms, batches of 100, one round trip a batch and source: "
        "a batch's writes ride with the source's next read). **Memory**: `used_memory` growth "
        "per event.",
        "",
        *table(found),
        "",
    ]


def update_markdown(path: Path, found: dict[str, Any], command: str) -> None:
    """Put a standalone run's figures into an existing docs/performance.md: its section 6, its
    rows of the targets table, and its command line in the header's list of re-runs."""
    lines = path.read_text().splitlines()
    stamp = time.strftime("%H:%M UTC", time.gmtime())
    # the section
    start = next((i for i, line in enumerate(lines) if line.startswith("## 6. The router")), None)
    new = section(found)
    if start is None:
        start = end = lines.index("## Where the time goes")
    else:
        end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("## "))
    new[0] = f"{SECTION} (standalone run, {stamp})"
    lines[start:end] = new
    # the targets
    rows = [
        f"| {m} ({stamp} run) | {target} | {shown} | "
        + ("met" if ok else f"**missed**: {miss}")
        + " |"
        for m, target, _, ok, shown, miss in verdicts(found)
    ]
    head = lines.index("## Targets")
    last = head + 2  # the table's header row
    while last + 1 < len(lines) and lines[last + 1].startswith("|"):
        last += 1
    ours = ("| router throughput", "| p99 latency at 1k/s through the router")
    kept = [line for line in lines[head : last + 1] if not line.startswith(ours)]
    lines[head : last + 1] = kept
    last = head + len(kept) - 1
    lines[last + 1 : last + 1] = rows
    # the command
    note = "# section 6 (the router) run standalone:"
    lines = [
        line for line in lines if not line.startswith((".venv/bin/python -m bench.router", note))
    ]
    fence = lines.index("```sh")
    close = lines.index("```", fence + 1)
    lines[close:close] = [note, f"{command}  # {stamp}"]
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.router")
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--rate", type=int, default=1_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--only",
        choices=["throughput", "latency", "memory", "one"],
        help="run one section (a comparison of changes; --markdown needs every section); "
        "'one': deaths one at a time, each awaited in an inbox (per-batch costs, batches of 1)",
    )
    parser.add_argument(
        "--markdown", metavar="PATH", help="put the figures into PATH (docs/performance.md)"
    )
    parser.add_argument("--serve", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--drain", nargs=3, metavar="ARG", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(_serve(args.serve))
        sys.exit(0)
    if args.drain:
        asyncio.run(_drain_child(args.drain[0], args.drain[1], int(args.drain[2])))
        sys.exit(0)
    if args.only and args.markdown:
        parser.error("--markdown needs every section: leave out --only")
    found = asyncio.run(
        run(
            events=args.events,
            rate=args.rate,
            seconds=args.seconds,
            runs=args.runs,
            only=args.only,
        )
    )
    for part, values in found.items():
        if part == "verdicts":
            continue
        print(part)
        for name, value in values.items():
            shown = f"{value:,.2f}" if isinstance(value, float | int) else str(value)
            print(f"  {name}: {shown}")
    if args.only is None:
        print("\n".join(table(found)))
    if args.markdown:
        command = " ".join([".venv/bin/python -m bench.router", *sys.argv[1:]])
        update_markdown(Path(args.markdown), found, command)
