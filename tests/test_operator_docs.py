"""The operator docs are the contract: every default they state is the code's default.

docs/delivery.md's settings table, docs/ha.md's configuration table, the HTTP limits and the
`simpul status` limits of docs/operations.md are read from the pages as an operator reads them
and compared with the settings classes (their declared defaults, so no variable of the
environment leaks in); so are the shipped Redis and Sentinel settings the pages quote, the
exporter's port and interval, the router's lease and refusal cap, the dead-letter reason codes,
and the thresholds the alert rules and the runbook say they share with `simpul status`. A page
and the code that disagree fail here, naming the line of the page.
"""

from __future__ import annotations

import json
import re
import shlex
import socket
from pathlib import Path
from typing import Any, get_args

import pytest
import typer
import yaml
from pydantic_settings import BaseSettings

from bus import Service, keys
from bus.adapter.report import REPORT_EVERY_S, REPORT_TTL_S, AdapterReport
from bus.admin.exporter import METRICS as EXPORTER_METRICS
from bus.admin.snapshots import BusSnapshot
from bus.admin.thresholds import BreachKind, Thresholds
from bus.cli.app import app
from bus.cli.router import RouterSettings
from bus.connection import connect
from bus.contracts import default_registry
from bus.deadletter import Reason
from bus.durability import Durability, DurabilitySettings, ReplicaWait
from bus.errors import NotDurable
from bus.health import Health
from bus.http_limits import Limits
from bus.metrics import ServiceMetrics
from bus.router.common import RouterConfig
from bus.settings import Settings
from tests.test_alerts import _command_tree

ROOT = Path(__file__).resolve().parents[1]
DELIVERY = (ROOT / "docs" / "delivery.md").read_text()
HA = (ROOT / "docs" / "ha.md").read_text()
OPERATIONS = (ROOT / "docs" / "operations.md").read_text()
OPERATOR_PAGES = (
    "README.md",
    "docs/operations.md",
    "docs/ha.md",
    "docs/availability.md",
    "docs/cluster.md",
    "docs/delivery.md",
    "docs/go-live.md",
)
RULES = yaml.safe_load((ROOT / "deploy" / "prometheus" / "alerts.yml").read_text())
NOWHERE = "redis://127.0.0.1:1/0"  # never connected to
UNSET = object()  # "unset" in a table: the setting has no value unless given


def table_rows(page: str, header: str) -> dict[str, tuple[str, str]]:
    """The rows of the page's table whose header line starts with ``header``: the first
    column's `SIMPUL_...` variable -> (its default cell, the whole row)."""
    lines = page.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows: dict[str, tuple[str, str]] = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        for variable in re.findall(r"`(SIMPUL_[A-Z0-9_]+)`", cells[0]):
            rows[variable] = (cells[1], line)
    assert rows, f"no table starting {header!r}"
    return rows


def stated(cell: str) -> Any:
    """A default as a table states it, as a value: unset, a number, a duration, a word."""
    text = cell.strip("`").strip()
    if text == "unset":
        return UNSET
    if found := re.fullmatch(r"(\d+) days?", text):
        return int(found[1]) * 86400
    if re.fullmatch(r"\d[\d ]*", text):
        return int(text.replace(" ", ""))
    return text


def default_of(settings: type[BaseSettings], field: str) -> Any:
    """The declared default of ``field`` (no environment read)."""
    info = settings.model_fields[field]
    value = info.get_default(call_default_factory=True)
    return UNSET if value is None else value


# Variables of the settings table whose default the code derives rather than declares, and
# what the table says of them.
DERIVED = {
    "SIMPUL_REDIS_WAIT_REPLICAS": "1 with replicas, else 0",  # bus.durability: from the server
    "SIMPUL_DEV_MODE": "unset",  # bus.devmaterial.DevModeSettings: "" is "not a development run"
}


