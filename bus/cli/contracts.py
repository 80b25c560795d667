"""``simpul contracts ...``: list, show, export and gate the shared data contracts."""

from __future__ import annotations

import importlib
import json
import pkgutil
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from bus.access.topology import load_topology
from bus.cli.common import AsJson, fail, import_from_cwd
from bus.contracts import Contract, default_registry
from bus.errors import SimpulError, UnknownEventType
from bus.projection import disclosures
from bus.specs import asyncapi, catalogue
from bus.specs.gate import check, snapshot_of, unsafe_snapshots, write_snapshots

DEFAULT_TOPOLOGY = Path("deploy/topology.yaml")  # its approvals go into the catalogue

app = typer.Typer(
    help="The shared data contracts: list, show, export, check.", no_args_is_help=True
)
_out = Console()
_err = Console(stderr=True, soft_wrap=True)

Package = Annotated[str, typer.Option("--schemas", help="package holding the contracts")]
Services = Annotated[str, typer.Option("--services", help="package holding the services")]


def load(package: str = "schemas") -> list[type[Contract]]:
    """Import every module of ``package`` so its contracts register; return them sorted."""
    import_from_cwd()
    try:
        root = importlib.import_module(package)
    except ImportError as exc:
        raise SimpulError(f"cannot import contracts package {package!r}: {exc}") from exc
    for module in pkgutil.walk_packages(root.__path__, prefix=f"{package}."):
        importlib.import_module(module.name)
    prefix = f"{package}."
    return [m for m in default_registry if m.__module__.startswith(prefix)]


def load_or_warn(package: str, console: Console) -> None:
    """:func:`load`, or a warning on ``console`` when ``package`` cannot be loaded: a command
    that reads Redis then finds streams in Redis only (and masks every identifier-like value)."""
    try:
        load(package)
    except SimpulError as exc:
        console.print(f"[yellow]warning:[/yellow] {exc}; streams are found in Redis only")


def snapshot_root(package: str = "schemas") -> Path:
    return Path(importlib.import_module(package).__path__[0]) / "snapshots"


def describe(model: type[Contract]) -> dict[str, Any]:
    """What the CLI and the catalogue say about one contract."""
    info = model.__contract__
    schema = model.model_json_schema()
    required = set(schema.get("required", ()))
    defs = schema.get("$defs", {})
    return {
        "type": info.event_type,
        "version": f"{info.major}.{info.minor}",
        "owner": info.owner,
        "classification": info.classification.value,
        "stream": info.stream,
        "partitions": info.partitions,  # > 1: the stream is split, simpul:{<aggregate>.p<k>}
        "dataschema": info.dataschema,
        "summary": (model.__doc__ or "").strip().split("\n")[0],
        "personal_fields": sorted(info.personal_fields),
        "personal_subject": info.personal_subject,
        "fields": [
            {
                "name": name,
                "type": _type_name(prop, defs),
                "required": name in required,
                "personal": name in info.personal_fields,
                "description": prop.get("description", ""),
            }
            for name, prop in schema.get("properties", {}).items()
        ],
        "example": catalogue.example_of(model),
    }


def _type_name(prop: dict[str, Any], defs: dict[str, Any]) -> str:
    """A field's type for people; an enum class with its codes, which are what goes on the wire
    (``Education: "sd" | "smp"``): the class name alone says nothing outside Python."""
    if "$ref" in prop:
        name = str(prop["$ref"]).rsplit("/", 1)[1]
        codes = defs.get(name, {}).get("enum")
        return f"{name}: {_codes(codes)}" if codes else name
    if "anyOf" in prop:
        return " | ".join(_type_name(p, defs) for p in prop["anyOf"])
    if prop.get("type") == "array":
        return f"list[{_type_name(prop.get('items', {}), defs)}]"
    if "enum" in prop:
        return _codes(prop["enum"])
    return str(prop.get("format") or prop.get("type") or "any")


def _codes(values: list[Any]) -> str:
    return " | ".join(json.dumps(v) for v in values)


