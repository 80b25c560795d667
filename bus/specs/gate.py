"""The compatibility gate: every contract against the JSON Schema snapshots of its major version.

Within one major version, events of every minor must be readable by consumers built against
any other minor (archives are replayed, services upgrade at different times). So the only
change allowed between minors is a new **optional** field. Everything else breaks a snapshot:

* a field removed (a rename is a removal plus an addition);
* a field's schema changed in any way (type, format, pattern, bounds, enum values, nesting),
  documentation keywords aside — a widened enum breaks consumers that reject the new value as
  surely as a narrowed one breaks the replay of old events;
* a new required field, or a field that is no longer required;
* a personal marking removed (``x-personal`` on a field, ``x-personal-subject`` on the contract):
  what earlier minors' events hold is masked by that marking wherever it is shown. Adding a
  marking is compatible (a new minor): it only masks more.

A breaking change is a new type, ``<dept>.<aggregate>.<verb>.v<major+1>``, published beside the
old one for a deprecation window (docs/contracts.md).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bus.contracts import Contract
from bus.errors import ConfigurationError

# Personal markings: may be added in a minor version, never removed (see the module's note).
_PRIVACY = ("x-personal", "x-personal-subject")
# Keywords that document a schema without constraining it.
_DOCUMENTATION = frozenset({"title", "description", "examples", "default", *_PRIVACY})
_NESTING = frozenset(
    {
        "properties",
        "required",
        "additionalProperties",
        "items",
        "anyOf",
        "oneOf",
        "allOf",
        "$ref",
        "$defs",
        "prefixItems",
    }
)


@dataclass(frozen=True)
class Problem:
    """One reason the gate fails, phrased for the developer who must fix it."""

    event_type: str
    message: str

    def __str__(self) -> str:
        return f"{self.event_type}: {self.message}"


def snapshot_of(model: type[Contract]) -> dict[str, Any]:
    info = model.__contract__
    return {
        "type": info.event_type,
        "minor": info.minor,
        "owner": info.owner,
        "classification": info.classification.value,
        "personal_fields": sorted(info.personal_fields),
        "schema": model.model_json_schema(),
    }


def snapshot_path(root: Path, event_type: str, minor: int) -> Path:
    major = event_type.rsplit(".v", 1)[1]
    return root / event_type / f"{major}.{minor}.json"


def write_snapshots(models: Iterable[type[Contract]], root: Path) -> list[Path]:
    """Write the snapshot of each model's current minor if missing; return the files written.

    An existing snapshot is never overwritten: a published version is immutable. A minor that
    breaks an earlier one is refused (ConfigurationError naming each change): nothing is written.
    """
    models = list(models)
    unsafe = unsafe_snapshots(models, root)
    if unsafe:
        raise ConfigurationError("; ".join(str(p) for p in unsafe))
    written = []
    for model in models:
        info = model.__contract__
        path = snapshot_path(root, info.event_type, info.minor)
        if path.exists():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(snapshot_of(model), indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written


def check(models: Iterable[type[Contract]], root: Path) -> list[Problem]:
    """Every problem of every contract against the committed snapshots."""
    models = list(models)
    problems = [p for model in models for p in _check_model(model, root)]
    known = {m.__contract__.event_type for m in models}
    if root.exists():
        for folder in sorted(root.iterdir()):
            if folder.is_dir() and folder.name not in known:
                problems.append(
                    Problem(
                        folder.name,
                        "has published snapshots but no contract: "
                        "a published type must stay until its deprecation "
                        "window ends (then delete its snapshots too)",
                    )
                )
    return problems


def _check_model(model: type[Contract], root: Path) -> Iterator[Problem]:
    info = model.__contract__
    current = snapshot_of(model)
    snapshots = _load(root / info.event_type)
    mine = snapshots.get(info.minor)
    if mine is None:
        yield Problem(
            info.event_type,
            f"no snapshot of minor {info.minor}: run `simpul contracts snapshot` and commit it",
        )
    elif mine["schema"] != current["schema"]:
        yield from _edited(model, mine["schema"], current["schema"])
    for minor, snapshot in sorted(snapshots.items()):
        if minor > info.minor:
            yield Problem(
                info.event_type,
                f"snapshot {info.major}.{minor} is newer than the "
                f"contract's minor {info.minor}: minors only go up",
            )
        elif minor < info.minor:
            for path, change in breaking_changes(snapshot["schema"], current["schema"]):
                yield Problem(
                    info.event_type,
                    f"{info.major}.{info.minor} breaks snapshot "
                    f"{info.major}.{minor}: {path or '(payload)'}: {change}",
                )


def _edited(model: type[Contract], old: dict[str, Any], new: dict[str, Any]) -> Iterator[Problem]:
    """A published minor was edited in place: say what changed and which way out is open, so
    the first `check` names the field instead of suggesting a minor that `snapshot` refuses."""
    info = model.__contract__
    published = f"changed since its snapshot {info.major}.{info.minor} was published"
    changes = breaking_changes(old, new)
    for path, change in changes:
        message = f"{published}: {path or '(payload)'}: {change}. A breaking change: "
        message += f"publish it as a new type, {_successor(model)} (minor=0), beside this one, "
        message += "and undo the edit here (docs/contracts.md)"
        yield Problem(info.event_type, message)
    if changes:
        return
    added = sorted(new.get("properties", {}).keys() - old.get("properties", {}).keys())
    what = f"new optional field {', '.join(added)}" if added else "a compatible change"
    message = f"{published}: {what}: bump `minor` to {info.minor + 1}, then run "
    yield Problem(info.event_type, message + "`simpul contracts snapshot` and commit it")


def unsafe_snapshots(models: Iterable[type[Contract]], root: Path) -> list[Problem]:
    """Why a snapshot of a contract's current minor must not be written: it breaks an earlier
    minor of its major. A published snapshot is immutable, so refusing now is the only chance."""
    problems = []
    for model in models:
        info = model.__contract__
        if snapshot_path(root, info.event_type, info.minor).exists():
            continue
        current = snapshot_of(model)["schema"]
        earlier = {m: s for m, s in _load(root / info.event_type).items() if m < info.minor}
        for minor, snapshot in sorted(earlier.items()):
            for path, change in breaking_changes(snapshot["schema"], current):
                message = f"{info.major}.{info.minor} would break snapshot {info.major}.{minor}: "
                message += f"{path or '(payload)'}: {change}. Not a minor: publish it as "
                message += f"{_successor(model)} (minor=0) beside this type"
                problems.append(Problem(info.event_type, message))
    return problems


def _successor(model: type[Contract]) -> str:
    info = model.__contract__
    return f"{info.event_type.rsplit('.v', 1)[0]}.v{info.major + 1}"


def _load(folder: Path) -> dict[int, dict[str, Any]]:
    if not folder.is_dir():
        return {}
    found = {}
    for path in folder.glob("*.json"):
        snapshot = json.loads(path.read_text())
        found[int(snapshot["minor"])] = snapshot
    return found


def breaking_changes(old: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, str]]:
    """(field path, change) pairs that make ``new`` unable to stand in for ``old``."""
    return list(_Comparison(old, new).compare(old, new, "", frozenset()))


class _Comparison:
    def __init__(self, old_root: dict[str, Any], new_root: dict[str, Any]) -> None:
        self.roots = (old_root, new_root)

    def compare(
        self, old: dict[str, Any], new: dict[str, Any], path: str, seen: frozenset[tuple[str, str]]
    ) -> Iterator[tuple[str, str]]:
        refs = (old.get("$ref", ""), new.get("$ref", ""))
        if refs in seen and refs != ("", ""):  # a recursive model: this pair is being compared
            return
        seen = seen | {refs}
        old, new = self._resolve(old, 0), self._resolve(new, 1)
        yield from self._keywords(old, new, path)
        yield from self._properties(old, new, path, seen)
        if "items" in old or "items" in new:
            yield from self.compare(old.get("items", {}), new.get("items", {}), f"{path}[]", seen)
        for keyword in ("anyOf", "oneOf", "allOf"):
            yield from self._variants(old.get(keyword), new.get(keyword), path, keyword, seen)

    def _resolve(self, schema: dict[str, Any], side: int) -> dict[str, Any]:
        ref = schema.get("$ref")
        if not ref:
            return schema
        node: Any = self.roots[side]
        for part in ref.removeprefix("#/").split("/"):
            node = node[part]
        return {**node, **{k: v for k, v in schema.items() if k != "$ref"}}

    def _keywords(
        self, old: dict[str, Any], new: dict[str, Any], path: str
    ) -> Iterator[tuple[str, str]]:
        for key in _PRIVACY:
            if old.get(key) and not new.get(key):
                yield path, f"{key} removed: events of earlier minors were masked as personal"
        keys = (old.keys() | new.keys()) - _DOCUMENTATION - _NESTING
        for key in sorted(keys):
            before, after = old.get(key), new.get(key)
            if before == after:
                continue
            if key == "enum" and before is not None and after is not None:
                removed = [v for v in before if v not in after]
                added = [v for v in after if v not in before]
                what = "narrowed (removed " if removed else "widened (added "
                yield path, f"enum {what}{removed or added}); earlier events or consumers reject it"
            elif key == "type":
                yield path, f"retyped from {before} to {after}"
            else:
                yield path, f"{key} changed from {before!r} to {after!r}"

    def _properties(
        self, old: dict[str, Any], new: dict[str, Any], path: str, seen: frozenset[tuple[str, str]]
    ) -> Iterator[tuple[str, str]]:
        before, after = old.get("properties", {}), new.get("properties", {})
        required_before, required_after = set(old.get("required", ())), set(new.get("required", ()))
        prefix = f"{path}." if path else ""
        for name, schema in before.items():
            if name not in after:
                yield f"{prefix}{name}", "removed (or renamed): consumers of earlier minors need it"
            else:
                yield from self.compare(schema, after[name], f"{prefix}{name}", seen)
        for name in sorted(required_after - required_before):
            yield f"{prefix}{name}", "new required field: earlier events don't have it"
        for name in sorted((required_before - required_after) & after.keys()):
            yield f"{prefix}{name}", "no longer required: consumers of earlier minors expect it"

    def _variants(
        self,
        before: list[dict[str, Any]] | None,
        after: list[dict[str, Any]] | None,
        path: str,
        keyword: str,
        seen: frozenset[tuple[str, str]],
    ) -> Iterator[tuple[str, str]]:
        if before is None and after is None:
            return
        if before is None or after is None or len(before) != len(after):
            yield path, f"{keyword} alternatives changed (e.g. a field made nullable or not)"
            return
        for old, new in zip(before, after, strict=True):
            yield from self.compare(old, new, path, seen)