def test_the_delivery_settings_table_states_the_defaults_of_settings() -> None:
    rows = table_rows(DELIVERY, "| variable | default | meaning |")
    assert len(rows) >= 20
    for variable, (cell, line) in rows.items():
        if variable in DERIVED:
            assert cell == DERIVED[variable], line
            continue
        field = variable.removeprefix("SIMPUL_").lower()
        assert field in Settings.model_fields, f"docs/delivery.md names {variable}: {line}"
        value, shown = default_of(Settings, field), stated(cell)
        if field == "dedupe_ttl_ms":
            shown *= 1000  # "7 days" of milliseconds
        if field == "consumer":  # `<hostname>-<pid>`
            assert shown == "<hostname>-<pid>", line
            assert value.startswith(f"{socket.gethostname()}-"), value
            continue
        if isinstance(value, bool):  # `0`/`1` or `false`/`true`
            shown = {"0": False, "false": False, "1": True, "true": True}[str(shown)]
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        assert value == shown, f"docs/delivery.md says {cell}, the code {value!r}: {line}"
    # Every setting is there: an operator looks a variable up in this one table.
    named = {f"SIMPUL_{field.upper()}" for field in Settings.model_fields}
    assert named - set(rows) == set(), "settings docs/delivery.md does not list"


def test_the_ha_configuration_table_states_the_defaults_of_settings() -> None:
    rows = table_rows(HA, "| variable | default | meaning |")
    assert rows["SIMPUL_REDIS_SENTINELS"][0] == "unset"
    assert default_of(Settings, "redis_sentinels") is UNSET
    master = stated(rows["SIMPUL_REDIS_SENTINEL_MASTER"][0])
    assert master == default_of(Settings, "redis_sentinel_master") == "simpul"
    assert rows["SIMPUL_REDIS_SENTINEL_USERNAME"][0] == "unset"
    assert default_of(Settings, "redis_sentinel_username") is UNSET
    assert default_of(Settings, "redis_sentinel_password") is UNSET
    assert rows["SIMPUL_REDIS_WAIT_REPLICAS"][0] == "unset"
    assert default_of(DurabilitySettings, "replicas") is UNSET
    timeout = stated(rows["SIMPUL_REDIS_WAIT_TIMEOUT_MS"][0])
    assert timeout == default_of(DurabilitySettings, "timeout_ms") == 2000
    assert default_of(Settings, "redis_wait_timeout_ms") == 2000
    # The NotDurable text ha.md quotes is what a write short of its replicas raises.
    quoted = re.search(r'\*"… (.*?) …"\*', " ".join(HA.split()))
    assert quoted is not None and "within 2000 ms" in quoted[1]
    wait = ReplicaWait(connect(NOWHERE), Durability(replicas=1))  # never connected
    with pytest.raises(NotDurable) as raised:
        wait.check(0, "the publish of 1 event to simpul:{dukcapil.citizen}")
    assert quoted[1] in str(raised.value)


def test_the_http_limits_table_states_the_defaults() -> None:
    rows = table_rows(OPERATIONS, "| variable | default | bound |")
    assert set(rows) == {f"SIMPUL_HTTP_{f.upper()}" for f in Limits.model_fields}
    for variable, (cell, line) in rows.items():
        field = variable.removeprefix("SIMPUL_HTTP_").lower()
        assert default_of(Limits, field) == stated(cell), line


def test_the_status_limits_of_the_daily_checks_are_the_defaults() -> None:
    """`simpul status` in the daily checks: "Limits come from options or
    `SIMPUL_STATUS_MAX_LAG` (1000), `..._MAX_PENDING_AGE_S` (600), ..."."""
    paragraph = OPERATIONS[OPERATIONS.index("Limits come") : OPERATIONS.index("so it also works")]
    paragraph = " ".join(paragraph.split())
    found = re.findall(r"`(?:SIMPUL_STATUS|\.\.\.)_(MAX_[A-Z_]+)` \(([^)]*)\)", paragraph)
    named = {name.lower(): value for name, value in found}
    assert set(named) == set(Thresholds.model_fields), "every limit, each once"
    for field, value in named.items():
        default = Thresholds.model_fields[field].default
        if value == "off":
            assert default is None, field
        elif "GiB" in value:  # "1 GiB, 1073741824"
            assert default == 1024**3 == int(value.split(",")[-1]), field
        else:
            assert default == int(value), f"{field}: the runbook says {value}, the code {default}"
    # The same defaults are in the command's own help, which an operator reads first.
    help_text = " ".join((typer.main.get_command(app).commands["status"].help or "").split())  # type: ignore[attr-defined]
    for field, value in named.items():
        shown = "1 GiB" if "GiB" in value else value
        assert f"_{field.upper()} ({shown})" in help_text, field


