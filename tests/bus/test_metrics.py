"""Per-service Prometheus metrics (bus.metrics), against a real Redis: exact counts of what a
service consumed, failed, dead-lettered and published; bounded labels; one registry per service;
``GET /metrics`` beside the health endpoints."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

import httpx
import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from bus import EventContext, Publisher, Service
from bus.contracts import default_registry
from bus.deadletter import Reason
from bus.health import Health
from bus.metrics import UNKNOWN, ServiceMetrics
from bus.testing import quick_settings, wait_until
from schemas.dukcapil import CitizenDied, CitizenMoved
from tests.bus.delivery.helpers import (
    NIK,
    SOURCE,
    STREAM,
    dead_letters,
    died,
    fields_of,
    moved,
)

DIED = CitizenDied.__contract__.event_type
MOVED = CitizenMoved.__contract__.event_type
NAMES = {
    "simpul_events_consumed",
    "simpul_events_failed",
    "simpul_events_dead_lettered",
    "simpul_events_published",
    "simpul_handler_seconds",
    "simpul_consumer_ready",
    "simpul_consumer_last_poll_age_seconds",
    "simpul_consumer_last_ack_age_seconds",
}


@pytest.fixture
def publisher(redis: Redis) -> Publisher:
    return Publisher(redis, source=SOURCE)


def value(service: Service, name: str, **labels: str) -> float:
    """A sample of the service's own registry (0 when the series does not exist)."""
    found = service.metrics.registry.get_sample_value(name, {"service": service.name, **labels})
    return found or 0.0


def junk(event_type: str, event_id: str) -> dict[str, str]:
    """A well-formed entry of a type no contract declares (its data is irrelevant)."""
    name, _, major = event_type.rpartition(".v")
    return fields_of(
        died(), event_id, type=event_type, dataschema=f"simpul:{name}:{major}.0", data="{}"
    )


async def test_counts_are_exact_for_handled_failed_and_dead_lettered_events(
    redis: Redis, redis_url: str, publisher: Publisher
) -> None:
    settings = quick_settings(redis_url, max_deliveries=3)
    service = Service("metrics-count", settings=settings)
    handled: list[str] = []

    @service.on(CitizenDied)
    async def handle(event: CitizenDied, ctx: EventContext) -> None:
        if ctx.event_id == "always" or (ctx.event_id == "flaky" and ctx.delivery == 1):
            raise RuntimeError(f"cannot handle {event.nik}")
        handled.append(ctx.event_id)

    n = 4
    for i in range(n):
        await publisher.publish(died(), id=f"ok-{i}")
    await publisher.publish(died(), id="flaky")  # fails once, then succeeds
    await publisher.publish(died(), id="always")  # fails 3 times: dead letter, handler_failed
    await publisher.publish(moved(), id="moved")  # a known type without handler: skipped
    await redis.xadd(STREAM, junk("dukcapil.citizen.vanished.v1", "junk"))  # unknown_type
    await redis.xadd(STREAM, {"junk": "x"})  # undecodable
    short = died().model_dump_json().replace(NIK, NIK[:15])
    await redis.xadd(STREAM, fields_of(died(), "short", data=short))  # contract_violation

    async with service.running():
        await wait_until(lambda: len(handled) == n + 1)
        await wait_until(lambda: value(service, "simpul_events_consumed_total", type=DIED) == 5)
        await wait_until(_dead_letters_are(redis, 4))
        await wait_until(lambda: _dead_lettered(service) == 4)

    assert value(service, "simpul_events_consumed_total", type=DIED) == n + 1
    assert value(service, "simpul_events_consumed_total", type=MOVED) == 0  # skipped
    assert value(service, "simpul_events_failed_total", type=DIED) == 1 + 3
    assert value(service, "simpul_handler_seconds_count", type=DIED) == n + 1
    assert value(service, "simpul_handler_seconds_sum", type=DIED) > 0
    dead = {
        (t, r.value): value(service, "simpul_events_dead_lettered_total", type=t, reason=r.value)
        for t in (DIED, MOVED, UNKNOWN)
        for r in Reason
    }
    assert {k: v for k, v in dead.items() if v} == {
        (DIED, "handler_failed"): 1,
        (DIED, "contract_violation"): 1,
        (UNKNOWN, "unknown_type"): 1,
        (UNKNOWN, "undecodable"): 1,
    }
    assert service.health.counters["acked"] == n + 2  # the handled five and the skipped move


