"""Durable acknowledgement: a write returns only once enough replicas have it (``WAIT``).

Redis replicates asynchronously: a write the master acknowledged can vanish when a replica
that had not received it is promoted. So a publish, a dead-letter move and a checkpoint save
send ``WAIT <replicas> <timeout>`` right behind their write, **in the same pipeline**: WAIT
waits for the replication offset of the last write made *on its own connection*, and a
pipeline is one connection (a cluster pipeline, one connection per node: the WAIT is routed
to the node of the key written). Fewer replicas than required within the timeout raises
:class:`~bus.errors.NotDurable`, which is retryable.

On a cluster the WAIT goes to the node the client's slot map names for the key when the
pipeline is built. If the write ends up elsewhere — redis-py follows a ``MOVED`` by resending
the write alone, and retries a pipeline that met a dead node with the WAIT sent to its default
node — the WAIT's count says nothing about the write. So the map is read again once the
pipeline has run: a key whose node changed meanwhile (a failover, a slot moved) raises
:class:`~bus.errors.NotDurable` with nothing confirmed, and the caller's retry waits where the
write is.

``SIMPUL_REDIS_WAIT_REPLICAS`` sets how many; unset, it is 1 when the master has replicas —
always under Sentinel; for one server when ``ROLE`` lists a replica; for a cluster when its
slots map lists replicas — and 0 (no WAIT) otherwise. ``SIMPUL_REDIS_WAIT_TIMEOUT_MS`` bounds
the wait. docs/ha.md says what this does and does not promise.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from pydantic import Field
from pydantic_settings import SettingsConfigDict
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from bus.connection import is_cluster
from bus.errors import ConfigurationError, NotDurable
from bus.sentinel import is_sentinel
from bus.settings import ComponentSettings

__all__ = ["NO_WAITS", "Durability", "ReplicaWait", "Waits"]

REPLICAS_VAR = "SIMPUL_REDIS_WAIT_REPLICAS"
TIMEOUT_VAR = "SIMPUL_REDIS_WAIT_TIMEOUT_MS"
DEFAULT_TIMEOUT_MS = 2_000


class DurabilitySettings(ComponentSettings):
    """``SIMPUL_REDIS_WAIT_REPLICAS`` and ``SIMPUL_REDIS_WAIT_TIMEOUT_MS`` (empty: unset)."""

    model_config = SettingsConfigDict(env_prefix="SIMPUL_REDIS_WAIT_")

    replicas: int | None = Field(default=None, ge=0, le=16)
    timeout_ms: int = Field(default=DEFAULT_TIMEOUT_MS, ge=1, le=60_000)


@dataclass(frozen=True)
class Durability:
    """How many replicas must confirm a write (None: decided from the server) and how long
    to wait for them."""

    replicas: int | None = None
    timeout_ms: int = DEFAULT_TIMEOUT_MS

    def __post_init__(self) -> None:
        if self.replicas is not None and not 0 <= self.replicas <= 16:
            raise ConfigurationError(f"{REPLICAS_VAR}={self.replicas}: must be 0 to 16")
        if not 0 < self.timeout_ms <= 60_000:
            raise ConfigurationError(f"{TIMEOUT_VAR}={self.timeout_ms}: must be 1 to 60000")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Durability:
        """Read :class:`DurabilitySettings` from ``environ`` (default: the environment)."""
        read = DurabilitySettings.load(environ)
        return cls(replicas=read.replicas, timeout_ms=read.timeout_ms)


@dataclass(frozen=True)
class Waits:
    """The WAITs queued in one pipeline: how many replies they add at its end, and (on a
    cluster) the node each written key's WAIT was sent to, by name."""

    count: int
    nodes: Mapping[str, str]


NO_WAITS = Waits(0, {})  # nothing queued: no replicas to wait for


class ReplicaWait:
    """The WAITs of one client: how many replicas it needs, and the check of their replies."""

    def __init__(self, redis: Redis, durability: Durability | None = None) -> None:
        self.redis = redis
        self.durability = Durability.from_env() if durability is None else durability
        self._required = self.durability.replicas

    async def required(self) -> int:
        """Replicas each write waits for; decided once per client when not configured (a
        replica that disconnects later does not lower it: its writes then fail NotDurable)."""
        if self._required is None:
            self._required = await _replicas_exist(self.redis)
        return self._required

    def add(self, pipe: Any, written: Iterable[str]) -> Waits:
        """Queue ``WAIT`` behind the writes already queued in ``pipe`` on the keys
        ``written``: one on a single server, one per node written on a cluster (each on that
        node's connection of the pipeline). Returns what was queued, for :meth:`confirm`."""
        args = ("WAIT", self._required, self.durability.timeout_ms)
        if not is_cluster(self.redis):
            pipe.execute_command(*args)
            return Waits(1, {})
        cluster = cast(RedisCluster, self.redis)
        nodes = {}
        routes = {}
        for key in written:
            node = cluster.get_node_from_key(key)
            if node is None:  # slots unknown yet: the pipeline's own routing will say so
                raise NotDurable(
                    f"no node of the cluster is known to serve {key}", confirmed=0, required=1
                )
            nodes[node.name] = node
            routes[key] = node.name
        for node in nodes.values():
            pipe.execute_command(*args, target_nodes=node)
        return Waits(len(nodes), routes)

    def confirm(self, waits: Waits, replies: Iterable[Any], what: str) -> None:
        """:meth:`check` each WAIT reply of ``waits`` — after making sure, on a cluster, that
        every key written is still served by the node its WAIT went to (the module's note):
        if not, raise NotDurable with nothing confirmed."""
        cluster = cast(RedisCluster, self.redis)
        for key, name in waits.nodes.items():
            node = cluster.get_node_from_key(key)
            if node is None or node.name != name:
                raise NotDurable(
                    f"{what} was sent to {name}, but {key} is served by "
                    f"{node.name if node else 'no known node'} now (a failover or a slot "
                    "moved while it was written), so its WAIT confirmed nothing. Retry: a "
                    "publish is idempotent, and the retry waits for the replicas of the node "
                    "that holds it",
                    confirmed=0,
                    required=self._required or 0,
                )
        for confirmed in replies:
            self.check(confirmed, what)

    def check(self, confirmed: int, what: str) -> None:
        """Raise NotDurable if ``confirmed`` (a WAIT reply) is short; ``what`` names the write
        (e.g. ``"the publish of 3 events to simpul:{dukcapil.citizen}"``): never data."""
        required = self._required or 0
        if confirmed >= required:
            return
        raise NotDurable(
            f"{what} reached the Redis master, but only {confirmed} of the {required} "
            f"replicas required ({REPLICAS_VAR}) confirmed it within "
            f"{self.durability.timeout_ms} ms, so a failover now could lose it. Retry: a "
            "publish is idempotent, a retry adds nothing if the first write survives. If it "
            "persists, a replica is down or lagging: see `simpul status`",
            confirmed=confirmed,
            required=required,
        )


async def _replicas_exist(redis: Redis) -> int:
    if is_sentinel(redis):
        return 1
    if is_cluster(redis):
        cluster = cast(RedisCluster, redis)
        await cluster.initialize()
        return 1 if cluster.get_replicas() else 0
    role = await redis.execute_command("ROLE")  # type: ignore[no-untyped-call]
    return 1 if role and role[0] in (b"master", "master") and role[2] else 0
