"""services/monitor: the operators' web dashboard of the bus (Diskominfo).

For whom: the operators who must see at a glance whether every department's events flow, and
fix what is stuck, without reading Redis by hand. One page, refreshed every 2 s: the health of
the bus and every limit breached (``simpul status``'s thresholds), each stream with its consumer
groups (lag, pending, oldest pending age, consumers, dead letters), recent throughput per stream
as a sparkline, the dead letters of each group (reason, error, attempts — masked) with a
**Replay** button per dead letter and per group, each adapter's quarantine, and the flow map.

What it reads: Redis only, through :class:`bus.admin.inspect.Inspector` (snapshots), ``XRANGE`` of
the dead-letter streams a snapshot names, one ``XINFO STREAM`` per stream every ``sample_s`` for
the throughput, and :mod:`bus.admin.flowmap` (contracts, the services' code, the groups present).

What it writes: nothing, except a replay an operator confirmed with the operator token
(``POST /api/replay`` -> :meth:`bus.admin.deadletters.DeadLetters.replay`, to the group by default:
the original entry goes back to the group that gave up; no other group sees it).

What it consumes and publishes: nothing. It is not a ``bus.Service`` on purpose: a consumer
group of its own would show up in every snapshot and flow map, lag behind and trip the alerts;
throughput is sampled from the streams' counters instead (:mod:`services.monitor.throughput`).

What it stores: nothing on disk; in memory the last snapshot and the last ``window_s`` seconds
of throughput samples (counts only). Personal data never reaches the page: dead-letter errors
are masked like ``simpul dlq list`` masks them (:func:`bus.privacy.mask_error`), payloads are
never shown, logs carry counts, names of streams and groups, and the client's address.

Run it: ``python -m services.monitor`` with ``SIMPUL_REDIS_URL``; it listens on
``SIMPUL_MONITOR_HTTP`` (``127.0.0.1:8090`` by default: loopback only); ``SIMPUL_MONITOR_TOKEN``
(16+ characters) enables Replay. docs/services/monitor.md has the rest.
"""

from services.monitor.service import MAX_REPLAY, FindServices, Monitor, MonitorSettings
from services.monitor.throughput import Throughput

__all__ = ["MAX_REPLAY", "FindServices", "Monitor", "MonitorSettings", "Throughput"]
