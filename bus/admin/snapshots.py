"""What a snapshot of the bus holds (:mod:`bus.admin.inspect` takes it): every stream, its
consumer groups and consumers, inboxes and intakes (routed delivery), streams ahead of time, the
quarantine and the adapters' reports. ``model_dump(mode="json")`` of :class:`BusSnapshot` is the
stable JSON shape of ``simpul status --json`` and the dashboard's API.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from bus.adapter.report import AdapterReport
from bus.admin.streams import resolve_stream

__all__ = [
    "AHEAD_TOLERANCE_S",
    "MAX_CONSUMERS",
    "AheadOfTimeSnapshot",
    "BusSnapshot",
    "ConsumerSnapshot",
    "GroupSnapshot",
    "InboxSnapshot",
    "IntakeSnapshot",
    "StreamSnapshot",
]

MAX_CONSUMERS = 20  # consumers listed per group (freshest first); consumer_count has them all
AHEAD_TOLERANCE_S = 60.0
"""A stream's last-generated id further ahead of ``TIME`` than this is listed as ahead of time
(clocks of replicas and clients differ by less; ids a far-future add left do not)."""
_Frozen = ConfigDict(frozen=True)


# -- the snapshot ------------------------------------------------------------------------------


class ConsumerSnapshot(BaseModel):
    """One consumer (one replica of a service) of a group."""

    model_config = _Frozen

    name: str
    pending: int = Field(description="entries delivered to it and not acked yet")
    idle_s: float = Field(description="seconds since it last received or claimed an entry")
    inactive_s: float | None = Field(
        default=None, description="Redis 7.2+: seconds since its last successful read"
    )


class GroupSnapshot(BaseModel):
    """One consumer group (one service) on one stream."""

    model_config = _Frozen

    name: str
    consumer_count: int
    consumers: list[ConsumerSnapshot] = Field(
        description=f"freshest first, at most {MAX_CONSUMERS}"
    )
    pending: int = Field(description="delivered, not acked (XPENDING)")
    oldest_pending_id: str | None
    oldest_pending_age_s: float | None = Field(description="age of the oldest pending entry")
    last_delivered_id: str
    entries_read: int | None = Field(description="Redis 7.0+; None on 6.2")
    lag: int | None = Field(
        description="entries not yet delivered to the group; None when Redis cannot tell (6.2)"
    )
    dead_letters: int = Field(description="XLEN of <stream>:dlq:<group>")

    @property
    def idle_s(self) -> float | None:
        """Seconds since any consumer of the group last received an entry (None: no consumer)."""
        return min((c.idle_s for c in self.consumers), default=None)

    @property
    def waiting(self) -> bool:
        """Work is waiting for the group: undelivered entries (lag) or unacked ones (pending)."""
        return bool(self.pending or self.lag)


class StreamSnapshot(BaseModel):
    """One aggregate stream, ``simpul:{<dept>.<aggregate>}``."""

    model_config = _Frozen

    key: str = Field(description="the Redis key, e.g. simpul:{dukcapil.citizen}")
    aggregate: str = Field(description="e.g. dukcapil.citizen")
    exists: bool = Field(
        description="False: a registered contract's stream nobody wrote yet, or a deleted "
        "stream whose dead letters remain"
    )
    registered: bool = Field(description="a registered contract publishes to it")
    length: int
    first_entry_id: str | None
    last_entry_id: str | None
    last_generated_id: str | None = Field(description="id of the newest entry ever added")
    first_entry_age_s: float | None
    last_entry_age_s: float | None = Field(
        description="seconds since the newest entry was added (from last_generated_id)"
    )
    groups: list[GroupSnapshot]
    dead_letters: dict[str, int] = Field(
        description="dead letters by group, including groups that no longer exist"
    )

    def group(self, name: str) -> GroupSnapshot | None:
        return next((g for g in self.groups if g.name == name), None)


class InboxSnapshot(BaseModel):
    """One subscription's inbox (routed delivery, decision 0011): what the router forwards from
    one department stream, or one partition of it, to one service group."""

    model_config = _Frozen

    key: str = Field(description="the Redis key, e.g. simpul:inbox:{dinsos/dukcapil.citizen}")
    group: str = Field(description="the subscribing service's consumer group")
    stream: str = Field(
        description="the department stream (or partition) feeding it, e.g. dukcapil.citizen or "
        "dukcapil.citizen.p3"
    )
    types: list[str] = Field(
        description="the event types of the subscription on that stream, from the topology "
        "(empty when the snapshot was taken without one)"
    )
    exists: bool = Field(description="False: the router has forwarded nothing to it yet")
    length: int
    last_generated_id: str | None
    consumer_group: GroupSnapshot | None = Field(
        description="the service's group on its inbox: lag, pending, consumers; None until the "
        "service first started"
    )
    dead_letters: int = Field(description="XLEN of <inbox>:dlq:<group>")


class IntakeSnapshot(BaseModel):
    """One producer's intake (routed delivery): what it wrote and the router has not settled."""

    model_config = _Frozen

    key: str = Field(description="the Redis key, e.g. simpul:intake:{adapter-dukcapil}")
    principal: str = Field(description="the producing principal")
    exists: bool
    length: int = Field(description="entries in the intake (the router trims what it settled)")
    backlog: int = Field(
        description="entries the router has not admitted (or refused) yet: its group's lag "
        "plus its pending entries; the whole intake while no router has read it"
    )
    router_pending: int = Field(description="read by the router, not yet settled")
    router_reading: bool = Field(description="the router's consumer group exists on the intake")
    oldest_age_s: float | None = Field(
        description="age of the oldest entry still in the intake (from its id)"
    )
    last_generated_id: str | None
    dead_letters: int = Field(description="entries the router refused (XLEN of <intake>:dlq)")


