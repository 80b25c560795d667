"""Sources of legacy records for adapters (see :class:`bus.adapter.Source`).

* :mod:`bus.adapter.sources.logical` — change-data-capture from PostgreSQL (logical decoding):
  every committed change once, in commit order, after a snapshot of the rows already there.
* :mod:`bus.adapter.sources.sql` — polling a legacy database (PostgreSQL or SQLite), by an
  outbox table filled by a trigger (commit-safe on PostgreSQL) or by a change column (with a
  settle window).
* :mod:`bus.adapter.sources.csvdrop` — a drop folder of CSV exports (moved to ``done/`` or
  ``failed/`` with a report).
* :mod:`bus.adapter.sources.webhook` — an HTTP endpoint the legacy app POSTs to, answering 2xx
  only once the event is in Redis.
"""
