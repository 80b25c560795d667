"""The monitor's state: snapshots of the bus, dead letters, throughput, the flow map, replay.

Everything here reads Redis through :mod:`bus.admin.inspect` (snapshots), :mod:`bus.admin.flowmap`
(the map) and plain ``XRANGE`` of the dead-letter streams the snapshot names; the only write is
:meth:`Monitor.replay`, which runs :meth:`bus.admin.deadletters.DeadLetters.replay`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import json
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from redis.asyncio import Redis
from redis.exceptions import ResponseError
from starlette.applications import Starlette

from bus import TRANSIENT_REDIS_ERRORS as TRANSIENT
from bus import (
    ConfigurationError,
    Registry,
    SimpulError,
    default_registry,
    get_logger,
    keys,
    mask_text,
    redis_location,  # where the dashboard says it looks
    refuse_dev_token,
    serving_http,
)
from bus import redis_text as _text
from bus import simpul_redis_error as simpul_error
from bus.admin import (
    BrokenModule,
    BusSnapshot,
    DeadLetterRef,
    DeadLetters,
    Inspector,
    NotFound,
    ReplayReport,
    RoutingPlan,
    Target,
    Thresholds,
    UnknownGroup,
    UnknownStream,
    breaches,
    build_flow_map,
    find_services,
    handled,
    live_groups,
    render_flow_svg,
    stream_key,
)
from services.monitor.throughput import Throughput
from services.monitor.web import build

__all__ = ["MAX_REPLAY", "FindServices", "Monitor", "MonitorSettings", "redis_location"]

_log = get_logger("services.monitor")
MIN_TOKEN = 16
MAX_REPLAY = 500  # dead letters one replay request may move (a group replay: the oldest ones)


class FindServices:
    """Marker: find the services of a package with :func:`bus.admin.find_services`."""

    def __init__(self, package: str = "services") -> None:
        self.package = package


class MonitorSettings(BaseSettings):
    """The monitor's knobs, from ``SIMPUL_MONITOR_<NAME>`` (or passed explicitly)."""

    model_config = SettingsConfigDict(env_prefix="SIMPUL_MONITOR_", extra="forbid", frozen=True)

    token: SecretStr | None = Field(
        default=None,
        description=f"operator token for Replay (at least {MIN_TOKEN} characters); unset: the "
        "dashboard is read-only",
    )
    http: str = Field(default="127.0.0.1:8090", description="HOST:PORT to serve the page on")
    allowed_hosts: str = Field(
        default="localhost,127.0.0.1,[::1]",
        description="the names the page is reached by (Host header; comma-separated, "
        "'*.example.org' for subdomains), e.g. the reverse proxy's public name: any other is "
        "answered 400, so a page whose name was re-pointed at the monitor (DNS rebinding) "
        "cannot read it",
    )
    trusted_proxies: str = Field(
        default="127.0.0.1,::1",
        description="addresses or networks (CIDR) of the reverse proxies whose "
        "X-Forwarded-For and X-Forwarded-Proto are believed (comma-separated; '' none): the "
        "client address logged for a replay is the forwarded one only from these",
    )
    refresh_s: float = Field(default=2.0, ge=0.2, le=60, description="page refresh interval")
    sample_s: float = Field(default=5.0, ge=0.1, le=300, description="throughput sample interval")
    window_s: float = Field(default=600.0, ge=10, le=86_400, description="throughput history")
    rediscover_s: float = Field(
        default=60.0, ge=0, description="seconds between two SCANs of the keyspace for streams"
    )
    dead_letters_shown: int = Field(default=50, ge=1, le=500, description="per group, oldest")
    services: str = Field(
        default="services", description="package whose services the flow map shows ('' none)"
    )
    schemas: str = Field(default="schemas", description="package holding the contracts")
    topology: str = Field(
        default="",
        description="the topology YAML (deploy/topology.yaml): with `delivery: router`, every "
        "subscription's inbox is shown with its types, and every producer's intake, before "
        "the router first writes them ('' none: what Redis holds is shown all the same)",
    )

    @field_validator("token", mode="before")
    @classmethod
    def _token(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        if isinstance(text, str) and len(text) < MIN_TOKEN:
            raise ValueError(f"must be at least {MIN_TOKEN} characters (a random string)")
        return value

    @field_validator("allowed_hosts")
    @classmethod
    def _hosts(cls, value: str) -> str:
        if not _entries(value):
            raise ValueError("name at least one host (e.g. localhost), or '*' for any")
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, value: str) -> str:
        for entry in _entries(value):
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(
                    f"{entry!r} is not an IP address or network (e.g. 10.0.0.0/8); proxies are "
                    "named by address, and '*' would let any client forge its address"
                ) from None
        return value

    def hosts(self) -> list[str]:
        """:attr:`allowed_hosts` as a list."""
        return _entries(self.allowed_hosts)

    def proxies(self) -> list[str]:
        """:attr:`trusted_proxies` as a list (empty: believe no forwarded header)."""
        return _entries(self.trusted_proxies)

    @classmethod
    def load(cls, **overrides: Any) -> MonitorSettings:
        """Environment, then ``overrides``; one clear error naming the variable (never the
        token's value)."""
        try:
            return cls(**overrides)
        except ValidationError as exc:
            problems = "; ".join(
                f"SIMPUL_MONITOR_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
                for err in exc.errors()
            )
            raise ConfigurationError(f"invalid monitor settings: {problems}") from None


