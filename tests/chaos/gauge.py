"""The partitioned aggregate of the fault tests: ``chaos.gauge`` in 4 partitions by subject.

Not in the default registry (the city's topology must not see it): producer and consumer pass
:data:`REGISTRY` where they need it.
"""

from __future__ import annotations

from bus import Contract
from bus.contracts import Registry


class GaugeRead(Contract, event_type="chaos.gauge.read.v1", partitions=4, register=False):
    """A reading of a gauge; its subject is the gauge, its ``seq`` the reading's number."""

    gauge: str
    seq: int


REGISTRY = Registry()
REGISTRY.register(GaugeRead)
PARTITIONS = tuple(GaugeRead.__contract__.streams)
