"""Who holds the data: the master, its replicas and how far behind they are, the Sentinels and
their quorum — or a cluster's shards with theirs. For ``simpul status`` and the exporter.

Read with INFO (the read-only operator may run it) and, under Sentinel, ``SENTINEL MASTER`` and
``SENTINEL CKQUORUM`` of every Sentinel the client knows. A replica is *in sync* when its link
is ``online`` and it acknowledged the master's stream within ``IN_SYNC_LAG_S`` (Redis'
``min-replicas-max-lag`` in the shipped config): what a publish's WAIT needs.
"""

from __future__ import annotations

from typing import Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

from bus.connection import is_cluster
from bus.sentinel import sentinel_of

__all__ = ["IN_SYNC_LAG_S", "Replica", "SentinelState", "Shard", "Topology", "topology"]

IN_SYNC_LAG_S = 10
_Frozen = ConfigDict(frozen=True)


class Replica(BaseModel):
    model_config = _Frozen

    address: str
    state: str = Field(description="Redis' link state: online, wait_bgsave, send_bulk, ...")
    offset: int = Field(description="replication offset the replica acknowledged")
    behind_bytes: int = Field(description="master's offset minus the replica's")
    ack_age_s: int = Field(description="seconds since the replica last acknowledged")

    @property
    def in_sync(self) -> bool:
        return self.state == "online" and self.ack_age_s <= IN_SYNC_LAG_S


class Shard(BaseModel):
    """A master and its replicas (the only one of a single server or Sentinel group)."""

    model_config = _Frozen

    master: str
    offset: int
    replicas: list[Replica]

    @property
    def in_sync(self) -> int:
        return sum(r.in_sync for r in self.replicas)


class SentinelState(BaseModel):
    model_config = _Frozen

    address: str
    reachable: bool
    master: str | None = Field(default=None, description="the master this Sentinel names")
    quorum: int | None = None
    sentinels: int | None = Field(default=None, description="Sentinels it knows, itself too")
    quorum_ok: bool | None = Field(
        default=None, description="SENTINEL CKQUORUM: enough Sentinels to agree and to elect"
    )
    config_epoch: int | None = Field(
        default=None, description="grows by one with every failover of this master"
    )


class Topology(BaseModel):
    model_config = _Frozen

    shape: Literal["single", "sentinel", "cluster"]
    shards: list[Shard]
    sentinels: list[SentinelState] = Field(default_factory=list)

    @property
    def quorum_ok(self) -> bool | None:
        """Under Sentinel: does a reachable Sentinel confirm the quorum? None otherwise."""
        if self.shape != "sentinel":
            return None
        return any(s.quorum_ok for s in self.sentinels)

    @property
    def failovers(self) -> int | None:
        """The highest config epoch the Sentinels report: each failover adds one."""
        epochs = [s.config_epoch for s in self.sentinels if s.config_epoch is not None]
        return max(epochs) if epochs else None


async def topology(redis: Redis) -> Topology:
    """The replication topology as the client's server(s) and Sentinels report it now."""
    if is_cluster(redis):
        cluster = cast(RedisCluster, redis)
        await cluster.initialize()
        shards = [
            _shard(node.name, await cluster.info("replication", target_nodes=node))
            for node in cluster.get_primaries()
        ]
        return Topology(shape="cluster", shards=sorted(shards, key=lambda s: s.master))
    info = await redis.info("replication")
    pool = redis.connection_pool.connection_kwargs
    master = f"{pool.get('host', '?')}:{pool.get('port', '?')}"
    manager = sentinel_of(redis)
    if manager is None:
        return Topology(shape="single", shards=[_shard(master, info)])
    name = redis.connection_pool.service_name  # type: ignore[attr-defined]
    sentinels = [await _sentinel(client, name) for client in manager.sentinels]
    named = next((s.master for s in sentinels if s.master), master)
    return Topology(shape="sentinel", shards=[_shard(named, info)], sentinels=sentinels)


def _shard(master: str, info: dict[str, Any]) -> Shard:
    offset = int(info.get("master_repl_offset", 0))
    replicas = []
    for key, value in sorted(info.items()):
        if key.startswith("slave") and isinstance(value, dict):
            replicas.append(
                Replica(
                    address=f"{value.get('ip')}:{value.get('port')}",
                    state=str(value.get("state", "?")),
                    offset=int(value.get("offset", 0)),
                    behind_bytes=max(0, offset - int(value.get("offset", 0))),
                    ack_age_s=int(value.get("lag", 0)),
                )
            )
    return Shard(master=master, offset=offset, replicas=replicas)


async def _sentinel(client: Redis, name: str) -> SentinelState:
    kwargs = client.connection_pool.connection_kwargs
    address = f"{kwargs.get('host')}:{kwargs.get('port')}"
    try:
        fields = cast(dict[str, Any], await client.sentinel_master(name))
        quorum_ok = await _ckquorum(client, name)
    except (RedisError, OSError):
        return SentinelState(address=address, reachable=False)
    return SentinelState(
        address=address,
        reachable=True,
        master=f"{fields.get('ip')}:{fields.get('port')}",
        quorum=int(fields.get("quorum", 0)),
        sentinels=int(fields.get("num-other-sentinels", 0)) + 1,
        quorum_ok=quorum_ok,
        config_epoch=int(fields.get("config-epoch", 0)),
    )


async def _ckquorum(client: Redis, name: str) -> bool:
    try:
        await client.execute_command("SENTINEL CKQUORUM", name)  # type: ignore[no-untyped-call]
    except RedisError as exc:
        if "NOQUORUM" in str(exc):
            return False
        raise
    return True
