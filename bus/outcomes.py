"""What a handler may say about its event besides returning or failing.

    from bus import GiveUp, Retry

    @service.on(PermitIssued)
    async def notify(event: PermitIssued) -> None:
        if await rate_limited():
            raise Retry("the SMS gateway asks us to slow down", after=30)
        if not event.holder_reachable:
            raise GiveUp("the permit has no holder to notify")

* :class:`Retry` — try this event again, no sooner than ``after`` seconds. It is an attempt like
  a failure: counted towards ``SIMPUL_MAX_DELIVERIES``, and the last one is dead-lettered
  (``handler_failed``) with the reason. ``after`` is capped at ``SIMPUL_CLAIM_IDLE_MS``: a
  pending entry cannot be held back longer than that (the retry mechanism ages pending entries,
  docs/decisions/0003-retries-by-ageing-pending-entries.md).
* :class:`GiveUp` — this event will never succeed: dead-letter it now with the reason
  (``given_up``), without spending the remaining attempts.

Reasons end up in logs and dead letters (masked like every error text): never put personal data
in them.
"""

from __future__ import annotations

from datetime import timedelta

__all__ = ["GiveUp", "Retry"]


class Retry(Exception):
    """Raise from a handler to have its event delivered again no sooner than ``after``."""

    def __init__(self, reason: str = "retry requested", *, after: float | timedelta = 0) -> None:
        seconds = after.total_seconds() if isinstance(after, timedelta) else float(after)
        if seconds < 0:
            raise ValueError(f"Retry(after={after!r}): a delay is zero or more seconds")
        self.reason = reason
        self.after_ms = int(seconds * 1000)
        super().__init__(reason)


class GiveUp(Exception):
    """Raise from a handler to dead-letter its event at once (reason ``given_up``)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)
