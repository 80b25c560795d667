"""Sources of legacy records for adapters (see :class:`bus.adapter.Source`).

* :mod:`bus.sources.sql` — polling a legacy database (PostgreSQL or SQLite), by a change column
  or by an outbox table filled by a trigger.

Webhook and CSV sources are not built yet (issue 4).
"""