def _dead_lettered(service: Service) -> float:
    return sum(
        value(service, "simpul_events_dead_lettered_total", type=t, reason=r.value)
        for t in (DIED, UNKNOWN)
        for r in Reason
    )


def _dead_letters_are(redis: Redis, count: int) -> object:
    async def check() -> bool:
        return len(await dead_letters(redis, group="metrics-count")) == count

    return check


async def test_junk_types_all_map_to_unknown_and_never_grow_the_labels(
    redis: Redis, redis_url: str
) -> None:
    service = Service("metrics-junk", settings=quick_settings(redis_url))
    archived: list[str] = []

    @service.on_every(streams=[STREAM])
    async def archive(envelope: object, ctx: EventContext) -> None:
        archived.append(ctx.event_id)

    kinds = 30
    for i in range(kinds):  # each a different invented type on the citizen stream
        await redis.xadd(STREAM, junk(f"dukcapil.citizen.invented{i}.v1", f"junk-{i}"))
    await redis.xadd(STREAM, fields_of(died(), "real"))

    async with service.running():
        await wait_until(lambda: len(archived) == kinds + 1)
        await wait_until(lambda: value(service, "simpul_events_consumed_total", type=DIED) == 1)
        await wait_until(
            lambda: value(service, "simpul_events_consumed_total", type=UNKNOWN) == kinds
        )
        body, _ = service.metrics.exposition()

    types = {
        sample.labels["type"]
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
        if "type" in sample.labels
    }
    assert UNKNOWN in types
    assert types <= {m.__contract__.event_type for m in default_registry} | {UNKNOWN}
    assert not any("invented" in t for t in types)
    assert value(service, "simpul_handler_seconds_count", type=UNKNOWN) == kinds


def test_type_labels_are_registry_types_handler_types_or_unknown() -> None:
    metrics = ServiceMetrics(
        "labels",
        contracts=default_registry,
        health=Health(stale_after_s=5),
        handled={"x.only.handled.v1"},
        process=False,
    )
    assert metrics.kind(DIED).label == DIED
    assert metrics.kind(DIED.encode()) is metrics.kind(DIED)  # raw field bytes work as is
    assert metrics.kind("x.only.handled.v1").label == "x.only.handled.v1"
    for junk_type in ("dukcapil.citizen.zombie.v1", "3573014506900001", "", b"\xff\xfe", b""):
        assert metrics.kind(junk_type).label == UNKNOWN
    cached = len(metrics.kinds())
    for i in range(1000):
        metrics.kind(f"junk.type.n{i}.v1")
        metrics.dead_lettered(f"junk.type.n{i}.v1".encode(), Reason.UNKNOWN_TYPE)
    assert len(metrics.kinds()) == cached  # junk is never cached (one "unknown" for all)
    assert (
        metrics.registry.get_sample_value(
            "simpul_events_dead_lettered_total",
            {"service": "labels", "type": UNKNOWN, "reason": "unknown_type"},
        )
        == 1000
    )


async def test_published_counts_new_events_not_a_redelivery_s_duplicate(
    redis_url: str, publisher: Publisher
) -> None:
    service = Service("metrics-pub", source=SOURCE, settings=quick_settings(redis_url))
    done: list[int] = []

    @service.on(CitizenDied)
    async def relay(event: CitizenDied, ctx: EventContext) -> None:
        await ctx.publish(
            CitizenMoved(
                nik=event.nik, address="Jl. Ijen 1", kecamatan="35.73.02", moved_on=date(2024, 3, 2)
            )
        )
        if ctx.delivery == 1:
            raise RuntimeError("fails after publishing: the retry publishes a duplicate")
        done.append(ctx.delivery)

    await publisher.publish(died(), id="cause")
    async with service.running():
        await wait_until(lambda: value(service, "simpul_events_consumed_total", type=DIED) == 1)
    assert done == [2]
    assert value(service, "simpul_events_published_total", type=MOVED) == 1
    assert value(service, "simpul_events_failed_total", type=DIED) == 1


