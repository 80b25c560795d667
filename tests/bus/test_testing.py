"""bus.testing's own helpers: the synchronous twin of wait_until."""

from __future__ import annotations

import threading
import time

import pytest

from bus.testing import wait_until_sync


def test_wait_until_sync_returns_once_the_condition_holds() -> None:
    flag: list[int] = []
    threading.Timer(0.05, lambda: flag.append(1)).start()
    started = time.monotonic()
    wait_until_sync(lambda: bool(flag), timeout=2)
    assert time.monotonic() - started < 1


def test_wait_until_sync_fails_after_its_timeout() -> None:
    with pytest.raises(AssertionError, match=r"within 0\.05 s"):
        wait_until_sync(lambda: False, timeout=0.05)
