"""Reading entries: ``simpul tail`` and ``simpul pending``.

:func:`decode_entry` and :func:`pending_entries` serve ``tail`` and ``pending``, masked
(unless revealed) by the one rule of :mod:`bus.privacy`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, Field
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from bus.admin.snapshots import _Frozen
from bus.connection import TRANSIENT, simpul_error
from bus.contracts import Registry, default_registry
from bus.decoding import text as _text
from bus.entry_ids import age_s
from bus.envelope import Envelope
from bus.errors import ConfigurationError, DecodeError
from bus.privacy import contract_of, mask_attribute, mask_data, mask_subject, mask_text

__all__ = [
    "PendingEntry",
    "decode_entry",
    "pending_entries",
]


def decode_entry(
    stream: str,
    entry_id: str,
    raw: Mapping[bytes, bytes] | None,
    *,
    registry: Registry = default_registry,
    reveal: bool = False,
) -> dict[str, Any]:
    """One stream entry for people and machines: its envelope attributes and ``data``, with
    personal fields masked (unless ``reveal``). The shape (``tail --json``, one per line)::

        {"stream", "entry_id", "id", "type", "source", "time", "subject", "correlationid",
         "causationid", "extensions", "data", "masked", "known_type"}

    An entry that is not wire format v1 gives ``{"stream", "entry_id", "error", "fields"}``
    (its fields masked as of an unknown type); a deleted one ``{..., "error": "deleted"}``.
    """
    base: dict[str, Any] = {"stream": stream, "entry_id": entry_id}
    if raw is None:
        return {**base, "error": "deleted or trimmed"}
    try:
        envelope = Envelope.from_fields(raw)
    except DecodeError as exc:
        fields = {_text(k): _text(v) for k, v in raw.items()}
        if not reveal:  # not an event: no contract says what its fields mean
            fields = mask_data(fields, None)
        return {**base, "error": f"not wire format v1: {mask_text(str(exc))}", "fields": fields}
    data: Any
    try:
        data = json.loads(envelope.data)
    except ValueError:
        data = envelope.data
    contract = contract_of(envelope.type, registry)
    if not reveal:
        data = mask_data(data, contract)

    def attribute(value: str | None) -> str | None:
        return value if reveal or value is None else mask_text(value)

    return {
        **base,
        "id": attribute(envelope.id),  # a producer's choice: one may be built from a NIK
        "type": envelope.type,
        "source": envelope.source,
        "time": envelope.time,
        "subject": envelope.subject if reveal else mask_subject(envelope.subject, contract),
        "correlationid": attribute(envelope.correlationid),
        "causationid": attribute(envelope.causationid),
        "extensions": {
            k: v if reveal else mask_attribute(k, v, contract)
            for k, v in (envelope.extensions or {}).items()
        }
        or None,
        "data": data,
        "masked": not reveal,
        "known_type": contract is not None,
    }


class PendingEntry(BaseModel):
    """One entry delivered to a group and not acked."""

    model_config = _Frozen

    entry_id: str
    consumer: str
    idle_s: float = Field(description="seconds since it was last delivered")
    deliveries: int
    age_s: float = Field(description="seconds since it was added to the stream")
    exists: bool = Field(description="False: deleted or trimmed while pending (lost)")
    type: str | None = Field(description="its event type, if it still exists and has one")


async def pending_entries(
    redis: Redis, stream: str, group: str, *, count: int = 20
) -> list[PendingEntry]:
    """The oldest ``count`` pending entries of ``group`` on ``stream`` (two round trips).

    Raises ConfigurationError if the stream or the group does not exist.
    """
    try:
        try:
            rows = await redis.xpending_range(stream, group, min="-", max="+", count=count)
        except ResponseError as exc:
            if "NOGROUP" in str(exc) or "no such key" in str(exc).lower():
                raise ConfigurationError(await _no_group(redis, stream, group)) from None
            raise
        now_ms = await _now_ms(redis)
        async with redis.pipeline(transaction=False) as pipe:
            for row in rows:
                pipe.xrange(stream, min=row["message_id"], max=row["message_id"], count=1)
            found: Sequence[Any] = await pipe.execute() if rows else []
    except (ResponseError, *TRANSIENT) as exc:
        raise simpul_error(exc) from None
    entries = []
    for row, hit in zip(rows, found, strict=True):
        entry_id = _text(row["message_id"])
        fields = hit[0][1] if hit else None
        kind = fields.get(b"type") if fields else None
        entries.append(
            PendingEntry(
                entry_id=entry_id,
                consumer=_text(row["consumer"]),
                idle_s=int(row["time_since_delivered"]) / 1000,
                deliveries=int(row["times_delivered"]),
                age_s=age_s(entry_id, now_ms),
                exists=bool(hit),
                type=_text(kind) if kind else None,
            )
        )
    return entries


async def _no_group(redis: Redis, stream: str, group: str) -> str:
    if await redis.type(stream) != b"stream":
        return f"no stream {stream}"
    names = sorted(_text(g["name"]) for g in await redis.xinfo_groups(stream))
    known = ", ".join(names) if names else "none"
    return f"no consumer group {group!r} on {stream} (groups: {known})"


async def _now_ms(redis: Redis) -> int:
    seconds, micros = await redis.time()
    return int(seconds) * 1000 + int(micros) // 1000
