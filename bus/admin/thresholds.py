"""When the bus is unhealthy.

:func:`breaches` checks a snapshot against :class:`Thresholds` (``SIMPUL_STATUS_*``) and returns
one :class:`Breach` per problem, with a message naming streams, groups and adapters only.

:func:`replication_breaches` says what ``simpul status`` reports about replication.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bus.adapter.report import AdapterReport
from bus.admin.replication import Topology
from bus.admin.snapshots import BusSnapshot, GroupSnapshot, StreamSnapshot, _Frozen
from bus.entry_ids import parts_or_zero as _id_key
from bus.errors import ConfigurationError

__all__ = [
    "Breach",
    "Thresholds",
    "breaches",
    "duration",
    "replication_breaches",
    "size",
]


class Thresholds(BaseSettings):
    """When the bus is unhealthy. Each limit is from ``SIMPUL_STATUS_<NAME>`` (e.g.
    ``SIMPUL_STATUS_MAX_LAG=5000``) or passed explicitly; ``off`` (or ``none``) disables one.

    A value above its limit is a breach; a limit of 0 tolerates none.
    """

    model_config = SettingsConfigDict(env_prefix="SIMPUL_STATUS_", extra="forbid", frozen=True)

    max_lag: int | None = Field(
        default=1000, ge=0, description="entries a group has not been delivered yet"
    )
    max_pending_age_s: float | None = Field(
        default=600, ge=0, description="age of a group's oldest unacked entry, seconds"
    )
    max_dead_letters: int | None = Field(default=0, ge=0, description="dead letters per group")
    max_quarantine: int | None = Field(default=0, ge=0, description="records per quarantine")
    max_consumer_idle_s: float | None = Field(
        default=300,
        ge=0,
        description="seconds no consumer of a group read anything while work waits for it",
    )
    max_silence_s: float | None = Field(
        default=None, ge=0, description="seconds since a stream's newest event (off by default)"
    )
    max_source_behind_s: float | None = Field(
        default=300, ge=0, description="seconds a CDC adapter's oldest unpublished change waits"
    )
    max_source_behind_bytes: int | None = Field(
        default=None, ge=0, description="bytes of log a CDC adapter has not published (off)"
    )
    max_source_retained_bytes: int | None = Field(
        default=1024**3,
        ge=0,
        description="bytes of log (WAL) the source database keeps for a CDC adapter",
    )
    max_report_age_s: float | None = Field(
        default=60,
        ge=0,
        description="seconds since a running (or any CDC) adapter last reported",
    )
    max_intake_backlog: int | None = Field(
        default=1000,
        ge=0,
        description="entries of a producer's intake the router has not admitted yet (routed)",
    )
    max_ahead_s: float | None = Field(
        default=300,
        ge=0,
        description="seconds a stream's last-generated id may lie ahead of Redis TIME",
    )

    @field_validator("*", mode="before")
    @classmethod
    def _off(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() in ("off", "none", ""):
            return None
        return value

    @classmethod
    def load(cls, **overrides: Any) -> Thresholds:
        """Environment, then ``overrides`` (None values are ignored); one clear error."""
        given = {k: v for k, v in overrides.items() if v is not None}
        try:
            return cls(**given)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'/'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
            )
            raise ConfigurationError(f"invalid thresholds: {problems}") from None


BreachKind = Literal[
    "lag",
    "pending_age",
    "dead_letters",
    "quarantine",
    "consumer_idle",
    "silence",
    "source_behind",
    "source_behind_bytes",
    "source_retained",
    "report_stale",
    "intake_backlog",
    "ahead_of_time",
    "replicas_out_of_sync",
    "sentinel_quorum",
]


class Breach(BaseModel):
    """One threshold exceeded. The message names streams, groups and adapters, never data."""

    model_config = _Frozen

    kind: BreachKind
    stream: str | None = Field(
        default=None,
        description="aggregate, e.g. dukcapil.citizen (of an inbox: the stream feeding it); "
        "for ahead_of_time, the key",
    )
    group: str | None = None
    adapter: str | None = None
    principal: str | None = Field(default=None, description="the producer of an intake")
    value: float | None = Field(description="the measured value; None for 'never' (no consumer)")
    limit: float
    message: str


def breaches(snap: BusSnapshot, thresholds: Thresholds) -> list[Breach]:
    """Every threshold ``snap`` exceeds, in a stable order (streams, quarantines, adapters)."""
    t = thresholds
    found: list[Breach] = []

    def add(
        kind: BreachKind, value: float, limit: float | None, message: str, **where: str
    ) -> None:
        if limit is not None and value > limit:
            shown = None if value == float("inf") else value
            found.append(Breach(kind=kind, value=shown, limit=limit, message=message, **where))

    for s in snap.streams:
        name = s.aggregate
        if s.exists and s.last_entry_age_s is not None:
            add(
                "silence",
                s.last_entry_age_s,
                t.max_silence_s,
                f"stream {name}: no new event for {duration(s.last_entry_age_s)} "
                f"(max {duration(t.max_silence_s or 0)})",
                stream=name,
            )
        for g in s.groups:
            _group_breaches(
                f"group {g.name} on {name}",
                g,
                _undelivered(s, g),
                t,
                add,
                stream=name,
                group=g.name,
            )
        for group, depth in s.dead_letters.items():
            add(
                "dead_letters",
                depth,
                t.max_dead_letters,
                f"group {group} on {name} has {depth} dead letter{_s(depth)} "
                f"(max {t.max_dead_letters})",
                stream=name,
                group=group,
            )
    for adapter, depth in snap.quarantine.items():
        add(
            "quarantine",
            depth,
            t.max_quarantine,
            f"adapter {adapter} has {depth} record{_s(depth)} in quarantine "
            f"(max {t.max_quarantine})",
            adapter=adapter,
        )
    for r in snap.adapters:
        _adapter_breaches(r, t, add)
    _routed_breaches(snap, t, add)
    return found


def _group_breaches(
    what: str,
    g: GroupSnapshot,
    undelivered: bool,
    t: Thresholds,
    add: Callable[..., None],
    **where: str,
) -> None:
    """Lag, oldest pending and idle consumers of one group (``what``: how messages name it)."""
    if g.lag is not None:
        add("lag", g.lag, t.max_lag, f"{what} lags {g.lag} entries (max {t.max_lag})", **where)
    if g.oldest_pending_age_s is not None:
        add(
            "pending_age",
            g.oldest_pending_age_s,
            t.max_pending_age_s,
            f"{what}: oldest unacked entry is {duration(g.oldest_pending_age_s)} old (max "
            f"{duration(t.max_pending_age_s or 0)}, {g.pending} pending)",
            **where,
        )
    if g.waiting or undelivered:
        idle = g.idle_s if g.idle_s is not None else float("inf")
        since = (
            f"no consumer has read anything for {duration(idle)}"
            if g.consumer_count
            else "the group has no consumer"
        )
        add(
            "consumer_idle",
            idle,
            t.max_consumer_idle_s,
            f"{what}: work is waiting but {since} (max "
            f"{duration(t.max_consumer_idle_s or 0)}): is the service running?",
            **where,
        )


def _routed_breaches(snap: BusSnapshot, t: Thresholds, add: Callable[..., None]) -> None:
    """Routed delivery: each inbox's service group as a group on a stream, each intake's
    backlog (a router that stopped admitting), and every stream ahead of Redis TIME."""
    for inbox in snap.inboxes:
        what = f"inbox of {inbox.group} on {inbox.stream}"
        where = {"stream": inbox.stream, "group": inbox.group}
        g = inbox.consumer_group
        if g is not None:
            _group_breaches(what, g, False, t, add, **where)
        add(
            "dead_letters",
            inbox.dead_letters,
            t.max_dead_letters,
            f"{what} has {inbox.dead_letters} dead letter{_s(inbox.dead_letters)} "
            f"(max {t.max_dead_letters})",
            **where,
        )
    for intake in snap.intakes:
        reading = "" if intake.router_reading else "; no router has read it yet"
        add(
            "intake_backlog",
            intake.backlog,
            t.max_intake_backlog,
            f"intake of {intake.principal}: {intake.backlog} entries not yet admitted by the "
            f"router (max {t.max_intake_backlog}{reading}): is the router running?",
            principal=intake.principal,
        )
    for ahead in snap.ahead_of_time:
        add(
            "ahead_of_time",
            ahead.ahead_s,
            t.max_ahead_s,
            f"{ahead.key}: last id {ahead.last_generated_id} lies {duration(ahead.ahead_s)} "
            f"ahead of Redis TIME (max {duration(t.max_ahead_s or 0)}): an explicit far-future "
            "id was added; an intake recovers with simpul router reset-intake",
            stream=ahead.key,
        )


def _adapter_breaches(r: AdapterReport, t: Thresholds, add: Callable[..., None]) -> None:
    name = r.name
    if r.must_be_fresh and r.age_s is not None:
        was = "running" if r.state == "running" else f"a CDC adapter, {r.state}"
        add(
            "report_stale",
            r.age_s,
            t.max_report_age_s,
            f"adapter {name} has not reported for {duration(r.age_s)} (max "
            f"{duration(t.max_report_age_s or 0)}; it was {was}): is it alive?",
            adapter=name,
        )
    if r.behind_seconds is not None:
        add(
            "source_behind",
            r.behind_seconds,
            t.max_source_behind_s,
            f"adapter {name} is {duration(r.behind_seconds)} behind its source (max "
            f"{duration(t.max_source_behind_s or 0)})",
            adapter=name,
        )
    if r.behind_bytes is not None:
        add(
            "source_behind_bytes",
            r.behind_bytes,
            t.max_source_behind_bytes,
            f"adapter {name} has {size(r.behind_bytes)} of its source's log to publish (max "
            f"{size(t.max_source_behind_bytes or 0)})",
            adapter=name,
        )
    if r.retained_bytes is not None:
        add(
            "source_retained",
            r.retained_bytes,
            t.max_source_retained_bytes,
            f"the source database of adapter {name} keeps {size(r.retained_bytes)} of log for "
            f"it (max {size(t.max_source_retained_bytes or 0)}): its disk fills while this "
            "grows",
            adapter=name,
        )


def _undelivered(stream: StreamSnapshot, group: GroupSnapshot) -> bool:
    """Lag unknown (Redis 6.2): entries were added after the group's last delivery."""
    if group.lag is not None or stream.last_generated_id is None:
        return False
    return _id_key(stream.last_generated_id) > _id_key(group.last_delivered_id)


