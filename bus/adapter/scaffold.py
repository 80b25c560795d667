"""``simpul adapter new``: write an adapter skeleton and its test for a department.

The skeleton maps to a real contract of the department: the one in ``schemas/<dept>.py`` with
the fewest nested fields, then the fewest fields, that has a valid example in
``schemas/examples/`` — the example becomes the sample row, so the generated test passes as
generated. A department without contracts gets a mapper that raises a TODO, and a test that
fails until it is filled in.

``--kind sql`` reads a table (``bus.adapter.sources.sql``), ``--kind csv`` a drop folder of exports
(``bus.adapter.sources.csvdrop``), ``--kind webhook`` serves an HTTP endpoint
(``bus.adapter.sources.webhook``). Where the installed Simpul lacks the source module of a kind, the
skeleton has the mapper and its test, and a ``source()`` that says what is missing.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import keyword
import re
import textwrap
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from string import Template
from typing import Any, Literal

from bus.contracts import Contract
from bus.errors import ConfigurationError
from bus.specs.catalogue import example_of

__all__ = ["KINDS", "Scaffold", "plan", "write"]

Kind = Literal["sql", "webhook", "csv"]
KINDS: tuple[Kind, ...] = ("sql", "webhook", "csv")
_SOURCE_MODULES = {
    "sql": "bus.adapter.sources.sql",
    "webhook": "bus.adapter.sources.webhook",
    "csv": "bus.adapter.sources.csvdrop",
}
_KIND_TEXT = {"webhook": "requests the legacy app POSTs", "csv": "rows of exported CSV files"}
_DEPT = re.compile(r"^[a-z][a-z0-9_]{1,29}$")
# Names that would shadow a package of ours or a module beside the adapters.
_RESERVED = frozenset(
    {
        "bus",
        "schemas",
        "adapters",
        "services",
        "tests",
        "test",
        "bench",
        "synthetic",
        "data",
        "common",
        "fixtures",
    }
)


_TODO_BODY = """\
    raise NotImplementedError(
        f"TODO: map the columns ({', '.join(row)}) to a contract of $dept: "
        "write the contract in schemas/$dept.py first"
    )"""


@dataclass(frozen=True)
class _Pick:
    model: type[Contract]
    example: dict[str, Any]


@dataclass(frozen=True)
class Scaffold:
    """What ``simpul adapter new`` will write: file path -> content, relative to ``root``."""

    dept: str
    kind: Kind
    root: Path
    package: str  # the adapter's import name, e.g. adapters.dinsos
    files: dict[Path, str]
    contract: str | None  # the event type the skeleton maps to, None if left TODO

    def next_steps(self) -> list[str]:
        folder, env = self.package.replace(".", "/"), f"SIMPUL_{self.dept.upper()}"
        test = next(p for p in self.files if p.name == f"test_{self.dept}.py")
        if self.contract is None:
            first = f"add {self.dept} contracts to schemas/{self.dept}.py, then fill in {folder}"
        else:
            first = f"rename the sample columns in {folder}/ to your application's"
        # Each step a command that works as printed, in order, from an activated virtualenv
        # with SIMPUL_REDIS_URL set (a developer pastes them; tests/test_tutorials.py runs them).
        run = {
            "sql": [
                f"python -m {self.package}.fixtures app.db   # a sample table to try it on",
                f"{env}_DB=app.db simpul adapter run {self.package}:from_env --once",
            ],
            "csv": [
                f"python -m {self.package}.fixtures drop   # a sample export in drop/incoming",
                f"{env}_DROP=drop simpul adapter run {self.package}:from_env --once",
            ],
            "webhook": [f"simpul adapter serve {self.package}:from_env --port 8080   # Ctrl-C"],
        }[self.kind]
        if not source_available(self.kind):
            run = [f"wire the {self.kind} source once {_SOURCE_MODULES[self.kind]} exists"]
        return [first, f"python -m pytest {test}   # against a private Redis", *run]


def plan(
    dept: str,
    kind: str = "sql",
    *,
    root: Path = Path(),
    adapters_dir: str = "adapters",
    tests_dir: str = "tests/adapters",
) -> Scaffold:
    """Check the request and render the files, writing nothing yet."""
    _check_dept(dept)
    if kind not in KINDS:
        raise ConfigurationError(f"--kind must be one of {', '.join(KINDS)}, got {kind!r}")
    parts = Path(adapters_dir).parts
    if not parts or not all(p.isidentifier() for p in parts):
        raise ConfigurationError(
            f"--dir {adapters_dir!r} must be an importable folder below the project (e.g. "
            "adapters), so that the adapter can be imported as <dir>.<dept>"
        )
    package = ".".join([*parts, dept])
    pick = _pick_contract(dept)
    values = _values(dept, kind, package, pick)
    pkg_dir, test_dir = Path(adapters_dir) / dept, Path(tests_dir)
    test = test_dir / f"test_{dept}.py"
    if kind == "sql":
        rendered = {
            pkg_dir / "__init__.py": _render("sql_init.py", values),
            pkg_dir / "fixtures.py": _render("sql_fixtures.py", values),
            test: _render("sql_test.py", values),
        }
    elif kind == "csv" and source_available(kind):
        rendered = {
            pkg_dir / "__init__.py": _render("csv_init.py", values),
            pkg_dir / "fixtures.py": _render("csv_fixtures.py", values),
            test: _render("csv_test.py", values),
        }
    elif kind == "webhook" and source_available(kind):
        rendered = {
            pkg_dir / "__init__.py": _render("webhook_init.py", values),
            test: _render("webhook_test.py", values),
        }
    else:
        rendered = {
            pkg_dir / "__init__.py": _render("pending_init.py", values),
            test: _render("pending_test.py", values),
        }
    contract = pick.model.__contract__.event_type if pick else None
    return Scaffold(dept, kind, root, package, rendered, contract)


def write(scaffold: Scaffold) -> list[Path]:
    """Write the files (and a missing ``__init__.py`` of the adapters folder); never overwrite."""
    root = scaffold.root
    pkg_dir = next(iter(scaffold.files)).parent
    existing = [p for p in (pkg_dir, *scaffold.files) if (root / p).exists()]
    if existing:
        raise ConfigurationError(
            f"{', '.join(str(p) for p in existing)} already exist(s): `simpul adapter new` never "
            "overwrites; choose another department name or move them away"
        )
    written = []
    init = pkg_dir.parent / "__init__.py"
    if not (root / init).exists():
        (root / init).parent.mkdir(parents=True, exist_ok=True)
        (root / init).write_text('"""Adapters: one package per department application."""\n')
        written.append(init)
    for path, text in scaffold.files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text, encoding="utf-8")
        written.append(path)
    return written


def source_available(kind: str) -> bool:
    """Whether this installation of Simpul has the source module of ``kind``."""
    return importlib.util.find_spec(_SOURCE_MODULES[kind]) is not None


def _check_dept(dept: str) -> None:
    if not _DEPT.match(dept) or keyword.iskeyword(dept):
        raise ConfigurationError(
            f"{dept!r} is not a department code: use 2-30 lowercase letters, digits or _, "
            "starting with a letter, as in dukcapil, dinsos, bapenda"
        )
    if dept in _RESERVED:
        raise ConfigurationError(f"{dept!r} is a name Simpul uses itself: choose another")


def _pick_contract(dept: str) -> _Pick | None:
    """The department's simplest contract that has a valid example, or None."""
    if importlib.util.find_spec(f"schemas.{dept}") is None:
        return None
    module = importlib.import_module(f"schemas.{dept}")
    picks = []
    for model in vars(module).values():
        if not (isinstance(model, type) and issubclass(model, Contract)):
            continue
        info = getattr(model, "__contract__", None)
        if model.__module__ != module.__name__ or info is None or info.owner != dept:
            continue
        example = example_of(model)
        if example is not None:
            picks.append(_Pick(model, example))
    if not picks:
        return None
    return min(picks, key=_simplicity)


