"""The event catalogue (docs/catalogue.md), rendered from the code by ``simpul contracts docs``.

Every event type with its identity, fields and consumers (the services found at module level of
a services package), and a legend of classifications and of the documented shared types of
``<schemas>.common``. Sorted, no timestamps: CI checks that the committed file is fresh.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import pkgutil
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple, get_args

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from bus import keys
from bus.contracts import Classification
from bus.errors import SimpulError
from bus.privacy import mask_text
from bus.service import Service

CLASSIFICATIONS = {
    Classification.PUBLIC: "may be published as open data",
    Classification.INTERNAL: "for government use; no personal data",
    Classification.PERSONAL: "personal data (UU PDP 27/2022): logs never show personal fields, "
    "the archive may keep metadata only",
    Classification.SPECIFIC: "specific personal data (health, children, ...; UU PDP art. 4(2)): "
    "travels thin, as a reference, not the record",
}
Row = Mapping[str, Any]  # what ``bus.cli.contracts.describe`` says about one contract


class SharedType(NamedTuple):
    """A documented type of ``<schemas>.common``; an ``Annotated`` alias keeps its parts."""

    name: str
    doc: str
    base: Any = None
    metadata: tuple[Any, ...] = ()


class BrokenModule(NamedTuple):
    """A module of a services package that could not be imported (or whose ``create()``
    failed): its name and the error's type and message, identifiers masked."""

    module: str
    error: str


def find_services(
    package: str = "services", *, broken: list[BrokenModule] | None = None
) -> list[Service]:
    """Every ``bus.Service`` of ``package`` and its submodules, by name: module-level services,
    and those a module's ``create()`` builds (the factory ``simpul run MODULE:create`` runs;
    building one opens nothing).

    A module that fails to import raises, unless ``broken`` is given: then it is skipped and
    recorded there, and the services of the other modules are still found (the dashboard's
    flow map draws them and says which module is missing)."""
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        root = importlib.import_module(package)
    except ImportError as exc:
        raise SimpulError(f"cannot import services package {package!r}: {exc}") from exc
    modules = [root]
    walk = pkgutil.walk_packages(
        getattr(root, "__path__", []),
        prefix=f"{package}.",
        onerror=lambda name: _broken(broken, name, sys.exc_info()[1]),
    )
    for info in walk:
        try:
            modules.append(importlib.import_module(info.name))
        except Exception as exc:
            _broken(broken, info.name, exc)
    found = {id(v): v for m in modules for v in vars(m).values() if isinstance(v, Service)}
    for module in modules:
        factory = vars(module).get("create")
        if callable(factory) and getattr(factory, "__module__", None) == module.__name__:
            try:
                built = factory()
            except Exception as exc:
                _broken(broken, module.__name__, exc)
                continue
            if isinstance(built, Service):
                found[id(built)] = built
    by_name = {service.name: service for service in found.values()}  # a factory may be re-exported
    return sorted(by_name.values(), key=lambda s: s.name)


def _broken(broken: list[BrokenModule] | None, module: str, exc: BaseException | None) -> None:
    """Record a module that failed, or raise its error when the caller wants no partial list."""
    if broken is None:
        if isinstance(exc, ImportError):
            raise SimpulError(f"cannot import services module {module!r}: {exc}") from exc
        raise exc if exc is not None else SimpulError(f"cannot import {module!r}")
    # The message of an error raised at import is a developer's text: mask identifiers in it.
    message = mask_text(" ".join(str(exc).split()))[:300] if exc is not None else ""
    error = type(exc).__name__ if exc is not None else "ImportError"
    broken.append(BrokenModule(module, f"{error}: {message}" if message else error))


def example_of(model: type[BaseModel]) -> dict[str, Any] | None:
    """The first valid example of a contract (``<schemas>/examples/<type>/valid-*.json``, beside
    its module, checked by the schema tests), or None if it has none."""
    info = getattr(model, "__contract__", None)
    module = sys.modules.get(model.__module__)
    if info is None or module is None or module.__file__ is None:
        return None
    folder = Path(module.__file__).parent / "examples" / info.event_type
    found = sorted(folder.glob("valid-*.json"))
    if not found:
        return None
    example: dict[str, Any] = json.loads(found[0].read_text(encoding="utf-8"))
    return example


def handled(services: Iterable[Service]) -> dict[str, set[str]]:
    """Service name (its consumer group) -> the event types it handles."""
    by_name: dict[str, set[str]] = {}
    for service in services:
        types = set(service.handlers)
        if service.every is not None:  # on_every: every contract of its streams
            streams = set(service.every_streams)
            types |= {
                m.__contract__.event_type
                for m in service.registry
                if set(m.__contract__.streams) & streams
            }
        by_name.setdefault(service.name, set()).update(types)
    return dict(sorted(by_name.items()))