def _entries(text: str) -> list[str]:
    return [entry.strip() for entry in text.split(",") if entry.strip()]


class Monitor:
    """The dashboard over one Redis: :meth:`app` serves it, :meth:`running` samples throughput.

    ``handled`` says which service consumes which event types, for the flow map: a mapping
    (service -> types, :func:`bus.admin.handled`), None (only the groups Redis shows), or
    :class:`FindServices` (found in a package on first use; the default, from the settings).
    """

    def __init__(
        self,
        redis: Redis,
        *,
        settings: MonitorSettings | None = None,
        registry: Registry = default_registry,
        thresholds: Thresholds | None = None,
        handled: Mapping[str, Iterable[str]] | FindServices | None = None,
        where: str = "",
        plan: RoutingPlan | None = None,
    ) -> None:
        self.redis = redis
        self.settings = settings or MonitorSettings.load()
        self.registry = registry
        self.thresholds = thresholds or Thresholds.load()
        self.where = where
        if plan is None and self.settings.topology:  # raises ConfigurationError if invalid
            plan = RoutingPlan.load(self.settings.topology)
        self.inspector = Inspector(
            redis, registry=registry, rediscover_s=self.settings.rediscover_s, plan=plan
        )
        self.letters = DeadLetters(redis, registry=registry)
        if self.settings.token is not None:
            refuse_dev_token(self.settings.token.get_secret_value(), "SIMPUL_MONITOR_TOKEN")
            # Replay re-verifies signatures with the services' keyring: one they would refuse
            # (development keys outside development mode) stops the monitor now, not each
            # replay an operator asks for.
            _ = self.letters.keyring
        self.throughput = Throughput(
            window_s=self.settings.window_s, sample_s=self.settings.sample_s
        )
        if handled is None and self.settings.services:
            handled = FindServices(self.settings.services)
        self._handled: Mapping[str, Iterable[str]] | FindServices | None = handled
        self._snapshot: BusSnapshot | None = None
        self._taken = float("-inf")  # monotonic time of the cached snapshot
        self._lock = asyncio.Lock()
        # Dead-letter listings by (stream, group, limit): (monotonic time, answer). Shared like
        # the snapshot, so a flood of page loads costs Redis one XRANGE per queue per cache_s.
        self._listings: dict[tuple[str | None, str | None, int], tuple[float, dict[str, Any]]] = {}
        self._listing_lock = asyncio.Lock()
        self._map: tuple[str, str] | None = None  # (signature, svg)
        self.last_error: str | None = None
        self.last_ok: float | None = None  # monotonic time of the last successful snapshot
        # Modules of the services package the flow map could not read (shown on the page).
        self.code_problems: list[BrokenModule] = []

    @property
    def token(self) -> bytes | None:
        """The operator token Replay requires (None: replay disabled)."""
        secret = self.settings.token
        return secret.get_secret_value().encode() if secret is not None else None

    @property
    def cache_s(self) -> float:
        """How long one snapshot serves further requests (several pages share it)."""
        return min(1.0, self.settings.refresh_s / 2)

    # -- reading --------------------------------------------------------------------------------

    async def snapshot(self, *, max_age_s: float | None = None) -> BusSnapshot:
        """The bus now (a snapshot younger than ``max_age_s``, default :attr:`cache_s`, is
        reused). Raises RedisUnavailable / PermissionDenied / SimpulError."""
        limit = self.cache_s if max_age_s is None else max_age_s
        async with self._lock:
            if self._snapshot is not None and time.monotonic() - self._taken < limit:
                return self._snapshot
            try:
                snap = await self.inspector.take()
            except SimpulError as exc:
                self.last_error = str(exc)
                raise
            self._snapshot, self._taken = snap, time.monotonic()
            self.last_error, self.last_ok = None, self._taken
            return snap

    def forget(self) -> None:
        """Take a fresh snapshot (and dead-letter listings) next time (after a change)."""
        self._taken = float("-inf")
        self._listings.clear()

    async def status(self) -> dict[str, Any]:
        """The ``status --json`` shape (healthy, breaches, thresholds, snapshot) plus what the
        page needs: Redis's location, whether replay is enabled, the flow map's signature."""
        snap = await self.snapshot()
        found = breaches(snap, self.thresholds)
        return {
            "healthy": not found,
            "breaches": [b.model_dump(mode="json") for b in found],
            "thresholds": self.thresholds.model_dump(mode="json"),
            "snapshot": snap.model_dump(mode="json"),
            "redis": {"where": self.where, "version": snap.redis_version, "reduced": snap.reduced},
            "replay_enabled": self.token is not None,
            "flow_signature": _signature(snap),
            "flow_problems": [problem._asdict() for problem in self.code_problems],
            "refresh_s": self.settings.refresh_s,
        }

    async def dead_letters(
        self, stream: str | None = None, group: str | None = None, *, limit: int | None = None
    ) -> dict[str, Any]:
        """The oldest ``limit`` dead letters of every group (or of one stream / group), masked:
        ``{"total", "queues": [{"stream", "aggregate", "group", "total", "shown",
        "dead_letters": [DeadLetter.as_dict()]}]}``. Raises ConfigurationError for a name that
        is no stream, UnknownStream / UnknownGroup for names the bus does not know."""
        shown = limit or self.settings.dead_letters_shown
        key = (stream, group, shown)
        async with self._listing_lock:
            cached = self._listings.get(key)
            if cached is not None and time.monotonic() - cached[0] < self.cache_s:
                return cached[1]
            listing = await self._dead_letters(stream, group, shown)
            if len(self._listings) > 64:  # a client asking for ever other names
                self._listings.clear()
            self._listings[key] = (time.monotonic(), listing)
            return listing

    async def _dead_letters(
        self, stream: str | None, group: str | None, shown: int
    ) -> dict[str, Any]:
        snap = await self.snapshot()
        queues = self._queues(snap, stream, group)
        replies: list[Any] = []
        if queues:
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for key, _, name, _ in queues:
                        pipe.xrange(keys.dead_letters(key, name), count=shown)
                    replies = await pipe.execute()
            except (ResponseError, *TRANSIENT) as exc:
                raise simpul_error(exc) from None
        out = []
        for (key, aggregate, name, depth), entries in zip(queues, replies, strict=True):
            letters = [
                self.letters.summary(DeadLetterRef(key, name, _text(entry_id)), raw).as_dict()
                for entry_id, raw in entries
            ]
            if letters:
                out.append(
                    {
                        "stream": key,
                        "aggregate": aggregate,
                        "group": name,
                        "total": max(depth, len(letters)),
                        "shown": len(letters),
                        "dead_letters": letters,
                    }
                )
        return {"total": sum(q["total"] for q in out), "queues": out}

    def _queues(
        self, snap: BusSnapshot, stream: str | None, group: str | None
    ) -> list[tuple[str, str, str, int]]:
        """(stream key, aggregate, group, depth) of the non-empty dead-letter streams asked;
        under routed delivery each subscription's inbox (its key, its department stream's
        aggregate, its group), with those of a department stream when one is asked."""
        streams = snap.streams
        inboxes = [
            (i.key, i.stream, i.group, i.dead_letters)
            for i in snap.inboxes
            if i.dead_letters
            and (group is None or i.group == group)
            and (stream is None or _inbox_of(i.key, stream))
        ]
        if stream is not None and keys.is_inbox(DeadLetterRef.source_of(stream)):
            if not inboxes:
                raise UnknownStream(f"no dead letters in inbox {DeadLetterRef.source_of(stream)}")
            return inboxes
        if stream is not None:
            key = stream_key(stream)
            found = snap.stream(key)
            if inboxes and (found is None or (group is not None and not found.group(group))):
                return inboxes  # a routed service's dead letters: only in its inbox
            if found is None or not (found.exists or found.dead_letters):
                raise UnknownStream(f"unknown stream {key}")
            if group is not None and group not in found.dead_letters and not found.group(group):
                known = sorted({*found.dead_letters, *(g.name for g in found.groups)})
                raise UnknownGroup(
                    f"unknown group {group!r} on {key} (groups: {', '.join(known) or 'none'})"
                )
            streams = [found]
        return [
            *(
                (s.key, s.aggregate, name, depth)
                for s in streams
                for name, depth in s.dead_letters.items()
                if depth and (group is None or name == group)
            ),
            *inboxes,
        ]

    async def sample(self) -> None:
        """One throughput sample of every stream the snapshot says exists."""
        snap = await self.snapshot()
        await self.throughput.sample(self.redis, [s.key for s in snap.streams if s.exists])

    async def flow_svg(self) -> tuple[str, str]:
        """(signature, SVG) of the flow map for the groups present now; redrawn only when the
        groups change."""
        snap = await self.snapshot()
        signature = _signature(snap)
        if self._map is not None and self._map[0] == signature:
            return self._map
        handled = await self._declared()
        flow = build_flow_map(
            self.registry,
            handled,
            live_groups(snap),
            source=f"Redis {snap.redis_version}" + (f" at {self.where}" if self.where else ""),
        )
        svg = render_flow_svg(flow, title="Who consumes what")
        self._map = (signature, svg)
        return self._map

    @property
    def last_map(self) -> tuple[str, str] | None:
        """(signature, SVG) of the last flow map drawn, if any (shown while Redis is down)."""
        return self._map

    async def _declared(self) -> Mapping[str, Iterable[str]] | None:
        if isinstance(self._handled, FindServices):
            package = self._handled.package
            broken: list[BrokenModule] = []
            try:
                found = await asyncio.to_thread(find_services, package, broken=broken)
                self._handled = handled(found)
            except Exception as exc:  # the package itself: map what Redis shows
                message = mask_text(" ".join(str(exc).split()))[:300]
                broken.append(BrokenModule(package, f"{type(exc).__name__}: {message}"))
                self._handled = None
            # The page says so: a map without a service's code looks like a service gone.
            self.code_problems = broken
            for problem in broken:
                _log.warning(
                    "monitor_services_module_broken", module=problem.module, error=problem.error
                )
        return self._handled

    # -- replay ---------------------------------------------------------------------------------

    async def replay(
        self,
        refs: list[DeadLetterRef],
        *,
        to: Target = Target.GROUP,
        dry_run: bool = False,
        by: str = "monitor",
    ) -> ReplayReport:
        """Replay these dead letters (:meth:`bus.admin.deadletters.DeadLetters.replay`). Raises
        NotFound, changing nothing, if one of them is not (or no longer) a dead letter."""
        if not refs:
            raise ConfigurationError("no dead letters to replay")
        if len(refs) > MAX_REPLAY:
            raise ConfigurationError(f"at most {MAX_REPLAY} dead letters per replay")
        refs = list(dict.fromkeys(refs))
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for ref in refs:
                    pipe.xrange(ref.key, min=ref.entry_id, max=ref.entry_id)
                found = await pipe.execute()
        except (ResponseError, *TRANSIENT) as exc:
            raise simpul_error(exc) from None
        missing = [ref for ref, hit in zip(refs, found, strict=True) if not hit]
        if missing:
            names = ", ".join(f"{r.entry_id} ({r.stream} {r.group})" for r in missing[:5])
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise NotFound(
                f"no dead letter {names}{more}: replayed or purged meanwhile, or never there; "
                "nothing was replayed"
            )
        report = await self.letters.replay(refs, to=to, dry_run=dry_run, by=by)
        self.forget()
        return report

    async def group_refs(
        self, stream: str, group: str, *, upto: str | None = None
    ) -> tuple[list[DeadLetterRef], int]:
        """The oldest dead letters of ``group`` on ``stream`` (at most :data:`MAX_REPLAY`, with
        ids up to ``upto`` if given: those the operator saw), and how many the group has."""
        key = DeadLetterRef.source_of(stream)  # a department stream, or an inbox (routed delivery)
        if upto is not None:
            upto = DeadLetterRef.from_dict({"stream": key, "group": group, "id": upto}).entry_id
        dead = DeadLetterRef.queue_key(key, group)
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.xrange(dead, max=upto or "+", count=MAX_REPLAY)
                pipe.xlen(dead)
                entries, depth = await pipe.execute()
        except (ResponseError, *TRANSIENT) as exc:
            raise simpul_error(exc) from None
        if not entries:
            raise NotFound(
                f"group {group!r} of {key} has no dead letters" + (f" up to {upto}" if upto else "")
            )
        return [DeadLetterRef(key, group, _text(entry_id)) for entry_id, _ in entries], int(depth)

    # -- serving --------------------------------------------------------------------------------

    def app(self) -> Starlette:
        """The page, its assets and the JSON endpoints (:mod:`services.monitor.web`)."""
        return build(self)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Monitor]:
        """Sample throughput every ``sample_s`` seconds in the background for the block."""
        stop = asyncio.Event()
        task = asyncio.create_task(self._sampling(stop), name="simpul-monitor-sampler")
        try:
            yield self
        finally:
            # Asked, not cancelled: redis-py may swallow a cancellation arriving mid-command,
            # and the sampler would then sleep on; the event ends the loop either way.
            stop.set()
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout=10)
            except TimeoutError:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    @contextlib.asynccontextmanager
    async def serving(self, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
        """Sample and serve the dashboard for the block; yields its base URL (port 0: free)."""
        async with self.running(), serving_http(self.app(), host=host, port=port) as url:
            yield url

    async def _sampling(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                await self.sample()
            except SimpulError as exc:  # Redis down: the page says so; keep trying
                _log.debug("monitor_sample_failed", error=type(exc).__name__)
            except Exception:  # never let the sampler die silently
                _log.exception("monitor_sample_crashed")
            pause = max(0.05, self.settings.sample_s - (time.monotonic() - started))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=pause)


def _signature(snap: BusSnapshot) -> str:
    """Changes when the consumer groups present change (the flow map is redrawn then)."""
    groups = json.dumps(sorted((k, sorted(v)) for k, v in live_groups(snap).items()))
    return hashlib.sha1(groups.encode(), usedforsecurity=False).hexdigest()[:12]


def _inbox_of(inbox: str, stream: str) -> bool:
    """Whether ``inbox`` is the inbox ``stream`` names, or one of the department stream's."""
    named = DeadLetterRef.source_of(stream)
    found = keys.inbox_of(inbox)
    return inbox == named or (found is not None and found[0] == named)