def test_readiness_defaults_to_the_stated_nine_seconds() -> None:
    """operations.md: /readyz needs a poll within twice SIMPUL_BLOCK_MS plus 5 s, 9 s by default:
    what a service's consumer sets from its settings (no Redis is asked to build it)."""
    assert "(within `2 \u00d7 SIMPUL_BLOCK_MS + 5 s`, 9 s by default)" in OPERATIONS
    service = Service("probe", settings=Settings.load(redis_url=NOWHERE))
    service._consumer(connect(NOWHERE))  # what running the service does first
    assert service.health.stale_after_s == 9
    quick = Service("probe", settings=Settings.load(redis_url=NOWHERE, block_ms=500))
    quick._consumer(connect(NOWHERE))
    assert quick.health.stale_after_s == 6


def test_the_exporter_port_and_interval_are_its_defaults() -> None:
    exporter: Any = typer.main.get_command(app).commands["exporter"]  # type: ignore[attr-defined]
    defaults = {param.name: param.default for param in exporter.params}
    assert "(9464 is its default port)" in OPERATIONS and defaults["port"] == 9464
    assert "reused for `--interval` seconds (5)" in OPERATIONS and defaults["interval"] == 5


def test_the_router_figures_are_its_defaults() -> None:
    """The router section: leases of 5 s, the newest 10,000 refusals per intake
    (`SIMPUL_ROUTER_MAX_REFUSALS`), stale inbox entries past `SIMPUL_SIGNATURE_MAX_AGE_S`
    (7 days)."""
    assert "a dead\none's share moves to the others after 5 s" in OPERATIONS
    assert "its lease expires after 5 s" in OPERATIONS
    assert RouterConfig().lease_ms == 5_000
    assert "the newest 10,000 per intake" in OPERATIONS
    assert "(the newest `SIMPUL_ROUTER_MAX_REFUSALS`, 10,000 by default)" in OPERATIONS
    assert default_of(RouterSettings, "max_refusals") == RouterConfig().max_refusals == 10_000
    assert "`SIMPUL_SIGNATURE_MAX_AGE_S` (7 days by default)" in OPERATIONS
    assert default_of(Settings, "signature_max_age_s") == 7 * 86400


def test_every_dead_letter_reason_is_in_the_runbook() -> None:
    """The metric's `reason` label and the SimpulDeadLetters table name every code a consumer
    dead-letters with, and no other."""
    metric_row = next(
        line for line in OPERATIONS.splitlines() if line.startswith("| `simpul_events_dead_")
    )
    codes = {reason.value for reason in Reason}
    assert set(re.findall(r"`([a-z_]+)`", metric_row.split("|")[4])) - {"reason"} == codes
    section = OPERATIONS[OPERATIONS.index("### SimpulDeadLetters\n") :]
    table = section[section.index("| reason | cause |") : section.index("**Confirm:**")]
    first_cells = [line.split("|")[1] for line in table.splitlines()[2:] if line.startswith("|")]
    assert {code for cell in first_cells for code in re.findall(r"`([a-z_]+)`", cell)} == codes


def test_every_metric_the_runbook_lists_is_served_and_every_served_one_is_listed() -> None:
    service = ServiceMetrics(
        "probe", contracts=default_registry, health=Health(stale_after_s=5), process=False
    )
    families = {family.name: family.type for family in service.registry.collect()}
    tables = OPERATIONS[OPERATIONS.index("## Metrics") : OPERATIONS.index("## Scraping")]
    listed = set(re.findall(r"^\| `(simpul_[a-z_]+)`", tables, flags=re.M))
    served = {f"{name}_total" if kind == "counter" else name for name, kind in families.items()}
    served |= set(EXPORTER_METRICS)
    assert listed == served


