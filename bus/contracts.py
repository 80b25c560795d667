"""Data contracts: the pydantic base every event payload derives from, and the type registry.

A contract is declared once, with its wire identity in the class statement::

    class CitizenDied(Contract, event_type="dukcapil.citizen.died.v1", minor=0,
                      owner="dukcapil", classification=Classification.PERSONAL):
        nik: Annotated[NIK, PERSONAL]
        date_of_death: date

Producers validate strictly (``extra="forbid"``); consumers validate with a tolerant twin of
the model that ignores fields added by a newer minor version.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Self, cast, get_args

from pydantic import BaseModel, ConfigDict, GetJsonSchemaHandler, ValidationError

# pydantic's model metaclass lives in a private module (tests/bus/test_contract_errors.py
# fails if an upgrade moves it or stops calling it for a constructor).
from pydantic._internal._model_construction import ModelMetaclass
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from bus import keys
from bus.errors import ConfigurationError, ContractViolation, UnknownEventType

# In the fields-set of an instance that skipped validation (not an identifier: never a field).
UNCHECKED = "<unchecked>"
DATASCHEMA_PATTERN = re.compile(r"^simpul:([a-z][a-z0-9_.-]*):([1-9][0-9]*)\.([0-9]+)$")


class Classification(enum.StrEnum):
    """Data classification in the sense of UU PDP 27/2022."""

    PUBLIC = "public"
    INTERNAL = "internal"
    PERSONAL = "personal"
    SPECIFIC = "specific"  # health, children, ...: travels as a reference, not as the record


class _Personal:
    """Marker for ``Annotated[..., PERSONAL]``: the field holds personal data.

    It shows in the JSON Schema as ``"x-personal": true`` so catalogues and non-Python tools
    see it too.
    """

    def __repr__(self) -> str:
        return "PERSONAL"

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {**handler(schema), "x-personal": True}


PERSONAL = _Personal()
# JSON Schema keyword on a contract's root: the ``subject`` of its events is personal.
PERSONAL_SUBJECT = "x-personal-subject"


@dataclass(frozen=True)
class ContractInfo:
    """The wire identity of a contract, derived once at class creation."""

    event_type: str
    minor: int
    owner: str
    classification: Classification
    personal_fields: frozenset[str]
    partitions: int = 1  # > 1: the aggregate's events are split by subject (keys.partition_of)
    # Every dotted field path the contract declares: a path outside it has no known meaning.
    field_paths: frozenset[str] = frozenset()
    # Its events' subject identifies a person (a child's pseudonym, an NPWPD): masked where shown.
    personal_subject: bool = False
    major: int = field(init=False)
    aggregate: str = field(init=False)
    stream: str = field(init=False)
    dataschema: str = field(init=False)

    def __post_init__(self) -> None:
        if not isinstance(self.minor, int) or self.minor < 0:
            raise ValueError(f"minor version must be an integer >= 0, got {self.minor!r}")
        aggregate = keys.aggregate_of(self.event_type)
        name, _, version = self.event_type.rpartition(".")
        major = int(version[1:])
        object.__setattr__(self, "major", major)
        object.__setattr__(self, "aggregate", aggregate)
        keys.declare_partitions(aggregate, self.partitions)
        # Partitioned: the family's name, not a key (its keys are `streams`).
        object.__setattr__(self, "stream", keys.stream(aggregate))
        object.__setattr__(self, "dataschema", f"simpul:{name}:{major}.{self.minor}")

    @property
    def streams(self) -> list[str]:
        """Every stream key of this type's aggregate (one, or one per partition)."""
        return keys.streams(self.aggregate)

    def stream_for(self, subject: str | None) -> str:
        """The stream an event with ``subject`` goes to (ValueError: partitioned, no subject)."""
        return keys.stream_of(self.event_type, subject)


class _ContractType(ModelMetaclass):
    """Building a contract by its constructor raises ContractViolation, as :meth:`parse` does
    (field paths and rules, never a value), not pydantic's ValidationError. (On the class, not
    an ``__init__``: pydantic would run a custom ``__init__`` for every validation, the
    consumer's hot path and its tolerant ``extra="ignore"`` included.)"""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:  # self: the contract class
        try:
            return super().__call__(*args, **kwargs)
        except ValidationError as exc:
            info = self.__dict__.get("__contract__")
            raise violation(info.event_type if info else self.__name__, exc) from None


