"""``simpul status | map | exporter`` on real Redis: exit codes, masking, JSON.

`simpul tail` and `pending`: test_entries.py.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis import Redis
from rich.console import Console

from bus import keys
from bus.cli import inspect as cli_inspect
from bus.cli.contracts import load
from bus.connection import connect
from bus.local.redis import free_port
from tests.bus.adapter.test_report import Binlog, Table, adapter, age
from tests.bus.admin.test_inspect import redis_62

# -- status ------------------------------------------------------------------------------------
from tests.bus.cli.helpers import (
    CITIZEN,
    NIKS,
    cli_env,
    consume,
    publish,
    simpul,
    simpul_process,
)


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


def test_a_refused_login_says_what_to_check_not_that_redis_is_down(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The go-live checklist's operator URL against a Redis without that user (another Redis on
    the port) answered "Redis is unreachable": the server answered, it refused the login."""
    operator = redis_url.replace("redis://", "redis://operator:s3cret@", 1)
    monkeypatch.setenv("SIMPUL_REDIS_URL", operator)
    for command in (["status", "--json"], ["dlq", "list"], ["acl", "check", "operator", "PING"]):
        result = simpul(*command)
        assert result.exit_code == 2, (command, result.output)
        assert "refused the login" in result.output, (command, result.output)
        assert "unreachable" not in result.output, command
        assert "s3cret" not in result.output and "Traceback" not in result.output


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
    proc = simpul_process(
        "exporter", "--port", str(port), "--interval", "0", env=cli_env(redis_url)
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