def test_the_shipped_redis_and_sentinel_settings_are_what_the_pages_quote() -> None:
    def settings(path: str) -> dict[str, str]:
        found = {}
        for line in (ROOT / "deploy" / "redis" / path).read_text().splitlines():
            words = line.split()
            if words and not words[0].startswith("#"):
                found[" ".join(words[:-1])] = words[-1]
        return found

    ha, single = settings("redis-ha.conf"), settings("redis.conf")
    assert "`min-replicas-to-write 1` and `min-replicas-max-lag 10`" in HA
    assert ha["min-replicas-to-write"] == "1" and ha["min-replicas-max-lag"] == "10"
    sentinel = (ROOT / "deploy" / "redis" / "sentinel.conf").read_text()
    assert "quorum 2 of 3, `down-after-milliseconds 5000`" in HA
    assert re.search(r"^sentinel monitor simpul \S+ \d+ 2$", sentinel, flags=re.M)
    assert re.search(r"^sentinel down-after-milliseconds simpul 5000$", sentinel, flags=re.M)
    assert "One Redis with AOF (`appendfsync always`)" in HA
    assert single["appendonly"] == "yes" and single["appendfsync"] == "always"
    quoted = (
        "sets `maxmemory 2gb` (`noeviction`), `maxmemory-clients 10%` and\n"
        "  `proto-max-bulk-len 1mb`"
    )
    assert quoted in OPERATIONS
    assert single["maxmemory"] == "2gb" and single["maxmemory-policy"] == "noeviction"
    assert single["maxmemory-clients"] == "10%" and single["proto-max-bulk-len"] == "1mb"


def _alert(name: str) -> dict[str, Any]:
    return next(
        rule for group in RULES["groups"] for rule in group["rules"] if rule.get("alert") == name
    )


def test_the_alert_thresholds_follow_the_defaults_as_the_runbook_says() -> None:
    """ "Thresholds follow the default settings": SimpulPendingStuck at 3 x SIMPUL_CLAIM_IDLE_MS
    (360 s), SimpulConsumerLagGrowing at a lag of 1000 (status's max lag), the adapter alerts at
    status's 300 s behind and 1 GiB retained, reports older than 120 s; SimpulStreamAheadOfTime
    at 5 minutes, as `simpul router ahead` and status's max ahead."""
    assert "(360 s for the default 120 000 ms)" in OPERATIONS
    claim_s = default_of(Settings, "claim_idle_ms") // 1000
    assert f"> 3 * {claim_s}" in _alert("SimpulPendingStuck")["expr"] and claim_s == 120
    limits = Thresholds.model_fields
    assert (
        f"simpul_group_lag > {limits['max_lag'].default}"
        in _alert("SimpulConsumerLagGrowing")["expr"]
    )
    behind = _alert("SimpulAdapterFallingBehind")["expr"]
    assert (
        f"simpul_adapter_source_behind_seconds > {limits['max_source_behind_s'].default:.0f}"
        in behind
    )
    retained = _alert("SimpulSourceLogRetained")["expr"]
    assert (
        "> 1024 * 1024 * 1024" in retained
        and limits["max_source_retained_bytes"].default == 1024**3
    )
    assert "simpul_adapter_report_age_seconds > 120" in _alert("SimpulAdapterNotReporting")["expr"]
    assert "reports older than 120 s (status: 60 s)" in OPERATIONS
    assert limits["max_report_age_s"].default == 60
    ahead = _alert("SimpulStreamAheadOfTime")["expr"]
    assert ahead.strip().endswith("> 300") and limits["max_ahead_s"].default == 300
    router_ahead: Any = typer.main.get_command(app).commands["router"].commands["ahead"]  # type: ignore[attr-defined]
    assert {p.name: p.default for p in router_ahead.params}["minutes"] == 5
    assert "more than 5 minutes ahead of Redis `TIME` (exit 1 if any)" in OPERATIONS


