"""``simpul status | tail | pending | map | exporter`` on real Redis: exit codes, masking, JSON."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis import Redis
from rich.console import Console
from typer.testing import CliRunner

from bus import keys
from bus.cli import inspect as cli_inspect
from bus.cli.app import app
from bus.cli.contracts import load
from bus.connection import connect
from bus.local.redis import free_port
from bus.testing import capture_logs
from tests.bus.adapter.test_report import Binlog, Table, adapter, age
from tests.bus.admin.test_inspect import redis_62
from tests.bus.delivery.helpers import died, fields_of

ROOT = Path(__file__).parents[3]
CITIZEN = keys.stream("dukcapil.citizen")
NIKS = [f"35730145069{i:05d}" for i in range(1, 9)]  # synthetic 16-digit NIKs
runner = CliRunner()


@pytest.fixture
def client(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Redis]:
    monkeypatch.setenv("SIMPUL_REDIS_URL", redis_url)
    for name in list(os.environ):
        if name.startswith("SIMPUL_STATUS_"):
            monkeypatch.delenv(name)
    with Redis.from_url(redis_url) as sync:
        yield sync


def simpul(*args: str) -> Any:
    return runner.invoke(app, list(args))


def publish(client: Redis, count: int, start: int = 0) -> list[str]:
    return [
        client.xadd(CITIZEN, fields_of(died(NIKS[i]), f"e{i}")).decode()  # type: ignore[arg-type, union-attr]
        for i in range(start, start + count)
    ]


def consume(client: Redis, group: str, count: int, *, ack: bool = True) -> None:
    """Read ``count`` entries as one replica of ``group`` (created at 0 if need be)."""
    if not any(g["name"] == group.encode() for g in client.xinfo_groups(CITIZEN)):  # type: ignore[union-attr]
        client.xgroup_create(CITIZEN, group, id="0")
    reply: Any = client.xreadgroup(group, f"{group}-1", {CITIZEN: ">"}, count=count)
    if ack and reply:
        client.xack(CITIZEN, group, *[entry for entry, _ in reply[0][1]])


# -- status ------------------------------------------------------------------------------------


def test_status_healthy_exits_0_with_a_stable_json_shape(client: Redis) -> None:
    publish(client, 3)
    consume(client, "dinsos", 3)
    result = simpul("status", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert set(report) == {"healthy", "breaches", "thresholds", "snapshot", "topology"}
    assert report["topology"]["shape"] == "single"  # one server: replicas [], no Sentinels
    assert report["healthy"] is True and report["breaches"] == []
    assert report["thresholds"]["max_lag"] == 1000
    streams = {s["aggregate"]: s for s in report["snapshot"]["streams"]}
    citizen = streams["dukcapil.citizen"]
    assert citizen["length"] == 3 and citizen["exists"] is True
    [dinsos] = citizen["groups"]
    assert (dinsos["name"], dinsos["lag"], dinsos["pending"], dinsos["entries_read"]) == (
        "dinsos",
        0,
        0,
        3,
    )
    assert streams["dpmptsp.permit"]["exists"] is False  # registered, nothing published yet
    assert report["snapshot"]["reduced"] is False

    human = simpul("status")
    assert human.exit_code == 0
    assert "dukcapil.citizen" in human.stdout and "dinsos" in human.stdout
    assert "healthy" in human.stdout and "No events yet on:" in human.stdout


def test_status_prints_each_breach_and_exits_1(client: Redis) -> None:
    publish(client, 3)
    consume(client, "bapenda", 1, ack=False)
    client.xadd(keys.dead_letters(CITIZEN, "dinsos"), {"dlq.reason": "handler_failed"})
    result = simpul("status", "--max-lag", "1")
    assert result.exit_code == 1, result.output
    assert "group bapenda on dukcapil.citizen lags 2 entries (max 1)" in result.stdout
    assert "group dinsos on dukcapil.citizen has 1 dead letter (max 0)" in result.stdout
    assert "2 problems" in result.stdout

    report = json.loads(simpul("status", "--json", "--max-lag", "1").stdout)
    assert [(b["kind"], b["group"]) for b in report["breaches"]] == [
        ("lag", "bapenda"),
        ("dead_letters", "dinsos"),
    ]
    relaxed = simpul("status", "--max-lag", "off", "--max-dead-letters", "1")
    assert relaxed.exit_code == 0, relaxed.output


def test_status_thresholds_from_the_environment(
    client: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    publish(client, 3)
    consume(client, "bapenda", 1)
    monkeypatch.setenv("SIMPUL_STATUS_MAX_LAG", "1")
    assert simpul("status").exit_code == 1
    assert simpul("status", "--max-lag", "2").exit_code == 0  # the option wins
    monkeypatch.setenv("SIMPUL_STATUS_MAX_LAG", "many")
    bad = simpul("status")
    assert bad.exit_code == 2 and "invalid thresholds: max_lag" in bad.output


def test_status_on_an_empty_redis(client: Redis) -> None:
    result = simpul("status")
    assert result.exit_code == 0, result.output
    assert "No streams yet: nothing has been published" in result.stdout
    assert json.loads(simpul("status", "--json").stdout)["healthy"] is True


def test_status_with_only_a_quarantine_and_dead_letters_of_a_deleted_stream(
    client: Redis,
) -> None:
    client.xadd(keys.quarantine("dukcapil-siak"), {"adapter": "dukcapil-siak"})
    only_quarantine = simpul("status")
    assert only_quarantine.exit_code == 1, only_quarantine.output
    assert "adapter dukcapil-siak has 1 record in quarantine (max 0)" in only_quarantine.stdout
    client.xadd(keys.dead_letters(keys.stream("legacy.thing"), "bridge"), {"dlq.reason": "x"})
    deleted = simpul("status", "--max-quarantine", "off")
    assert deleted.exit_code == 1, deleted.output
    assert "legacy.thing" in deleted.stdout and "deleted" in deleted.stdout
    assert "bridge (gone)" in deleted.stdout
    assert "group bridge on legacy.thing has 1 dead letter (max 0)" in deleted.stdout


def test_status_when_redis_is_down_or_not_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIMPUL_REDIS_URL", f"redis://:s3cret@127.0.0.1:{free_port()}/0")
    down = simpul("status")
    assert down.exit_code == 2
    assert "Redis is unreachable" in down.output and "127.0.0.1" in down.output
    assert "s3cret" not in down.output and "Traceback" not in down.output
    monkeypatch.delenv("SIMPUL_REDIS_URL")
    unset = simpul("status", "--json")
    assert unset.exit_code == 2 and "set SIMPUL_REDIS_URL" in unset.output
    bad = simpul("status", "--max-pending-age", "-5")
    assert bad.exit_code == 2 and "max_pending_age_s" in bad.output


def test_every_command_says_clearly_when_redis_is_down(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIMPUL_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    for command in (
        ["tail", "dukcapil.citizen"],
        ["tail", "dukcapil.citizen", "--follow"],
        ["pending", "dukcapil.citizen", "dinsos"],
        ["status", "--json"],
    ):
        result = simpul(*command)
        assert result.exit_code == 2, (command, result.output)
        assert "Redis is unreachable" in result.output, command
        assert "Traceback" not in result.output


def test_status_on_redis_62_says_its_fields_are_reduced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with redis_62(tmp_path) as server:
        monkeypatch.setenv("SIMPUL_REDIS_URL", server.url)
        with Redis.from_url(server.url) as old:
            publish(old, 4)
            consume(old, "caught-up", 4)
            consume(old, "half", 2)
        human = simpul("status")
        report = json.loads(simpul("status", "--json").stdout)
    assert human.exit_code == 0, human.output
    assert "reduced fields" in human.stdout and "Redis 6.2" in human.stdout
    assert report["snapshot"]["reduced"] is True
    [citizen] = [s for s in report["snapshot"]["streams"] if s["aggregate"] == "dukcapil.citizen"]
    assert {g["name"]: g["lag"] for g in citizen["groups"]} == {"caught-up": 0, "half": None}


# -- tail --------------------------------------------------------------------------------------


def test_tail_masks_personal_fields_unless_revealed_and_logs_the_reveal(client: Redis) -> None:
    publish(client, 2)
    unknown = fields_of(
        died(NIKS[2]),
        "odd",
        type="dukcapil.citizen.vanished.v1",
        dataschema="simpul:dukcapil.citizen.vanished:1.0",
    )
    unknown["data"] = json.dumps({"nik": NIKS[2], "email": "warga@example.id"})
    client.xadd(CITIZEN, unknown)  # type: ignore[arg-type]
    client.xadd(CITIZEN, {"junk": NIKS[3]})

    with capture_logs() as logs:
        masked = simpul("tail", "dukcapil.citizen")
        as_json = simpul("tail", CITIZEN, "--json", "--count", "2")
    assert masked.exit_code == 0 and as_json.exit_code == 0, masked.output
    for result in (masked, as_json):
        assert not any(nik in result.output for nik in NIKS[:4])
        assert "warga@example.id" not in result.output
    assert "dukcapil.citizen.died.v1" in masked.stdout and "***" in masked.stdout
    assert "not wire format v1" in masked.stdout
    lines = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert [line.get("type") for line in lines] == ["dukcapil.citizen.vanished.v1", None]
    assert lines[0]["data"] == {"nik": "<16 digits>", "email": "<text, 16 characters>"}
    assert lines[0]["known_type"] is False
    assert not [e for e in logs if e["event"] == "tail_revealed"]

    with capture_logs() as logs:
        revealed = simpul("tail", "dukcapil.citizen.died.v1", "--reveal", "--json", "--count", "4")
    assert revealed.exit_code == 0
    assert NIKS[0] in revealed.stdout and NIKS[1] in revealed.stdout
    [entry] = [e for e in logs if e["event"] == "tail_revealed"]
    assert entry["stream"] == CITIZEN and entry["log_level"] == "warning"


def test_tail_of_a_group_shows_what_it_has_not_been_delivered_and_changes_nothing(
    client: Redis,
) -> None:
    ids = publish(client, 3)
    consume(client, "dinsos", 2, ack=False)
    before = (client.xinfo_groups(CITIZEN), client.xpending(CITIZEN, "dinsos"))
    result = simpul("tail", "dukcapil.citizen", "--group", "dinsos", "--json")
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["entry_id"] for line in result.stdout.splitlines()] == ids[2:]
    everything = simpul("tail", "dukcapil.citizen", "--json", "--count", "10")
    assert [json.loads(line)["entry_id"] for line in everything.stdout.splitlines()] == ids
    after = (client.xinfo_groups(CITIZEN), client.xpending(CITIZEN, "dinsos"))
    assert [g["name"] for g in after[0]] == [b"dinsos"]  # tail made no group of its own
    assert before[1] == after[1]  # nor acked or claimed anything
    assert before[0][0]["last-delivered-id"] == after[0][0]["last-delivered-id"]

    missing = simpul("tail", "dukcapil.citizen", "--group", "nobody")
    assert missing.exit_code == 2 and "no consumer group 'nobody'" in missing.output
    assert "groups: dinsos" in missing.output


def test_tail_bad_input(client: Redis) -> None:
    publish(client, 1)
    unknown = simpul("tail", "nothing.here")
    assert unknown.exit_code == 2
    assert "no stream simpul:{nothing.here}" in unknown.output
    assert "streams: dukcapil.citizen" in unknown.output
    bad = simpul("tail", "not a stream")
    assert bad.exit_code == 2 and "is not a stream" in bad.output
    empty = simpul("tail", "dpmptsp.permit")  # declared by a contract, nothing published yet
    assert empty.exit_code == 0 and "no events yet" in empty.output


@pytest.mark.slow
def test_tail_follow_shows_a_new_event_and_exits_0_on_ctrl_c(redis_url: str) -> None:
    with Redis.from_url(redis_url) as sync:
        publish(sync, 1)
        env = dict(os.environ, SIMPUL_REDIS_URL=redis_url, SIMPUL_LOG_FORMAT="json")
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bus.cli.app",
                "tail",
                "dukcapil.citizen",
                "--follow",
                "--json",
                "--count",
                "0",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            out, err = lines_of(proc.stdout), lines_of(proc.stderr)
            wait_for_line(err, "following", proc)
            [new] = publish(sync, 1, start=1)
            event = json.loads(wait_for_line(out, new, proc))
            assert event["entry_id"] == new and event["data"]["nik"] == "***"
            assert NIKS[1] not in json.dumps(event)
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=10) == 0
            assert sync.xinfo_groups(CITIZEN) == []  # followed without a consumer group
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def lines_of(stream: TextIO | None) -> queue.Queue[str]:
    """The lines a child process writes, read on a thread (readline would block the test)."""
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in iter(stream.readline, "") if stream else ():
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def wait_for_line(
    lines: queue.Queue[str], needle: str, proc: subprocess.Popen[str], timeout: float = 20
) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.1)
        except queue.Empty:
            assert proc.poll() is None, f"exited with {proc.returncode}"
            continue
        if needle in line:
            return line
    raise AssertionError(f"no line with {needle!r} within {timeout} s")


# -- pending -----------------------------------------------------------------------------------


def test_pending_shows_entries_trimmed_while_pending_as_gone(client: Redis) -> None:
    ids = publish(client, 3)
    consume(client, "dinsos", 3, ack=False)
    client.xack(CITIZEN, "dinsos", ids[1])
    # Retention by age (MINID) removes the oldest entries, pending or not.
    client.xtrim(CITIZEN, minid=ids[1], approximate=False)
    result = simpul("pending", "dukcapil.citizen", "dinsos", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["stream"], report["group"], report["total"]) == (CITIZEN, "dinsos", 2)
    assert [
        (e["entry_id"], e["exists"], e["type"], e["consumer"], e["deliveries"])
        for e in report["entries"]
    ] == [
        (ids[0], False, None, "dinsos-1", 1),
        (ids[2], True, "dukcapil.citizen.died.v1", "dinsos-1", 1),
    ]
    human = simpul("pending", CITIZEN, "dinsos")
    assert human.exit_code == 0
    [gone] = [line for line in human.stdout.splitlines() if ids[0] in line]
    assert "gone" in gone
    assert "1 pending entry no longer exists: trimmed or deleted while pending" in human.stdout
    assert not any(nik in human.stdout for nik in NIKS)


def test_pending_bad_input(client: Redis) -> None:
    publish(client, 1)
    consume(client, "dinsos", 1)
    no_group = simpul("pending", "dukcapil.citizen", "nobody")
    assert no_group.exit_code == 2 and "no consumer group 'nobody'" in no_group.output
    no_stream = simpul("pending", "nothing.here", "dinsos")
    assert no_stream.exit_code == 2 and "no stream simpul:{nothing.here}" in no_stream.output
    none = simpul("pending", "dukcapil.citizen", "dinsos", "--json")
    assert none.exit_code == 0 and json.loads(none.stdout)["entries"] == []


# -- map ---------------------------------------------------------------------------------------


def registered_types() -> set[str]:
    return {m.__contract__.event_type for m in load()}


def test_map_svg_has_every_type_and_marks_live_groups(client: Redis, tmp_path: Path) -> None:
    publish(client, 1)
    consume(client, "dinsos", 1)
    consume(client, "legacy-bridge", 1)  # a group the code knows nothing about
    svg = simpul("map")
    assert svg.exit_code == 0, svg.output
    root = ET.fromstring(svg.stdout.split("\n", 1)[1])  # after the XML declaration
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    texts = {t.text for t in root.iter("{http://www.w3.org/2000/svg}text")}
    assert registered_types() <= texts
    assert {"dinsos", "legacy-bridge", "audit", "dukcapil", "LEGEND"} <= texts
    assert simpul("map").stdout == svg.stdout  # stable: the same map twice

    mapped = json.loads(simpul("map", "--format", "json").stdout)
    assert mapped["live_known"] is True
    assert {t["type"] for t in mapped["types"]} == registered_types()
    services = {s["name"]: s for s in mapped["services"]}
    assert services["dinsos"] == {"name": "dinsos", "live": True, "in_code": True}
    assert services["dinkes"]["live"] is False
    assert services["legacy-bridge"] == {"name": "legacy-bridge", "live": True, "in_code": False}
    edges = {(e["type"], e["service"]): e for e in mapped["edges"]}
    assert edges[("dukcapil.citizen.died.v1", "dinsos")]["live"] is True
    assert edges[("dukcapil.family.card-issued.v1", "dinsos")]["live"] is False  # other stream
    assert edges[("dukcapil.citizen.born.v1", "legacy-bridge")]["declared"] is False

    page = tmp_path / "map.html"
    html = simpul("map", "--format", "html", "--output", str(page))
    assert html.exit_code == 0 and f"wrote {page}" in html.output
    text = page.read_text()
    assert text.startswith("<!doctype html>") and "<svg" in text and "Generated at" in text
    assert "dukcapil.citizen.died.v1" in text


def test_map_without_redis_is_drawn_from_the_code(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SIMPUL_REDIS_URL", raising=False)
    unset = simpul("map", "--format", "json")
    assert unset.exit_code == 0 and "from the code only" in unset.output
    mapped = json.loads(unset.stdout)
    assert mapped["live_known"] is False and not any(e["live"] for e in mapped["edges"])
    assert {"audit", "dinsos", "profile"} <= {s["name"] for s in mapped["services"]}
    monkeypatch.setenv("SIMPUL_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    down = simpul("map")
    assert down.exit_code == 0 and "unavailable" in down.output
    assert "from the code only" in down.stdout  # said on the map itself
    bad = simpul("map", "--format", "png")
    assert bad.exit_code == 2


# -- exporter ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_exporter_serves_metrics_and_stops_on_sigterm(redis_url: str) -> None:
    with Redis.from_url(redis_url) as sync:
        publish(sync, 2)
        consume(sync, "dinsos", 1, ack=False)
    port = free_port()
    env = dict(os.environ, SIMPUL_REDIS_URL=redis_url, SIMPUL_LOG_FORMAT="json")
    proc = subprocess.Popen(
        [sys.executable, "-m", "bus.cli.app", "exporter", "--port", str(port), "--interval", "0"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        metrics = get_when_up(f"http://127.0.0.1:{port}/metrics", proc)
        found = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(metrics.text)
            for s in family.samples
        }
        where = (("group", "dinsos"), ("stream", "dukcapil.citizen"))
        assert found[("simpul_redis_up", ())] == 1
        assert found[("simpul_stream_length", (("stream", "dukcapil.citizen"),))] == 2
        assert (found[("simpul_group_lag", where)], found[("simpul_group_pending", where)]) == (
            1,
            1,
        )
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").json()["status"] == "ok"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def get_when_up(url: str, proc: subprocess.Popen[str]) -> httpx.Response:
    deadline = time.monotonic() + 20
    while True:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else "exited"
        try:
            return httpx.get(url)
        except httpx.ConnectError:
            assert time.monotonic() < deadline, "the exporter never came up"
            time.sleep(0.05)


# -- status: adapters ---------------------------------------------------------------------------


def run_adapters(redis_url: str, *, retained: int, stale_s: float = 0) -> None:
    """A CDC adapter (one pass, then a change it has not read) and a polling one, through the
    real runner; the CDC one's report made ``stale_s`` older."""

    async def work() -> None:
        redis = connect(redis_url)
        try:
            source = Binlog(3, retained=retained)
            cdc = adapter(redis, source)
            cdc.reporter.state = "running"
            await cdc.run_once()
            source.offsets.append(999)
            await cdc.reporter.send(cdc)
            await adapter(redis, Table(4), "dukcapil-siak").run_once()
            if stale_s:
                await age(redis, "dukcapil-cdc", stale_s)
        finally:
            await redis.aclose()

    asyncio.run(work())


