"""Every bench workload that starts a Simpul Service, on a few events (no timing checked), in
the environment `make bench` gives it: a Service that refuses to start fails here.

The workloads run in a process of their own (as `python -m bench.run` does): the bench
contracts must not join this test session's contract registry.
"""

from __future__ import annotations

import json

import pytest

from tests.bench import run_python

pytestmark = pytest.mark.slow

N = 300

WORKLOADS = f"""
import asyncio, json
from bench import latency, profiles, signing, throughput
from bench.common import Payloads, Target


async def main() -> None:
    done = {{}}
    with Target.open() as target:
        client = target.client()
        payloads = Payloads(client)
        for name, work in (
            ("consume", throughput.consume_simpul),
            ("consume_app", throughput.consume_simpul_app),
        ):
            done[name] = (await work(target, payloads, {N}))["rate"] > 0
        for consumer, publisher in (("simpul", "raw"), ("simpul", "simpul")):
            result = await latency.measure(
                target, payloads, consumer, publisher, rate=200, duration_s=1.0, idle_s=0.5
            )
            done[f"latency_{{publisher}}"] = result["load"]["received"]
        done["profile"] = (await profiles.profile_consume(target, payloads, {N})).events
        for keyring in (None, signing.KEYRING):
            result = await signing.consume_service(target, payloads, {N}, keyring=keyring)
            done["signed" if keyring else "unsigned"] = result["rate"] > 0
        await client.aclose()
    print(json.dumps(done))


asyncio.run(main())
"""


def test_every_bench_service_starts_without_the_session_settings() -> None:
    done = run_python("-c", WORKLOADS, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["consume"] and result["consume_app"] and result["unsigned"] and result["signed"]
    assert result["profile"] == N
    # The consumer child counts what it received over its paced window.
    assert result["latency_raw"] > 0 and result["latency_simpul"] > 0
