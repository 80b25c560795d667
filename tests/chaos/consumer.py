"""One replica of the chaos consumer service, run as its own process by the fault tests.

    python -m tests.chaos.consumer --url redis://... --consumer c1 --store effects.db \
        --history c1.jsonl [--http 127.0.0.1:PORT] [--work-ms 2] [--partitioned]

It consumes ``dukcapil.citizen.died.v1`` and ``bapenda.payment.received.v1`` — or, with
``--partitioned``, ``chaos.gauge.read.v1`` (4 partitions, read in order: tests/chaos/gauge.py).
Each handler call is logged to the history (``handle``), then its effect — one row — is
committed through the transactional inbox of its SQLite store (``Store.once``), the way
services/* record theirs.
SIGTERM stops it gracefully; the tests mostly SIGKILL it. It exits with status 3 if its
consume loop dies, so a dead loop is never mistaken for a quiet one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from functools import partial

from bus import EventContext, Service
from bus.contracts import Contract
from bus.logging import configure
from bus.store import Store
from bus.testing import quick_settings
from schemas.bapenda import PaymentReceived
from schemas.dukcapil import CitizenDied
from tests.chaos import effects, gauge
from tests.chaos.history import History

GROUP = "chaos"
MODELS: tuple[type[Contract], ...] = (CitizenDied, PaymentReceived)
STREAMS = tuple(sorted({m.__contract__.stream for m in MODELS}))
LOOP_DIED = 3


def build(
    url: str,
    consumer: str,
    store: Store,
    history: History,
    *,
    http: str | None = None,
    work_ms: int = 0,
    partitioned: bool = False,
) -> Service:
    settings = quick_settings(url, consumer=consumer, http=http)
    if partitioned:
        service = Service(GROUP, settings=settings, registry=gauge.REGISTRY)
    else:
        service = Service(GROUP, settings=settings)

    @service.on_startup
    async def open_store() -> None:
        await store.migrate(effects.TABLES)

    @service.on_shutdown
    async def close_store() -> None:
        await store.close()

    async def take_effect(event: Contract, ctx: EventContext) -> None:
        subject = ctx.envelope.subject
        history.handled(
            ctx.event_id,
            subject=subject,
            entry=ctx.entry_id,
            delivery=ctx.delivery,
            consumer=consumer,
        )
        if work_ms:  # widens the window between effect and ack that a SIGKILL can hit
            await asyncio.sleep(work_ms / 1000)
        work = partial(
            effects.record,
            event_id=ctx.event_id,
            subject=subject,
            consumer=consumer,
            entry_id=ctx.entry_id,
        )
        await store.once(ctx.event_id, work)

    for model in (gauge.GaugeRead,) if partitioned else MODELS:
        service.on(model)(take_effect)
    return service


async def _run(args: argparse.Namespace) -> int:
    store = Store(f"sqlite:///{args.store}", scope=GROUP)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    with History(args.history, process=args.consumer) as history:
        service = build(
            args.url,
            args.consumer,
            store,
            history,
            http=args.http,
            work_ms=args.work_ms,
            partitioned=args.partitioned,
        )
        async with service.running():
            started = False
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.2)
                started = started or service.health.running
                # A loop that died before this first looked has run too: it left its error.
                ran = started or service.health.last_error is not None
                if ran and not service.health.running:
                    return LOOP_DIED
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--consumer", required=True)
    parser.add_argument("--store", required=True, help="SQLite file of the effects")
    parser.add_argument("--history", required=True, help="JSON-lines history file")
    parser.add_argument("--http", default=None, help="HOST:PORT of /healthz and /readyz")
    parser.add_argument("--work-ms", type=int, default=0)
    parser.add_argument("--partitioned", action="store_true", help="consume chaos.gauge")
    args = parser.parse_args()
    configure(level="warning", fmt="json")
    sys.exit(asyncio.run(_run(args)))


if __name__ == "__main__":
    main()