def consumers(services: Iterable[Service]) -> dict[str, list[str]]:
    """Event type -> the names of the services that consume it, sorted."""
    by_type: dict[str, list[str]] = {}
    for name, types in handled(services).items():
        for event_type in types:
            by_type.setdefault(event_type, []).append(name)
    return dict(sorted(by_type.items()))


def shared_types(package: str = "schemas") -> list[SharedType]:
    """The documented public aliases and classes of ``<package>.common``, in source order."""
    try:
        module = importlib.import_module(f"{package}.common")
        body = ast.parse(inspect.getsource(module)).body
    except (ImportError, OSError, TypeError):
        return []
    found = []
    for node, after in zip(body, [*body[1:], None], strict=True):
        name, doc = _documented(node, after) or ("_", "")
        if name.startswith("_"):
            continue
        if isinstance(node, ast.ClassDef):
            found.append(SharedType(name, doc))
        else:
            base, *metadata = get_args(getattr(module, name, None)) or (None,)
            found.append(SharedType(name, doc, base, tuple(_flatten(metadata))))
    return found


def _documented(node: ast.stmt, after: ast.stmt | None) -> tuple[str, str] | None:
    """A class with a docstring, or ``Name = Annotated[...]`` followed by one: name, doc."""
    match node, after:
        case ast.ClassDef(name=name), _ if doc := ast.get_docstring(node):
            return name, " ".join(doc.split("\n\n")[0].split())
        case ast.Assign(targets=[ast.Name(id=name)], value=ast.Subscript(ast.Name("Annotated"))), (
            ast.Expr(value=ast.Constant(value=str(doc)))
        ):
            return name, " ".join(inspect.cleandoc(doc).split())
    return None


def _flatten(metadata: Iterable[Any]) -> list[Any]:
    """pydantic merges a ``Field(...)`` of an alias into the field's metadata: compare those."""
    return [m for x in metadata for m in (x.metadata if isinstance(x, FieldInfo) else [x])]


def name_types(row: Row, model: type[BaseModel], types: Sequence[SharedType]) -> dict[str, Any]:
    """``row`` with the type of each field declared as a shared alias (NIK, ...) named so."""

    def named(field: Row) -> str:
        info = model.model_fields.get(field["name"])
        found = (t.name for t in types if info is not None and _declared_as(info, t))
        return next(found, str(field["type"]))

    return {**row, "fields": [{**f, "type": named(f)} for f in row["fields"]]}


def _declared_as(info: FieldInfo, alias: SharedType) -> bool:
    """True if the field's type is the alias: same base, all the alias's constraints."""
    same_base = bool(alias.metadata) and info.annotation == alias.base
    return same_base and all(m in info.metadata for m in alias.metadata)


# Event type -> (consumer group, its approved data fields or None for every field), from the
# topology (bus.projection.disclosures): what each subscription's inbox carries.
Approvals = Mapping[str, Sequence[tuple[str, frozenset[str] | None]]]


def approvals_by_type(
    disclosed: Mapping[tuple[str, str], Any],
) -> dict[str, list[tuple[str, frozenset[str] | None]]]:
    """:data:`Approvals` from ``bus.projection.disclosures(topology)``."""
    found: dict[str, list[tuple[str, frozenset[str] | None]]] = {}
    for (group, event_type), disclosure in sorted(disclosed.items()):
        found.setdefault(event_type, []).append((group, disclosure.fields))
    return found


def render(
    rows: Sequence[Row],
    consumed_by: Mapping[str, Sequence[str]],
    types: Sequence[SharedType] = (),
    approvals: Approvals | None = None,
    *,
    routed: bool = False,
    publishers: Mapping[str, Sequence[str]] | None = None,
) -> str:
    """The catalogue as Markdown; ``rows`` are ``describe(model)`` of the contracts;
    ``approvals`` (from the topology) adds each subscription's approved fields, and with
    ``routed`` delivery the inbox it reads them from; ``publishers`` (routed: event type -> the
    principals that may publish it) each one's intake."""
    rows = sorted(rows, key=lambda r: (r["owner"], r["type"]))
    owners = sorted({r["owner"] for r in rows})
    services = {name for names in consumed_by.values() for name in names}
    lines = [
        "# Event catalogue",
        "",
        "<!-- Generated by `simpul contracts docs`; do not edit. CI checks it is fresh. -->",
        "",
        f"Event types: {len(rows)}; departments: {len(owners)}; consuming services: "
        f"{len(services)}. Wire format: [wire-format.md](wire-format.md); machine-readable: "
        "[asyncapi.json](asyncapi.json) (AsyncAPI 3.0).",
        *_legend(types),
        *_index(rows, consumed_by),
    ]
    for owner in owners:
        lines += ["", f"## {owner}"]
        for row in (r for r in rows if r["owner"] == owner):
            lines += _entry(row, consumed_by.get(row["type"], ()))
            lines += _intakes((publishers or {}).get(row["type"], ()), routed)
            lines += _approved(row, (approvals or {}).get(row["type"], ()), routed)
    return "\n".join(lines) + "\n"


