"""The chaos producer, run as its own process: publishes deaths over a few subjects, recording
every attempt in its history.

    python -m tests.chaos.producer --url redis://... --history producer.jsonl --run r1 \
        --events 600 --subjects 8 --seed 1 [--interval-ms 5] [--attempt-timeout 1.0] \
        [--partitioned]

Event ``n`` goes to a subject drawn from ``--seed`` and gets that subject's next sequence
number. Each event is published until an attempt returns ok (the id is deterministic, so a
retry after an unknown outcome is a no-op if the first one landed), so a subject's events are
published in sequence order. Every attempt is ``invoke`` + ``ok`` / ``fail`` / ``unknown``
in the history. Exits 0 once every event returned ok, 1 if it gave up (``--deadline``).
``--partitioned`` publishes gauge readings (tests/chaos/gauge.py) instead of deaths.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections import Counter
from datetime import date

from bus import Contract, Publisher, RedisUnavailable, event_id
from bus.connection import TRANSIENT, connect
from bus.logging import configure
from schemas.dukcapil import CitizenDied
from tests.chaos import gauge
from tests.chaos.history import OK, History, classify

SOURCE = "urn:malangkota:dukcapil:siak"
_RETRY_S = 0.05


def nik(n: int) -> str:
    """A well-formed NIK of nobody: Kota Malang, a woman born 05-06-1990, serial from ``n``."""
    return f"357301450690{n % 9999 + 1:04d}"


def subject(k: int) -> str:
    return f"cit-{k:04x}"


def died(n: int) -> CitizenDied:
    return CitizenDied(nik=nik(n), date_of_death=date(2024, 3, 1), kecamatan="35.73.01")


async def publish_until_ok(
    publisher: Publisher,
    history: History,
    *,
    n: int,
    eid: str,
    subject: str,
    seq: int,
    timeout: float,
    deadline: float,
    partitioned: bool = False,
) -> bool:
    event: Contract = gauge.GaugeRead(gauge=subject, seq=seq) if partitioned else died(n)
    while True:
        history.invoke(eid, subject=subject, seq=seq)
        try:
            published = await asyncio.wait_for(
                publisher.publish(event, id=eid, subject=subject), timeout
            )
        except (*TRANSIENT, RedisUnavailable) as exc:  # an outage: data for the history
            history.outcome(eid, classify(exc), error=type(exc).__name__)
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(_RETRY_S)
            continue
        history.outcome(eid, OK, entry=published.entry_id)
        return True


async def _run(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    seqs: Counter[str] = Counter()
    redis = connect(args.url)
    deadline = time.monotonic() + args.deadline
    try:
        with History(args.history, process=f"producer-{args.run}") as history:
            publisher = Publisher(redis, source=SOURCE, signer=None)
            for n in range(args.events):
                chosen = subject(rng.randrange(args.subjects))
                seqs[chosen] += 1
                eid = event_id(SOURCE, "chaos", args.run, n)
                if not await publish_until_ok(
                    publisher,
                    history,
                    n=n,
                    eid=eid,
                    subject=chosen,
                    seq=seqs[chosen],
                    timeout=args.attempt_timeout,
                    deadline=deadline,
                    partitioned=args.partitioned,
                ):
                    return 1
                await asyncio.sleep(args.interval_ms / 1000)
    finally:
        await redis.aclose()
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--history", required=True)
    parser.add_argument("--run", required=True, help="names this run's event ids")
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--subjects", type=int, default=8)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--interval-ms", type=float, default=5.0)
    parser.add_argument("--attempt-timeout", type=float, default=1.0)
    parser.add_argument("--deadline", type=float, default=60.0, help="seconds before giving up")
    parser.add_argument("--partitioned", action="store_true", help="publish chaos.gauge")
    args = parser.parse_args()
    configure(level="warning", fmt="json")
    sys.exit(asyncio.run(_run(args)))


if __name__ == "__main__":
    main()
