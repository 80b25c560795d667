"""Recent throughput per stream, from samples of the streams taken every few seconds.

The monitor reads, it never consumes: it has no consumer group to count deliveries with (a
group of its own would show up in every snapshot, lag behind and trip the alerts). Instead it
samples each stream's counters every ``sample_s`` seconds with one pipelined ``XINFO STREAM``
per stream, and keeps, per stream, how many entries were added between two samples, for the
last ``window_s`` seconds.

Entries added between two samples are counted

* exactly on Redis 7.0+, from ``entries-added`` (the stream's lifetime count of XADDs, which
  trimming does not lower): the difference of two samples;
* approximately on Redis 6.2, from the length and the newest id (``last-generated-id``): the
  growth of the length, at least 1 when the newest id moved; trimming (``MINID ~`` on publish)
  hides entries added while others were trimmed. The series then says ``exact: false``.

The first sample of a stream is its baseline: counts start with the second.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from bus import TRANSIENT_REDIS_ERRORS as TRANSIENT
from bus import RedisUnavailable, SimpulError
from bus import redis_text as _text

__all__ = ["Throughput"]

_PREFIX = "simpul:{"


@dataclass(slots=True)
class _Series:
    """Samples of one stream: (sample time in ms, entries added since the previous sample)."""

    points: deque[tuple[int, int]] = field(default_factory=deque)
    last_at: int | None = None
    added: int | None = None  # entries-added at the last sample (Redis 7.0+)
    length: int = 0
    last_id: str | None = None
    exact: bool = True


class Throughput:
    """Entries added per stream over the last ``window_s`` seconds, one point per sample."""

    def __init__(self, *, window_s: float = 600.0, sample_s: float = 5.0) -> None:
        self.window_ms = int(window_s * 1000)
        self.sample_s = sample_s
        self._series: dict[str, _Series] = {}
        self.last_sample_ms: int | None = None

    async def sample(self, redis: Redis, stream_keys: Iterable[str]) -> None:
        """One sample of ``stream_keys`` (one round trip: TIME and XINFO STREAM of each).

        Raises :class:`~bus.errors.RedisUnavailable` when Redis does not answer.
        """
        streams = sorted(set(stream_keys))
        try:
            async with redis.pipeline(transaction=False) as pipe:
                pipe.time()
                for key in streams:
                    pipe.xinfo_stream(key)
                replies: list[Any] = await pipe.execute(raise_on_error=False)
        except TRANSIENT as exc:
            raise RedisUnavailable(
                f"Redis is unreachable or did not answer in time: {exc}"
            ) from None
        clock = replies[0]
        if isinstance(clock, Exception):
            raise SimpulError(f"Redis answered TIME with an error: {clock}")
        seconds, micros = clock
        now_ms = int(seconds) * 1000 + int(micros) // 1000
        for key, info in zip(streams, replies[1:], strict=True):
            if isinstance(info, ResponseError) and "no such key" in str(info).lower():
                continue  # deleted since it was listed; its points age out of the window
            if isinstance(info, Exception):
                raise SimpulError(f"Redis answered XINFO STREAM with an error: {info}")
            added = info.get("entries-added")
            last = info.get("last-generated-id")
            self.record(
                key,
                now_ms,
                length=int(info.get("length") or 0),
                last_id=_text(last) if last is not None else None,
                added=None if added is None else int(added),
            )
        self.prune(now_ms)
        self.last_sample_ms = now_ms

    def record(
        self, key: str, at_ms: int, *, length: int, last_id: str | None, added: int | None
    ) -> int | None:
        """Add one sample of ``key``; returns the entries counted since the previous sample
        (None for the first, which is the baseline)."""
        series = self._series.setdefault(key, _Series())
        count: int | None = None
        if series.last_at is not None:
            if added is not None and series.added is not None:
                count = added - series.added
                if count < 0:  # the stream was deleted and created again
                    count = added
            else:
                series.exact = False
                grown = length - series.length
                count = 0 if last_id == series.last_id else max(grown, 1)
            series.points.append((at_ms, count))
        series.last_at, series.added, series.length, series.last_id = at_ms, added, length, last_id
        return count

    def prune(self, now_ms: int) -> None:
        """Forget points older than the window, and streams not sampled within it."""
        oldest = now_ms - self.window_ms
        for key in list(self._series):
            series = self._series[key]
            while series.points and series.points[0][0] < oldest:
                series.points.popleft()
            if series.last_at is not None and series.last_at < oldest:
                del self._series[key]

    def as_json(self) -> dict[str, Any]:
        """``{"sample_s", "window_s", "sampled_at_ms", "streams": {aggregate: {"points":
        [[ms, added], ...], "total", "per_min", "exact", "since_ms"}}}``; ``per_min`` counts the
        entries of the last 60 s of samples."""
        now = self.last_sample_ms
        streams: dict[str, Any] = {}
        for key, series in sorted(self._series.items()):
            points = [[at, n] for at, n in series.points]
            recent = sum(n for at, n in series.points if now is not None and at > now - 60_000)
            streams[_aggregate(key)] = {
                "key": key,
                "points": points,
                "total": sum(n for _, n in series.points),
                "per_min": recent,
                "exact": series.exact,
                "since_ms": points[0][0] if points else None,
            }
        return {
            "sample_s": self.sample_s,
            "window_s": self.window_ms / 1000,
            "sampled_at_ms": now,
            "streams": streams,
        }


def _aggregate(key: str) -> str:
    return key[len(_PREFIX) : -1] if key.startswith(_PREFIX) and key.endswith("}") else key