class AheadOfTimeSnapshot(BaseModel):
    """A stream whose last-generated id lies ahead of Redis ``TIME`` (an explicit far-future or
    the maximum id was added to it): every later ``*`` id lies there too, or every add fails."""

    model_config = _Frozen

    key: str
    last_generated_id: str
    ahead_s: float = Field(description="seconds the id lies ahead of Redis TIME")


class BusSnapshot(BaseModel):
    """The whole bus at one moment. ``model_dump(mode="json")`` is the stable JSON shape."""

    model_config = _Frozen

    taken_at: datetime = Field(description="Redis server time of the snapshot (UTC)")
    redis_version: str
    reduced: bool = Field(description="Redis < 7.0: no lag / entries_read from XINFO GROUPS")
    streams: list[StreamSnapshot] = Field(description="sorted by aggregate")
    quarantine: dict[str, int] = Field(description="records in quarantine, by adapter")
    adapters: list[AdapterReport] = Field(
        default_factory=list,
        description="each adapter's last report (bus.adapter.report), sorted by name",
    )
    inboxes: list[InboxSnapshot] = Field(
        default_factory=list,
        description="routed delivery: every subscription's inbox, sorted by group and stream",
    )
    intakes: list[IntakeSnapshot] = Field(
        default_factory=list, description="routed delivery: every producer's intake, by principal"
    )
    ahead_of_time: list[AheadOfTimeSnapshot] = Field(
        default_factory=list,
        description=f"streams, inboxes and intakes whose last-generated id is more than "
        f"{AHEAD_TOLERANCE_S:.0f} s ahead of Redis TIME",
    )
    redis_commands: int = Field(description="commands this snapshot sent (SCAN included)")
    round_trips: int

    @property
    def empty(self) -> bool:
        """No stream has been written yet, no dead letters nor quarantine exist."""
        written = any(s.exists or s.dead_letters for s in self.streams)
        routed = any(i.exists for i in self.inboxes) or any(i.exists for i in self.intakes)
        return not written and not routed and not self.quarantine and not self.adapters

    def stream(self, name: str) -> StreamSnapshot | None:
        """By aggregate (``dukcapil.citizen``) or key (``simpul:{dukcapil.citizen}``)."""
        key = resolve_stream(name)
        return next((s for s in self.streams if s.key == key), None)