@pytest.mark.parametrize(
    ("alert", "words"),
    [
        (
            "SimpulRouterNotAdmitting",
            ("simpul_intake_backlog > 100", "holds more than 100 entries"),
        ),
        ("SimpulInboxLagGrowing", ("simpul_inbox_lag > 1000", "than 1000 entries its group")),
        ("SimpulProfileLookupBurst", ("* 60 > 20", "more than 20 persons a minute")),
        ("SimpulDeadLetterRateHigh", ("* 60 > 1", "more than one event a minute")),
    ],
)
def test_an_alert_fires_where_its_runbook_section_says(alert: str, words: tuple[str, str]) -> None:
    expr, prose = words
    assert expr in " ".join(_alert(alert)["expr"].split()), alert
    section = OPERATIONS[OPERATIONS.index(f"### {alert}") :]
    assert prose in " ".join(section[: section.index("**Confirm")].split()), alert


def test_the_health_body_shown_is_the_one_served() -> None:
    """ "/healthz and /readyz answer with the same JSON body": the example has every key the
    body has, and its counters are ones the consumer counts."""
    shown = json.loads(re.findall(r"```json\n(.*?)```", OPERATIONS, flags=re.S)[0])
    body = Health(stale_after_s=9).snapshot()
    assert set(shown) == set(body)
    counted = set(re.findall(r'health\.count\("([a-z_]+)"', _bus_source()))
    assert set(shown["counters"]) <= counted
    assert counted - set(shown["counters"]) <= {"entries_lost"}  # named below the example
    assert "(also\n`entries_lost`)" in OPERATIONS


def _bus_source() -> str:
    return "\n".join(path.read_text() for path in (ROOT / "bus").rglob("*.py"))


def test_the_status_json_and_breaches_the_runbook_names_exist() -> None:
    """ "`--json` has every report in `snapshot.adapters[]`: `{name, cdc, ...}`", the routed
    tables' `snapshot.inboxes[]`, `snapshot.intakes[]`, `snapshot.ahead_of_time[]`, and each
    breach kind the runbook names: the fields and kinds `simpul status --json` prints."""
    text = " ".join(OPERATIONS.split())
    fields = re.search(r"`snapshot\.adapters\[\]`: `\{([^}]*)\}`", text)
    assert fields is not None
    assert [f.strip() for f in fields[1].split(",")] == list(AdapterReport.model_fields)
    for name in re.findall(r"`snapshot\.([a-z_]+)\[\]`", text):
        assert name in BusSnapshot.model_fields, name
    kinds = set(get_args(BreachKind))
    sentences = re.findall(r"Breaches: ([^.]*)\.", text)
    assert len(sentences) >= 2
    for sentence in sentences:
        assert set(re.findall(r"`([a-z_]+)`", sentence)) <= kinds, sentence


def test_the_adapter_report_figures_are_the_runners() -> None:
    """ "writes a report ... every 5 s between passes", "The key expires a week after the last
    report", "the runner retries with a backoff up to a minute"."""
    assert "at the end of each pass and every 5 s" in " ".join(OPERATIONS.split())
    assert REPORT_EVERY_S == 5
    assert "The key expires a week after the last report" in " ".join(OPERATIONS.split())
    assert REPORT_TTL_S == 7 * 86400
    assert "(the runner retries with a backoff up to a minute)" in " ".join(OPERATIONS.split())
    runner = (ROOT / "bus" / "adapter" / "runner.py").read_text()
    assert "delay = min(max(delay * 2, 1.0), 60.0)" in runner


def test_the_adapters_the_daily_checks_name_are_the_topologys() -> None:
    """Daily check 3 names the adapters whose quarantines to look at: every `adapter:` of
    deploy/topology.yaml, no other."""
    text = " ".join(OPERATIONS.split())
    listed = text[text.index("(the adapters are the") : text.index("), then [SimpulQuarantine")]
    topology = yaml.safe_load((ROOT / "deploy" / "topology.yaml").read_text())
    adapters = {p["adapter"] for p in topology["producers"] if p.get("adapter")}
    assert set(re.findall(r"`([a-z]+-[a-z]+)`", listed)) == adapters


