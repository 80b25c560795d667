"""The router (decision 0011): admits producers' events from their intakes onto the department
streams and delivers them to one inbox per approved subscription. ``services.router`` runs it."""

from typing import TYPE_CHECKING

from bus._lazy import exports

if TYPE_CHECKING:
    from bus.router.engine import (
        AheadOfTime,
        IntakeReset,
        Migration,
        RejectReason,
        Router,
        RouterConfig,
        ahead_of_time,
        backfill,
        migrate,
        reset_intake,
        trim_inbox,
    )

_EXPORTS = {
    name: ("bus.router.engine", name)
    for name in (
        "AheadOfTime",
        "IntakeReset",
        "RejectReason",
        "Router",
        "RouterConfig",
        "ahead_of_time",
        "backfill",
        "migrate",
        "Migration",
        "reset_intake",
        "trim_inbox",
    )
}

__all__ = [
    "AheadOfTime",
    "IntakeReset",
    "Migration",
    "RejectReason",
    "Router",
    "RouterConfig",
    "ahead_of_time",
    "backfill",
    "migrate",
    "reset_intake",
    "trim_inbox",
]

__getattr__, __dir__ = exports(globals(), _EXPORTS)