async def test_two_services_in_one_process_keep_their_own_registries(
    redis_url: str, publisher: Publisher
) -> None:
    settings = quick_settings(redis_url)
    first, second = Service("metrics-a", settings=settings), Service("metrics-b", settings=settings)
    twin = Service("metrics-a", settings=settings)  # same name again: no duplicate-series error
    seen: dict[str, int] = {"metrics-a": 0, "metrics-b": 0}
    for service in (first, second):

        @service.on(CitizenDied)
        async def count(event: CitizenDied, ctx: EventContext) -> None:
            seen[ctx.group] += 1
            if ctx.group == "metrics-b" and ctx.event_id == "e-0" and ctx.delivery == 1:
                raise RuntimeError("b fails once")

    for i in range(3):
        await publisher.publish(died(), id=f"e-{i}")
    async with first.running(), second.running():
        for service in (first, second):
            await wait_until(
                lambda s=service: value(s, "simpul_events_consumed_total", type=DIED) == 3
            )
    assert first.metrics.registry is not second.metrics.registry is not twin.metrics.registry
    assert value(first, "simpul_events_failed_total", type=DIED) == 0
    assert value(second, "simpul_events_failed_total", type=DIED) == 1
    assert value(twin, "simpul_events_consumed_total", type=DIED) == 0
    for service in (first, second):
        assert _services(service.metrics.exposition()[0]) == {service.name}
    assert (
        REGISTRY.get_sample_value(
            "simpul_events_consumed_total", {"service": "metrics-a", "type": DIED}
        )
        is None
    )  # nothing leaks into prometheus_client's global registry


def _services(body: bytes) -> set[str]:
    return {
        sample.labels["service"]
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
        if "service" in sample.labels
    }


async def test_metrics_are_served_beside_the_health_endpoints(
    redis_url: str, publisher: Publisher
) -> None:
    service = Service("metrics-http", settings=quick_settings(redis_url, http="127.0.0.1:0"))

    @service.on(CitizenDied)
    async def handle(event: CitizenDied) -> None:
        pass

    assert value(service, "simpul_consumer_ready") == 0  # not running yet
    assert (
        service.metrics.registry.get_sample_value(
            "simpul_consumer_last_poll_age_seconds", {"service": "metrics-http"}
        )
        is None
    )  # absent before the first poll
    await publisher.publish(died(), id="served")
    async with service.running(), httpx.AsyncClient(timeout=5) as client:
        base = service.http_url
        await wait_until(lambda: value(service, "simpul_events_consumed_total", type=DIED) == 1)
        await wait_until(lambda: service.health.ready)
        assert (await client.get(f"{base}/readyz")).status_code == 200
        reply = await client.get(f"{base}/metrics")
        assert reply.status_code == 200
        assert reply.headers["content-type"].startswith("text/plain")
        families = {f.name: f for f in text_string_to_metric_families(reply.text)}
        openmetrics = await client.get(
            f"{base}/metrics", headers={"accept": "application/openmetrics-text"}
        )
        assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
        assert openmetrics.text.rstrip().endswith("# EOF")
    assert set(families) >= NAMES
    assert _sample(families["simpul_consumer_ready"].samples) == 1
    assert 0 <= _sample(families["simpul_consumer_last_poll_age_seconds"].samples) < 10
    assert 0 <= _sample(families["simpul_consumer_last_ack_age_seconds"].samples) < 10
    consumed = [s for s in families["simpul_events_consumed"].samples if s.name.endswith("_total")]
    assert [(s.labels, s.value) for s in consumed] == [
        ({"service": "metrics-http", "type": DIED}, 1.0)
    ]
    assert NIK not in reply.text  # no personal data in labels
    assert value(service, "simpul_consumer_ready") == 0  # stopped


def _sample(samples: Iterable[object]) -> float:
    (only,) = samples
    return float(only.value)  # type: ignore[attr-defined]
