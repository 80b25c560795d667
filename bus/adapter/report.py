"""What each adapter tells operators about itself: a small hash in Redis, rewritten often.

The :class:`~bus.adapter.Adapter` runner writes its :class:`AdapterReport` to
``simpul:adapter:{<adapter>}:report`` after each batch, at the end of each pass and every
``every_s`` seconds while it waits for the next pass: where its source is (a change-data-capture
source's own position and :class:`~bus.adapter.SourceLag`, else the checkpoint), how far
behind, what it read, published, quarantined and skipped, when it last published and why it last
failed.
``simpul status`` (bus.admin.inspect) and the exporter (bus.admin.exporter) read it.

The key expires ``ttl_s`` after the last write (a week by default): long enough that an adapter
that died stays visible — "last seen 3 h ago" — and alerts, short enough that a removed one
disappears on its own. How old a report is comes from the key's remaining TTL, not from the
adapter's clock, so a department server whose clock is off cannot make its report look fresh.
Every field is written every time ("" for unknown): a reader never mixes two reports, and a
non-Python adapter can write the same hash with ``HSET`` and ``PEXPIRE``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field
from redis.asyncio import Redis

from bus import keys
from bus.adapter.records import Progress, SourceLag
from bus.decoding import texts
from bus.logging import get_logger
from bus.privacy import mask_text

__all__ = ["REPORT_EVERY_S", "REPORT_TTL_S", "AdapterReport", "Reporter", "State"]

REPORT_EVERY_S = 5.0
REPORT_TTL_S = 7 * 86400
LAG_TIMEOUT_S = 5.0  # a source database too slow to say its lag must not hold up publishing
_TEXT_MAX = 300  # a position or an error is for a table cell, not a log dump

State = Literal["running", "stopped", "once"]
"""``running``: the adapter polls or streams (``simpul adapter run``), so its report must stay
fresh; ``stopped``: it left its loop (SIGTERM); ``once``: a single pass (``--once``, a backfill)."""

_STATES: dict[str, State] = {"running": "running", "stopped": "stopped", "once": "once"}


class Reported(Protocol):
    """What a report says of an adapter (:class:`bus.adapter.Adapter` is one)."""

    @property
    def name(self) -> str: ...
    @property
    def source(self) -> object: ...
    @property
    def progress(self) -> Progress: ...
    @property
    def last_error(self) -> str | None: ...
    def behind_rows(self) -> int | None: ...


_log = get_logger("bus.adapter.runner")


class AdapterReport(BaseModel):
    """One adapter's report, as written by its runner and read by ``simpul status``."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(description="the adapter's name, e.g. dukcapil-siak")
    cdc: bool = Field(description="its source is change-data-capture (it reports its lag)")
    state: State
    position: str | None = Field(
        description="the source's position (binlog file and offset, GTID set, LSN), else the "
        "checkpoint as JSON"
    )
    behind_rows: int | None = Field(
        description="records the source said this pass would bring, not read yet"
    )
    behind_bytes: int | None = Field(description="log not yet published (CDC)")
    behind_seconds: float | None = Field(
        description="age of the oldest change not yet published, 0 when caught up (CDC)"
    )
    retained_bytes: int | None = Field(
        description="log the database keeps for this adapter: a replication slot's WAL (CDC)"
    )
    read: int
    published: int
    duplicates: int
    quarantined: int
    skipped: int
    last_publish_at: datetime | None = Field(
        description="when a batch last published a new event (adapter's clock)"
    )
    last_error: str | None = Field(description="why the last pass or lag query failed; None: fine")
    reported_at: datetime = Field(description="when it was written (adapter's clock)")
    age_s: float | None = Field(
        default=None, description="seconds since it was written (from the key's TTL, not clocks)"
    )

    def to_fields(self, ttl_ms: int) -> dict[str, str]:
        """The hash fields, each a string ("" for None)."""
        values = self.model_dump(mode="json", exclude={"name", "age_s"})
        fields = {k: _field(v) for k, v in values.items()}
        return {**fields, "ttl_ms": str(ttl_ms)}

    @classmethod
    def from_fields(
        cls, name: str, raw: Mapping[Any, Any], pttl_ms: int, now: datetime
    ) -> AdapterReport:
        """Read a report hash; ``pttl_ms`` is the key's PTTL, ``now`` Redis's time (for a key
        written without ``ttl_ms``). A field that does not parse reads as unknown."""
        f = texts(raw)
        written = _time(f.get("reported_at")) or now
        ttl_ms = _int(f.get("ttl_ms"))
        if ttl_ms is not None and pttl_ms >= 0:
            age = max(0.0, (ttl_ms - pttl_ms) / 1000)
        else:
            age = max(0.0, (now - written).total_seconds())
        return cls(
            name=name,
            cdc=f.get("cdc") == "true",
            # An unknown state (a newer or a foreign writer) is held to freshness, as running.
            state=_STATES.get(f.get("state") or "", "running"),
            position=f.get("position") or None,
            behind_rows=_int(f.get("behind_rows")),
            behind_bytes=_int(f.get("behind_bytes")),
            behind_seconds=_float(f.get("behind_seconds")),
            retained_bytes=_int(f.get("retained_bytes")),
            read=_int(f.get("read")) or 0,
            published=_int(f.get("published")) or 0,
            duplicates=_int(f.get("duplicates")) or 0,
            quarantined=_int(f.get("quarantined")) or 0,
            skipped=_int(f.get("skipped")) or 0,
            last_publish_at=_time(f.get("last_publish_at")),
            last_error=f.get("last_error") or None,
            reported_at=written,
            age_s=age,
        )

    @property
    def must_be_fresh(self) -> bool:
        """A running adapter reports every few seconds; a CDC adapter must run at all times (its
        replication slot keeps the log for it while it is stopped)."""
        return self.state == "running" or self.cdc


