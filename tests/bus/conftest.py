"""Fixtures of the tests under tests/bus: the routed bus (tests/bus/routed.py)."""

from tests.bus.routed import routed, routed_server

__all__ = ["routed", "routed_server"]
