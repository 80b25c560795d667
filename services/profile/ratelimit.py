"""How fast one token may look up persons: a token bucket per token, kept in the profile's store.

Why a bucket: a department's client may look up a burst of residents (a clerk's queue in the
morning) but not sweep NIKs; the bucket allows ``burst`` lookups at once and ``per_minute``
sustained, and answers the rest 429 with ``Retry-After``.

Why in the store, not in memory or in Redis: the profile may run replicated behind one
address, and a limit held in each replica's memory would let a client that is spread over N
replicas make N times as many lookups. The store is what the replicas already share (one
PostgreSQL, or one SQLite file on one machine), every lookup already writes its access record
there, and a store outage already stops lookups (no answer without its access record), so the
limit adds no new dependency and no new way to fail: Redis would (the API answers while Redis
is down, and the service's Redis user may touch only its streams). PostgreSQL runs the
read-modify-write as SERIALIZABLE and SQLite has one writer, so concurrent lookups on several
replicas never both take the last token.

Settings: ``SIMPUL_PROFILE_RATE_PER_MINUTE`` (default 30) and ``SIMPUL_PROFILE_RATE_BURST``
(default 20).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from bus import ConfigurationError, Tx

__all__ = ["TABLE", "RateLimit", "Verdict", "take"]

TABLE = (
    "CREATE TABLE IF NOT EXISTS profile_rate (caller TEXT PRIMARY KEY, "
    "millitokens BIGINT NOT NULL, at_ms BIGINT NOT NULL, refused BIGINT NOT NULL)"
)
_ONE = 1000  # a token, in the integer thousandths the table keeps (portable, exact)


class RateLimit(BaseSettings):
    """Lookups one token may make: ``burst`` at once, ``per_minute`` sustained."""

    model_config = SettingsConfigDict(
        env_prefix="SIMPUL_PROFILE_RATE_", extra="ignore", frozen=True
    )

    per_minute: float = Field(default=30, gt=0, le=60_000, description="sustained lookups")
    burst: int = Field(default=20, ge=1, le=10_000, description="lookups at once")

    @classmethod
    def load(cls, **overrides: Any) -> RateLimit:
        try:
            return cls(**overrides)
        except ValidationError as exc:
            problems = "; ".join(
                f"SIMPUL_PROFILE_RATE_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
                for err in exc.errors()
            )
            raise ConfigurationError(f"invalid profile rate limit: {problems}") from None


@dataclass(frozen=True, slots=True)
class Verdict:
    """May the lookup go ahead; if not, in how many seconds, and is it the first refusal since
    the token was last allowed (logged once per episode, counted always)."""

    allowed: bool
    retry_after_s: int = 0
    first_refusal: bool = False


def take(tx: Tx, caller: str, now_ms: int, limit: RateLimit) -> Verdict:
    """Take one token of ``caller``'s bucket, if it has one (in the caller's transaction)."""
    capacity = limit.burst * _ONE
    per_ms = limit.per_minute * _ONE / 60_000  # thousandths of a token refilled per millisecond
    row = tx.one("SELECT millitokens, at_ms, refused FROM profile_rate WHERE caller = ?", (caller,))
    if row is None:
        tokens, refused = capacity, 0
    else:
        # A replica whose clock is behind the last writer's refills nothing rather than less.
        elapsed = max(0, now_ms - int(row["at_ms"]))
        tokens = min(capacity, int(row["millitokens"]) + int(elapsed * per_ms))
        refused = int(row["refused"])
    if tokens >= _ONE:
        verdict = Verdict(True)
        tokens, refused = tokens - _ONE, 0
    else:
        wait_ms = (_ONE - tokens) / per_ms
        verdict = Verdict(False, max(1, math.ceil(wait_ms / 1000)), refused == 0)
        refused += 1
    tx.execute(
        "INSERT INTO profile_rate (caller, millitokens, at_ms, refused) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (caller) DO UPDATE SET millitokens = excluded.millitokens, "
        "at_ms = excluded.at_ms, refused = excluded.refused",
        (caller, tokens, now_ms, refused),
    )
    return verdict
