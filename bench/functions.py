"""FCALL of the admin's library against EVALSHA of the same Lua, in one run.

    .venv/bin/python -m bench.functions [--n 20000] [--rounds 5]

The bus moved every script to a Redis Functions library (bus/functions.py) so that no principal
loads code; this measures that the call itself costs no more. Both sides run the very same body
(bus/publish.lua), with the same keys and arguments, on one embedded Redis (AOF, appendfsync
everysec), alternating round by round so that machine noise falls on both: pipelined (100 calls
a pipeline, what publish_many does) and one call at a time (what publish does). Reported:
medians of calls per second, and the FCALL/EVALSHA ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from importlib.resources import files
from typing import Any

from bus import functions
from bus.connection import connect
from bus.local.redis import EmbeddedRedis

STREAM = "simpul:{bench.functions}"
FIELDS = [
    "specversion",
    "1.0",
    "source",
    "urn:malangkota:bench:functions",
    "type",
    "bench.citizen.recorded.v1",
    "time",
    "2026-12-07T06:00:00.000Z",
    "datacontenttype",
    "application/json",
    "dataschema",
    "simpul:bench.citizen.recorded:1.0",
    "data",
    '{"nik":"3573010000000001","name":"x","kecamatan":"35.73.01"}' + " " * 300,
]


def _call(head: tuple[str, str]) -> tuple[Any, ...]:
    event = uuid.uuid4().hex
    return (*head, 2, STREAM, f"{STREAM}:seen:{event}", "604800000", "", "id", event, *FIELDS)


async def _pipelined(redis: Any, head: tuple[str, str], n: int) -> float:
    started = time.perf_counter()
    for _ in range(n // 100):
        async with redis.pipeline(transaction=False) as pipe:
            for _ in range(100):
                pipe.execute_command(*_call(head))
            await pipe.execute()
    return n / (time.perf_counter() - started)


async def _single(redis: Any, head: tuple[str, str], n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        await redis.execute_command(*_call(head))
    return n / (time.perf_counter() - started)


async def run(url: str, n: int, rounds: int) -> dict[str, dict[str, float]]:
    redis = connect(url)
    try:
        await functions.load(redis)
        sha = await redis.script_load(files("bus").joinpath("publish.lua").read_text())
        heads = {"EVALSHA": ("EVALSHA", sha), "FCALL": ("FCALL", f"{functions.LIBRARY}_publish")}
        got: dict[str, dict[str, list[float]]] = {k: {"pipelined": [], "single": []} for k in heads}
        await redis.execute_command("CONFIG", "RESETSTAT")
        for _ in range(rounds):
            for name, head in heads.items():
                await redis.delete(STREAM)
                got[name]["pipelined"].append(await _pipelined(redis, head, n))
                got[name]["single"].append(await _single(redis, head, n // 10))
        stats = await redis.info("commandstats")
        await redis.flushdb()
    finally:
        await redis.aclose()
    result = {
        name: {mode: statistics.median(v) for mode, v in modes.items()}
        for name, modes in got.items()
    }
    # Redis's own time per call (microseconds): the server side alone, without the client.
    result["EVALSHA"]["server_us"] = float(stats["cmdstat_evalsha"]["usec_per_call"])
    result["FCALL"]["server_us"] = float(stats["cmdstat_fcall"]["usec_per_call"])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder, EmbeddedRedis(folder) as server:
        result = asyncio.run(run(server.url, args.n, args.rounds))
    for mode in ("pipelined", "single"):
        evalsha, fcall = result["EVALSHA"][mode], result["FCALL"][mode]
        print(
            f"{mode:<10} EVALSHA {evalsha:>9,.0f}/s  FCALL {fcall:>9,.0f}/s  "
            f"FCALL/EVALSHA {fcall / evalsha:.2f}"
        )
    evalsha, fcall = result["EVALSHA"]["server_us"], result["FCALL"]["server_us"]
    print(
        f"server     EVALSHA {evalsha:>7.2f} us/call  FCALL {fcall:>7.2f} us/call  "
        f"FCALL/EVALSHA {fcall / evalsha:.2f}"
    )


if __name__ == "__main__":
    main()
