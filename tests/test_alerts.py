"""The Prometheus alert rules (deploy/prometheus/alerts.yml) and their runbook (docs/operations.md).

promtool checks the rules and runs their unit tests (alerts.test.yml); the rest checks that the
rules, the metrics the bus serves and the runbook agree: every alert has a severity, a summary,
a description and a runbook_url whose section exists; every alert is tested firing and not
firing; every metric a rule reads is one Simpul serves; every `simpul ...` command the runbook
shows exists with the options it uses.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from bus.admin.exporter import METRICS as EXPORTER_METRICS
from bus.cli.app import app
from bus.contracts import default_registry
from bus.health import Health
from bus.metrics import ServiceMetrics
from services.profile.metrics import LookupMetrics

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "alerts.test.yml"
RUNBOOK = ROOT / "docs" / "operations.md"
SEVERITIES = {"critical", "warning"}
# Series Prometheus itself provides, and PromQL words that look like metric names.
PROMETHEUS_OWN = {"up"}
PROMQL_WORDS = {
    "and",
    "or",
    "unless",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "by",
    "without",
    "offset",
    "bool",
    "sum",
    "max",
    "min",
    "avg",
    "count",
    "delta",
    "deriv",
    "rate",
    "increase",
    "absent",
    "vector",
    "label_replace",
    "histogram_quantile",
}


def promtool() -> str:
    """The promtool binary; skipped (with the reason) only off CI when it is not installed."""
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing on CI: `make system-deps` installs it (prometheus)")
        pytest.skip(
            "promtool is not installed (Debian: apt-get install prometheus, or `make system-deps`)"
        )
    return found


def alerts() -> list[dict[str, Any]]:
    rules = yaml.safe_load(RULES.read_text())
    return [rule for group in rules["groups"] for rule in group["rules"] if "alert" in rule]


def expressions() -> list[str]:
    rules = yaml.safe_load(RULES.read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def anchors(markdown: str) -> set[str]:
    """GitHub's anchors of the headings: lower case, punctuation dropped, spaces to '-'."""
    found = set()
    for heading in re.findall(r"^#{1,6} +(.+?) *$", markdown, flags=re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        found.add(slug)
    return found


def test_promtool_accepts_the_rules() -> None:
    done = subprocess.run(
        [promtool(), "check", "rules", str(RULES)],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(expressions())} rules found" in done.stdout


def test_the_rules_unit_tests_pass() -> None:
    done = subprocess.run(
        [promtool(), "test", "rules", str(RULE_TESTS)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_each_alert_is_tested_firing_and_not_firing() -> None:
    cases = [
        case
        for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
    ]
    for alert in alerts():
        name = alert["alert"]
        own = [case for case in cases if case["alertname"] == name]
        assert any(case["exp_alerts"] for case in own), f"{name}: no test where it fires"
        assert any(not case["exp_alerts"] for case in own), f"{name}: no test where it is quiet"


def test_each_alert_has_severity_texts_and_a_runbook_section() -> None:
    sections = anchors(RUNBOOK.read_text())
    names = [alert["alert"] for alert in alerts()]
    assert len(names) == len(set(names)), "alert names must be unique"
    for alert in alerts():
        name = alert["alert"]
        assert alert["labels"]["severity"] in SEVERITIES, name
        annotations = alert["annotations"]
        assert annotations["summary"].strip() and annotations["description"].strip(), name
        url = annotations["runbook_url"]
        page, _, anchor = url.partition("#")
        assert page.endswith("docs/operations.md"), f"{name}: runbook_url {url} is not the runbook"
        assert anchor == name.lower(), f"{name}: runbook_url should point to #{name.lower()}"
        assert anchor in sections, f"{name}: docs/operations.md has no section #{anchor}"


def test_the_rules_read_only_metrics_simpul_serves() -> None:
    service = ServiceMetrics(
        "probe", contracts=default_registry, health=Health(stale_after_s=5), process=False
    )
    LookupMetrics().register(service.registry)  # the profile API's, on the same /metrics
    served = {sample.name for family in service.registry.collect() for sample in family.samples} | {
        family.name for family in service.registry.collect()
    }
    served |= {f"{name}_total" for name in served}  # counters: family name and sample name
    served |= set(EXPORTER_METRICS) | PROMETHEUS_OWN
    recorded = {
        rule["record"]
        for group in yaml.safe_load(RULES.read_text())["groups"]
        for rule in group["rules"]
        if "record" in rule
    }
    for expr in expressions():
        assert not (_metric_names(expr) - served - recorded), f"unknown metrics in {expr}"


def _metric_names(expr: str) -> set[str]:
    """The metric names an expression reads (label names, functions, keywords left out)."""
    text = re.sub(r'"[^"]*"', "", expr)  # strings
    text = re.sub(r"\[[^\]]*\]", "", text)  # range selectors
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\b(on|ignoring|by|without|group_left|group_right)\s*\([^)]*\)", "", text)
    text = re.sub(r"\boffset\s+\d+[smhdwy]", "", text)
    names = re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()", text)
    return {name for name in names if name not in PROMQL_WORDS}


def _command_tree() -> Any:
    """The click command tree of `simpul`, with the plugins' groups bus.cli.app.main adds."""
    root = typer.main.get_command(app)
    for entry in entry_points(group="simpul.commands"):
        group = entry.load()
        if isinstance(group, typer.Typer):
            root.commands[entry.name] = typer.main.get_command(group)  # type: ignore[attr-defined]
    return root


def test_every_command_in_the_runbook_exists_with_its_options() -> None:
    root = _command_tree()
    commands = re.findall(r"`(simpul [^`]+)`", RUNBOOK.read_text())
    assert len(commands) > 20
    for text in sorted(set(commands)):
        words = shlex.split(re.sub(r"<[^>]+>", "X", text))[1:]
        command = root
        while hasattr(command, "commands") and words and not words[0].startswith("-"):
            assert words[0] in command.commands, f"`{text}`: no command {words[0]!r}"
            command, words = command.commands[words[0]], words[1:]
        options = {opt for param in command.params for opt in param.opts + param.secondary_opts}
        for word in words:
            if word.startswith("-"):
                assert word.split("=")[0] in options, f"`{text}`: no option {word}"


def test_the_compose_prometheus_config_loads_the_rules_and_scrapes_every_service(
    tmp_path: Path,
) -> None:
    """deploy/prometheus/prometheus.yml (docker-compose's Prometheus): promtool accepts it with
    the rules where compose mounts them, and it scrapes every container serving /metrics."""
    config_path = ROOT / "deploy" / "prometheus" / "prometheus.yml"
    config = yaml.safe_load(config_path.read_text())
    assert config["rule_files"] == ["/etc/prometheus/simpul/alerts.yml"]
    config["rule_files"] = [str(RULES)]  # where compose mounts it, here on disk
    local = tmp_path / "prometheus.yml"
    local.write_text(yaml.safe_dump(config))
    done = subprocess.run(
        [promtool(), "check", "config", str(local)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr

    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    mounts = compose["prometheus"]["volumes"]
    assert "./deploy/prometheus/alerts.yml:/etc/prometheus/simpul/alerts.yml:ro" in mounts
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    targets = {t for job in jobs.values() for c in job["static_configs"] for t in c["targets"]}
    serving = {
        f"{name}:8080"
        for name, spec in compose.items()
        if "SIMPUL_HTTP" in spec.get("environment", {}) and name.find("adapter") < 0
    }
    assert serving <= targets, f"not scraped: {sorted(serving - targets)}"
    assert "exporter:9464" in {
        t for c in jobs["simpul-exporter"]["static_configs"] for t in c["targets"]
    }