def _simplicity(pick: _Pick) -> tuple[int, int, str]:
    """Fewest nested fields (they need JSON in a flat table), then fewest fields."""
    nested = sum(_nested(v) for v in pick.example.values())
    return nested, len(pick.example), pick.model.__contract__.event_type


def _values(dept: str, kind: str, package: str, pick: _Pick | None) -> dict[str, str]:
    values = {
        "dept": dept,
        "DEPT": dept.upper(),
        "title": dept.capitalize(),
        "kind": kind,
        "kind_text": _KIND_TEXT.get(kind, ""),
        "source_module": _SOURCE_MODULES[kind].replace(".", "/") + ".py",
        "package": package,
        "todo_note": "It passes as generated.",
        "contract_todo": "",
    }
    if pick is None:
        return values | {
            "contract_import": "",
            "contract_name": "Contract",
            "contract_todo": f"  # TODO: a contract from schemas/{dept}.py (there is none yet)",
            "table": f"{dept}_record",
            "mapper_doc": "TODO: map the row to your contract.",
            "mapper_body": Template(_TODO_BODY).substitute(dept=dept),
            "sample": '{"payload": "TODO"}',
            "columns_ddl": "    payload    TEXT,     -- TODO: your columns",
            "required": "payload",
            "columns": '("payload",)',
            "todo_note": "It fails, on purpose, until the TODOs are done.",
        }
    info = pick.model.__contract__
    optional = [
        n
        for n, f in pick.model.model_fields.items()
        if n not in pick.example and not f.is_required()
    ]
    doc = "The sample uses the contract's field names: TODO rename them to your application's."
    if optional:
        doc += f" Optional fields not mapped yet: {', '.join(optional)}."
    body = [f"    return {pick.model.__name__}.parse(", "        {"]
    for field, value in pick.example.items():
        body.append(f'            "{field}": {_cell(field, value, text=kind == "csv")},')
    body += ["        }", "    )"]
    required = next(n for n, f in pick.model.model_fields.items() if f.is_required())
    sample = {
        k: json.dumps(v) if _nested(v) else int(v) if isinstance(v, bool) else v
        for k, v in pick.example.items()
    }
    return values | {
        "contract_import": f"\nfrom {pick.model.__module__} import {pick.model.__name__}",
        "contract_name": pick.model.__name__,
        "table": info.event_type.split(".")[1].replace("-", "_"),
        "mapper_doc": "\n    ".join(textwrap.wrap(doc, 92)),
        "mapper_body": "\n".join(body),
        "sample": _literal(sample),
        "columns_ddl": "\n".join(f"    {k:<10} {_sql_type(v)}," for k, v in sample.items()),
        "required": required,
        "columns": _tuple(list(pick.example)),
    }


