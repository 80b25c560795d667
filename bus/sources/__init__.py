"""Sources of legacy records for adapters (see :class:`bus.adapter.Source`).

* :mod:`bus.sources.sql` — polling a legacy database (PostgreSQL or SQLite), by a change column
  or by an outbox table filled by a trigger.
* :mod:`bus.sources.csvdrop` — a drop folder of CSV exports (moved to ``done/`` or ``failed/``
  with a report).
* :mod:`bus.sources.webhook` — an HTTP endpoint the legacy app POSTs to, answering 2xx only once
  the event is in Redis.
"""
