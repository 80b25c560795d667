"""Simpul: the event bus of Kota Malang's departments, on Redis Streams.

The names department developers need. Adapters and services import from here (and from the
faces of the families: :mod:`bus.adapter`, :mod:`bus.admin`, :mod:`bus.testing`, :mod:`bus.cli`),
never from the modules behind them (decision 0009). Names are imported when first used, so an
adapter that only publishes does not load the service side (FastStream, uvicorn, Starlette).
"""

from typing import TYPE_CHECKING

from bus._lazy import exports
from bus.logging import configure_default

if TYPE_CHECKING:
    from bus.connection import TRANSIENT as TRANSIENT_REDIS_ERRORS
    from bus.connection import connect
    from bus.connection import location as redis_location
    from bus.connection import simpul_error as simpul_redis_error
    from bus.connection import translate as translate_redis_error
    from bus.context import EventContext
    from bus.contracts import PERSONAL, Classification, Contract, Registry, default_registry
    from bus.decoding import text as redis_text
    from bus.devmaterial import refuse_dev_token
    from bus.entry_ids import parts as entry_id_parts
    from bus.envelope import Envelope, format_time
    from bus.errors import (
        BadRequestBody,
        ConfigurationError,
        ContractViolation,
        DecodeError,
        DependencyUnavailable,
        NotDurable,
        PermissionDenied,
        RedisUnavailable,
        SimpulError,
        UnknownEventType,
    )
    from bus.functions import BusFunction
    from bus.http import parse_address, parse_json, read_body
    from bus.http import running as serving_http
    from bus.http import serve as serve_http
    from bus.logging import configure as configure_logging
    from bus.logging import get_logger
    from bus.outcomes import GiveUp, Retry
    from bus.privacy import contract_of, mask_error, mask_subject, mask_text
    from bus.projection import Projection
    from bus.publisher import Published, Publisher, Retention, event_id
    from bus.service import Service
    from bus.settings import ComponentSettings, Settings
    from bus.signing import Signer, verify_fields
    from bus.store import Store, StoreUnavailable, Tx

_EXPORTS = {
    "PERSONAL": ("bus.contracts", "PERSONAL"),
    "TRANSIENT_REDIS_ERRORS": ("bus.connection", "TRANSIENT"),
    "BadRequestBody": ("bus.errors", "BadRequestBody"),
    "BusFunction": ("bus.functions", "BusFunction"),
    "Classification": ("bus.contracts", "Classification"),
    "ComponentSettings": ("bus.settings", "ComponentSettings"),
    "ConfigurationError": ("bus.errors", "ConfigurationError"),
    "Contract": ("bus.contracts", "Contract"),
    "ContractViolation": ("bus.errors", "ContractViolation"),
    "DecodeError": ("bus.errors", "DecodeError"),
    "DependencyUnavailable": ("bus.errors", "DependencyUnavailable"),
    "Envelope": ("bus.envelope", "Envelope"),
    "EventContext": ("bus.context", "EventContext"),
    "GiveUp": ("bus.outcomes", "GiveUp"),
    "NotDurable": ("bus.errors", "NotDurable"),
    "PermissionDenied": ("bus.errors", "PermissionDenied"),
    "Projection": ("bus.projection", "Projection"),
    "Published": ("bus.publisher", "Published"),
    "Publisher": ("bus.publisher", "Publisher"),
    "RedisUnavailable": ("bus.errors", "RedisUnavailable"),
    "Registry": ("bus.contracts", "Registry"),
    "Retention": ("bus.publisher", "Retention"),
    "Retry": ("bus.outcomes", "Retry"),
    "Service": ("bus.service", "Service"),
    "Settings": ("bus.settings", "Settings"),
    "Signer": ("bus.signing", "Signer"),
    "SimpulError": ("bus.errors", "SimpulError"),
    "Store": ("bus.store", "Store"),
    "StoreUnavailable": ("bus.store", "StoreUnavailable"),
    "Tx": ("bus.store", "Tx"),
    "UnknownEventType": ("bus.errors", "UnknownEventType"),
    "configure_logging": ("bus.logging", "configure"),
    "connect": ("bus.connection", "connect"),
    "contract_of": ("bus.privacy", "contract_of"),
    "default_registry": ("bus.contracts", "default_registry"),
    "entry_id_parts": ("bus.entry_ids", "parts"),
    "event_id": ("bus.publisher", "event_id"),
    "format_time": ("bus.envelope", "format_time"),
    "get_logger": ("bus.logging", "get_logger"),
    "mask_error": ("bus.privacy", "mask_error"),
    "mask_subject": ("bus.privacy", "mask_subject"),
    "mask_text": ("bus.privacy", "mask_text"),
    "parse_address": ("bus.http", "parse_address"),
    "parse_json": ("bus.http", "parse_json"),
    "read_body": ("bus.http", "read_body"),
    "refuse_dev_token": ("bus.devmaterial", "refuse_dev_token"),
    "redis_location": ("bus.connection", "location"),
    "redis_text": ("bus.decoding", "text"),
    "serve_http": ("bus.http", "serve"),
    "serving_http": ("bus.http", "running"),
    "simpul_redis_error": ("bus.connection", "simpul_error"),
    "translate_redis_error": ("bus.connection", "translate"),
    "verify_fields": ("bus.signing", "verify_fields"),
}

__all__ = [
    "PERSONAL",
    "TRANSIENT_REDIS_ERRORS",
    "BadRequestBody",
    "BusFunction",
    "Classification",
    "ComponentSettings",
    "ConfigurationError",
    "Contract",
    "ContractViolation",
    "DecodeError",
    "DependencyUnavailable",
    "Envelope",
    "EventContext",
    "GiveUp",
    "NotDurable",
    "PermissionDenied",
    "Projection",
    "Published",
    "Publisher",
    "RedisUnavailable",
    "Registry",
    "Retention",
    "Retry",
    "Service",
    "Settings",
    "Signer",
    "SimpulError",
    "Store",
    "StoreUnavailable",
    "Tx",
    "UnknownEventType",
    "configure_logging",
    "connect",
    "contract_of",
    "default_registry",
    "entry_id_parts",
    "event_id",
    "format_time",
    "get_logger",
    "mask_error",
    "mask_subject",
    "mask_text",
    "parse_address",
    "parse_json",
    "read_body",
    "redis_location",
    "redis_text",
    "refuse_dev_token",
    "serve_http",
    "serving_http",
    "simpul_redis_error",
    "translate_redis_error",
    "verify_fields",
]

__getattr__, __dir__ = exports(globals(), _EXPORTS)

configure_default()  # masked, info-level logs unless the application configures structlog
