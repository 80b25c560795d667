"""Service.on_every, ctx.publish(key=) and Service.mount, against a real Redis."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime
from urllib.parse import urlsplit

import httpx
import pytest
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bus import ConfigurationError, Envelope, EventContext, Publisher, Registry, Service, keys
from bus.deadletter import Reason
from bus.envelope import format_time
from bus.http import parse_address
from bus.testing import quick_settings, wait_until
from schemas.bapenda import TaxAssessed
from schemas.dinsos import AssistanceGranted, AssistanceSuspended
from schemas.dukcapil import CitizenDied, CitizenMoved

SOURCE = "urn:malangkota:test"
CITIZEN = keys.stream("dukcapil.citizen")
ASSISTANCE = keys.stream("dinsos.assistance")
TAX = keys.stream("bapenda.tax")
NIK = "3573014506900001"
DIED = CitizenDied(nik=NIK, date_of_death=date(2024, 3, 1), kecamatan="35.73.01")
MOVED = CitizenMoved(nik=NIK, address="Jl. Ijen 1", kecamatan="35.73.02", moved_on=date(2024, 3, 2))
GRANTED = AssistanceGranted(
    grant_no="PKH-357304-2026-00317",
    programme="pkh",
    recipient="3573014107780004",
    kk="3573051203150004",
    kelurahan="35.73.01.1004",
    amount=750_000,
    frequency="quarterly",
    starts_on=date(2024, 10, 1),
    granted_on=date(2024, 9, 20),
)

Seen = list[tuple[str, str, str]]  # (stream, type, id)


def raw(event_type: str, event_id: str, data: str = '{"anything": 1}') -> dict[str, str]:
    """A wire-format entry of any type, contract or not."""
    name, _, major = event_type.rpartition(".v")
    return Envelope(
        id=event_id,
        source=SOURCE,
        type=event_type,
        time=format_time(datetime.now(UTC)),
        dataschema=f"simpul:{name}:{major}.0",
        data=data,
    ).to_fields()


def of(event: AssistanceGranted | CitizenDied | CitizenMoved, event_id: str) -> dict[str, str]:
    return raw(type(event).__contract__.event_type, event_id, event.model_dump_json())


async def groups(redis: Redis, stream: str) -> list[str]:
    if not await redis.exists(stream):
        return []
    return [g["name"].decode() for g in await redis.xinfo_groups(stream)]


async def pending(redis: Redis, stream: str, group: str) -> int:
    return int((await redis.xpending(stream, group))["pending"])


async def dead_letters(redis: Redis, stream: str, group: str) -> list[dict[bytes, bytes]]:
    return [fields for _, fields in await redis.xrange(keys.dead_letters(stream, group))]


# -- on_every -----------------------------------------------------------------------------


async def test_on_every_gets_each_entry_of_the_registered_streams_whatever_its_type(
    redis: Redis, redis_url: str
) -> None:
    registry = Registry()
    registry.register(CitizenDied)
    registry.register(AssistanceGranted)
    service = Service("archive", settings=quick_settings(redis_url), registry=registry)
    seen: Seen = []

    @service.on_every()
    async def keep(envelope: Envelope, ctx: EventContext) -> None:
        seen.append((ctx.stream, envelope.type, envelope.id))

    assert service.every_streams == (ASSISTANCE, CITIZEN)  # sorted, each once
    async with service.running():
        await redis.xadd(CITIZEN, of(DIED, "died-1"))
        await redis.xadd(CITIZEN, raw("dukcapil.citizen.renamed.v1", "renamed-1"))
        await redis.xadd(CITIZEN, of(MOVED, "moved-1"))  # no contract in this registry
        # Before any validation: even a payload no contract would accept.
        await redis.xadd(ASSISTANCE, raw("dinsos.assistance.granted.v1", "granted-1", "{oops"))
        await redis.xadd(TAX, raw("bapenda.tax.assessed.v1", "assessed-1"))
        await wait_until(lambda: len(seen) >= 4)

        async def settled() -> bool:
            return (
                await pending(redis, CITIZEN, "archive")
                == 0
                == await pending(redis, ASSISTANCE, "archive")
            )

        await wait_until(settled)
    assert sorted(seen) == sorted(
        [
            (CITIZEN, "dukcapil.citizen.died.v1", "died-1"),
            (CITIZEN, "dukcapil.citizen.renamed.v1", "renamed-1"),
            (CITIZEN, "dukcapil.citizen.moved.v1", "moved-1"),
            (ASSISTANCE, "dinsos.assistance.granted.v1", "granted-1"),
        ]
    )
    assert await groups(redis, TAX) == []  # a stream no registered contract lives on: not read
    assert await dead_letters(redis, CITIZEN, "archive") == []
    assert await dead_letters(redis, ASSISTANCE, "archive") == []


async def test_on_every_with_explicit_streams_reads_only_those(
    redis: Redis, redis_url: str
) -> None:
    registry = Registry()  # a bridge of the tax stream: it knows the stream's contracts
    registry.register(AssistanceGranted)
    registry.register(TaxAssessed)
    service = Service("bridge", settings=quick_settings(redis_url), registry=registry)
    every: Seen = []
    typed: list[str] = []

    @service.on(AssistanceGranted)
    async def granted(event: AssistanceGranted, ctx: EventContext) -> None:
        typed.append(ctx.event_id)

    @service.on_every(streams=[TAX])
    async def forward(envelope: Envelope, ctx: EventContext) -> None:
        every.append((ctx.stream, envelope.type, envelope.id))

    assert service.every_streams == (TAX,)
    async with service.running():
        await redis.xadd(TAX, raw("bapenda.tax.assessed.v1", "assessed-1"))
        await redis.xadd(TAX, raw("bapenda.tax.waived.v1", "waived-1"))
        # On the typed handler's stream, not on_every's: an unknown type is a dead letter there.
        await redis.xadd(ASSISTANCE, raw("dinsos.assistance.renamed.v1", "renamed-1"))
        await redis.xadd(ASSISTANCE, of(GRANTED, "granted-1"))
        await redis.xadd(CITIZEN, of(DIED, "died-1"))
        await wait_until(lambda: len(every) >= 2 and typed == ["granted-1"])

        async def dead_lettered() -> bool:
            return len(await dead_letters(redis, ASSISTANCE, "bridge")) == 1

        await wait_until(dead_lettered)
    assert sorted(every) == [
        (TAX, "bapenda.tax.assessed.v1", "assessed-1"),
        (TAX, "bapenda.tax.waived.v1", "waived-1"),
    ]
    [dead] = await dead_letters(redis, ASSISTANCE, "bridge")
    assert dead[b"dlq.reason"].decode() == Reason.UNKNOWN_TYPE
    assert dead[b"id"] == b"renamed-1"
    assert await groups(redis, CITIZEN) == []


async def test_a_typed_handler_takes_precedence_over_on_every(redis: Redis, redis_url: str) -> None:
    service = Service("precedence", settings=quick_settings(redis_url))
    every: list[str] = []
    typed: list[str] = []

    @service.on_every(streams=[CITIZEN])
    async def keep(envelope: Envelope, ctx: EventContext) -> None:
        every.append(envelope.id)

    @service.on(CitizenDied)
    async def died(event: CitizenDied, ctx: EventContext) -> None:
        typed.append(ctx.event_id)

    async with service.running():
        await redis.xadd(CITIZEN, of(DIED, "died-1"))
        await redis.xadd(CITIZEN, of(MOVED, "moved-1"))
        # A typed handler's contract still applies: a violation is a dead letter, not on_every's.
        bad = raw("dukcapil.citizen.died.v1", "died-bad", '{"nik": "123"}')
        await redis.xadd(CITIZEN, bad)
        await redis.xadd(CITIZEN, of(DIED, "died-2"))
        await wait_until(lambda: len(typed) >= 2)
    assert typed == ["died-1", "died-2"]
    assert every == ["moved-1"]
    [dead] = await dead_letters(redis, CITIZEN, "precedence")
    assert dead[b"dlq.reason"].decode() == Reason.CONTRACT_VIOLATION


async def test_on_every_raising_is_retried_then_dead_lettered(redis: Redis, redis_url: str) -> None:
    settings = quick_settings(redis_url, max_deliveries=3)
    service = Service("fragile", settings=settings)
    calls: list[tuple[str, int]] = []

    @service.on_every(streams=[CITIZEN])
    async def fragile(envelope: Envelope, ctx: EventContext) -> None:
        calls.append((envelope.id, ctx.delivery))
        if envelope.id.startswith("bad"):
            raise ValueError("archive full")

    async with service.running():
        await redis.xadd(CITIZEN, raw("dukcapil.citizen.renamed.v1", "bad-1"))

        async def dead_lettered() -> bool:
            return len(await dead_letters(redis, CITIZEN, "fragile")) == 1

        await wait_until(dead_lettered, timeout=20)
        await redis.xadd(CITIZEN, raw("dukcapil.citizen.renamed.v1", "good-1"))
        await wait_until(lambda: ("good-1", 1) in calls)

        async def settled() -> bool:
            return await pending(redis, CITIZEN, "fragile") == 0

        await wait_until(settled)
    assert [delivery for event_id, delivery in calls if event_id == "bad-1"] == [1, 2, 3]
    [dead] = await dead_letters(redis, CITIZEN, "fragile")
    assert dead[b"dlq.reason"].decode() == Reason.HANDLER_FAILED
    assert dead[b"dlq.attempts"] == b"3"
    assert b"archive full" in dead[b"dlq.error"]


def test_on_every_configuration_mistakes() -> None:
    service = Service("archive")

    @service.on_every()
    async def first(envelope: Envelope, ctx: EventContext) -> None: ...

    with pytest.raises(ConfigurationError, match="already has an on_every handler"):

        @service.on_every(streams=[CITIZEN])
        async def second(envelope: Envelope, ctx: EventContext) -> None: ...

    with pytest.raises(ConfigurationError, match="must be an async def"):
        Service("other").on_every()(lambda envelope, ctx: None)  # type: ignore[arg-type,return-value]
    with pytest.raises(ConfigurationError, match="at least one stream"):
        Service("other").on_every(streams=[])
    with pytest.raises(ConfigurationError, match="at least one stream"):
        Service("other", registry=Registry()).on_every()


# -- ctx.publish(key=) ----------------------------------------------------------------------


async def test_publish_with_keys_publishes_each_once_even_when_redelivered(
    redis: Redis, redis_url: str
) -> None:
    service = Service(
        "dinsos", source="urn:malangkota:dinsos:bansos", settings=quick_settings(redis_url)
    )
    duplicates: list[tuple[str, bool]] = []
    deliveries: list[int] = []

    @service.on(CitizenDied)
    async def suspend_grants(event: CitizenDied, ctx: EventContext) -> None:
        for grant_no in ("PKH-2024-0001", "BSD-2024-0002"):
            suspended = AssistanceSuspended(
                grant_no=grant_no,
                programme="pkh",
                recipient=event.nik,
                reason="death",
                suspended_on=date(2024, 3, 2),
                effective_from=date(2024, 4, 1),
            )
            published = await ctx.publish(suspended, key=grant_no)
            duplicates.append((published.event_id, published.duplicate))
        deliveries.append(ctx.delivery)
        if ctx.delivery == 1:
            raise RuntimeError("crashed after publishing, before the ack")

    async with service.running():
        await Publisher(redis, source=SOURCE).publish(DIED, id="death-1")
        await wait_until(lambda: deliveries == [1, 2])

        async def settled() -> bool:
            return await pending(redis, CITIZEN, "dinsos") == 0

        await wait_until(settled)
    entries = [fields for _, fields in await redis.xrange(ASSISTANCE)]
    assert len(entries) == 2  # two grants, each published once
    first, second = (e[b"id"].decode() for e in entries)
    assert first != second
    assert {e[b"causationid"] for e in entries} == {b"death-1"}
    assert {e[b"correlationid"] for e in entries} == {b"death-1"}
    assert [d for _, d in duplicates] == [False, False, True, True]  # the redelivery: no-ops
    assert [i for i, _ in duplicates] == [first, second, first, second]


# -- mount: an HTTP API while running -------------------------------------------------------


def api() -> Starlette:
    async def grant(request: Request) -> JSONResponse:
        return JSONResponse({"grant_no": request.path_params["no"], "status": "active"})

    return Starlette(routes=[Route("/grants/{no}", grant)])


def consuming(name: str, redis_url: str, **settings: str) -> Service:
    service = Service(name, settings=quick_settings(redis_url, **settings))

    @service.on(CitizenDied)
    async def ignore(event: CitizenDied) -> None: ...

    return service


async def refused(url: str) -> bool:
    parts = urlsplit(url)
    try:
        _, writer = await asyncio.open_connection(parts.hostname, parts.port)
    except OSError:
        return True
    writer.close()
    await writer.wait_closed()
    return False


@pytest.mark.parametrize("address", ["127.0.0.1:0", "[::1]:0"])
async def test_a_mounted_app_answers_while_running_and_not_after(
    redis_url: str, address: str
) -> None:
    service = consuming("profile", redis_url, http=address)
    service.mount(api())
    assert service.http_url is None
    async with service.running():
        url = service.http_url
        assert url is not None
        host = address.rpartition(":")[0]
        assert url.startswith(f"http://{host}:")
        assert urlsplit(url).port not in (None, 0)
        async with httpx.AsyncClient() as client:
            response = await client.get(f"{url}/grants/PKH-1")
        assert response.status_code == 200
        assert response.json() == {"grant_no": "PKH-1", "status": "active"}
    assert service.http_url is None
    assert await refused(url)


async def test_without_a_mount_only_health_is_served(redis_url: str) -> None:
    unmounted = consuming("profile", redis_url, http="127.0.0.1:0")
    async with unmounted.running(), httpx.AsyncClient() as client:
        assert unmounted.http_url is not None
        assert (await client.get(f"{unmounted.http_url}/grants/PKH-1")).status_code == 404
        assert (await client.get(f"{unmounted.http_url}/healthz")).status_code == 200


async def test_without_an_address_nothing_is_served(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SIMPUL_HTTP", raising=False)
    unset = consuming("profile", redis_url)
    unset.mount(api())
    assert unset.settings.http is None
    served: list[str] = []
    monkeypatch.setattr("bus.service.serving", lambda *a, **k: served.append("served"))
    async with unset.running():
        assert unset.http_url is None
    assert served == []


@pytest.mark.parametrize("address", ["8080", "localhost", ":8080", "127.0.0.1:http", "h:70000"])
async def test_a_bad_address_names_the_expected_form(redis_url: str, address: str) -> None:
    service = consuming("profile", redis_url, http=address)
    service.mount(api())
    stopped: list[str] = []

    @service.on_shutdown
    async def close_pools() -> None:
        stopped.append("closed")

    with pytest.raises(ConfigurationError, match=r"HOST:PORT \(e\.g\. 127\.0\.0\.1:8080\)"):
        async with service.running():
            pass
    assert service.http_url is None
    assert stopped == ["closed"]  # what started was stopped again


async def test_a_port_in_use_is_a_clear_error_not_an_exit(redis_url: str) -> None:
    taken = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = taken.sockets[0].getsockname()[1]
    try:
        service = consuming("profile", redis_url, http=f"127.0.0.1:{port}")
        service.mount(api())
        with pytest.raises(ConfigurationError, match=f"127.0.0.1:{port}: Address already in use"):
            async with service.running():
                pass
    finally:
        taken.close()
        await taken.wait_closed()


@pytest.mark.parametrize(
    ("address", "parsed"),
    [
        ("127.0.0.1:8080", ("127.0.0.1", 8080)),
        ("[::1]:0", ("::1", 0)),
        ("0.0.0.0:65535", ("0.0.0.0", 65535)),
        ("api.local:80", ("api.local", 80)),
    ],
)
def test_parse_address(address: str, parsed: tuple[str, int]) -> None:
    assert parse_address(address) == parsed


async def test_a_failing_startup_hook_still_runs_the_shutdown_hooks(redis_url: str) -> None:
    """What an earlier startup hook opened (a database pool...) is closed when a later one
    fails, instead of leaking with the failed start."""
    service = Service("half-started", settings=quick_settings(redis_url))
    events: list[str] = []

    @service.on(CitizenDied)
    async def handle(event: CitizenDied) -> None:
        pass

    @service.on_startup
    async def open_pool() -> None:
        events.append("opened")

    @service.on_startup
    async def fail() -> None:
        raise RuntimeError("the second resource is unavailable")

    @service.on_shutdown
    async def close_pool() -> None:
        events.append("closed")

    with pytest.raises(RuntimeError, match="second resource"):
        async with service.running():
            pass
    assert events == ["opened", "closed"]


def test_on_every_takes_aggregate_names_and_refuses_unknown_ones_at_start() -> None:
    service = Service("archive")  # the default registry: every contract imported here

    @service.on_every(streams=["dukcapil.citizen", TAX])  # a name as simpul tail takes it, a key
    async def keep(envelope: Envelope, ctx: EventContext) -> None: ...

    assert service.every_streams == (TAX, CITIZEN)
    for typo in ("dukcapil.citizn", "simpul:{dukcapil.citizn}", "citizen"):
        with pytest.raises(ConfigurationError, match=r"not a stream of any registered contract"):
            Service("other").on_every(streams=[typo])
