"""Consume throughput only: the raw loop, Simpul's loop (alone and hosted by its FastStream app)
and FastStream's own stream subscriber (default and batch), interleaved in one run on one Redis.

    .venv/bin/python -m bench.consume [--runs 3] [--n 50000] [--n-default 5000] [--json out.json]

The figures of docs/decisions/0002-own-consume-loop.md. The workloads are bench/throughput.py's,
as ``make bench`` runs them (section 1 of docs/performance.md), plus ``simpul_app``; about 2
minutes with 3 runs.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from bench import throughput
from bench.common import Payloads, Target, machine_facts, write_json
from bench.run import _quiet, _repeat
from bus.logging import configure


async def run(args: argparse.Namespace) -> dict[str, Any]:
    n, n_default = args.n, args.n_default
    out: dict[str, Any] = {"machine": machine_facts(), "others_at_start_pct": await _quiet()}
    with Target.open() as target:
        out["redis"] = await target.facts()
        payloads = Payloads(target.client())
        consume: dict[str, Any] = {}
        await _repeat(
            consume,
            {
                "raw": (n, lambda k: throughput.consume_raw(target, payloads, k)),
                "simpul": (n, lambda k: throughput.consume_simpul(target, payloads, k)),
                "simpul_app": (n, lambda k: throughput.consume_simpul_app(target, payloads, k)),
                "faststream_default": (
                    n_default,
                    lambda k: throughput.consume_faststream(target, payloads, k, batch=False),
                ),
                "faststream_batch": (
                    n,
                    lambda k: throughput.consume_faststream(target, payloads, k, batch=True),
                ),
            },
            args.runs,
        )
        out["consume"] = consume
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.consume")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--n-default", type=int, default=5_000)
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    configure(level="warning", fmt="json")
    out = asyncio.run(run(args))
    raw = out["consume"]["raw"]["rate"]
    print(f"{'consumer':<20} {'N':>7} {'events/s':>10} {'range':>17} {'vs raw':>7}")
    for name, entry in out["consume"].items():
        rates = [r["rate"] for r in entry["runs"]]
        print(
            f"{name:<20} {entry['n']:>7,} {entry['rate']:>10,.0f} "
            f"{min(rates):>8,.0f}-{max(rates):<8,.0f} {entry['rate'] / raw:>6.0%}"
        )
    write_json(args.json, out)


if __name__ == "__main__":
    main()