def _literal(sample: dict[str, Any]) -> str:
    """A dict as Python source, one item a line (JSON's quoting, Python's None)."""
    items = [f"    {json.dumps(k)}: {_py(v)}," for k, v in sample.items()]
    return "\n".join(["{", *items, "}"])


def _tuple(names: list[str]) -> str:
    """A tuple of names as Python source: one line if it fits, else one name a line."""
    one_line = (
        "(" + ", ".join(json.dumps(n) for n in names) + ("," if len(names) == 1 else "") + ")"
    )
    if len(one_line) <= 48:  # beside "COLUMNS = " and its comment
        return one_line
    return "\n".join(["(", *(f"    {json.dumps(n)}," for n in names), ")"])


def _py(value: Any) -> str:
    """A JSON scalar as Python source, quoted the way ruff format would."""
    if value is None:
        return "None"
    if isinstance(value, str) and '"' in value and "'" not in value:
        return repr(value)
    return json.dumps(value, ensure_ascii=False)


def _cell(field: str, value: Any, *, text: bool) -> str:
    """The mapper's expression for one field: JSON text parsed, CSV numbers converted."""
    cell = f'row["{field}"]'
    if _nested(value):
        return f"_json({cell})"
    if text and isinstance(value, int | float) and not isinstance(value, bool):
        return f"{type(value).__name__}({cell})"
    return cell


def _nested(value: Any) -> bool:
    return isinstance(value, dict | list)


def _sql_type(value: Any) -> str:
    if isinstance(value, int):
        return "INTEGER"
    return "REAL" if isinstance(value, float) else "TEXT"


def _render(name: str, values: dict[str, str]) -> str:
    text = files("bus.adapter").joinpath("templates", f"{name}.tmpl").read_text("utf-8")
    return Template(text).substitute(values)
