"""What Ed25519 event signatures cost: consume and publish, unsigned and signed, in one run.

    .venv/bin/python -m bench.signing [--quick] [--n 20000] [--json out.json]

Consume (median of 3 interleaved runs; ``--quick``: 1): the raw redis-py loop of
``bench/throughput.py`` (the per-event baseline), a Simpul service without a keyring on
unsigned entries, and the same service with a keyring on signed entries (every entry verified
before its handler). The ceiling verification allows is ``1 / (raw per-event cost + one
verify)``, with the raw cost from this run and one verify timed between its consume runs
(PyNaCl ``VerifyKey.verify`` of bench entries' signed bytes, median): what a consumer could reach
if verifying were the only thing Simpul added to the raw loop. Target: signed consumption
>= 70% of that ceiling. Publish: ``publish_many`` x100 without and with a signer.

Redis: as bench/run.py (``SIMPUL_REDIS_URL`` or a private EmbeddedRedis, reset per workload).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import sys
import time
import timeit
from datetime import UTC, datetime
from typing import Any

from nacl.signing import VerifyKey

from bench import throughput
from bench.common import (
    BATCH,
    STREAM,
    Meter,
    Payloads,
    Target,
    machine_busy_s,
    machine_facts,
    preload,
    progress,
    write_json,
)
from bench.contract import EVENT_TYPE, CitizenRecorded
from bench.run import _quiet, _repeat
from bus import Publisher, Service
from bus.envelope import Envelope, format_time
from bus.logging import configure
from bus.signing import KeyRing, PublicSigningKey, Signer, canonical_bytes
from bus.testing import wait_until

TARGET = 0.70  # signed consumption >= 70% of the ceiling 1 / (raw cost + one verify)
SIGNER = Signer("bench-siak-1", bytes(range(32)))
KEYRING = KeyRing(
    [
        PublicSigningKey(
            key_id=SIGNER.key_id,
            principal="adapter-bench",
            department="bench",
            public_key=SIGNER.public_key,
            types=frozenset({EVENT_TYPE}),
        )
    ]
)


# -- workloads ----------------------------------------------------------------------------------


def signed_fields(payloads: Payloads, i: int) -> dict[str, str]:
    """Event ``i`` of bench/common.py's preload, signed as a Simpul publisher signs it."""
    fields = payloads.fields(i)
    data = fields.pop("data")
    fields |= {"signer": SIGNER.key_id, "signedat": format_time(datetime.now(UTC)), "data": data}
    fields["signature"] = SIGNER.signature_of(fields)
    return fields


async def preload_signed(target: Target, payloads: Payloads, n: int) -> None:
    redis = target.client()
    try:
        for start in range(0, n, 1_000):
            async with redis.pipeline(transaction=False) as pipe:
                for i in range(start, min(start + 1_000, n)):
                    pipe.xadd(STREAM, signed_fields(payloads, i))  # type: ignore[arg-type]
                await pipe.execute()
    finally:
        await redis.aclose()


async def consume_service(
    target: Target, payloads: Payloads, n: int, *, keyring: KeyRing | None
) -> dict[str, float]:
    """bench/throughput.py's Simpul consumer on ``n`` preloaded entries: unsigned without a
    keyring, signed with one (each verified before its handler).

    The clock runs from the service's start until the last entry is acked; unlike
    ``throughput.run_simpul_consumer`` it stops before the service's shutdown, which can wait
    out a blocked XREADGROUP (up to ``block_ms``, 2 s) and would swamp a 20,000-event run.
    """
    await target.reset()
    if keyring is None:
        redis = target.client()
        try:
            await preload(redis, STREAM, payloads, n)
        finally:
            await redis.aclose()
    else:
        await preload_signed(target, payloads, n)
    redis = target.client()
    done = asyncio.Event()
    seen = 0
    settings = throughput.simpul_settings(target, "bench-1", verify=keyring is not None)
    service = Service(throughput.GROUP, settings=settings, keyring=keyring)

    @service.on(CitizenRecorded)
    async def count(event: CitizenRecorded) -> None:
        nonlocal seen
        seen += 1
        if seen == n:
            done.set()

    try:
        async with service.running(), Meter(redis, n) as meter:
            await asyncio.wait_for(done.wait(), throughput.TIMEOUT_S)
            acked = service.health.counters
            await wait_until(lambda: acked.get("acked", 0) >= n, interval=0.0005)
        if service.health.counters.get("dead_lettered", 0):
            raise AssertionError("entries were dead-lettered: the benchmark is wrong")
        return meter.result
    finally:
        await redis.aclose()