def _legend(types: Sequence[SharedType]) -> list[str]:
    lines = ["", "## Legend", "", "| classification | meaning |", "|---|---|"]
    lines += [f"| {c.value} | {text} |" for c, text in CLASSIFICATIONS.items()]
    lines += ["", "**personal** marks a field holding personal data (`x-personal` in its schema)."]
    if types:
        lines += ["", "| shared type | meaning |", "|---|---|"]
        lines += [f"| {t.name} | {_cell(t.doc)} |" for t in types]
    return lines


def _index(rows: Sequence[Row], consumed_by: Mapping[str, Sequence[str]]) -> list[str]:
    lines = ["", "## Index", "", "| event type | version | classification | consumers |"]
    lines.append("|---|---|---|---|")
    for row in rows:
        who = ", ".join(consumed_by.get(row["type"], ())) or "-"
        link = f"[{row['type']}](#{row['type']})"
        lines.append(f"| {link} | {row['version']} | {row['classification']} | {who} |")
    return lines


def _entry(row: Row, consumed_by: Sequence[str]) -> list[str]:
    lines = ["", f'<a id="{row["type"]}"></a>', "", f"### {row['type']}", ""]
    lines += [_cell(row["summary"]), ""] if row["summary"] else []
    lines += [
        f"- version: {row['version']} (`dataschema` `{row['dataschema']}`)",
        f"- owner: {row['owner']}",
        f"- classification: {row['classification']}",
        f"- stream: `{row['stream']}`",
        *(
            ["- subject: **personal** (it identifies a person: masked wherever shown)"]
            if row.get("personal_subject")
            else []
        ),
        f"- consumers: {', '.join(consumed_by) or 'none yet'}",
        "",
        "| field | type | required | personal | description |",
        "|---|---|---|---|---|",
    ]
    for f in row["fields"]:
        cells = [
            f"`{f['name']}`",
            _cell(f["type"]),
            "yes" if f["required"] else "no",
            "**personal**" if f["personal"] else "",
            _cell(f["description"]),
        ]
        lines.append(f"| {' | '.join(cells)} |")
    if row.get("example") is not None:
        example = json.dumps(row["example"], indent=2, ensure_ascii=False)
        lines += ["", "Example payload (invented data):", "", "```json", example, "```"]
    return lines


def _intakes(principals: Sequence[str], routed: bool) -> list[str]:
    """Who publishes the type on the routed bus, and the intake each one writes (decision 0011)."""
    if not routed:
        return []
    if not principals:
        return ["", "Published by no principal of deploy/topology.yaml yet."]
    lines = ["", "Published (deploy/topology.yaml) by, each into its intake:", ""]
    lines += [f"- {who}: `{keys.intake(who)}`" for who in sorted(principals)]
    return lines


def _approved(
    row: Row, approved: Sequence[tuple[str, frozenset[str] | None]], routed: bool
) -> list[str]:
    """Each subscription of the type with the fields its inbox carries (decision 0012) and,
    routed, the inbox's key (decision 0011)."""
    if not approved:
        return []
    lines = [
        "",
        "Subscriptions (deploy/topology.yaml) and the fields each one's inbox carries:",
        "",
    ]
    if routed:
        lines += ["| subscription (group) | inbox | approved fields |", "|---|---|---|"]
    else:
        lines += ["| subscription (group) | approved fields |", "|---|---|"]
    for group, fields in approved:
        if fields is None:
            shown = "every field"
        else:
            shown = ", ".join(
                f"`{f['name']}`" + (" (personal)" if f["personal"] else "")
                for f in row["fields"]
                if f["name"] in fields
            )
        streams = keys.streams(keys.aggregate_of(row["type"]))
        inbox = ", ".join(f"`{keys.inbox(stream, group)}`" for stream in streams)
        lines.append(f"| {group} | {inbox + ' | ' if routed else ''}{shown or 'none'} |")
    return lines


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return " ".join(str(text).split()).replace("|", "\\|")