@app.command("list")
def list_(package: Package = "schemas", as_json: AsJson = False) -> None:
    """Every event type with its version, owner and classification."""
    try:
        rows = [describe(m) for m in load(package)]
    except SimpulError as exc:
        raise fail(_err, exc) from None
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table(title=f"{len(rows)} contracts")
    for column in ("type", "version", "owner", "classification", "personal fields", "stream"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["type"],
            row["version"],
            row["owner"],
            row["classification"],
            ", ".join(row["personal_fields"]) or "-",
            row["stream"],
        )
    _out.print(table)


@app.command()
def show(
    event_type: Annotated[str, typer.Argument(help="e.g. dukcapil.citizen.died.v1")],
    package: Package = "schemas",
    as_json: AsJson = False,
) -> None:
    """One contract: its identity, fields and JSON Schema."""
    try:
        load(package)
        model = default_registry.resolve(event_type)
    except (SimpulError, UnknownEventType) as exc:
        raise fail(_err, exc) from None
    row = describe(model)
    if as_json:
        print(json.dumps({**row, "schema": model.model_json_schema()}, indent=2))
        return
    _out.print(f"[bold]{row['type']}[/bold] {row['version']} — {row['summary']}")
    _out.print(
        f"owner {row['owner']}, classification {row['classification']}, stream {row['stream']}"
    )
    table = Table()
    for column in ("field", "type", "required", "personal", "description"):
        table.add_column(column)
    for f in row["fields"]:
        table.add_row(
            f["name"],
            f["type"],
            "yes" if f["required"] else "no",
            "yes" if f["personal"] else "",
            f["description"],
        )
    _out.print(table)
    if row["example"] is not None:
        _out.print("example payload (the event's data):")
        _out.print_json(data=row["example"])


@app.command()
def export(
    directory: Annotated[Path, typer.Argument(help="where to write <type>.json files")],
    package: Package = "schemas",
) -> None:
    """Write the JSON Schema (with identity and classification) of every contract."""
    try:
        models = load(package)
    except SimpulError as exc:
        raise fail(_err, exc) from None
    directory.mkdir(parents=True, exist_ok=True)
    for model in models:
        path = directory / f"{model.__contract__.event_type}.json"
        path.write_text(json.dumps(exported(model), indent=2, sort_keys=True) + "\n")
    _err.print(f"wrote {len(models)} schemas to {directory}")


JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"  # what pydantic writes


def exported(model: type[Contract]) -> dict[str, Any]:
    """What ``simpul contracts export`` writes for a contract (docs/wire-format.md, 2.3)."""
    info = model.__contract__
    schema = {"$schema": JSON_SCHEMA_DIALECT, **model.model_json_schema()}
    return {
        **snapshot_of(model),
        "dataschema": info.dataschema,
        "stream": info.stream,
        "personal_subject": info.personal_subject,
        "schema": schema,
        "consumer_schema": tolerant(schema),
    }


def tolerant(schema: Any) -> Any:
    """``schema`` without ``additionalProperties: false``: consumers must accept the optional
    fields a newer minor version adds (producers keep the strict schema)."""
    if isinstance(schema, dict):
        return {
            name: tolerant(value)
            for name, value in schema.items()
            if not (name == "additionalProperties" and value is False)
        }
    if isinstance(schema, list):
        return [tolerant(item) for item in schema]
    return schema


@app.command("check")
def check_(package: Package = "schemas", as_json: AsJson = False) -> None:
    """Fail (exit 1) if a contract is incompatible with a snapshot of its major version."""
    try:
        models = load(package)
    except SimpulError as exc:
        raise fail(_err, exc) from None
    problems = check(models, snapshot_root(package))
    if as_json:
        print(
            json.dumps([{"type": p.event_type, "problem": p.message} for p in problems], indent=2)
        )
    else:
        for problem in problems:
            _err.print(f"[red]✗[/red] {problem}")
        if not problems:
            _err.print(f"[green]✓[/green] {len(models)} contracts compatible with their snapshots")
    if problems:
        raise typer.Exit(1)


