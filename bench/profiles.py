"""Where Simpul's time goes: cProfile of the consume and publish paths, and per-step costs.

cProfile inflates small Python functions (its overhead is per call), so the table of steps
timed one by one with ``timeit`` is the better guide to the size of each cost; the profile
says which functions run and how often.
"""

from __future__ import annotations

import cProfile
import pstats
import time
import timeit
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bench import throughput
from bench.common import BATCH, STREAM, Payloads, Target, preload
from bench.contract import CitizenRecorded
from bus import EventContext, Publisher
from bus import publisher as publisher_module
from bus.contracts import default_registry
from bus.dispatch import Dispatcher, Handler
from bus.envelope import Envelope, _check_time, _texts, format_time


@dataclass
class Profile:
    name: str
    events: int
    wall_s: float
    top: list[dict[str, Any]]
    packages: dict[str, float]  # share of total tottime per package


def _label(func: tuple[str, int, str]) -> str:
    filename, line, name = func
    if filename == "~":
        return name  # a builtin, e.g. <method 'decode' of 'bytes' objects>
    for marker in ("site-packages/", "/lib/python3"):
        if marker in filename:
            filename = filename.split(marker, 1)[1]
            break
    else:
        for top in ("/bus/", "/bench/"):
            if top in filename:
                filename = top.strip("/") + "/" + filename.split(top, 1)[1]
                break
    return f"{filename}:{line}({name})"


def _package(func: tuple[str, int, str]) -> str:
    filename, _, name = func
    if filename == "~":
        if "pydantic" in name or "validate" in name or "dump" in name:
            return "pydantic-core"
        return "builtins (C)"
    for pkg in (
        "/bus/",
        "/bench/",
        "redis/",
        "hiredis",
        "pydantic",
        "structlog",
        "asyncio/",
        "uuid",
        "datetime",
        "faststream",
    ):
        if pkg in filename:
            return pkg.strip("/")
    return "other stdlib"


def _summarise(name: str, profiler: cProfile.Profile, events: int, wall_s: float) -> Profile:
    stats = pstats.Stats(profiler)
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    total = sum(row[2] for row in raw.values()) or 1.0
    rows = sorted(raw.items(), key=lambda item: item[1][2], reverse=True)[:10]
    top = [
        {
            "function": _label(func),
            "ncalls": row[1],
            "tottime_s": row[2],
            "tottime_pct": 100 * row[2] / total,
            "cumtime_s": row[3],
            "us_per_event": 1e6 * row[2] / events,
        }
        for func, row in rows
    ]
    packages: dict[str, float] = defaultdict(float)
    for func, row in raw.items():
        packages[_package(func)] += 100 * row[2] / total
    return Profile(name, events, wall_s, top, dict(sorted(packages.items(), key=lambda kv: -kv[1])))


async def profile_consume(target: Target, payloads: Payloads, n: int) -> Profile:
    await target.reset()
    redis = target.client()
    try:
        await preload(redis, STREAM, payloads, n)
        profiler = cProfile.Profile()
        started = time.perf_counter()
        profiler.enable()
        await throughput.run_simpul_consumer(target, redis, n)
        profiler.disable()
        wall = time.perf_counter() - started
    finally:
        await redis.aclose()
    return _summarise("Simpul consume (Service, batch 100)", profiler, n, wall)


async def profile_publish(target: Target, payloads: Payloads, n: int) -> Profile:
    await target.reset()
    redis = target.client()
    publisher = Publisher(redis, source=payloads.publisher.source)
    try:
        await publisher.publish_many([payloads.model(0)])
        profiler = cProfile.Profile()
        started = time.perf_counter()
        profiler.enable()
        for start in range(0, n, BATCH):
            await publisher.publish_many(
                [payloads.model(i) for i in range(start, min(start + BATCH, n))]
            )
        profiler.disable()
        wall = time.perf_counter() - started
    finally:
        await redis.aclose()
    return _summarise("Simpul publish (publish_many of 100)", profiler, n, wall)


