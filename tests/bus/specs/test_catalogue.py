"""The event catalogue: complete, marks personal fields, names consumers, committed fresh."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bus.cli.contracts import app, describe, docs_files, load
from bus.errors import SimpulError
from bus.specs import catalogue

ROOT = Path(__file__).parents[3]
COMMITTED = ROOT / "docs" / "catalogue.md"


@pytest.fixture(scope="module")
def text() -> str:
    return docs_files()["catalogue.md"]


def _section(text: str, event_type: str) -> str:
    """The part of the catalogue about one event type."""
    start = text.index(f"\n### {event_type}\n")
    end = text.find("\n### ", start + 1)
    return text[start : end if end != -1 else len(text)]


def _field_cells(section: str, field: str) -> list[str]:
    line = next(row for row in section.splitlines() if row.startswith(f"| `{field}` |"))
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]]


def test_committed_catalogue_is_fresh(text: str) -> None:
    assert COMMITTED.exists(), "docs/catalogue.md is missing: run `simpul contracts docs`"
    assert COMMITTED.read_text() == text, (
        "docs/catalogue.md is stale: run `simpul contracts docs` and commit the result"
    )


def test_every_registered_type_has_its_section(text: str) -> None:
    models = load("schemas")
    assert models
    for model in models:
        row = describe(model)
        section = _section(text, row["type"])
        assert f"- version: {row['version']} " in section
        assert f"- owner: {row['owner']}" in section
        assert f"- classification: {row['classification']}" in section
        assert f"- stream: `{row['stream']}`" in section
        assert text.index(f"\n## {row['owner']}\n") < text.index(f"\n### {row['type']}\n")
        assert [f["name"] for f in row["fields"]] == [
            line.split("`")[1] for line in section.splitlines() if line.startswith("| `")
        ]


def test_personal_fields_are_marked(text: str) -> None:
    for model in load("schemas"):
        row = describe(model)
        for field in row["fields"]:
            personal = _field_cells(_section(text, row["type"]), field["name"])[3]
            assert personal == ("**personal**" if field["personal"] else ""), field["name"]
    assert _field_cells(_section(text, "dukcapil.citizen.died.v1"), "nik")[3] == "**personal**"


def test_consumers_are_listed(text: str) -> None:
    died = ["audit", "bapenda", "dinsos", "notifier", "profile"]  # audit: on_every, all types
    assert catalogue.consumers(catalogue.find_services())["dukcapil.citizen.died.v1"] == died
    assert f"- consumers: {', '.join(died)}" in _section(text, "dukcapil.citizen.died.v1")
    consumed = catalogue.consumers(catalogue.find_services())
    for model in load("schemas"):
        event_type = model.__contract__.event_type
        names = ", ".join(consumed.get(event_type, [])) or "none yet"
        assert f"- consumers: {names}\n" in _section(text, event_type)


def test_legend_explains_classifications_and_shared_identifiers(text: str) -> None:
    legend = text[: text.index("\n## Index")]
    for classification in catalogue.CLASSIFICATIONS:
        assert f"| {classification.value} |" in legend
    for identifier in ("NIK", "KK", "NIB", "NOP", "NIP"):
        assert f"| {identifier} |" in legend
    assert _field_cells(_section(text, "dukcapil.citizen.died.v1"), "nik")[1] == "NIK"


def test_cells_are_escaped() -> None:
    row = {
        "type": "x.y.z.v1",
        "version": "1.0",
        "owner": "x",
        "classification": "public",
        "stream": "simpul:{x.y}",
        "dataschema": "simpul:x.y.z:1.0",
        "summary": "a | b",
        "fields": [
            {
                "name": "f",
                "type": "1 | 2",
                "required": True,
                "personal": False,
                "description": "one\ntwo | three",
            }
        ],
    }
    section = _section(catalogue.render([row], {}), "x.y.z.v1")
    assert _field_cells(section, "f") == ["`f`", "1 \\| 2", "yes", "", "one two \\| three"]
    assert "a \\| b" in section


def test_services_package_must_import() -> None:
    with pytest.raises(SimpulError, match="no_such_services"):
        catalogue.find_services("no_such_services")


def test_cli_writes_and_checks(tmp_path: Path) -> None:
    runner = CliRunner()
    out = str(tmp_path / "docs")
    stale = runner.invoke(app, ["docs", "--check", "--out", out])
    assert stale.exit_code == 1
    assert "catalogue.md is stale" in stale.output
    assert "asyncapi.json is stale" in stale.output
    assert f"simpul contracts docs --out {out}" in stale.output
    assert runner.invoke(app, ["docs", "--out", out]).exit_code == 0
    assert (tmp_path / "docs" / "catalogue.md").read_text() == docs_files()["catalogue.md"]
    json.loads((tmp_path / "docs" / "asyncapi.json").read_text())
    assert runner.invoke(app, ["docs", "--check", "--out", out]).exit_code == 0
    (tmp_path / "docs" / "asyncapi.json").write_text("{}\n")
    again = runner.invoke(app, ["docs", "--check", "--out", out])
    assert again.exit_code == 1
    assert "asyncapi.json is stale" in again.output
    assert "catalogue.md is stale" not in again.output
    assert runner.invoke(app, ["docs", "--services", "no_such_services"]).exit_code == 2


def test_enum_fields_show_their_codes_not_only_the_class_name(text: str) -> None:
    cells = _field_cells(_section(text, "bapenda.payment.received.v1"), "channel")
    assert cells[1].startswith('PaymentChannel: "bank-teller" \\| "virtual-account" \\| "qris"')


def test_every_type_with_an_example_shows_it_as_its_payload(text: str) -> None:
    for model in load("schemas"):
        example = catalogue.example_of(model)
        assert example is not None, f"{model.__contract__.event_type} has no valid example"
        model.parse(example)  # the example shown is a valid payload
        shown = json.dumps(example, indent=2, ensure_ascii=False)
        assert f"```json\n{shown}\n```" in _section(text, model.__contract__.event_type)


def test_contracts_show_lists_codes_and_an_example() -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["show", "bapenda.payment.received.v1"], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert '"bank-teller" | "virtual-account"' in result.output
    assert "example payload" in result.output and '"payment_ref"' in result.output
    as_json = runner.invoke(app, ["show", "bapenda.payment.received.v1", "--json"])
    shown = json.loads(as_json.stdout)
    assert shown["example"]["channel"] == "qris"
    assert next(f for f in shown["fields"] if f["name"] == "channel")["type"].startswith(
        'PaymentChannel: "bank-teller"'
    )
