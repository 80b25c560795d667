"""Fault tests (issue 8): scenarios in subprocesses against real Redis servers on loopback."""