def test_status_lists_each_adapters_position_and_lag(
    client: Redis, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli_inspect, "_out", Console(width=120))  # one line per adapter
    run_adapters(redis_url, retained=200 * 1024**2)
    result = simpul("status", "--max-lag", "off")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "0 quarantines, 2 adapters" in " ".join(out.split())
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith(" dukcapil-")}
    cdc = rows["dukcapil-cdc"]
    for cell in ("mysql-bin.000042:304", "42 s, 695 B", "200.0 MiB", "3", "s ago"):
        assert cell in cdc, cdc
    polling = rows["dukcapil-siak"]
    for cell in ("3", "0 rows", "4", "once, "):
        assert cell in polling, polling

    report = json.loads(simpul("status", "--json").stdout)
    adapters = {a["name"]: a for a in report["snapshot"]["adapters"]}
    assert set(adapters) == {"dukcapil-cdc", "dukcapil-siak"}
    cdc_json = adapters["dukcapil-cdc"]
    assert {
        k: cdc_json[k]
        for k in (
            "cdc",
            "state",
            "position",
            "behind_bytes",
            "behind_seconds",
            "retained_bytes",
            "published",
        )
    } == {
        "cdc": True,
        "state": "running",
        "position": "mysql-bin.000042:304",
        "behind_bytes": 695,
        "behind_seconds": 42.0,
        "retained_bytes": 200 * 1024**2,
        "published": 3,
    }
    assert 0 <= cdc_json["age_s"] < 10
    assert adapters["dukcapil-siak"]["behind_rows"] == 0
    assert report["thresholds"]["max_source_retained_bytes"] == 1024**3
    assert NIKS[0] not in result.stdout


