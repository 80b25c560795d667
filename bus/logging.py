"""Structured logging: JSON in production, readable in a terminal, personal data masked.

Stable event names (``event_published``, ``event_dead_lettered``, ...) with bound context
(``stream``, ``type``, ``event_id``, ``group``). Payloads are never logged; as a second line of
defence a processor masks anything shaped like a NIK / KK (16 digits) and the values of fields
that contracts declare personal, by the rule of :mod:`bus.privacy`.
"""

from __future__ import annotations

import getpass
import logging
import sys
from collections.abc import Callable, Iterable, MutableMapping
from typing import Any, TextIO, cast

import structlog
from pydantic import Field
from pydantic_settings import SettingsConfigDict

from bus.contracts import default_registry

# The one masking rule lives in bus.privacy; these names stay importable from here (the
# consumer and older callers use them) but are not defined twice.
from bus.privacy import MASK, mask_text, mask_value, shape, shapes
from bus.settings import ComponentSettings

__all__ = [
    "MASK",
    "MaskPersonalData",
    "configure",
    "configure_default",
    "get_logger",
    "mask_text",
    "os_user",
    "shape",
    "shapes",
]


class MaskPersonalData:
    """structlog processor: masks NIK-shaped values and fields declared personal by contracts."""

    def __init__(self, extra_fields: Iterable[str] = ()) -> None:
        self._extra = frozenset(extra_fields)

    def __call__(
        self, _: Any, __: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        personal = self._extra | default_registry.personal_field_names()
        for key, value in list(event_dict.items()):
            event_dict[key] = MASK if key in personal else _masked(value, personal)
        return event_dict


def _masked(value: Any, personal: frozenset[str]) -> Any:
    """``value`` masked, inside lists and dicts too (a bound list of record keys, a dict of
    fields): the JSON renderer writes what is inside them as it is."""
    if isinstance(value, dict):
        return {k: MASK if k in personal else _masked(v, personal) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_masked(item, personal) for item in value]
    return mask_value(value)


def for_people(fmt: str) -> bool:
    """Whether logs of format ``fmt`` (``json``, ``console``, ``auto``) are read by a person."""
    return fmt == "console" or (fmt == "auto" and sys.stderr.isatty())


def configure(level: str = "info", fmt: str = "auto") -> None:
    """Configure structlog once per process. ``fmt``: ``json``, ``console`` or ``auto`` (a tty)."""
    renderer: Callable[..., Any]
    if for_people(fmt):
        renderer = structlog.dev.ConsoleRenderer()
    else:
        renderer = structlog.processors.JSONRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            MaskPersonalData(),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(cast(TextIO, _CurrentStderr())),
        # Not cached: tests (capture_logs) and CLIs reconfigure after loggers were first used.
        # Nothing logs per event on the hot path, so the lookup per log call costs nothing.
        cache_logger_on_first_use=False,
    )


class _CurrentStderr:
    """Whatever ``sys.stderr`` is at write time (test runners and CLIs swap it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)


class LogSettings(ComponentSettings):
    """``SIMPUL_LOG_LEVEL`` and ``SIMPUL_LOG_FORMAT`` as :func:`configure_default` reads them:
    a value it does not know falls back to the default (logging must start whatever is set;
    the service's :class:`~bus.settings.Settings` refuse it)."""

    model_config = SettingsConfigDict(env_prefix="SIMPUL_LOG_")

    level: str = "info"
    fmt: str = Field(default="auto", validation_alias="SIMPUL_LOG_FORMAT")


def configure_default() -> None:
    """Unless the application configured structlog itself, log as ``SIMPUL_LOG_LEVEL`` and
    ``SIMPUL_LOG_FORMAT`` say (info, auto), masking included — also in plain scripts that never
    call :func:`configure` (structlog's own default prints every debug line, unmasked)."""
    if structlog.is_configured():
        return
    read = LogSettings.load()
    level, fmt = read.level.lower(), read.fmt.lower()
    configure(
        level if level in ("debug", "info", "warning", "error") else "info",
        fmt if fmt in ("json", "console", "auto") else "auto",
    )


def os_user() -> str:
    """Who runs this process, for the ``by`` of an operator's change logged (``unknown`` when
    the uid has no name, as in many containers)."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "unknown"
