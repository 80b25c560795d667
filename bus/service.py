"""A service: a named consumer group with typed handlers, run as a FastStream application.

    service = Service("dinsos", source="urn:malangkota:dinsos:bansos")

    @service.on(CitizenDied)
    async def suspend_assistance(event: CitizenDied, ctx: EventContext) -> None:
        ...

Run it with ``simpul run MODULE:service`` (as many replicas as you like), or give
``simpul run`` a function that builds the service (``services.profile:create``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from datetime import timedelta
from typing import Any

from faststream import FastStream
from faststream.redis import RedisBroker
from faststream.redis.configs import RedisConnectionState
from redis.asyncio import Redis
from redis.exceptions import ResponseError
from starlette.types import ASGIApp

from bus import keys, replies
from bus.connection import TRANSIENT, connect, translate
from bus.consumer import Consumer
from bus.contracts import Contract, Registry, default_registry
from bus.dedupe import Dedupe
from bus.dispatch import Dispatcher, EnvelopeFunc, Handler, HandlerFunc
from bus.durability import Durability
from bus.errors import ConfigurationError
from bus.health import Health, health_app
from bus.http import parse_address
from bus.http import running as serving
from bus.logging import for_people, get_logger
from bus.metrics import ServiceMetrics
from bus.publisher import Publisher
from bus.sentinel import RedisSentinels
from bus.settings import Settings
from bus.signing import KeyRing, Signer

Hook = Callable[[], Awaitable[None]]
_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
_log = get_logger("bus.service")
_NO_REDIS = "no Redis to consume from: set SIMPUL_REDIS_URL (or start one with `simpul redis`)"


class Service:
    """Handlers of one department service; its name is its consumer group."""

    def __init__(
        self,
        name: str,
        *,
        source: str | None = None,
        settings: Settings | None = None,
        registry: Registry = default_registry,
        keyring: KeyRing | None = None,
        signer: Signer | None = None,
    ) -> None:
        """``keyring``: the producers' public keys; every event a handler (or ``on_every``)
        would get is verified first (bus.signing). ``signer``: signs what ``ctx.publish``
        publishes. Each defaults to its settings when the service starts: ``SIMPUL_KEYRING_FILE``
        and ``SIMPUL_SIGNING_KEY_FILE`` (unset: no verification, no signing)."""
        if not _NAME.match(name):
            raise ConfigurationError(
                f"service name {name!r} must be lowercase letters, digits, '-' or '_' "
                "(it names the consumer group and the dead-letter stream)"
            )
        self.name = name
        self.source = source
        self.registry = registry
        self._settings = settings
        self.keyring = keyring
        self.signer = signer
        self.handlers: dict[str, Handler] = {}
        self.every: EnvelopeFunc | None = None
        self.every_streams: tuple[str, ...] = ()
        self.http_app: ASGIApp | None = None
        self.http_url: str | None = None  # where the HTTP API listens while running
        self._startup: list[Hook] = []
        self._shutdown: list[Hook] = []
        self._task: asyncio.Task[None] | None = None  # the consumer, while running
        self.health = Health(stale_after_s=30.0)
        # Its own Prometheus registry: several services in one process never collide.
        self.metrics = ServiceMetrics(
            name, contracts=registry, health=self.health, handled=self.handlers
        )

    @property
    def settings(self) -> Settings:
        """Explicit settings if given, else read from ``SIMPUL_*`` on first use."""
        if self._settings is None:
            self._settings = Settings.load()
        return self._settings

    @settings.setter
    def settings(self, value: Settings) -> None:
        self._settings = value

    def on(
        self, model: type[Contract], *, once: bool = False
    ) -> Callable[[HandlerFunc], HandlerFunc]:
        """Register an async handler for one contract. ``once=True``: see :mod:`bus.dedupe`."""
        Handler.check_model(model)

        def register(func: HandlerFunc) -> HandlerFunc:
            handler = Handler.build(model, func, once=once)
            event_type = model.__contract__.event_type
            if event_type in self.handlers:
                known = self.handlers[event_type].name
                raise ConfigurationError(f"{self.name}: {event_type} already has handler {known}")
            self.handlers[event_type] = handler
            return func

        return register

    def on_every(
        self, *, streams: Iterable[str] | None = None
    ) -> Callable[[EnvelopeFunc], EnvelopeFunc]:
        """Register ``async def f(envelope, ctx)`` for every entry of ``streams`` (default: the
        stream of every contract in the registry), whatever its type, before any validation.

        ``streams`` are named as ``simpul tail`` takes them: an aggregate (``dukcapil.citizen``,
        every partition of it if it is partitioned), one partition (``dukcapil.citizen.p3``) or
        a stream key. A name no registered contract publishes to is refused here, at start: a
        typo would otherwise create, and wait on, an empty stream.

        For archives and bridges that keep events as they travelled. Types that also have an
        :meth:`on` handler go to that handler instead.
        """
        known = {s for m in self.registry for s in m.__contract__.streams}
        chosen = tuple(sorted(known if streams is None else self._streams_named(streams, known)))
        if not chosen:
            raise ConfigurationError(f"{self.name}: on_every needs at least one stream")

        def register(func: EnvelopeFunc) -> EnvelopeFunc:
            if self.every is not None:
                raise ConfigurationError(f"{self.name} already has an on_every handler")
            if not asyncio.iscoroutinefunction(func):
                raise ConfigurationError(f"handler {func.__qualname__} must be an async def")
            self.every, self.every_streams = func, chosen
            return func

        return register

    def _streams_named(self, names: Iterable[str], known: set[str]) -> set[str]:
        chosen: set[str] = set()
        for name in [names] if isinstance(names, str) else names:
            key = keys.stream_named(name) or ""
            aggregate = keys.aggregate_of_stream(key)
            if aggregate is not None and key == keys.stream(aggregate):  # the whole aggregate
                found = set(keys.streams(aggregate)) & known
            else:
                found = {key} & known
            if not found:
                aggregates = sorted({keys.aggregate_of_stream(k) or k for k in known})
                raise ConfigurationError(
                    f"{self.name}: on_every stream {name!r} is not a stream of any registered "
                    f"contract (known aggregates: {', '.join(aggregates) or 'none'}); name an "
                    "aggregate such as dukcapil.citizen, and import the module of its contracts"
                )
            chosen |= found
        return chosen

    def mount(self, app: ASGIApp) -> None:
        """Serve ``app`` (e.g. a Starlette API) while the service runs, on ``SIMPUL_HTTP``
        (HOST:PORT; port 0 takes a free one, see :attr:`http_url`), beside the health endpoints
        ``/healthz``, ``/readyz`` and ``/metrics`` (:func:`bus.health.health_app`). Unset: not
        served."""
        self.http_app = app

    def on_startup(self, hook: Hook) -> Hook:
        """Run ``hook`` before consuming starts (open database pools, clients...)."""
        self._startup.append(hook)
        return hook

    def on_shutdown(self, hook: Hook) -> Hook:
        """Run ``hook`` after consuming stopped and the last batch was acked."""
        self._shutdown.append(hook)
        return hook

    @contextlib.asynccontextmanager
    async def running(
        self, redis_url: str | None = None, *, redis: Redis | None = None
    ) -> AsyncIterator[Service]:
        """Consume in the background while the block runs; stop gracefully at its end.

        ``redis``: consume with this client (its pool is shared, and closing it is its owner's
        business), e.g. a FastStream broker's (:meth:`attach`); default: a client of the
        service's own for ``redis_url`` (default ``SIMPUL_REDIS_URL``).

        If the consumer died of an error it could not recover from, leaving the block raises it.
        """
        url = redis_url or self.settings.redis_url
        if url is None and redis is None:
            raise ConfigurationError(_NO_REDIS)
        if not self.handlers and self.every is None:
            raise ConfigurationError(f"service {self.name} has no handlers: add @service.on(...)")
        if redis is not None:
            self._check_shared(redis)
        async with contextlib.AsyncExitStack() as stack:
            await self._start_hooks(stack)
            if self.settings.http:
                host, port = parse_address(self.settings.http)
                self.http_url = await stack.enter_async_context(
                    serving(
                        health_app(self.health, self.http_app, metrics=self.metrics.exposition),
                        host=host,
                        port=port,
                    )
                )
                stack.callback(setattr, self, "http_url", None)
                _log.info("http_serving", service=self.name, url=self.http_url)
            if redis is None:
                assert url is not None
                redis = self._connect(url)
                stack.push_async_callback(redis.aclose)
            else:
                replies.install(redis)  # stream replies keep a repeated field (bus.replies)
            consumer = self._consumer(redis)
            task = asyncio.create_task(consumer.run(), name=f"simpul-{self.name}")
            self._task = task
            stack.callback(setattr, self, "_task", None)
            stack.push_async_callback(self._stop, consumer, task)
            yield self

    def _connect(self, url: str) -> Redis:
        return connect(
            url,
            block_ms=self.settings.block_ms,
            client_name=f"simpul:{self.name}",
            cluster=self.settings.redis_cluster or None,
            sentinels=_sentinels(self.settings),
        )

    def _check_shared(self, redis: Redis) -> None:
        """A shared client must wait out our blocking reads and give bytes back."""
        options = getattr(getattr(redis, "connection_pool", None), "connection_kwargs", {})
        timeout = options.get("socket_timeout")
        if timeout is not None and timeout <= self.settings.block_ms / 1000:
            raise ConfigurationError(
                f"{self.name}: the shared Redis client's socket_timeout ({timeout} s) must exceed "
                f"SIMPUL_BLOCK_MS ({self.settings.block_ms} ms): every blocking read would time out"
            )
        if options.get("decode_responses"):
            raise ConfigurationError(
                f"{self.name}: the shared Redis client decodes responses (decode_responses=True); "
                "Simpul reads stream entries as bytes"
            )

    @contextlib.asynccontextmanager
    async def dispatching(self, redis_url: str | None = None) -> AsyncIterator[Dispatcher]:
        """Run the startup hooks and yield the dispatcher a replica runs entries through
        (validation, handlers, ``once`` dedupe, publisher) without consuming any group: for
        events no longer in their stream, e.g. ``simpul audit backfill`` from the archive.

        ``await dispatcher.dispatch(stream, entry_id, raw, delivery)`` returns None (done) or a
        Verdict, or raises ``Failed``; acks and dead letters are the caller's. Shutdown hooks run
        at the end of the block.
        """
        url = redis_url or self.settings.redis_url
        if url is None:
            raise ConfigurationError(_NO_REDIS)
        async with contextlib.AsyncExitStack() as stack:
            await self._start_hooks(stack)
            redis = connect(
                url,
                client_name=f"simpul:{self.name}:dispatching",
                cluster=self.settings.redis_cluster or None,
                sentinels=_sentinels(self.settings),
            )
            stack.push_async_callback(redis.aclose)
            yield self._consumer(redis).dispatcher  # built as a replica's, never run

    async def _start_hooks(self, stack: contextlib.AsyncExitStack) -> None:
        """Run the startup hooks; the shutdown hooks then run when ``stack`` closes — and also
        when a startup hook fails, so what the earlier hooks opened is closed again (shutdown
        hooks must tolerate a half-started service, as ``Store.close`` does)."""
        for hook in reversed(self._shutdown):
            stack.push_async_callback(hook)
        for hook in self._startup:
            await hook()

    def app(self, redis_url: str | None = None) -> FastStream:
        """This service as a FastStream application: ``faststream run module:app`` (with
        ``--workers N``) runs it as ``simpul run`` does.

        The app's broker (:meth:`broker`) is the service's Redis connection: Simpul's consume
        loop (docs/decisions/0002-own-consume-loop.md) reads with its client, and FastStream
        handlers added with ``@app.broker.subscriber(...)`` share the same pool. A consumer that
        dies ends the app, which then exits non-zero (:meth:`attach`).
        """
        app = FastStream(self.broker(redis_url), logger=None)
        self.attach(app)
        return app

    def broker(self, redis_url: str | None = None) -> RedisBroker:
        """A FastStream ``RedisBroker`` whose connection is this service's: made by
        :func:`bus.connection.connect` when the broker connects (``redis_url``, default
        ``SIMPUL_REDIS_URL``, read then; TLS, Sentinel and Cluster settings as for any client
        of the bus)."""

        def make() -> Redis:
            url = redis_url or self.settings.redis_url
            if url is None:
                raise ConfigurationError(_NO_REDIS)
            return self._connect(url)

        shown = redis_url or self.settings.redis_url or "redis://localhost:6379"
        return _ServiceBroker(make, shown, logger=logging.getLogger("simpul.faststream"))

    def attach(self, app: FastStream, broker: RedisBroker | None = None) -> None:
        """Host this service in a FastStream application: it starts consuming when the app
        starts, with ``broker``'s Redis client (default: the app's first broker; one pool for
        both), and drains before the broker stops.

        A consumer that dies (NOPERM after an ACL change...) ends the app, and the app's run
        raises what it died of, after the broker stopped: the process exits non-zero, so that
        its supervisor (compose, systemd, Kubernetes, ``faststream run --workers``) restarts a
        process that would consume nothing; /healthz is red from the moment it died.
        """
        host = broker if broker is not None else app.broker
        if not isinstance(host, RedisBroker):
            raise ConfigurationError(
                f"{self.name}: a Simpul service is hosted by a FastStream RedisBroker, "
                f"not {type(host).__name__}"
            )
        stack = contextlib.AsyncExitStack()
        died: list[BaseException] = []

        async def start() -> None:
            client = await host.connect()  # idempotent: the broker's start reuses it
            await stack.enter_async_context(self.running(redis=client))
            assert self._task is not None
            self._task.add_done_callback(lambda _: app.exit())

        async def stop() -> None:
            try:
                await stack.aclose()  # raises what the consumer died of
            except (ResponseError, *TRANSIENT) as exc:
                died.append(translate(exc))
            except Exception as exc:
                died.append(exc)

        async def reraise() -> None:
            if died:
                raise died.pop()

        app.on_startup(start)
        app.on_shutdown(stop)  # before the broker stops: the loop still has its client
        app.after_shutdown(reraise)

    def _consumer(self, redis: Redis) -> Consumer:
        settings = self.settings
        self.health.stale_after_s = settings.block_ms / 1000 * 2 + 5
        publisher = None
        if self.source:
            ttl = timedelta(milliseconds=settings.dedupe_ttl_ms)
            publisher = Publisher(
                redis,
                source=self.source,
                dedupe_ttl=ttl,
                on_published=self.metrics.published,
                signer=self.signer if self.signer else Signer.from_settings(settings),
                durability=Durability(settings.redis_wait_replicas, settings.redis_wait_timeout_ms),
                intake=settings.intake or "environment",
            )
        dedupe = Dedupe(
            redis,
            group=self.name,
            consumer=settings.consumer,
            lease_ms=settings.claim_idle_ms,
            ttl_ms=settings.dedupe_ttl_ms,
            durability=Durability(settings.redis_wait_replicas, settings.redis_wait_timeout_ms),
        )
        dispatcher = Dispatcher(
            handlers=self.handlers,
            registry=self.registry,
            group=self.name,
            consumer=settings.consumer,
            max_deliveries=settings.max_deliveries,
            dedupe=dedupe,
            publisher=publisher,
            every=self.every,
            every_streams=tuple(keys.inbox(s, self.name) for s in self.every_streams)
            if settings.inboxes
            else self.every_streams,
            inboxes=settings.inboxes,
            metrics=self.metrics,
            keyring=self._keyring(settings),
            tracebacks=settings.log_tracebacks == "on"
            or (settings.log_tracebacks == "auto" and for_people(settings.log_format)),
        )
        self.metrics.prepare(self._consumed_types())
        return Consumer(redis, dispatcher, settings, self.health, self.metrics)

    def _keyring(self, settings: Settings) -> KeyRing | None:
        # `is None`, not `or`: an empty keyring (trusting no key) is a keyring all the same.
        keyring = self.keyring if self.keyring is not None else KeyRing.from_settings(settings)
        if keyring is None:
            if settings.signatures == "on":
                raise ConfigurationError(
                    f"service {self.name} has no keyring (SIMPUL_KEYRING_FILE): it would hand "
                    "its handlers events nobody verified. Give it the topology as its keyring, "
                    "or set SIMPUL_SIGNATURES=off to run without verifying (development only)"
                )
            _log.warning(
                "signatures_off",
                service=self.name,
                warning="SIMPUL_SIGNATURES=off: events are NOT verified; anyone who can write "
                "to a stream this service reads can forge them",
            )
        return keyring

    def _consumed_types(self) -> list[str]:
        """The event types this service's handlers take (``on_every``: every registered type
        of its streams)."""
        every = [
            m.__contract__.event_type
            for m in self.registry
            if set(m.__contract__.streams) & set(self.every_streams)
        ]
        return sorted({*self.handlers, *every})

    async def _stop(self, consumer: Consumer, task: asyncio.Task[None]) -> None:
        consumer.stop()
        try:
            await asyncio.wait_for(asyncio.shield(task), self.settings.shutdown_grace_s)
        except TimeoutError:
            _log.warning("shutdown_grace_expired", service=self.name)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _sentinels(settings: Settings) -> RedisSentinels | None:
    """The Sentinels of ``settings``; None leaves connect() to read the environment (as
    ``redis_cluster`` does), so a service given settings in code follows them too."""
    if not settings.redis_sentinels:
        return None
    return RedisSentinels.parse(
        settings.redis_sentinels,
        master=settings.redis_sentinel_master,
        username=settings.redis_sentinel_username,
        password=settings.redis_sentinel_password,
    )


class _ServiceBroker(RedisBroker):
    """A RedisBroker whose client is made by ``make`` (bus.connection.connect) when it
    connects, instead of from its URL: the service's TLS, Sentinel and Cluster settings apply to
    FastStream's handlers too, and there is one pool."""

    def __init__(self, make: Callable[[], Redis], url: str, **kwargs: Any) -> None:
        self._make = make
        super().__init__(url, **kwargs)

    def _make_connection_state(
        self, connection_options: dict[str, Any], kwargs: dict[str, Any]
    ) -> RedisConnectionState:
        return _MadeConnection(self._make)


class _MadeConnection(RedisConnectionState):
    __slots__ = ("_made",)

    def __init__(self, make: Callable[[], Redis]) -> None:
        super().__init__({})
        self._made = make

    async def connect(self) -> Redis:
        self._client = self._made()
        self._connected = True
        return self._client