async def verify_only(messages: list[tuple[bytes, bytes]], n: int) -> dict[str, float]:
    """``n`` Ed25519 verifications (PyNaCl) of bench entries' signed bytes, nothing else: the
    "one verify" of the ceiling, timed between the consume runs so that drift hits all alike."""
    verify = VerifyKey(SIGNER.public_key).verify
    busy0, cpu0, wall0 = machine_busy_s(), time.process_time(), time.perf_counter()
    for i in range(n):
        message, signature = messages[i % len(messages)]
        verify(message, signature)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    others = max(0.0, 100 * (machine_busy_s() - busy0 - cpu) / wall)
    await asyncio.sleep(0)
    return {
        "rate": n / wall,
        "wall_s": wall,
        "client_us": 1e6 * cpu / n,
        "redis_us": 0.0,
        "others_pct": others,
    }


async def publish(target: Target, payloads: Payloads, n: int, *, signed: bool) -> dict[str, float]:
    """Publisher.publish_many x100, with or without a signer."""
    await target.reset()
    redis = target.client()
    publisher = Publisher(
        redis, source=payloads.publisher.source, signer=SIGNER if signed else None
    )
    try:
        await publisher.publish_many([payloads.model(0)])  # loads the script: not timed
        await target.reset()
        async with Meter(redis, n) as meter:
            for start in range(0, n, BATCH):
                await publisher.publish_many(
                    [payloads.model(i) for i in range(start, min(start + BATCH, n))]
                )
        return meter.result
    finally:
        await redis.aclose()


def step_costs(payloads: Payloads) -> dict[str, float]:
    """µs per call, best of 5, of each piece of signing and verifying one bench entry."""
    fields = signed_fields(payloads, 0)
    raw = {k.encode(): v.encode() for k, v in fields.items()}
    envelope = Envelope.from_fields(raw)
    signature = base64.b64decode(fields["signature"])
    message = canonical_bytes(raw)
    verify_key = VerifyKey(SIGNER.public_key)
    unsigned = payloads.envelopes[0]
    arrived = f"{int(time.time() * 1000)}-0"
    assert KEYRING.check(envelope, raw, arrived) is None

    def best(func: Any, number: int = 2_000) -> float:
        return 1e6 * min(timeit.repeat(func, number=number, repeat=5)) / number

    return {
        "verify_us": best(lambda: verify_key.verify(message, signature)),
        "check_us": best(lambda: KEYRING.check(envelope, raw, arrived)),
        "canonical_us": best(lambda: canonical_bytes(raw)),
        "sign_us": best(lambda: SIGNER.sign(unsigned)),
        "entry_bytes_signed": float(sum(len(k) + len(v) for k, v in raw.items())),
        "entry_bytes_unsigned": float(
            sum(len(k) + len(v.encode()) for k, v in unsigned.to_fields().items())
        ),
    }


# -- the run ------------------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> dict[str, Any]:
    runs = 1 if args.quick else 3
    n = args.n
    began = time.perf_counter()
    out: dict[str, Any] = {
        "command": " ".join([".venv/bin/python -m bench.signing", *sys.argv[1:]]),
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_facts(),
        "runs": runs,
        "n": n,
    }
    out["others_at_start_pct"] = await _quiet()
    with Target.open() as target:
        client = target.client()
        payloads = Payloads(client)
        progress("timing the signing steps")
        out["steps"] = step_costs(payloads)
        messages = []
        for i in range(2_000):
            fields = signed_fields(payloads, i)
            messages.append((canonical_bytes(fields), base64.b64decode(fields["signature"])))
        consume: dict[str, Any] = {}
        await _repeat(
            consume,
            {
                "raw": (n, lambda k: throughput.consume_raw(target, payloads, k)),
                "simpul_unsigned": (
                    n,
                    lambda k: consume_service(target, payloads, k, keyring=None),
                ),
                "simpul_verified": (
                    n,
                    lambda k: consume_service(target, payloads, k, keyring=KEYRING),
                ),
                "verify": (n, lambda k: verify_only(messages, k)),
            },
            runs,
        )
        out["consume"] = consume
        publishing: dict[str, Any] = {}
        await _repeat(
            publishing,
            {
                "simpul_unsigned": (n, lambda k: publish(target, payloads, k, signed=False)),
                "simpul_signed": (n, lambda k: publish(target, payloads, k, signed=True)),
            },
            runs,
        )
        out["publish"] = publishing
        await client.aclose()
    out["verify_us"] = 1e6 / consume["verify"]["rate"]  # median of the runs
    out["ceiling_rate"] = 1 / (1 / consume["raw"]["rate"] + out["verify_us"] / 1e6)
    out["ratio"] = consume["simpul_verified"]["rate"] / out["ceiling_rate"]
    out["met"] = out["ratio"] >= TARGET
    out["duration_s"] = time.perf_counter() - began
    return out