# -- per-step costs -----------------------------------------------------------------------------


def _us(fn: Callable[[], object], number: int = 20_000) -> float:
    timer = timeit.Timer(fn)
    return min(timer.repeat(repeat=3, number=number)) / number * 1e6


async def step_costs(payloads: Payloads) -> list[tuple[str, str, float]]:
    """(path, step, microseconds per event) measured in isolation, best of 3.

    A leading "  " per level marks a part of the step above it.
    """
    model = payloads.models[0]
    envelope = payloads.envelopes[0]
    raw = {k.encode(): v.encode() for k, v in envelope.to_fields().items()}
    data_bytes, data = raw[b"data"], envelope.data
    publisher = Publisher(None, source=payloads.publisher.source)  # type: ignore[arg-type]

    async def trivial(event: CitizenRecorded) -> None:
        return None

    dispatcher = Dispatcher(
        handlers={envelope.type: Handler.build(CitizenRecorded, trivial, once=False)},
        registry=default_registry,
        group="g",
        consumer="c",
        max_deliveries=5,
    )
    count = 20_000
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(count):
            await dispatcher.dispatch(STREAM, "1-0", raw, 1)
        timings.append(time.perf_counter() - started)
    dispatch_us = min(timings) / count * 1e6
    log = publisher_module._log

    steps: list[tuple[str, str, Callable[[], object] | float]] = [
        (
            "consume",
            "raw baseline: model_validate_json(data bytes)",
            lambda: CitizenRecorded.model_validate_json(data_bytes),
        ),
        ("consume", "Dispatcher.dispatch (decode, checks, validate, context, call)", dispatch_us),
        (
            "consume",
            "  Envelope.from_fields (decode 16 bytes, checks, time parse)",
            lambda: Envelope.from_fields(raw),
        ),
        ("consume", "    _texts: bytes -> str for 8 keys and 8 values", lambda: _texts(raw)),
        ("consume", "    _check_time: datetime.fromisoformat", lambda: _check_time(envelope.time)),
        (
            "consume",
            '  model_validate_json(data str, extra="ignore") (tolerant)',
            lambda: CitizenRecorded.model_validate_json(data, extra="ignore"),
        ),
        (
            "consume",
            "  for comparison: the same without the extra= override",
            lambda: CitizenRecorded.model_validate_json(data),
        ),
        (
            "consume",
            "  EventContext(...)",
            lambda: EventContext(envelope, STREAM, "1-0", "g", "c", 1, None),
        ),
        ("publish", "raw baseline: model_dump_json", model.model_dump_json),
        ("publish", "raw baseline: str(uuid.uuid4())", _uuid4),
        (
            "publish",
            "Publisher.envelope (dump, re-validate, uuid4, time)",
            lambda: publisher.envelope(model),
        ),
        (
            "publish",
            "  model_validate_json of the dump (re-validation)",
            lambda: CitizenRecorded.model_validate_json(data),
        ),
        (
            "publish",
            "  format_time(datetime.now(UTC)) per event",
            lambda: format_time(datetime.now(UTC)),
        ),
        (
            "publish",
            "Publisher._wrap(Envelope): re-decode check of a ready envelope",
            lambda: publisher._wrap(envelope, {}),
        ),
        (
            "publish",
            "Publisher._batch_call of one event (keys, MINID, to_fields, args)",
            lambda: publisher._batch_call(envelope.stream, [envelope]),
        ),
        ("publish", "  envelope.stream (regex in keys.stream_of)", lambda: envelope.stream),
        (
            "publish",
            "_log.debug('event_published', ...) filtered out, per event",
            lambda: log.debug(
                "event_published", stream=STREAM, event_id="x", entry_id="1-0", duplicate=False
            ),
        ),
    ]
    return [(path, step, fn if isinstance(fn, float) else _us(fn)) for path, step, fn in steps]


def _uuid4() -> str:
    return str(uuid.uuid4())
