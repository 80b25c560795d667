"""Adapter reports on a real Redis: the runner writes them, status and the exporter read them.

The sources are plain classes standing in for a database (a binlog or WAL reader with ``lag()``,
a polling table without); Redis is real. A report's age comes from its key's TTL, so a test makes
a report old by shortening that TTL — what an hour of silence would have left — instead of
sleeping.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import date
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from bus import keys
from bus.adapter import Adapter, Position, Record, SourceLag
from bus.adapter.checkpoint import RedisCheckpoints
from bus.adapter.quarantine import Quarantine
from bus.adapter.report import AdapterReport, Reporter
from bus.admin.exporter import BusCollector, exporter_app
from bus.admin.inspect import Inspector, snapshot
from bus.admin.thresholds import Breach, Thresholds, breaches
from bus.connection import connect
from bus.contracts import Contract, Registry
from bus.errors import ConfigurationError, SourceError
from bus.http import running
from bus.local.redis import free_port
from bus.logging import MASK
from bus.publisher import Publisher
from bus.testing import capture_logs, wait_until
from schemas.dukcapil import CitizenDied

URN = "urn:malangkota:dukcapil:siak-cdc"
NIK = "3573014107780004"  # synthetic
BINLOG = "mysql-bin.000042"


class Binlog:
    """A MySQL binlog as far as the runner can tell: changes at byte offsets, read in order.
    ``lag()`` answers like a real reader would: the bytes and the age of what is not read yet."""

    name = "penduduk"

    def __init__(self, changes: int, *, retained: int = 64 * 1024**2) -> None:
        self.offsets = [4 + 100 * i for i in range(1, changes + 1)]
        self.read_to = 4  # the offset after the last change handed to the runner
        self.retained = retained
        self.behind_seconds = 42.0
        self.fail_with: Exception | None = None
        self.lag_calls = 0

    async def batches(self, after: Position, *, size: int) -> AsyncIterator[Sequence[Record]]:
        if self.fail_with is not None:
            raise self.fail_with
        start = 4 if after is None else after["offset"]
        todo = [o for o in self.offsets if o > start]
        for i in range(0, len(todo), size):
            chunk = todo[i : i + size]
            self.read_to = chunk[-1]
            yield [self._record(o) for o in chunk]

    async def remaining(self, after: Position) -> int | None:
        return None  # a log reader cannot count rows ahead

    async def lag(self) -> SourceLag:
        self.lag_calls += 1
        end = self.offsets[-1] if self.offsets else 4
        behind = end - self.read_to
        return SourceLag(
            position=f"{BINLOG}:{self.read_to}",
            behind_bytes=behind,
            behind_seconds=self.behind_seconds if behind else 0.0,
            retained_bytes=self.retained,
        )

    def _record(self, offset: int) -> Record:
        data = {"nik": NIK, "offset": offset}
        return Record(str(offset), "1", {"file": BINLOG, "offset": offset}, data, change="insert")


class Table:
    """A polling source: rows 0..n-1, position = the index of the last row; no ``lag()``."""

    name = "daftar"

    def __init__(self, rows: int) -> None:
        self.rows = rows

    async def batches(self, after: Position, *, size: int) -> AsyncIterator[Sequence[Record]]:
        start = 0 if after is None else after + 1
        for first in range(start, self.rows, size):
            last = min(first + size, self.rows)
            yield [Record(str(i), "1", i, {"nik": NIK}) for i in range(first, last)]

    async def remaining(self, after: Position) -> int | None:
        return self.rows - (0 if after is None else after + 1)


def died(record: Record) -> Contract:
    return CitizenDied.parse(
        {"nik": record.data["nik"], "date_of_death": date(2026, 11, 1), "kecamatan": "35.73.02"}
    )


def adapter(redis: Redis, source: Any, name: str = "dukcapil-cdc", **options: Any) -> Adapter:
    return Adapter(
        name,
        source=source,
        mapper=died,
        publisher=options.pop("publisher", Publisher(redis, source=URN, signer=None)),
        checkpoints=RedisCheckpoints(redis),
        quarantine=Quarantine(redis, name),
        **options,
    )


def registry() -> Registry:
    found = Registry()
    found.register(CitizenDied)
    return found


async def age(redis: Redis, name: str, seconds: float) -> None:
    """Make a report ``seconds`` old: the TTL it would have left by now."""
    key = keys.adapter_report(name)
    ttl_ms = int(await redis.hget(key, "ttl_ms") or 0)
    await redis.pexpire(key, ttl_ms - int(seconds * 1000))


# -- the runner writes ---------------------------------------------------------------------------


async def test_a_cdc_adapter_reports_its_source_position_lag_and_counts(redis: Redis) -> None:
    source = Binlog(7)
    progress = await adapter(redis, source, batch_size=3).run_once()
    assert progress.published == 7

    snap = await snapshot(redis, registry=registry())
    [report] = snap.adapters
    assert report.name == "dukcapil-cdc" and report.cdc and report.state == "once"
    assert report.position == f"{BINLOG}:704"
    assert (report.behind_bytes, report.behind_seconds) == (0, 0.0)  # caught up
    assert report.retained_bytes == 64 * 1024**2
    assert (report.read, report.published, report.quarantined, report.skipped) == (7, 7, 0, 0)
    assert report.behind_rows is None  # the source cannot count rows
    assert report.last_publish_at is not None and report.last_error is None
    assert report.age_s is not None and 0 <= report.age_s < 5
    assert source.lag_calls == 4  # after each of 3 batches, and at the end of the pass
    assert 0 < await redis.pttl(keys.adapter_report("dukcapil-cdc")) <= 7 * 86400 * 1000


async def test_a_report_written_mid_pass_shows_what_is_still_behind(redis: Redis) -> None:
    source = Binlog(10)
    seen: list[AdapterReport] = []

    class Watching(Reporter):
        async def send(self, adapter: Adapter) -> AdapterReport:
            seen.append(await super().send(adapter))
            return seen[-1]

    await adapter(redis, source, batch_size=4, reporter=Watching(redis, "dukcapil-cdc")).run_once()
    first = seen[0]  # after the first batch of 4
    assert first.position == f"{BINLOG}:404"
    assert (first.behind_bytes, first.behind_seconds) == (600, 42.0)
    assert first.published == 4


async def test_a_polling_adapter_reports_its_checkpoint_and_rows_behind(redis: Redis) -> None:
    seen: list[AdapterReport] = []

    class Watching(Reporter):
        async def send(self, adapter: Adapter) -> AdapterReport:
            seen.append(await super().send(adapter))
            return seen[-1]

    runner = adapter(redis, Table(10), "dukcapil-siak", batch_size=4)
    runner.reporter = Watching(redis, "dukcapil-siak")
    await runner.run_once()
    assert [r.behind_rows for r in seen] == [6, 2, 0, 0]
    last = seen[-1]
    assert not last.cdc and last.position == "9"
    assert (last.behind_bytes, last.behind_seconds, last.retained_bytes) == (None, None, None)
    [stored] = (await snapshot(redis, registry=registry())).adapters
    assert stored.model_dump(exclude={"age_s", "reported_at", "last_publish_at"}) == (
        last.model_dump(exclude={"age_s", "reported_at", "last_publish_at"})
    )


async def test_a_running_adapter_reports_between_passes_its_failures_and_its_stop(
    redis: Redis,
) -> None:
    source = Binlog(3)
    runner = adapter(redis, source, reporter=Reporter(redis, "dukcapil-cdc", every_s=0.05))
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(poll_interval=10, stop=stop))

    async def report() -> AdapterReport:
        [found] = (await snapshot(redis, registry=registry())).adapters
        return found

    await wait_until(lambda: source.lag_calls >= 3, timeout=5)  # the pass, then while waiting
    assert (await report()).state == "running"
    source.retained = 5 * 1024**3  # the database keeps more WAL: the next report says so
    await wait_until(lambda: source.lag_calls >= 6, timeout=5)
    assert (await report()).retained_bytes == 5 * 1024**3

    source.fail_with = SourceError(f"SIAK replica refused the login of operator {NIK}")
    stop.set()
    await task
    assert (await report()).state == "stopped"

    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(poll_interval=0.05, stop=stop))
    await wait_until(lambda: runner.last_error is not None, timeout=5)
    failing = await report()
    assert failing.last_error is not None and "refused the login" in failing.last_error
    assert NIK not in failing.last_error and MASK in failing.last_error
    source.fail_with = None
    await wait_until(lambda: runner.last_error is None, timeout=5)
    stop.set()
    await task
    assert (await report()).last_error is None


async def test_an_error_that_stops_the_adapter_is_in_its_last_report(redis: Redis) -> None:
    source = Binlog(1)
    source.fail_with = ConfigurationError("replication slot simpul_penduduk does not exist")
    with pytest.raises(ConfigurationError):
        await adapter(redis, source).run(poll_interval=0.01)
    [report] = (await snapshot(redis, registry=registry())).adapters
    assert report.state == "running"  # it did not stop cleanly: it goes stale
    assert report.last_error == "replication slot simpul_penduduk does not exist"


async def test_a_failing_lag_query_is_reported_and_publishing_goes_on(redis: Redis) -> None:
    source = Binlog(2)

    async def broken() -> SourceLag:
        raise SourceError("cannot read SHOW BINARY LOG STATUS: access denied")

    source.lag = broken  # type: ignore[method-assign]
    assert (await adapter(redis, source).run_once()).published == 2
    [report] = (await snapshot(redis, registry=registry())).adapters
    assert (
        report.last_error == "lag(): SourceError: cannot read SHOW BINARY LOG STATUS: access denied"
    )
    assert report.position == '{"file":"mysql-bin.000042","offset":204}'  # the checkpoint


async def test_a_checkpoint_holding_a_nik_is_masked_in_the_report(redis: Redis) -> None:
    class ByNik(Table):
        """A table read in NIK order: its checkpoint is the last NIK read."""

        async def batches(self, after: Position, *, size: int) -> AsyncIterator[Sequence[Record]]:
            if after is None:
                yield [Record(NIK, "1", {"nik": NIK}, {"nik": NIK})]

    await adapter(redis, ByNik(1), "dukcapil-siak").run_once()
    raw = await redis.hgetall(keys.adapter_report("dukcapil-siak"))
    assert not any(NIK in str(value) for value in raw.values())
    [report] = (await snapshot(redis, registry=registry())).adapters
    assert report.position == f'{{"nik":"{MASK}"}}'


async def test_an_unwritable_report_never_stops_the_adapter(redis: Redis) -> None:
    nowhere = connect(f"redis://127.0.0.1:{free_port()}/0")
    try:
        with capture_logs() as logs:
            runner = adapter(redis, Binlog(5), batch_size=2, reporter=Reporter(nowhere, "x"))
            assert (await runner.run_once()).published == 5
    finally:
        await nowhere.aclose()
    failed = [e for e in logs if e["event"] == "adapter_report_failed"]
    assert len(failed) == 1, "one warning per outage, not one per report"
    assert failed[0]["key"] == keys.adapter_report("x")


# -- status reads ------------------------------------------------------------------------------


async def test_breaches_name_the_adapter_behind_retaining_or_silent(redis: Redis) -> None:
    source = Binlog(3, retained=3 * 1024**3)
    runner = adapter(redis, source)
    runner.reporter.state = "running"
    await runner.run_once()
    source.offsets.append(999)  # a change arrives after the pass: 695 bytes behind, 42 s old
    await runner.reporter.send(runner)
    await adapter(redis, Table(2), "bapenda-pembayaran").run_once()  # polling, one pass
    await age(redis, "bapenda-pembayaran", 3600)

    snap = await snapshot(redis, registry=registry())
    retained = (
        "the source database of adapter dukcapil-cdc keeps 3.0 GiB of log for it (max 1.0 GiB): "
        "its disk fills while this grows"
    )
    assert breaches(snap, Thresholds.load()) == [
        Breach(
            kind="source_retained",
            adapter="dukcapil-cdc",
            value=3 * 1024**3,
            limit=1024**3,
            message=retained,
        )
    ]
    strict = Thresholds.load(max_source_behind_s=30, max_source_behind_bytes=100)
    assert [(b.kind, b.adapter, b.value) for b in breaches(snap, strict)] == [
        ("source_behind", "dukcapil-cdc", 42.0),
        ("source_behind_bytes", "dukcapil-cdc", 695),
        ("source_retained", "dukcapil-cdc", 3 * 1024**3),
    ]
    messages = " ".join(b.message for b in breaches(snap, strict))
    assert "42 s behind its source (max 30 s)" in messages
    assert "695 B of its source's log to publish (max 100 B)" in messages
    assert NIK not in messages

    await age(redis, "dukcapil-cdc", 600)
    stale = breaches(await snapshot(redis, registry=registry()), Thresholds.load())
    assert [(b.kind, b.adapter) for b in stale] == [
        ("report_stale", "dukcapil-cdc"),
        ("source_retained", "dukcapil-cdc"),
    ]  # the polling adapter made one pass and stopped: an old report is no problem
    assert stale[0].message == (
        "adapter dukcapil-cdc has not reported for 10 min (max 60 s; it was running): is it alive?"
    )
    assert 600 <= (stale[0].value or 0) < 610


async def test_a_stopped_cdc_adapter_goes_stale_a_stopped_poller_does_not(redis: Redis) -> None:
    for name, source in (("dukcapil-cdc", Binlog(1)), ("dukcapil-siak", Table(1))):
        runner = adapter(redis, source, name)
        stop = asyncio.Event()
        stop.set()
        await runner.run(stop=stop)  # leaves its loop at once: reports "stopped"
        await age(redis, name, 120)
    found = breaches(await snapshot(redis, registry=registry()), Thresholds.load())
    assert [(b.kind, b.adapter) for b in found] == [("report_stale", "dukcapil-cdc")]
    assert "it was a CDC adapter, stopped" in found[0].message


async def test_an_expired_report_leaves_status(redis: Redis) -> None:
    await adapter(redis, Binlog(1)).run_once()
    await redis.pexpire(keys.adapter_report("dukcapil-cdc"), 1)

    async def gone() -> bool:
        return not await redis.exists(keys.adapter_report("dukcapil-cdc"))

    await wait_until(gone)
    snap = await snapshot(redis, registry=registry())
    assert snap.adapters == []


async def test_a_report_discovered_then_expired_is_dropped_by_an_inspector(redis: Redis) -> None:
    await adapter(redis, Binlog(1)).run_once()
    inspector = Inspector(redis, registry=registry(), rediscover_s=3600)
    assert [r.name for r in (await inspector.take()).adapters] == ["dukcapil-cdc"]
    await redis.delete(keys.adapter_report("dukcapil-cdc"))
    assert (await inspector.take()).adapters == []


async def test_a_foreign_report_with_odd_fields_still_reads(redis: Redis) -> None:
    """A non-Python adapter writes the same hash; what does not parse reads as unknown."""
    key = keys.adapter_report("legacy-php")
    await redis.hset(
        key,
        mapping={
            "cdc": "true",
            "state": "dozing",
            "behind_bytes": "lots",
            "published": "12",
            "position": "binlog.7:88",
        },
    )
    [report] = (await snapshot(redis, registry=registry())).adapters
    assert (report.name, report.cdc, report.state, report.position) == (
        "legacy-php",
        True,
        "running",
        "binlog.7:88",
    )
    assert (report.behind_bytes, report.published) == (None, 12)


# -- the exporter --------------------------------------------------------------------------------


async def test_the_exporter_serves_each_adapters_figures(redis: Redis, redis_url: str) -> None:
    source = Binlog(4, retained=123_456_789)
    runner = adapter(redis, source, batch_size=2)
    runner.reporter.state = "running"
    await runner.run_once()
    source.offsets.append(1000)  # 596 bytes behind
    await runner.reporter.send(runner)
    await adapter(redis, Table(3), "bapenda-pembayaran").run_once()
    await age(redis, "bapenda-pembayaran", 90)

    client = connect(redis_url, block_ms=0)
    collector = BusCollector(Inspector(client, registry=registry()), interval_s=0)
    try:
        async with running(exporter_app(collector)) as url, httpx.AsyncClient() as http:
            text = (await http.get(f"{url}/metrics")).text
    finally:
        await client.aclose()
    found = {
        (s.name, s.labels.get("adapter")): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith("simpul_adapter_")
    }
    assert {k: v for k, v in found.items() if k[0] != "simpul_adapter_report_age_seconds"} == {
        ("simpul_adapter_running", "dukcapil-cdc"): 1,
        ("simpul_adapter_change_data_capture", "dukcapil-cdc"): 1,
        ("simpul_adapter_failing", "dukcapil-cdc"): 0,
        ("simpul_adapter_source_behind_seconds", "dukcapil-cdc"): 42,
        ("simpul_adapter_source_behind_bytes", "dukcapil-cdc"): 596,
        ("simpul_adapter_source_retained_bytes", "dukcapil-cdc"): 123_456_789,
        ("simpul_adapter_running", "bapenda-pembayaran"): 0,
        ("simpul_adapter_change_data_capture", "bapenda-pembayaran"): 0,
        ("simpul_adapter_failing", "bapenda-pembayaran"): 0,
        ("simpul_adapter_source_behind_rows", "bapenda-pembayaran"): 0,
    }  # unknown figures are absent, not 0: a polling source has no bytes behind
    assert 0 <= found[("simpul_adapter_report_age_seconds", "dukcapil-cdc")] < 5
    assert 90 <= found[("simpul_adapter_report_age_seconds", "bapenda-pembayaran")] < 95
    assert NIK not in text


@pytest.fixture(autouse=True)
def _no_signing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SIMPUL_SIGNING_KEY_FILE", raising=False)


async def test_passes_run_back_to_back_with_interval_zero_but_a_failing_source_backs_off(
    redis: Redis,
) -> None:
    """A change-data-capture source runs with poll_interval 0 (its pass waits for changes);
    an outage must not turn that into a busy loop: the backoff starts at one second."""
    source = Binlog(1)
    source.fail_with = SourceError("binlog reader: connection refused")
    calls = 0
    batches = source.batches

    def counted(after: Position, *, size: int) -> AsyncIterator[Sequence[Record]]:
        nonlocal calls
        calls += 1
        return batches(after, size=size)

    source.batches = counted  # type: ignore[method-assign]
    stop = asyncio.Event()
    task = asyncio.create_task(adapter(redis, source).run(poll_interval=0.0, stop=stop))
    await asyncio.sleep(1.5)
    stop.set()
    await task
    assert calls == 2  # at 0 s and after 1 s; a zero backoff would have made thousands


async def test_the_report_fields_are_those_wire_format_documents(redis: Redis) -> None:
    """docs/wire-format.md section 3 lists the report hash's fields for adapters in other
    languages: they must be exactly what the runner writes."""
    import re  # noqa: PLC0415
    from pathlib import Path  # noqa: PLC0415

    doc = (Path(__file__).parents[3] / "docs" / "wire-format.md").read_text(encoding="utf-8")
    table = doc.split("**The adapter report.**", 1)[1].split("\n\n", 2)[1]
    documented = re.findall(r"^\| `([a-z_]+)` \|", table, flags=re.MULTILINE)
    await adapter(redis, Binlog(2)).run_once()
    written = await redis.hgetall(keys.adapter_report("dukcapil-cdc"))
    assert sorted(documented) == sorted(k.decode() if isinstance(k, bytes) else k for k in written)
    assert (written[b"cdc"], written[b"state"]) == (b"true", b"once")
    assert int(written[b"ttl_ms"]) >= await redis.pttl(keys.adapter_report("dukcapil-cdc")) > 0
