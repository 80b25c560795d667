"""What the router's parts share: its knobs, its counts, a route, why admission refuses an
entry, and the small helpers on entry ids and flat field lists (decision 0011)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from bus.projection import Disclosure
from bus.replies import EntryFields, field_pairs

NOT_HOLDER = "SIMPUL_NOT_HOLDER"
"""The error of a fenced read by a replica whose lease lapsed (bus/router_read.lua)."""
CONSUMER = "router"
"""The consumer name of every router replica: a lease makes one replica read a source at a time,
and the same name makes the next one find what the last left pending."""
MAX_ENTRY_BYTES = 64 * 1024
"""The default cap on an intake entry (field names and values, in bytes)."""
MAX_FIELDS = 64
"""The cap on an intake entry's fields (name/value pairs): a v1 event has 7 required attributes,
a few optional ones, its signature's three and ``data``. Past a few thousand, the library's
functions could not pass them to ``XADD`` (Lua's unpack limit: the batch would fail, again and
again), and checking, projecting and signing them would hold the router's loop, every
source's, for seconds a batch."""
MAX_REFUSALS = 10_000
"""The default number of refusals kept per intake (``simpul:intake:{<principal>}:dlq``), newest
first: the evidence of what a producer sent wrong, bounded."""
MAX_INTAKE_BYTES = 64 * 1024 * 1024
"""The default cap on the memory one intake holds (bus/intake_cap.lua): beyond it the router
removes its oldest entries. Sized so that every intake of the city at its cap, with its
refusals at theirs, stays well below the shipped ``maxmemory`` (2 GB)."""
MAX_REFUSAL_BYTES = 16 * 1024 * 1024
"""The default cap on the memory one intake's refusals hold (10,000 refusals of 64 KiB would
be 640 MiB): beyond it the oldest refusals go, as beyond ``MAX_REFUSALS``."""

Entries = list[tuple[bytes, dict[bytes, bytes]]]
Settlement = list[Callable[[Any], Any]]
"""What settles a routed batch on its source (its ack, an intake's trim), each queued on a
pipeline: sent with the source's next read, so a turn costs two round trips, not three."""


class IdsMoved(Exception):
    """A department stream's last entry id was at or past the id the router chose for an
    admitted event (another replica wrote there in the same millisecond, or its clock is
    off): the batch stays pending, is read again and the ids chosen anew (decision 0014)."""


class RejectReason:
    """Why admission refused an entry (``dlq.reason`` in the producer's dead letters); the
    signature reasons are those of bus.deadletter.Reason."""

    TOO_LARGE = "too_large"
    UNDECODABLE = "undecodable"
    TYPE_NOT_ALLOWED = "type_not_allowed"
    UNKNOWN_TYPE = "unknown_type"
    CONTRACT_VIOLATION = "contract_violation"
    SIGNER_NOT_OWNER = "signer_not_owner"
    INTAKE_OVERFLOW = "intake_overflow"  # not an entry's: the cap removed entries unread


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why admission refused an entry: ``dlq.reason`` and ``dlq.error`` (no personal data)."""

    reason: str
    error: str


@dataclass(frozen=True, slots=True)
class Route:
    """One subscription's inbox for one department stream, and what it may see of a type."""

    group: str
    inbox: str
    disclosure: Disclosure  # what the subscription may see of the type


@dataclass
class Counts:
    """What the router did since it started (the exporter and the tests read these)."""

    admitted: int = 0
    duplicates: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    forwarded: int = 0
    withheld: dict[str, int] = field(default_factory=dict)  # stream entries not forwarded: why
    trimmed: int = 0


@dataclass(frozen=True)
class RouterConfig:
    """The router's knobs. ``lease_ms``: how long a replica owns a source without renewing
    (a dead replica's sources move after this); the lease is renewed once a third of it has
    passed, so ``block_ms`` must stay well below a third of it."""

    batch_size: int = 100
    block_ms: int = 500
    one_hop: bool = True  # admission writes the inboxes too, where one server holds them all
    id_drift_ms: int = 1_000  # how far a chosen department-stream id may lie from TIME
    lease_ms: int = 5_000
    max_entry_bytes: int = MAX_ENTRY_BYTES
    dedupe_ttl_ms: int = 7 * 24 * 3600 * 1000
    trim_every_s: float = 5.0
    max_refusals: int = MAX_REFUSALS
    max_intake_bytes: int = MAX_INTAKE_BYTES
    max_refusal_bytes: int = MAX_REFUSAL_BYTES


def _next_id(entry_id: bytes) -> str:
    """The smallest entry id after ``entry_id`` (XTRIM MINID keeps ids >= its argument)."""
    ms, _, seq = entry_id.decode().partition("-")
    if int(seq) < 2**64 - 1:
        return f"{ms}-{int(seq) + 1}"
    return f"{int(ms) + 1}-0" if int(ms) < 2**64 - 1 else f"{ms}-{seq}"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _pairs(flat: Sequence[bytes]) -> dict[bytes, bytes]:
    """An entry's fields as a map that keeps, when a name repeats, every pair beside it
    (bus.replies): decoding refuses such an entry, and its dead letter keeps every field."""
    return EntryFields.of(list(flat))


def _flat(raw: Mapping[bytes, bytes]) -> list[bytes]:
    out: list[bytes] = []
    for name, value in field_pairs(raw):
        out += (name, value)
    return out


def _after(entry_id: str, other: str) -> bool:
    a, _, b = entry_id.partition("-")
    c, _, d = other.partition("-")
    return (int(a), int(b or 0)) > (int(c), int(d or 0))


def _id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


async def trim_inbox(redis: Redis, inbox: str, group: str) -> int:
    """XTRIM an inbox below the oldest entry ``group`` still needs: its oldest pending entry,
    else its last-delivered id. Nothing happens before the group exists (a service not yet
    started finds its whole inbox)."""
    try:
        groups = await redis.xinfo_groups(inbox)
    except ResponseError:  # no such key
        return 0
    found = next((g for g in groups if _text(g["name"]) == group), None)
    if found is None:
        return 0
    floor = _text(found["last-delivered-id"])
    if int(found["pending"]):
        oldest: Any = (await redis.xpending_range(inbox, group, min="-", max="+", count=1))[0]
        floor = _text(oldest["message_id"])
    if floor == "0-0":
        return 0
    return int(await redis.xtrim(inbox, minid=floor, approximate=False))
