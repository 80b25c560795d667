"""Every Redis key Simpul uses is built here, and nowhere else.

All keys of one aggregate share the hash tag ``{<dept>.<aggregate>}`` so that the stream, its
dead letters and its dedupe keys live on one Redis Cluster slot: moving an entry to dead
letters and acking it, or checking a dedupe key and adding the entry, can then be one atomic
script. The layout is part of wire format v1 (docs/wire-format.md); changing it is a breaking
change for every non-Python adapter.
"""

from __future__ import annotations

import functools
import re

PREFIX = "simpul"

# <dept>.<aggregate>.<past-tense-verb>.v<major>; lowercase ASCII, words joined by "_" or "-".
_SEGMENT = r"[a-z][a-z0-9_-]*"
TYPE_PATTERN = re.compile(rf"^({_SEGMENT})\.({_SEGMENT})\.({_SEGMENT})\.v([1-9][0-9]*)$")


@functools.lru_cache(maxsize=1024)  # few types; bounded, as junk entries can invent many
def aggregate_of(event_type: str) -> str:
    """``dukcapil.citizen.died.v1`` -> ``dukcapil.citizen``. Raises ValueError on a bad type."""
    match = TYPE_PATTERN.match(event_type)
    if match is None:
        raise ValueError(
            f"event type {event_type!r} is not of the form <dept>.<aggregate>.<verb>.v<major> "
            "(lowercase, e.g. 'dukcapil.citizen.died.v1')"
        )
    return f"{match[1]}.{match[2]}"


def stream(aggregate: str) -> str:
    """The stream of an aggregate: ``simpul:{dukcapil.citizen}``."""
    return f"{PREFIX}:{{{aggregate}}}"


def stream_of(event_type: str) -> str:
    return stream(aggregate_of(event_type))


def dead_letters(stream_key: str, group: str) -> str:
    """Dead letters of one consumer group: ``simpul:{dukcapil.citizen}:dlq:<group>``."""
    return f"{stream_key}:dlq:{group}"


def seen(stream_key: str, event_id: str) -> str:
    """Producer dedupe marker of one event id on one stream."""
    return f"{stream_key}:seen:{event_id}"


def done(stream_key: str, group: str, event_id: str) -> str:
    """Consumer-side "handled once" marker of one event id for one group (the dedupe helper)."""
    return f"{stream_key}:done:{group}:{event_id}"


def cursor(stream_key: str, group: str) -> str:
    """Where ``group`` had read ``stream_key`` up to, as its consumers last saw (a hash: ``id``,
    ``read``): how a group recreated after a deletion learns what it lost (bus.gaps)."""
    return f"{stream_key}:cursor:{group}"


def quarantine(adapter: str) -> str:
    """Source records an adapter could not map: ``simpul:quarantine:{<adapter>}``.

    The adapter name is the hash tag, so the stream and its index share a Cluster slot and one
    script can update both.
    """
    return f"{PREFIX}:quarantine:{{{adapter}}}"


def quarantine_index(adapter: str) -> str:
    """Which records (event id + raw digest) are in an adapter's quarantine already."""
    return f"{quarantine(adapter)}:index"


def checkpoint(adapter: str) -> str:
    """Where an adapter resumes reading its source (JSON position of the last published record)."""
    return f"{PREFIX}:checkpoint:{adapter}"


def is_stream(key: str) -> bool:
    """True for an aggregate stream key (not its dead letters or markers)."""
    return key.startswith(f"{PREFIX}:{{") and key.endswith("}")


def stream_pattern() -> str:
    """SCAN pattern that matches aggregate streams and their sub-keys."""
    return f"{PREFIX}:{{*}}*"