def test_the_prometheus_configuration_shown_is_the_shipped_one() -> None:
    shown = re.search(r"```yaml\n# prometheus.yml\n(.*?)```", OPERATIONS, flags=re.S)
    assert shown is not None
    shipped = (ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text()
    assert yaml.safe_load(shown[1]) == yaml.safe_load(shipped)
    not_reporting = _alert("SimpulAdapterNotReporting")
    assert "(the rule is `simpul_adapter_report_age_seconds > 120` with `for: 3m`;" in OPERATIONS
    assert not_reporting["for"] == "3m"


# Placeholders of the key patterns the pages show, and an example value of each.
EXAMPLE = {
    "<adapter>": "dukcapil-siak",
    "<stream>": "dukcapil.citizen",
    "<aggregate>": "dukcapil.citizen",
    "<dept>.<aggregate>": "dukcapil.citizen",
    "<group>": "dinsos",
    "<service>": "dinsos",
    "<principal>": "adapter-dukcapil",
    "<id>": "e-1",
    "<entry id>": "1-0",
    "<k>": "3",
}


def _key_patterns(page: str) -> set[str]:
    """Every `simpul:...` key pattern a page shows in code (with at least one placeholder)."""
    text = " ".join(page.split())
    return {k for k in re.findall(r"`(simpul:[^`\s]*<[^`]*)`", text) if " " not in k}


def _filled(pattern: str) -> str:
    for placeholder in sorted(EXAMPLE, key=len, reverse=True):
        pattern = pattern.replace(placeholder, EXAMPLE[placeholder])
    return pattern


def test_every_key_pattern_the_pages_show_is_a_key_the_bus_uses() -> None:
    """An operator types these into redis-cli (`DEL simpul:adapter:{<adapter>}:report`, `XRANGE
    simpul:intake:{<principal>}:dlq - +`, `GET ...:lease:router`): each, filled in, is a key
    bus.keys makes."""
    citizen = keys.stream("dukcapil.citizen")
    inbox = keys.inbox(citizen, "dinsos")
    intake = keys.intake("adapter-dukcapil")
    made = {
        citizen,
        keys.dead_letters(citizen, "dinsos"),
        keys.seen(citizen, "e-1"),
        keys.done(citizen, "dinsos", "e-1"),
        keys.last_failure(citizen, "dinsos", "1-0"),
        keys.quarantine("dukcapil-siak"),
        keys.checkpoint("dukcapil-siak"),
        keys.adapter_report("dukcapil-siak"),
        intake,
        keys.intake_dead_letters("adapter-dukcapil"),
        keys.router_lease(intake),
        inbox,
        keys.dead_letters(inbox, "dinsos"),
        keys.partition_stream("dukcapil.citizen", 3),
        keys.cursor(citizen, "dinsos"),
    }
    shown = set()
    for page in (OPERATIONS, DELIVERY, HA, (ROOT / "docs" / "cluster.md").read_text()):
        shown |= _key_patterns(page)
    assert len(shown) >= 8, shown
    for pattern in sorted(shown):
        assert _filled(pattern) in made, f"{pattern} is no key of bus.keys"
    # Suffixes of a stream's key (`<stream>:cursor:<group>`, `...:failure:<service>:<entry id>`,
    # cluster.md's `:seen:<id>`): the stream's key, then the suffix.
    suffixes = set()
    for page in (OPERATIONS, DELIVERY, (ROOT / "docs" / "cluster.md").read_text()):
        found = re.findall(r"`(?:\.\.\.|<stream>)?(:(?:seen|done|failure|cursor)[^`.]*)`", page)
        suffixes |= set(found)
    assert len(suffixes) >= 4, suffixes
    for suffix in sorted(suffixes):
        assert citizen + _filled(suffix) in made, f"{suffix} is no key of bus.keys"
    assert (
        "`simpul:router:replicas`" in OPERATIONS
        and keys.ROUTER_REPLICAS == "simpul:router:replicas"
    )


# Words in code spans of the pages that are not Simpul's to define: PostgreSQL, MySQL and Redis
# settings and states, compose and Prometheus keys, Python names of the API.
FOREIGN = {
    "binlog_expire_logs_seconds",
    "max_slot_wal_keep_size",
    "pg_read_all_stats",
    "pg_wal",
    "send_bulk",
    "env_file",
    "runbook_url",
    "on_every",
    "publish_many",
    "used_memory",  # Redis INFO memory
}


def test_every_log_event_and_code_word_the_pages_name_is_in_the_code() -> None:
    """An operator greps the logs for the names the pages give (`entries_lost_unread`,
    `router_source_failed`, `stream_entry_withheld`, ...): each snake_case word the pages show
    is a name the code writes — a string it logs or stores, a log field, a setting, a metric —
    or a word of another system (FOREIGN)."""
    words = {
        word
        for page in OPERATOR_PAGES
        for word in re.findall(r"`([a-z]+(?:_[a-z]+)+)`", (ROOT / page).read_text())
    }
    assert len(words) > 80
    source = "\n".join(
        path.read_text()
        for folder in ("bus", "services", "adapters")
        for path in (ROOT / folder).rglob("*.py")
    )
    known = set(re.findall(r"[\"']([a-z]+(?:_[a-z]+)+)[\"']", source))  # literals
    known |= set(re.findall(r"\b([a-z]+(?:_[a-z]+)+)=", source))  # log fields, keywords
    known |= set(Settings.model_fields) | set(Thresholds.model_fields)
    known |= {f"{name}_total" for name in known}  # counters as Prometheus names them
    assert words - known - FOREIGN == set()


def test_every_file_the_pages_name_exists() -> None:
    """ "tested by tests/chaos/test_sentinel_failover.py", "(bus/durability.py)",
    "deploy/redis/sentinel.conf": each path the pages name is in the repository."""
    pattern = r"(?<![\w/.-])((?:tests|bus|deploy|adapters|services|schemas|docs)/[\w/.-]*\w)"
    named = set()
    for page in OPERATOR_PAGES:
        named |= set(re.findall(pattern, (ROOT / page).read_text()))
    assert len(named) > 30
    missing = {path for path in named if not (ROOT / path).exists()}
    assert missing == set()


def _shown_commands(page: str) -> list[str]:
    """Every `simpul ...` a page shows: in code spans and in sh/bash blocks (continuations
    joined, `VAR=value` prefixes and comments dropped)."""
    text = (ROOT / page).read_text()
    lines = [
        line
        for block in re.findall(r"```(?:sh|bash)\n(.*?)```", text, flags=re.S)
        for line in block.replace("\\\n", " ").splitlines()
    ]
    lines += [" ".join(code.split()) for code in re.findall(r"`(simpul [^`]*)`", text)]
    found = []
    for line in lines:
        words = shlex.split(re.sub(r"<[^>]*>", "x", line), comments=True)
        while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
            words = words[1:]
        if words[:1] == ["simpul"]:
            found.append(" ".join(shlex.quote(w) for w in words))
    return found


def test_every_simpul_command_the_operator_pages_show_exists_with_its_options() -> None:
    root = _command_tree()
    shown = [(page, line) for page in OPERATOR_PAGES for line in _shown_commands(page)]
    assert len(shown) > 150
    for page, line in shown:
        words, command = shlex.split(line)[1:], root
        while hasattr(command, "commands") and words and not words[0].startswith("-"):
            assert words[0] in command.commands, f"{page}: `{line}`: no command {words[0]!r}"
            command, words = command.commands[words[0]], words[1:]
        options = {o for param in command.params for o in param.opts + param.secondary_opts}
        unknown = {w.split("=")[0] for w in words if w.startswith("-")} - options
        assert not unknown, f"{page}: `{line}`: no option {sorted(unknown)}"
