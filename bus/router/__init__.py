"""The router (decision 0011): admits producers' events from their intakes onto the department
streams and delivers them to one inbox per approved subscription. ``services.router`` runs it."""

from typing import TYPE_CHECKING

from bus._lazy import exports

if TYPE_CHECKING:
    from bus.router.common import RejectReason, RouterConfig, trim_inbox
    from bus.router.engine import Router
    from bus.router.operations import (
        AheadOfTime,
        IntakeReset,
        Migration,
        ahead_of_time,
        backfill,
        migrate,
        reset_intake,
    )

_EXPORTS = {
    **{
        name: ("bus.router.common", name) for name in ("RejectReason", "RouterConfig", "trim_inbox")
    },
    "Router": ("bus.router.engine", "Router"),
    **{
        name: ("bus.router.operations", name)
        for name in (
            "AheadOfTime",
            "IntakeReset",
            "ahead_of_time",
            "backfill",
            "migrate",
            "Migration",
            "reset_intake",
        )
    },
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