class Contract(BaseModel, metaclass=_ContractType):
    """Base of every event payload. Subclasses pass their identity as class keywords."""

    # hide_input_in_errors: pydantic's message quotes the input ("input_value='3573...'"),
    # which may be personal data; model_validate() and assignment never quote it then.
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    __contract__: ClassVar[ContractInfo]

    # The publisher re-validates the dump of an instance that was never validated; only
    # model_construct() and model_copy() make one. They mark it with a name no field can have
    # in its fields-set, which copy, deepcopy and pickle carry along and equality ignores;
    # validation itself pays nothing (a validator or a private attribute would cost ~4 µs).
    @classmethod  # the pydantic mypy plugin types model_construct per model, from its fields
    def model_construct(cls, _fields_set: set[str] | None = None, **values: Any) -> Self:  # type: ignore[override]
        # A copy of the caller's set: pydantic keeps the one it is given.
        made = super().model_construct(None if _fields_set is None else {*_fields_set}, **values)
        made.__pydantic_fields_set__.add(UNCHECKED)
        return made

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        copied = super().model_copy(update=update, deep=deep)
        copied.__pydantic_fields_set__.add(UNCHECKED)
        return copied

    @property
    def validated(self) -> bool:
        """False for an instance built or changed without validation (model_construct,
        model_copy): its dump must be checked against the contract before it is published."""
        return UNCHECKED not in self.__pydantic_fields_set__

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # The identity keywords are consumed by __pydantic_init_subclass__, once fields exist.
        super().__init_subclass__()

    @classmethod
    def __pydantic_init_subclass__(
        cls,
        *,
        event_type: str | None = None,
        minor: int = 0,
        owner: str | None = None,
        classification: Classification = Classification.INTERNAL,
        partitions: int = 1,
        personal_subject: bool = False,
        register: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        if event_type is None:  # an abstract intermediate class
            return
        try:
            info = ContractInfo(
                event_type=event_type,
                minor=minor,
                owner=owner or event_type.split(".", 1)[0],
                classification=classification,
                personal_fields=frozenset(personal_paths(cls)),
                partitions=partitions,
                field_paths=frozenset(field_paths(cls)),
                personal_subject=personal_subject,
            )
        except ValueError as exc:
            raise ConfigurationError(f"contract {cls.__qualname__}: {exc}") from exc
        cls.__contract__ = info
        if register:
            default_registry.register(cls)

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = super().__get_pydantic_json_schema__(core_schema, handler)
        schema = handler.resolve_ref_schema(schema)
        info = cls.__dict__.get("__contract__")
        if info is not None and info.personal_subject:
            schema[PERSONAL_SUBJECT] = True  # for catalogues, AsyncAPI and non-Python consumers
        return schema

    @classmethod
    def parse(cls, data: Mapping[str, Any] | str | bytes, *, tolerant: bool = False) -> Self:
        """Validate a payload; raise ContractViolation naming each bad field (never its value).

        Producers validate strictly: an unknown field is an error. Consumers pass
        ``tolerant=True`` to ignore fields added by a newer minor version of the contract.
        """
        extra: Literal["ignore"] | None = "ignore" if tolerant else None
        try:
            if isinstance(data, str | bytes):
                return cls.model_validate_json(data, extra=extra)
            if extra is None:  # model_validate(data) without its keywords: ~1 µs a mapped row
                return cast(Self, cls.__pydantic_validator__.validate_python(data))
            return cls.model_validate(data, extra=extra)
        except ValidationError as exc:
            # from None: pydantic's error quotes the input, which may be personal data.
            raise violation(cls.__contract__.event_type, exc) from None


def personal_paths(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Dotted paths of the fields marked PERSONAL, nested models included. A field holding a
    model with personal fields is itself listed too (``address`` and ``address.street``)."""
    paths: list[str] = []
    for name, info in model.model_fields.items():
        path = f"{prefix}{name}"
        if any(isinstance(m, _Personal) for m in info.metadata):
            paths.append(path)
            continue
        nested = [
            inner
            for candidate in _models_in(info.annotation)
            for inner in personal_paths(candidate, f"{path}.")
        ]
        if nested:
            paths += [path, *nested]
    return paths


def field_paths(
    model: type[BaseModel], prefix: str = "", _within: frozenset[type] = frozenset()
) -> list[str]:
    """Dotted paths of every field, nested models included (a list's items share its path);
    a model nested in itself is followed once."""
    paths: list[str] = []
    for name, info in model.model_fields.items():
        path = f"{prefix}{name}"
        paths.append(path)
        for candidate in _models_in(info.annotation):
            if candidate not in _within:
                paths += field_paths(candidate, f"{path}.", _within | {model})
    return paths


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models inside an annotation (``Address``, ``Address | None``, ``list[X]``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in get_args(annotation) for m in _models_in(arg)]


def violation(event_type: str, exc: ValidationError) -> ContractViolation:
    """Turn pydantic's error into ours, keeping field paths and problems but never values."""
    problems = [
        (".".join(str(p) for p in err["loc"]) or "(payload)", err["msg"]) for err in exc.errors()
    ]
    return ContractViolation(event_type, problems)


class Registry:
    """Maps event types to contract models; the only way the bus resolves a type."""

    def __init__(self) -> None:
        self._by_type: dict[str, type[Contract]] = {}

    def register(self, model: type[Contract]) -> None:
        event_type = model.__contract__.event_type
        known = self._by_type.get(event_type)
        if known is not None and _qualified(known) != _qualified(model):
            raise ConfigurationError(
                f"event type {event_type!r} is declared twice: by {_qualified(known)} and by "
                f"{_qualified(model)}; a type has exactly one contract"
            )
        self._by_type[event_type] = model

    def resolve(self, event_type: str) -> type[Contract]:
        try:
            return self._by_type[event_type]
        except KeyError:
            raise UnknownEventType(event_type) from None

    def __contains__(self, event_type: object) -> bool:
        return event_type in self._by_type

    def __iter__(self) -> Iterator[type[Contract]]:
        return iter(sorted(self._by_type.values(), key=lambda m: m.__contract__.event_type))

    def personal_field_names(self) -> frozenset[str]:
        """Top-level names of personal fields of every contract (what logs must mask)."""
        return frozenset(
            path.split(".", 1)[0]
            for model in self._by_type.values()
            for path in model.__contract__.personal_fields
        )


def _qualified(model: type[Contract]) -> str:
    return f"{model.__module__}.{model.__qualname__}"


default_registry = Registry()
