"""Simpul's errors, rooted at :class:`SimpulError` and split by who must act.

* :class:`ContractViolation` — the producer sent a payload its contract rejects (fix the data).
* :class:`DecodeError` — a stream entry is not a valid wire-format v1 event (fix the producer);
  it keeps the raw fields for the dead-letter record.
* :class:`UnknownEventType` — nobody registered a contract for this type (deploy the contract).
* :class:`ConfigurationError` — a setting or an argument is wrong (fix the configuration).
* :class:`RedisUnavailable` — Redis cannot be reached (operators: check the server);
  :class:`NotDurable`, one of them, when a write reached the master but not enough replicas
  confirmed it in time (retry: a publish is idempotent).
* :class:`SourceError` — an adapter's legacy source cannot be read (operators: check it).
* :class:`PermissionDenied` — Redis refused a command for this principal (fix the ACL topology).
* :class:`BadRequestBody` — an HTTP client sent a body the endpoint cannot read (fix the client).

Messages say what was wrong, with which value, and what to do — but never quote personal data:
payload values are masked before they reach a message.
"""

from __future__ import annotations

from collections.abc import Mapping


class SimpulError(Exception):
    """Base of every error raised by Simpul."""


class ConfigurationError(SimpulError):
    """A setting, a handler signature or an argument is wrong."""


class ContractViolation(SimpulError):
    """A payload does not satisfy its contract.

    ``problems`` lists ``(field path, problem)`` pairs; values themselves are never included,
    because they may be personal data.
    """

    def __init__(self, event_type: str, problems: list[tuple[str, str]]) -> None:
        self.event_type = event_type
        self.problems = problems
        details = "; ".join(f"{field}: {problem}" for field, problem in problems)
        super().__init__(f"payload of {event_type} violates its contract: {details}")


class DecodeError(SimpulError):
    """A stream entry is not a valid wire-format v1 event. ``raw`` keeps the entry as read."""

    def __init__(self, message: str, raw: Mapping[bytes, bytes] | None = None) -> None:
        self.raw = dict(raw or {})
        super().__init__(message)


class UnknownEventType(SimpulError):
    """No contract is registered for an event type."""

    def __init__(self, event_type: str) -> None:
        self.event_type = event_type
        super().__init__(
            f"no contract is registered for event type {event_type!r}; "
            "import the module that defines it (schemas.<dept>) or upgrade the schemas package"
        )


class DependencyUnavailable(SimpulError):
    """Something a handler needs (its database, an SMTP server, another system's API) is down:
    the event is not at fault.

    A handler raising it (or a subclass, such as :class:`bus.store.StoreUnavailable`) keeps
    its event pending and retries it with capped backoff for as long as the outage lasts,
    without spending its delivery attempts: an outage never sends good events to the dead
    letters. The service reports not ready (``/readyz``) until a handler succeeds again.
    """


class BadRequestBody(SimpulError):
    """An HTTP request's body cannot be read (the client must fix its request); ``reason`` is a
    stable code for answers and logs (``bad_json``, ``too_deep``, ``number_too_long``,
    ``too_large``)."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


class RedisUnavailable(SimpulError):
    """Redis could not be reached or did not answer in time."""


class NotDurable(RedisUnavailable):
    """A write reached the master, but fewer replicas than required confirmed it in time
    (``WAIT``), so a failover now could lose it.

    Retryable, as any :class:`RedisUnavailable`: a publish is idempotent, so publishing the
    same event again is safe — it adds nothing if the first write survived and writes it
    again if a failover lost it. ``confirmed`` and ``required`` count replicas.
    """

    def __init__(self, message: str, *, confirmed: int, required: int) -> None:
        self.confirmed = confirmed
        self.required = required
        super().__init__(message)


class PermissionDenied(SimpulError):
    """Redis refused a command for the connected ACL user (NOPERM)."""


class SourceError(SimpulError):
    """An adapter's legacy source could not be read (database down, file unreadable).

    :meth:`bus.adapter.Adapter.run` retries it with backoff.
    """


class PostgresUnavailable(SimpulError):
    """A private PostgreSQL (for tests and the demo) could not be started."""


class MariaDBUnavailable(SimpulError):
    """A private MariaDB (for tests and the demo) could not be started."""