def test_status_exits_1_when_an_adapters_source_retains_too_much_or_it_went_silent(
    client: Redis, redis_url: str
) -> None:
    run_adapters(redis_url, retained=3 * 1024**3, stale_s=300)
    result = simpul("status")
    assert result.exit_code == 1, result.output
    out = " ".join(result.stdout.split())
    assert "stale, 5 min ago" in out
    assert "✗ adapter dukcapil-cdc has not reported for 5 min (max 60 s; it was running)" in out
    assert "✗ the source database of adapter dukcapil-cdc keeps 3.0 GiB of log for it" in out
    kinds = [b["kind"] for b in json.loads(simpul("status", "--json").stdout)["breaches"]]
    assert kinds == ["report_stale", "source_retained"]
    relaxed = simpul(
        "status", "--max-report-age", "600", "--max-source-retained-bytes", str(4 * 1024**3)
    )
    assert relaxed.exit_code == 0, relaxed.output
    assert "stale" not in relaxed.stdout
    behind = simpul(
        "status",
        "--max-report-age",
        "off",
        "--max-source-retained-bytes",
        "off",
        "--max-source-behind",
        "30",
        "--max-source-behind-bytes",
        "100",
    )
    assert behind.exit_code == 1
    out = " ".join(behind.stdout.split())
    assert "adapter dukcapil-cdc is 42 s behind its source (max 30 s)" in out
    assert "adapter dukcapil-cdc has 695 B of its source's log to publish (max 100 B)" in out
