"""The compatibility gate, proven both ways with deliberately changed models."""

from __future__ import annotations

import json
import sys
import textwrap
from datetime import date
from pathlib import Path
from typing import Annotated, Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field
from typer.testing import CliRunner

from bus import PERSONAL, Contract
from bus.cli.app import app
from bus.contracts import default_registry
from bus.errors import ConfigurationError
from bus.specs.gate import breaking_changes, check, snapshot_path, write_snapshots

TYPE = "testdept.parcel.registered.v1"


class Owner(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    name: Annotated[str, PERSONAL]
    share: int


class V0(Contract, event_type=TYPE, minor=0, register=False):
    parcel: str
    area_m2: int
    zoning: Literal["R1", "R2", "C"]
    registered_on: date
    owner: Owner
    note: str | None = None


def problems_of(new: type[Contract], tmp_path: Path, *, old: type[Contract] = V0) -> list[str]:
    write_snapshots([old], tmp_path)
    return [str(p) for p in check([new], tmp_path)]


def test_adding_an_optional_field_with_a_new_minor_passes(tmp_path: Path) -> None:
    class V1(Contract, event_type=TYPE, minor=1, register=False):
        parcel: str
        area_m2: int
        zoning: Literal["R1", "R2", "C"]
        registered_on: date
        owner: Owner
        note: str | None = None
        certificate: str | None = None  # new, optional

    write_snapshots([V0], tmp_path)
    write_snapshots([V1], tmp_path)
    assert check([V1], tmp_path) == []


def _v1(**fields: object) -> type[Contract]:
    """V0's fields with some replaced (None removes one), declared as minor 1."""
    annotations = {**V0.__annotations__}
    namespace: dict[str, object] = {"note": None}
    for name, annotation in fields.items():
        if annotation is None:
            annotations.pop(name)
            namespace.pop(name, None)
        elif isinstance(annotation, tuple):
            annotations[name], namespace[name] = annotation
        else:
            annotations[name] = annotation
    namespace["__annotations__"] = annotations
    namespace["__module__"] = __name__
    return type("V1", (Contract,), namespace, event_type=TYPE, minor=1, register=False)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"area_m2": None}, "area_m2: removed (or renamed)"),
        ({"area_m2": None, "area": int}, "area_m2: removed (or renamed)"),
        ({"area_m2": str}, "area_m2: retyped from integer to string"),
        ({"surveyor": str}, "surveyor: new required field"),
        ({"zoning": Literal["R1", "R2"]}, "zoning: enum narrowed (removed ['C'])"),
        ({"zoning": Literal["R1", "R2", "C", "I"]}, "zoning: enum widened (added ['I'])"),
        ({"parcel": Annotated[str, Field(pattern=r"^P-[0-9]+$")]}, "parcel: pattern changed"),
        ({"note": str}, "note: "),  # optional -> required (and no longer nullable)
        ({"area_m2": (int | None, None)}, "area_m2: "),  # required -> optional
        ({"registered_on": str}, "registered_on: format changed from 'date' to None"),
    ],
)
def test_breaking_changes_name_the_field_and_the_snapshot(
    tmp_path: Path, change: dict[str, object], expected: str
) -> None:
    found = problems_of(_v1(**change), tmp_path)
    assert any(expected in p and "1.1 breaks snapshot 1.0" in p for p in found), found


def test_required_made_optional_is_reported_as_such(tmp_path: Path) -> None:
    found = problems_of(_v1(area_m2=(int | None, None)), tmp_path)
    assert any("area_m2: no longer required" in p for p in found), found


def test_a_change_inside_a_nested_model_names_the_path(tmp_path: Path) -> None:
    class Owner2(BaseModel):
        model_config = ConfigDict(frozen=True, extra="forbid")
        name: Annotated[str, PERSONAL]
        share: float

    found = problems_of(_v1(owner=Owner2), tmp_path)
    assert any("owner.share: retyped from integer to number" in p for p in found), found


def test_changing_a_published_minor_without_bumping_it_fails(tmp_path: Path) -> None:
    class Same(Contract, event_type=TYPE, minor=0, register=False):
        parcel: str

    write_snapshots([V0], tmp_path)
    problems = [str(p) for p in check([Same], tmp_path)]
    assert "changed since its snapshot 1.0 was published: area_m2: removed" in problems[0]
    assert "testdept.parcel.registered.v2" in problems[0]


def test_a_rename_in_place_is_named_at_the_first_check(tmp_path: Path) -> None:
    """The developer renames a field and runs `check` before anything else: the answer names
    both fields and the way out (a new major), not "bump minor"."""
    renamed = _v1(area_m2=None, area=int)
    write_snapshots([V0], tmp_path)
    in_place = type("Renamed", (renamed,), {}, event_type=TYPE, minor=0, register=False)
    problems = [str(p) for p in check([in_place], tmp_path)]
    assert any("area_m2: removed (or renamed)" in p for p in problems), problems
    assert any("area: new required field" in p for p in problems), problems
    assert all("new type, testdept.parcel.registered.v2" in p for p in problems), problems
    assert not any("bump `minor`" in p for p in problems), problems


def test_an_optional_field_added_in_place_says_bump_the_minor(tmp_path: Path) -> None:
    added = _v1(certificate=(str | None, None))
    write_snapshots([V0], tmp_path)
    in_place = type("Added", (added,), {}, event_type=TYPE, minor=0, register=False)
    [problem] = [str(p) for p in check([in_place], tmp_path)]
    assert "new optional field certificate: bump `minor` to 1" in problem