def table(out: dict[str, Any]) -> str:
    c, p, s = out["consume"], out["publish"], out["steps"]
    ceiling = out["ceiling_rate"]

    def spread(entry: dict[str, Any]) -> str:
        rates = [r["rate"] for r in entry["runs"]]
        return f"{min(rates):,.0f}-{max(rates):,.0f}" if len(rates) > 1 else "-"

    def row(label: str, entry: dict[str, Any], note: str = "") -> str:
        return (
            f"| {label} | {entry['rate']:,.0f} | {spread(entry)} | {1e6 / entry['rate']:.1f} | "
            f"{entry['client_us']:.1f} | {entry['rate'] / ceiling:.0%} | {note} |"
        )

    raw_us = 1e6 / c["raw"]["rate"]
    lines = [
        f"Consume, {out['n']:,} events, median of {out['runs']} run(s):",
        "",
        "| consumer | events/s | range | wall µs/event | client CPU µs/event | of ceiling | note |",
        "|---|--:|--:|--:|--:|--:|---|",
        row("raw redis-py loop (XREADGROUP 100 + validate + XACK/batch)", c["raw"], "baseline"),
        row(
            "**Simpul** Service, unsigned entries, no keyring, verification off",
            c["simpul_unsigned"],
        ),
        row(
            "**Simpul** Service, signed entries, keyring (verify before handler)",
            c["simpul_verified"],
            f"target >= {TARGET:.0%} of ceiling: {'met' if out['met'] else '**missed**'}",
        ),
        f"| ceiling: 1 / (raw {raw_us:.1f} µs + one verify {out['verify_us']:.1f} µs) | "
        f"{ceiling:,.0f} | | {1e6 / ceiling:.1f} | | 100% | |",
        "",
        f"Publish, {out['n']:,} events, publish_many x100, median of {out['runs']} run(s):",
        "",
        "| publisher | events/s | range | client CPU µs/event |",
        "|---|--:|--:|--:|",
        *(
            f"| {label} | {p[name]['rate']:,.0f} | {spread(p[name])} | {p[name]['client_us']:.1f} |"
            for name, label in (
                ("simpul_unsigned", "Publisher.publish_many, no signer"),
                ("simpul_signed", "Publisher.publish_many, signer (Ed25519 per event)"),
            )
        ),
        "",
        f"One verify, timed between the consume runs (median of {out['runs']}, {out['n']:,} "
        f"verifications each): {out['verify_us']:.1f} µs.",
        "",
        "Per-event steps, in isolation, best of 5 (µs):",
        "",
        "| step | µs |",
        "|---|--:|",
        f"| Ed25519 verify (PyNaCl `VerifyKey.verify`, libsodium) | {s['verify_us']:.1f} |",
        f"| `KeyRing.check` (signed bytes + verify + key, type and time checks) | "
        f"{s['check_us']:.1f} |",
        f"| `canonical_bytes` of a raw entry | {s['canonical_us']:.1f} |",
        f"| `Signer.sign` (signed copy of an envelope) | {s['sign_us']:.1f} |",
        "",
        f"Entry size: {s['entry_bytes_unsigned']:.0f} bytes unsigned, "
        f"{s['entry_bytes_signed']:.0f} signed (signer, signedat, signature).",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.signing", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="one run per figure")
    parser.add_argument("--n", type=int, default=20_000, help="events per workload")
    parser.add_argument("--json", metavar="PATH", help="write every measurement as JSON")
    args = parser.parse_args(argv)
    configure(level="warning", fmt="json")
    out = asyncio.run(run(args))
    print(table(out))
    write_json(args.json, out)
    progress(f"done in {out['duration_s']:.0f} s; signed = {out['ratio']:.0%} of the ceiling")


if __name__ == "__main__":
    main()
