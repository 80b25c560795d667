"""One router replica of the fault tests, run as its own process (routed delivery, decision 0011).

    python -m tests.chaos.router --url redis://... --replica r1

It routes the chaos topology (:data:`TOPOLOGY`): producer ``chaos-producer`` publishes gauge
readings (tests/chaos/gauge.py, 4 partitions) to its intake ``simpul:intake:{chaos-producer}``;
the router admits them onto ``simpul:{chaos.gauge.pN}`` and forwards each to the inbox of the
chaos consumers' group, ``simpul:inbox:{chaos/chaos.gauge.pN}``. The readings carry nothing
personal, so every field is approved and no router key is needed; admission checks no
signature (the scenarios are about delivery, test_router.py about signatures). A killed
replica's sources move after the lease (``--lease-ms``, 1 s here). SIGTERM stops it gracefully;
the tests SIGKILL it.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from bus import keys
from bus.access.topology import Topology
from bus.connection import connect
from bus.logging import configure
from bus.router import Router, RouterConfig
from tests.chaos import gauge
from tests.chaos.consumer import GROUP

PRODUCER = "chaos-producer"
INTAKE = keys.intake(PRODUCER)
INBOXES = tuple(keys.inbox(stream, GROUP) for stream in gauge.PARTITIONS)
"""The chaos group's inbox of each partition, in partition order."""
TOPOLOGY = Topology.parse(
    {
        "version": 1,
        "delivery": "router",
        "departments": [{"code": "chaos", "name": "Fault tests"}],
        "producers": [
            {
                "principal": PRODUCER,
                "department": "chaos",
                "adapter": "chaos-gauges",
                "publishes": [gauge.GaugeRead.__contract__.event_type],
            }
        ],
        "services": [
            {
                "principal": "svc-chaos",
                "department": "chaos",
                "group": GROUP,
                "subscriptions": [
                    {
                        "type": gauge.GaugeRead.__contract__.event_type,
                        "approved_by": "chaos",
                        "fields": "all",
                    }
                ],
            }
        ],
        "router": {"principal": "router", "department": "chaos"},
    },
    registry=gauge.REGISTRY,
    source="tests/chaos/router.py",
)


async def _run(args: argparse.Namespace) -> int:
    redis = connect(args.url, client_name=f"chaos-router:{args.replica}")
    router = Router(
        redis,
        TOPOLOGY,
        gauge.REGISTRY,
        keyring=None,
        config=RouterConfig(block_ms=100, lease_ms=args.lease_ms, trim_every_s=0.5),
        replica=args.replica,
    )
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, router.stop)
    try:
        await router.run()
    finally:
        await redis.aclose()
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--replica", required=True)
    parser.add_argument("--lease-ms", type=int, default=1_000)
    args = parser.parse_args()
    configure(level="warning", fmt="json")
    sys.exit(asyncio.run(_run(args)))


if __name__ == "__main__":
    main()