def test_a_breaking_minor_is_never_snapshotted(tmp_path: Path) -> None:
    write_snapshots([V0], tmp_path)
    with pytest.raises(ConfigurationError, match=r"1.1 would break snapshot 1.0: area_m2"):
        write_snapshots([_v1(area_m2=None, area=int)], tmp_path)
    assert not snapshot_path(tmp_path, TYPE, 1).exists()


def test_missing_snapshot_and_orphan_snapshot_fail(tmp_path: Path) -> None:
    assert [str(p) for p in check([V0], tmp_path)] == [
        f"{TYPE}: no snapshot of minor 0: run `simpul contracts snapshot` and commit it"
    ]
    write_snapshots([V0], tmp_path)
    orphans = [str(p) for p in check([], tmp_path)]
    assert orphans and "has published snapshots but no contract" in orphans[0]


def test_snapshots_are_never_overwritten(tmp_path: Path) -> None:
    write_snapshots([V0], tmp_path)
    path = snapshot_path(tmp_path, TYPE, 0)
    before = path.read_text()

    class Same(Contract, event_type=TYPE, minor=0, register=False):
        parcel: str

    assert write_snapshots([Same], tmp_path) == []
    assert path.read_text() == before
    assert json.loads(before)["personal_fields"] == ["owner", "owner.name"]


def test_a_personal_marking_may_be_added_in_a_minor_but_never_removed(tmp_path: Path) -> None:
    class Owner2(BaseModel):
        model_config = ConfigDict(frozen=True, extra="forbid")
        name: str  # no longer PERSONAL
        share: Annotated[int, PERSONAL]  # newly PERSONAL

    found = problems_of(_v1(owner=Owner2), tmp_path)
    assert [p for p in found if "x-personal" in p] == [
        f"{TYPE}: 1.1 breaks snapshot 1.0: owner.name: x-personal removed: events of earlier "
        "minors were masked as personal"
    ]

    class Subject(Contract, event_type=TYPE, minor=1, personal_subject=True, register=False):
        parcel: str
        area_m2: int
        zoning: Literal["R1", "R2", "C"]
        registered_on: date
        owner: Owner
        note: str | None = None

    write_snapshots([V0, Subject], tmp_path / "added")
    assert check([Subject], tmp_path / "added") == []

    class Unmarked(Contract, event_type=TYPE, minor=2, register=False):
        parcel: str
        area_m2: int
        zoning: Literal["R1", "R2", "C"]
        registered_on: date
        owner: Owner
        note: str | None = None

    found = [str(p) for p in check([Unmarked], tmp_path / "added")]
    assert any("2 breaks snapshot 1.1: (payload): x-personal-subject removed" in p for p in found)
    with pytest.raises(ConfigurationError, match="x-personal-subject removed"):
        write_snapshots([Unmarked], tmp_path / "added")  # nor may it be snapshotted as a minor


def test_documentation_changes_are_compatible() -> None:
    old = {
        "type": "object",
        "properties": {"a": {"type": "string", "title": "A"}},
        "required": ["a"],
    }
    new = {
        "type": "object",
        "properties": {"a": {"type": "string", "description": "the a"}},
        "required": ["a"],
    }
    assert breaking_changes(old, new) == []


def test_cli_check_exits_1_with_the_problem_and_0_when_fixed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "deptcontracts"
    package.mkdir()
    (package / "__init__.py").write_text("")
    module = package / "events.py"
    module.write_text(
        textwrap.dedent("""
        from bus import Contract

        class Fined(Contract, event_type="gatetest.ticket.fined.v1", minor=0):
            amount: int
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    runner = CliRunner()
    assert runner.invoke(app, ["contracts", "check", "--schemas", "deptcontracts"]).exit_code == 1
    assert (
        runner.invoke(app, ["contracts", "snapshot", "--schemas", "deptcontracts"]).exit_code == 0
    )
    assert runner.invoke(app, ["contracts", "check", "--schemas", "deptcontracts"]).exit_code == 0

    # Now an incompatible edit, as a developer would make it (a new minor that retypes a field).
    module.write_text(
        module.read_text().replace("minor=0", "minor=1").replace("amount: int", "amount: str")
    )
    for name in [m for m in sys.modules if m.startswith("deptcontracts")]:
        del sys.modules[name]
    default_registry._by_type.pop("gatetest.ticket.fined.v1")  # the test re-declares the type
    result = runner.invoke(app, ["contracts", "check", "--schemas", "deptcontracts", "--json"])
    assert result.exit_code == 1
    problems = [p["problem"] for p in json.loads(result.stdout)]
    assert "1.1 breaks snapshot 1.0: amount: retyped from integer to string" in problems
    refused = runner.invoke(app, ["contracts", "snapshot", "--schemas", "deptcontracts"])
    assert refused.exit_code == 1
    assert "1.1 would break snapshot 1.0: amount: retyped from integer to string" in refused.output
    assert "gatetest.ticket.fined.v2" in refused.output
    assert not (package / "snapshots" / "gatetest.ticket.fined.v1" / "1.1.json").exists()
    default_registry._by_type.pop("gatetest.ticket.fined.v1")
