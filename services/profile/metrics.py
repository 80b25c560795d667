"""The profile API's Prometheus metrics, served on the service's ``/metrics`` beside the bus's.

``simpul_profile_lookups_total{service, role, token, lookup, outcome}``: every request of an
authenticated token — ``token`` is the fingerprint access records name it by (8 hex digits of
its SHA-256, never the token), ``outcome`` the HTTP status (200, 404, 403, 422, 429, 503).
``simpul_profile_unauthorized_total{service, lookup}``: requests without a valid token.
Labels stay bounded: the configured tokens times a handful of lookups and statuses. The
SimpulProfileLookupBurst alert reads the first (deploy/prometheus/alerts.yml).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from services.profile.policy import Caller

__all__ = ["LookupMetrics"]


class LookupMetrics(Collector):
    """Counts of the API's answers; plain numbers changed by the service's event loop only."""

    def __init__(self, service: str = "profile") -> None:
        self.service = service
        self.lookups: Counter[tuple[str, str, str, int]] = Counter()
        self.unauthorized: Counter[str] = Counter()

    def register(self, registry: CollectorRegistry) -> LookupMetrics:
        registry.register(self)
        return self

    def answered(self, caller: Caller, lookup: str, outcome: int) -> None:
        self.lookups[(caller.role.name, caller.fingerprint, lookup, outcome)] += 1

    def refused(self, lookup: str) -> None:
        self.unauthorized[lookup] += 1

    def collect(self) -> Iterator[Metric]:
        lookups = CounterMetricFamily(
            "simpul_profile_lookups",
            "Profile API requests of authenticated tokens, by role, token fingerprint, lookup "
            "and HTTP status (429: over the token's rate limit).",
            labels=["service", "role", "token", "lookup", "outcome"],
        )
        for (role, token, lookup, outcome), count in sorted(self.lookups.items()):
            lookups.add_metric([self.service, role, token, lookup, str(outcome)], count)
        unauthorized = CounterMetricFamily(
            "simpul_profile_unauthorized",
            "Profile API requests without a valid token (401).",
            labels=["service", "lookup"],
        )
        for lookup, count in sorted(self.unauthorized.items()):
            unauthorized.add_metric([self.service, lookup], count)
        yield from (lookups, unauthorized)
