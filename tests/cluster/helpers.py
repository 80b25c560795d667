"""What the cluster tests share: events on streams of different masters, and where keys live."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

from redis import Redis as SyncRedis

from bus.contracts import Contract
from bus.local.cluster import EmbeddedCluster
from schemas.bapenda import PaymentReceived
from schemas.dpmptsp import PermitIssued
from schemas.dukcapil import CitizenDied

EXAMPLES = Path(__file__).resolve().parents[2] / "schemas" / "examples"
SOURCE = "urn:malangkota:test:cluster"
# Their streams hash to slots 2041, 10602 and 11210: on a 3-master cluster, to the first master,
# the second and the third (the tests check where they really are, not this comment).
MODELS: tuple[type[Contract], ...] = (CitizenDied, PermitIssued, PaymentReceived)
STREAMS = tuple(model.__contract__.stream for model in MODELS)


def example(model: type[Contract], index: int = 0) -> Contract:
    """A valid instance of ``model`` from the contract's conformance vectors."""
    if model is CitizenDied:  # varied by index: tests publish many deaths
        return CitizenDied(
            nik=f"35730145069{index + 1:05d}", date_of_death=date(2024, 3, 1), kecamatan="35.73.01"
        )
    folder = EXAMPLES / model.__contract__.event_type
    files = sorted(folder.glob("valid-*.json"))
    return model.parse(files[index % len(files)].read_text())


def master_of(cluster: EmbeddedCluster, key: str) -> str:
    """``host:port`` of the master serving ``key``, as the cluster itself says: CLUSTER KEYSLOT,
    then the slot ranges of CLUSTER NODES (redis-py parses the table into a dict)."""
    node = cluster.nodes[0]
    with SyncRedis(node.host, node.port, decode_responses=True) as client:
        slot = int(client.execute_command("CLUSTER KEYSLOT", key))
        table: dict[str, dict[str, Any]] = client.execute_command("CLUSTER NODES")
    for address, info in table.items():
        if "master" in info["flags"] and any(
            int(low) <= slot <= int(high) for low, high in info["slots"]
        ):
            return address
    raise AssertionError(f"no master serves slot {slot} of {key}")


def key_type_on(address: str, key: str) -> str:
    """TYPE of ``key`` asked of that master itself (a plain client: no redirection)."""
    host, _, port = address.rpartition(":")
    with SyncRedis(host, int(port), decode_responses=True) as client:
        return str(client.type(key))
