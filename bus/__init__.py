"""Simpul: the event bus of Kota Malang's departments, on Redis Streams.

The names department developers need; everything else is internal.
"""

from bus.connection import connect
from bus.context import EventContext
from bus.contracts import PERSONAL, Classification, Contract, Registry, default_registry
from bus.envelope import Envelope
from bus.errors import (
    ConfigurationError,
    ContractViolation,
    DecodeError,
    NotDurable,
    PermissionDenied,
    RedisUnavailable,
    SimpulError,
    UnknownEventType,
)
from bus.logging import configure_default
from bus.outcomes import GiveUp, Retry
from bus.publisher import Published, Publisher, Retention, event_id
from bus.service import Service
from bus.settings import Settings

__all__ = [
    "PERSONAL",
    "Classification",
    "ConfigurationError",
    "Contract",
    "ContractViolation",
    "DecodeError",
    "Envelope",
    "EventContext",
    "GiveUp",
    "NotDurable",
    "PermissionDenied",
    "Published",
    "Publisher",
    "RedisUnavailable",
    "Registry",
    "Retention",
    "Retry",
    "Service",
    "Settings",
    "SimpulError",
    "UnknownEventType",
    "connect",
    "default_registry",
    "event_id",
]

configure_default()  # masked, info-level logs unless the application configures structlog