def duration(seconds: float) -> str:
    """``42 s``, ``5 min``, ``3.5 h``, ``2 d`` — for people."""
    if seconds == float("inf"):
        return "ever"
    if seconds < 90:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def size(n: float) -> str:
    """``512 B``, ``3.4 MiB``, ``1.2 GiB`` — for people."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _s(n: float) -> str:
    return "" if n == 1 else "s"


def replication_breaches(topo: Topology) -> list[Breach]:
    """What ``simpul status`` reports about replication: a shard whose replicas are all out of
    sync (under Sentinel or a cluster, or where replicas are attached), a lost quorum."""
    found = []
    for shard in topo.shards:
        expected = topo.shape != "single" or shard.replicas
        if expected and shard.in_sync == 0:
            found.append(
                Breach(
                    kind="replicas_out_of_sync",
                    value=0,
                    limit=1,
                    message=f"master {shard.master}: no replica in sync, so every publish fails "
                    "NotDurable (or is refused by min-replicas-to-write); see the replicas below",
                )
            )
    if topo.quorum_ok is False:
        found.append(
            Breach(
                kind="sentinel_quorum",
                value=0,
                limit=1,
                message="the Sentinels cannot reach their quorum: a failed master would not be "
                "replaced; start or reach the missing Sentinels",
            )
        )
    return found
