"""The city's topology: who may publish which event types, and who may read them.

One YAML file (``deploy/topology.yaml``) names every Redis principal of the bus:

* **departments** — the perangkat daerah that own event types (``code`` is the contract owner);
* **producers** — adapters: a principal, its department, the event types it may publish (each a
  registered contract owned by that department) and the adapter name that keys its checkpoint
  and quarantine;
* **services** — consumers: a principal, its department, its consumer group, and its
  subscriptions, each approved explicitly by the department that owns the type
  (``approved_by`` must be the contract's owner). A service that also publishes lists its types
  like a producer; the archive (``archive: true``) must subscribe to every registered type;
* **operators** — people and tools: ``role: admin`` or ``role: readonly``; and the Redis
  servers' own links under Sentinel: ``role: replication`` (the user a replica's ``masteruser``
  names) and ``role: sentinel`` (the Sentinels' ``auth-user``).

A principal that publishes may list its Ed25519 public keys (``keys:``), which the signing code
reads through :meth:`Topology.signing_keys`. Each principal's Redis password comes from an
environment variable (``password_env``, default ``SIMPUL_REDIS_PASSWORD_<PRINCIPAL>``); the
topology never holds a secret. :mod:`bus.access.acl` renders the Redis ACL file from it.

Every problem is reported at once, each with its path in the file, e.g.
``services[2].subscriptions[0]: unknown event type 'x' — known: ...``.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
)

from bus import keys
from bus.contracts import Contract, Registry, default_registry
from bus.errors import ConfigurationError
from bus.signing import KEY_ID, KeySpec, PublicSigningKey

__all__ = [
    "Department",
    "KeySpec",
    "Operator",
    "Principal",
    "Producer",
    "RouterSpec",
    "ServiceSpec",
    "Subscription",
    "Topology",
    "TopologyError",
    "load_topology",
    "password_variable",
]

# Names end up in ACL rules and key patterns: no glob characters, no spaces.
_PRINCIPAL = r"^[a-z][a-z0-9-]{0,62}$"
_NAME = r"^[a-z][a-z0-9_-]{0,63}$"  # departments, adapters and groups (bus.service._NAME)
_KEY_ID = KEY_ID  # the pattern of keys[].id (bus.signing.KeySpec)
_ENV = r"^[A-Z_][A-Z0-9_]{0,127}$"


class TopologyError(ConfigurationError):
    """The topology file is wrong; ``problems`` lists ``(path, problem)`` pairs."""

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(
            f"  {path}: {problem}" if path else f"  {problem}" for path, problem in problems
        )
        count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        super().__init__(f"topology {source} has {count}:\n{lines}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Department(_Strict):
    code: Annotated[str, Field(pattern=_NAME)]
    name: Annotated[str, Field(min_length=1)]


ALL_FIELDS = "all"  # ``fields: all``: every data field, the personal ones included


class Subscription(_Strict):
    """One event type a service reads, with the owning department's approval.

    What its inbox carries of each event's ``data`` (need-to-know, decision 0012): every field
    the contract does not mark personal, plus the personal ones listed under ``personal`` (the
    owner approves them with the subscription). ``fields`` instead lists exactly the fields
    approved (personal or not); ``fields: all`` approves every field (the archive's default).
    """

    type: str
    approved_by: Annotated[str, Field(pattern=_NAME)]
    personal: list[str] = []
    fields: list[str] | Literal["all"] | None = None


class Principal(_Strict):
    """What every principal has: its ACL user name and its password's variable."""

    principal: Annotated[str, Field(pattern=_PRINCIPAL)]
    password_env: Annotated[str | None, Field(pattern=_ENV)] = None


class Producer(Principal):
    """An adapter: publishes its department's types; owns its checkpoint and quarantine."""

    department: str
    adapter: Annotated[str, Field(pattern=_NAME)]
    publishes: Annotated[list[str], Field(min_length=1)]
    keys: list[KeySpec] = []


class ServiceSpec(Principal):
    """A consuming service: one consumer group, approved subscriptions, maybe publishes too."""

    department: str
    group: Annotated[str, Field(pattern=_NAME)]
    subscriptions: list[Subscription] = []
    publishes: list[str] = []
    archive: bool = False  # reads every stream (the audit): must subscribe to every type
    keys: list[KeySpec] = []


class RouterSpec(Principal):
    """The router (decision 0012): admits events onto department streams and forwards each
    subscription its projection, signed with one of its ``keys`` (which may sign every type
    some principal publishes)."""

    department: str
    keys: list[KeySpec] = []


class Operator(Principal):
    role: Literal["admin", "readonly", "monitor", "exporter", "health", "replication", "sentinel"]


class Topology(_Strict):
    """The validated topology. Build it with :func:`load_topology` or :meth:`parse`."""

    version: Literal[1]
    departments: Annotated[list[Department], Field(min_length=1)]
    producers: list[Producer] = []
    services: list[ServiceSpec] = []
    operators: list[Operator] = []
    router: RouterSpec | None = None
    delivery: Literal["direct", "router"] = "direct"
    _owners: dict[str, str] = PrivateAttr(default_factory=dict)  # event type -> department
    # (group, event type) -> approved data fields (None: every field)
    _approved: dict[tuple[str, str], frozenset[str] | None] = PrivateAttr(default_factory=dict)

    @classmethod
    def parse(
        cls, data: Any, *, registry: Registry | None = None, source: str = "<topology>"
    ) -> Topology:
        """Validate ``data`` (the YAML document as Python objects) against ``registry``
        (default: every contract of the ``schemas`` package). Raises :class:`TopologyError`."""
        if registry is None:
            registry = contracts()
        if not isinstance(data, Mapping):
            raise TopologyError(source, [("", "must be a mapping with version, departments, ...")])
        try:
            topology = cls.model_validate(data)
        except ValidationError as exc:
            raise TopologyError(source, _problems(exc)) from None
        owners = {m.__contract__.event_type: m.__contract__.owner for m in registry}
        checker = _Checker(topology, owners, {m.__contract__.event_type: m for m in registry})
        problems = checker.run()
        if problems:
            raise TopologyError(source, problems)
        topology._owners = owners
        topology._approved = checker.approved
        return topology

    # -- queries ----------------------------------------------------------------------------

    def principals(self) -> list[str]:
        """Every principal, operators first, then producers, then services (file order)."""
        return [p.principal for p in (*self.operators, *self.producers, *self.services)]

    def publishers(self) -> list[Producer | ServiceSpec]:
        """Every principal that may publish (producers, and services with ``publishes``)."""
        return [*self.producers, *(s for s in self.services if s.publishes)]

    @property
    def routed(self) -> bool:
        """Routed delivery (decision 0011, ``delivery: router``): producers write only their
        intakes, the router admits and forwards, services read only their inboxes; the ACL
        render says so. ``direct`` (the default): producers write the department streams and
        services read them as groups."""
        return self.delivery == "router"

    def department_streams(self) -> list[str]:
        """Every department stream key a type of the topology travels on (each partition)."""
        types = {t for p in self.publishers() for t in p.publishes}
        types |= {s.type for v in self.services for s in v.subscriptions}
        return sorted({k for t in types for k in keys.streams(keys.aggregate_of(t))})

    def owner(self, event_type: str) -> str:
        """The department owning a type (as the contracts said when the topology loaded)."""
        return self._owners[event_type]

    def signing_keys(self) -> list[PublicSigningKey]:
        """Every public key of every publishing principal, with the types it may sign; and the
        router's, which may sign (forward) every type some principal publishes."""
        signers: list[tuple[Principal, str, list[KeySpec], frozenset[str]]] = [
            (who, who.department, who.keys, frozenset(who.publishes)) for who in self.publishers()
        ]
        if self.router is not None:
            forwarded = frozenset(t for who in self.publishers() for t in who.publishes)
            signers.append((self.router, self.router.department, self.router.keys, forwarded))
        return [
            PublicSigningKey(
                key_id=key.id,
                principal=who.principal,
                department=department,
                public_key=key.public_key,
                types=types,
                not_before=key.not_before,
                not_after=key.not_after,
            )
            for who, department, specs, types in signers
            for key in specs
        ]

    def approved_fields(self, group: str, event_type: str) -> frozenset[str] | None:
        """The ``data`` fields group's subscription to ``event_type`` may see (None: every
        field). KeyError if the group has no such subscription."""
        return self._approved[(group, event_type)]

    def incidental_reads(self) -> dict[str, list[str]]:
        """Per service principal, the types it can read without an approval.

        Redis ACLs are per key and a stream carries every type of its aggregate: approving
        ``dukcapil.citizen.died.v1`` gives read access to ``simpul:{dukcapil.citizen}``, hence
        to births and moves too. The owner approving one type should know what else it shows.
        Under routed delivery none: a service reads only its inboxes, into which the router
        writes only the approved types (decision 0011).
        """
        found: dict[str, list[str]] = {}
        if self.routed:
            return found
        for service in self.services:
            approved = {s.type for s in service.subscriptions}
            aggregates = {keys.aggregate_of(t) for t in approved}
            extra = sorted(
                t for t in self._owners if keys.aggregate_of(t) in aggregates and t not in approved
            )
            if extra:
                found[service.principal] = extra
        return found

    def uncovered(self, handled: Mapping[str, Iterable[str]]) -> dict[str, list[str]]:
        """Given service name (group) -> the types its code handles (bus.specs.catalogue.handled),
        the types each service handles without an approved subscription in this topology.
        A service missing from the topology has all its types listed."""
        by_group = {s.group: {x.type for x in s.subscriptions} for s in self.services}
        gaps: dict[str, list[str]] = {}
        for group, types in handled.items():
            missing = sorted(set(types) - by_group.get(group, set()))
            if missing:
                gaps[group] = missing
        return gaps


def password_variable(principal: Principal) -> str:
    """The environment variable holding a principal's password:
    ``password_env``, else ``SIMPUL_REDIS_PASSWORD_<PRINCIPAL>`` (``-`` becomes ``_``)."""
    return principal.password_env or "SIMPUL_REDIS_PASSWORD_" + principal.principal.upper().replace(
        "-", "_"
    )


def contracts(package: str = "schemas") -> Registry:
    """The default registry once every module of ``package`` has registered its contracts."""
    try:
        root = importlib.import_module(package)
        for module in pkgutil.walk_packages(root.__path__, prefix=f"{package}."):
            importlib.import_module(module.name)
    except ImportError as exc:
        raise ConfigurationError(f"cannot import contracts package {package!r}: {exc}") from exc
    return default_registry


def load_topology(path: str | Path, *, registry: Registry | None = None) -> Topology:
    """Read and validate a topology YAML file (see the module docstring)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"cannot read topology {path}: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise TopologyError(str(path), [(where, f"not valid YAML: {problem}")]) from None
    return Topology.parse(data, registry=registry, source=str(path))


# -- validation ---------------------------------------------------------------------------------


def _path(loc: Iterable[int | str]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _problems(exc: ValidationError) -> list[tuple[str, str]]:
    problems = []
    for error in exc.errors():
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown field (a typo?)"
        elif error["type"] == "string_pattern_mismatch":
            pattern = error.get("ctx", {}).get("pattern", "")
            message = f"{_PATTERN_HELP.get(pattern, 'has characters that are not allowed')}"
        problems.append((_path(error["loc"]), message))
    return problems


_PATTERN_HELP = {
    _PRINCIPAL: "must be lowercase letters, digits and '-', starting with a letter",
    _NAME: "must be lowercase letters, digits, '_' and '-', starting with a letter",
    _KEY_ID: "must be letters, digits, '.', '_', ':' and '-' (at most 128)",
    _ENV: "must be an environment variable name (A-Z, 0-9, _)",
}


class _Checker:
    """The cross-checks: names unique, references resolve, types exist, approvals match owners."""

    def __init__(
        self,
        topology: Topology,
        owners: Mapping[str, str],
        models: Mapping[str, type[Contract]] | None = None,
    ) -> None:
        self.t = topology
        self.owners = owners
        self.models = models or {}
        self.problems: list[tuple[str, str]] = []
        self.departments = {d.code for d in topology.departments}
        self.approved: dict[tuple[str, str], frozenset[str] | None] = {}

    def run(self) -> list[tuple[str, str]]:
        self._unique("departments", [d.code for d in self.t.departments], "department code")
        self._principals()
        self._unique("producers", [p.adapter for p in self.t.producers], "adapter name")
        self._unique("services", [s.group for s in self.t.services], "consumer group")
        if self.t.delivery == "router" and self.t.router is None:
            self._add("delivery", "delivery through the router needs a router: section")
        for i, service in enumerate(self.t.services):
            if service.group == keys.ROUTER_GROUP:
                self._add(f"services[{i}].group", "group 'router' is the router's own")
        for i, producer in enumerate(self.t.producers):
            self._publisher(f"producers[{i}]", producer)
        for i, service in enumerate(self.t.services):
            self._publisher(f"services[{i}]", service)
            self._subscriptions(f"services[{i}]", service)
        if self.t.router is not None:
            self._department("router.department", self.t.router.department)
        self._keys()
        return self.problems

    def _add(self, path: str, problem: str) -> None:
        self.problems.append((path, problem))

    def _unique(self, section: str, names: list[str], what: str) -> None:
        seen: dict[str, int] = {}
        for i, name in enumerate(names):
            if name in seen:
                self._add(
                    f"{section}[{i}]", f"{what} {name!r} is already used by {section}[{seen[name]}]"
                )
            seen.setdefault(name, i)

    def _principals(self) -> None:
        seen: dict[str, str] = {}
        variables: dict[str, str] = {}
        sections: list[tuple[str, Sequence[Principal]]] = [
            ("operators", self.t.operators),
            ("producers", self.t.producers),
            ("services", self.t.services),
        ]
        if self.t.router is not None:
            sections.append(("router", [self.t.router]))
        for section, members in sections:
            for i, member in enumerate(members):
                path = section if section == "router" else f"{section}[{i}]"
                if member.principal == "default":
                    self._add(path, "principal 'default' is Redis's own user (always off)")
                if member.principal in seen:
                    self._add(
                        path, f"principal {member.principal!r} is already {seen[member.principal]}"
                    )
                seen.setdefault(member.principal, path)
                variable = password_variable(member)
                if variable in variables:
                    self._add(
                        path,
                        f"password variable {variable} is already the one of "
                        f"{variables[variable]}: every principal needs its own",
                    )
                variables.setdefault(variable, path)

    def _department(self, path: str, code: str) -> bool:
        if code in self.departments:
            return True
        self._add(path, f"unknown department {code!r} — declared: {_listing(self.departments)}")
        return False

    def _known(self, path: str, event_type: str) -> bool:
        if event_type in self.owners:
            return True
        self._add(path, f"unknown event type {event_type!r} — known: {_listing(self.owners)}")
        return False

    def _publisher(self, path: str, who: Producer | ServiceSpec) -> None:
        known_department = self._department(f"{path}.department", who.department)
        seen: set[str] = set()
        for j, event_type in enumerate(who.publishes):
            where = f"{path}.publishes[{j}]"
            if event_type in seen:
                self._add(where, f"{event_type} is listed twice")
            seen.add(event_type)
            if not self._known(where, event_type):
                continue
            owner = self.owners[event_type]
            if known_department and owner != who.department:
                self._add(
                    where,
                    f"{event_type} is owned by {owner}, not by {who.department}: "
                    "a principal publishes only its own department's types",
                )
        if who.keys and not who.publishes:
            self._add(f"{path}.keys", "a principal that publishes nothing has nothing to sign")

    def _subscriptions(self, path: str, service: ServiceSpec) -> None:
        seen: set[str] = set()
        for j, sub in enumerate(service.subscriptions):
            where = f"{path}.subscriptions[{j}]"
            if sub.type in seen:
                self._add(where, f"{sub.type} is listed twice")
            seen.add(sub.type)
            if not self._known(where, sub.type):
                continue
            owner = self.owners[sub.type]
            if sub.approved_by not in self.departments:
                self._add(
                    f"{where}.approved_by",
                    f"unknown department {sub.approved_by!r} — "
                    f"declared: {_listing(self.departments)}",
                )
            elif sub.approved_by != owner:
                self._add(
                    f"{where}.approved_by",
                    f"{sub.type} is owned by {owner}: only "
                    f"{owner} can approve reading it, not {sub.approved_by}",
                )
            self._fields(where, service, sub, owner)
        if service.archive:
            missing = sorted(set(self.owners) - seen)
            if missing:
                self._add(
                    f"{path}.subscriptions",
                    "an archive reads every stream, so it must "
                    f"subscribe to every registered type; missing: {', '.join(missing)}",
                )
        elif not service.subscriptions:
            self._add(f"{path}.subscriptions", "a service needs at least one subscription")

    def _fields(self, where: str, service: ServiceSpec, sub: Subscription, owner: str) -> None:
        """The approved fields: known to the contract, listed once, personal ones approved by
        the owner. Records what the subscription may see in :attr:`approved`."""
        model = self.models.get(sub.type)
        if model is None:  # a registry without models (tests): every field, unchecked
            self.approved[(service.group, sub.type)] = None
            return
        declared = list(model.model_fields)
        personal = {p for p in model.__contract__.personal_fields if "." not in p}
        self._listed(f"{where}.personal", sub.type, sub.personal, declared)
        plain = [name for name in sub.personal if name in declared and name not in personal]
        if plain:
            self._add(
                f"{where}.personal",
                f"{', '.join(plain)} of {sub.type} not personal: "
                "every subscription sees the contract's other fields",
            )
        approved: frozenset[str] | None
        if isinstance(sub.fields, list):
            if sub.personal:
                self._add(
                    f"{where}.personal",
                    "give either fields (the exact list) or personal "
                    "(added to the non-personal fields), not both",
                )
            self._listed(f"{where}.fields", sub.type, sub.fields, declared)
            approved = frozenset(sub.fields)
        elif sub.fields == ALL_FIELDS or service.archive:
            approved = None
        else:
            approved = frozenset(n for n in declared if n not in personal or n in sub.personal)
        shown = set(declared) if approved is None else set(approved)
        if sub.approved_by != owner and shown & personal:
            names = ", ".join(sorted(shown & personal))
            self._add(
                f"{where}.approved_by",
                f"personal field(s) {names} of {sub.type}: only "
                f"its owner {owner} can approve them, not {sub.approved_by}",
            )
        self.approved[(service.group, sub.type)] = approved

    def _listed(self, path: str, event_type: str, names: list[str], declared: list[str]) -> None:
        seen: set[str] = set()
        for k, name in enumerate(names):
            if name in seen:
                self._add(f"{path}[{k}]", f"field {name!r} is listed twice")
            seen.add(name)
            if name not in declared:
                self._add(
                    f"{path}[{k}]",
                    f"unknown field {name!r} of {event_type} — its fields: {', '.join(declared)}",
                )

    def _keys(self) -> None:
        seen: dict[str, str] = {}
        sections: list[tuple[str, Sequence[Producer | ServiceSpec | RouterSpec]]] = [
            ("producers", self.t.producers),
            ("services", self.t.services),
        ]
        if self.t.router is not None:
            sections.append(("router", [self.t.router]))
        for section, members in sections:
            for i, member in enumerate(members):
                for j, key in enumerate(member.keys):
                    where = "router" if section == "router" else f"{section}[{i}]"
                    path = f"{where}.keys[{j}]"
                    if key.id in seen:
                        self._add(path, f"key id {key.id!r} is already used by {seen[key.id]}")
                    seen.setdefault(key.id, path)
                    if key.not_before and key.not_after and key.not_after <= key.not_before:
                        self._add(path, "not_after must be later than not_before")


def _listing(names: Iterable[str]) -> str:
    return ", ".join(sorted(names)) or "(none)"