class Reporter:
    """Writes one adapter's report: see the module. Never fails the adapter: a report that
    cannot be written (Redis down, an ACL without the key) is logged and skipped."""

    def __init__(
        self,
        redis: Redis,
        adapter: str,
        *,
        every_s: float = REPORT_EVERY_S,
        ttl_s: float = REPORT_TTL_S,
    ) -> None:
        if not 0 < every_s < ttl_s:
            raise ValueError(f"every_s must be above 0 and below ttl_s, got {every_s}")
        self.redis = redis
        self.key = keys.adapter_report(adapter)
        self.every_s = every_s
        self.ttl_ms = int(ttl_s * 1000)
        self.state: State = "once"
        self._published = 0
        self._last_publish_at: datetime | None = None
        self._failing = False  # logged once per outage, not every few seconds

    async def send(self, adapter: Reported) -> AdapterReport:
        """Ask the source for its lag (if it has ``lag()``), then write the report."""
        lag, lag_error = await _lag_of(adapter.source)
        progress = adapter.progress
        now = datetime.now(UTC)
        if progress.published > self._published:
            self._last_publish_at = now
        self._published = progress.published
        error = adapter.last_error or lag_error
        report = AdapterReport(
            name=adapter.name,
            cdc=hasattr(adapter.source, "lag"),
            state=self.state,
            position=_shown(lag.position if lag else _position_text(progress.position)),
            behind_rows=adapter.behind_rows(),
            behind_bytes=lag.behind_bytes if lag else None,
            behind_seconds=lag.behind_seconds if lag else None,
            retained_bytes=lag.retained_bytes if lag else None,
            read=progress.read,
            published=progress.published,
            duplicates=progress.duplicates,
            quarantined=progress.quarantined,
            skipped=progress.skipped,
            last_publish_at=self._last_publish_at,
            last_error=_shown(error),
            reported_at=now,
        )
        await self._write(report)
        return report

    async def wait(self, adapter: Reported, stop: asyncio.Event, seconds: float) -> None:
        """Wait ``seconds`` or until ``stop`` is set, reporting every ``every_s`` meanwhile.

        No task of its own: the source's ``lag()`` is asked only here and after a batch (with
        ``batches()`` paused at a yield), never at the same time as a step of ``batches()``."""
        loop = asyncio.get_running_loop()
        until = loop.time() + seconds
        while not stop.is_set() and (left := until - loop.time()) > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=min(left, self.every_s))
            if not stop.is_set() and loop.time() < until:
                await self.send(adapter)

    async def _write(self, report: AdapterReport) -> None:
        try:
            # Not one atomic command: an adapter killed between the two leaves a key without
            # TTL until its next report. Both go in one write, so that needs a kill mid-write.
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.hset(self.key, mapping=report.to_fields(self.ttl_ms))  # type: ignore[arg-type]
                pipe.pexpire(self.key, self.ttl_ms)
                await pipe.execute()
        except Exception as exc:  # Redis down, NOPERM from an ACL older than reports: go on
            self._warn(exc)
        else:
            self._failing = False

    def _warn(self, exc: Exception) -> None:
        if not self._failing:
            _log.warning(
                "adapter_report_failed",
                key=self.key,
                error_type=type(exc).__name__,
                error=mask_text(str(exc)),
            )
        self._failing = True


async def _lag_of(source: Any) -> tuple[SourceLag | None, str | None]:
    """The source's lag, or why it could not say; (None, None) for a polling source."""
    lag = getattr(source, "lag", None)
    if lag is None:
        return None, None
    try:
        return await asyncio.wait_for(lag(), timeout=LAG_TIMEOUT_S), None
    except TimeoutError:
        return None, f"lag(): the source did not answer within {LAG_TIMEOUT_S:.0f} s"
    except Exception as exc:  # the source is department code: its failure is reported, not fatal
        return None, f"lag(): {type(exc).__name__}: {exc}"


def _position_text(position: Any) -> str | None:
    if position is None:
        return None
    try:
        return json.dumps(position, separators=(",", ":"))
    except (TypeError, ValueError):
        return str(position)


def _shown(text: str | None) -> str | None:
    """For operators' screens: a NIK or KK number masked (a checkpoint may be a record's key,
    an error may quote one), cut to a table cell."""
    if not text:
        return None
    text = mask_text(text)
    return text if len(text) <= _TEXT_MAX else text[: _TEXT_MAX - 1] + "…"


def _field(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text else None
    except ValueError:
        return None


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text else None
    except ValueError:
        return None


def _time(text: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(text) if text else None
    except ValueError:
        return None
