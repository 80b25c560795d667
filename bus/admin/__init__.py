"""Operator tooling: inspect what every stream, group and dead-letter stream holds, fix what is
stuck (dead letters, group positions, trimming), and draw the flow map.

The monitor and other operator services import from here only (decision 0009).
"""

from typing import TYPE_CHECKING

from bus._lazy import exports

if TYPE_CHECKING:
    from bus.admin.deadletter_types import (
        DeadLetter,
        DeadLetterRef,
        NotFound,
        ReplayReport,
        Target,
    )
    from bus.admin.deadletters import DeadLetters
    from bus.admin.flowmap import build as build_flow_map
    from bus.admin.flowmap import live_groups
    from bus.admin.flowmap import render_svg as render_flow_svg
    from bus.admin.inspect import Inspector, RoutingPlan
    from bus.admin.snapshots import BusSnapshot
    from bus.admin.streams import UnknownGroup, UnknownStream, stream_key
    from bus.admin.thresholds import Thresholds, breaches
    from bus.functions import load as load_functions
    from bus.specs.catalogue import BrokenModule, find_services, handled

_EXPORTS = {
    "BrokenModule": ("bus.specs.catalogue", "BrokenModule"),
    "BusSnapshot": ("bus.admin.snapshots", "BusSnapshot"),
    "DeadLetter": ("bus.admin.deadletter_types", "DeadLetter"),
    "DeadLetterRef": ("bus.admin.deadletter_types", "DeadLetterRef"),
    "DeadLetters": ("bus.admin.deadletters", "DeadLetters"),
    "Inspector": ("bus.admin.inspect", "Inspector"),
    "NotFound": ("bus.admin.deadletter_types", "NotFound"),
    "ReplayReport": ("bus.admin.deadletter_types", "ReplayReport"),
    "RoutingPlan": ("bus.admin.inspect", "RoutingPlan"),
    "Target": ("bus.admin.deadletter_types", "Target"),
    "Thresholds": ("bus.admin.thresholds", "Thresholds"),
    "UnknownGroup": ("bus.admin.streams", "UnknownGroup"),
    "UnknownStream": ("bus.admin.streams", "UnknownStream"),
    "breaches": ("bus.admin.thresholds", "breaches"),
    "build_flow_map": ("bus.admin.flowmap", "build"),
    "find_services": ("bus.specs.catalogue", "find_services"),
    "handled": ("bus.specs.catalogue", "handled"),
    "live_groups": ("bus.admin.flowmap", "live_groups"),
    "load_functions": ("bus.functions", "load"),
    "render_flow_svg": ("bus.admin.flowmap", "render_svg"),
    "stream_key": ("bus.admin.streams", "stream_key"),
}

__all__ = [
    "BrokenModule",
    "BusSnapshot",
    "DeadLetter",
    "DeadLetterRef",
    "DeadLetters",
    "Inspector",
    "NotFound",
    "ReplayReport",
    "RoutingPlan",
    "Target",
    "Thresholds",
    "UnknownGroup",
    "UnknownStream",
    "breaches",
    "build_flow_map",
    "find_services",
    "handled",
    "live_groups",
    "load_functions",
    "render_flow_svg",
    "stream_key",
]

__getattr__, __dir__ = exports(globals(), _EXPORTS)