@app.command()
def snapshot(package: Package = "schemas") -> None:
    """Record the JSON Schema of each contract's current minor (never overwrites; refuses a
    minor that breaks an earlier one, writing nothing)."""
    try:
        models = load(package)
    except SimpulError as exc:
        raise fail(_err, exc) from None
    root = snapshot_root(package)
    refused = unsafe_snapshots(models, root)
    for problem in refused:
        _err.print(f"[red]✗[/red] {problem}")
    if refused:
        _err.print("nothing written: a published snapshot is immutable")
        raise typer.Exit(1)
    for path in write_snapshots(models, root):
        _err.print(f"wrote {path}")


def docs_files(
    package: str = "schemas",
    services: str = "services",
    topology: Path | None = DEFAULT_TOPOLOGY,
) -> dict[str, str]:
    """The generated documentation: file name -> text (catalogue.md, asyncapi.json), with each
    subscription's approved fields when ``topology`` exists (decision 0012), and with routed
    delivery each principal's intake and each subscription's inbox (decision 0011)."""
    models = load(package)
    found = catalogue.find_services(services)
    types = catalogue.shared_types(package)
    rows = [catalogue.name_types(describe(m), m, types) for m in models]
    approvals = intakes = None
    if topology is not None and topology.exists():
        spec = load_topology(topology)
        approvals = catalogue.approvals_by_type(disclosures(spec))
        if spec.delivery == "router":
            intakes = {who.principal: list(who.publishes) for who in spec.publishers()}
    return {
        "catalogue.md": catalogue.render(
            rows,
            catalogue.consumers(found),
            types,
            approvals,
            routed=intakes is not None,
            publishers=_publishers(intakes or {}),
        ),
        "asyncapi.json": asyncapi.render(asyncapi.document(models, found, approvals, intakes)),
    }


def _publishers(intakes: dict[str, list[str]]) -> dict[str, list[str]]:
    """Principal -> types, as event type -> principals."""
    found: dict[str, list[str]] = {}
    for principal, types in intakes.items():
        for event_type in types:
            found.setdefault(event_type, []).append(principal)
    return found


@app.command()
def docs(
    check_only: Annotated[
        bool, typer.Option("--check", help="only check the files are fresh (exit 1 if not)")
    ] = False,
    package: Package = "schemas",
    services: Services = "services",
    out: Annotated[Path, typer.Option("--out", help="directory of the files")] = Path("docs"),
    topology: Annotated[
        Path,
        typer.Option(
            "--topology", help="the approved fields of each subscription (if the file exists)"
        ),
    ] = DEFAULT_TOPOLOGY,
) -> None:
    """Write the event catalogue (catalogue.md) and the AsyncAPI document (asyncapi.json)."""
    try:
        files = docs_files(package, services, topology)
    except SimpulError as exc:
        raise fail(_err, exc) from None
    if check_only:
        _check_fresh(files, out, _docs_command(package, services, out))
        return
    out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (out / name).write_text(text, encoding="utf-8")
        _err.print(f"wrote {out / name}")


def _check_fresh(files: dict[str, str], out: Path, command: str) -> None:
    """Exit 1 naming each file of ``out`` that differs from what would be generated."""
    stale = [out / name for name, text in files.items() if _read(out / name) != text]
    for path in stale:
        _err.print(f"[red]✗[/red] {path} is stale: run `{command}`")
    if stale:
        raise typer.Exit(1)
    _err.print(f"[green]✓[/green] {', '.join(str(out / n) for n in files)} up to date")


def _docs_command(package: str, services: str, out: Path) -> str:
    given = {"--schemas": package, "--services": services, "--out": str(out)}
    defaults = {"--schemas": "schemas", "--services": "services", "--out": "docs"}
    return " ".join(
        ["simpul contracts docs", *(f"{k} {v}" for k, v in given.items() if v != defaults[k])]
    )


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
