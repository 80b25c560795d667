"""Need-to-know projections: each subscription gets only the data fields it was approved for.

The router (decision 0012) admits a producer's event onto its department stream after checking
the producer's signature, then writes one inbox entry per approved subscription with
:func:`forward`: the same CloudEvents attributes, ``data`` reduced to the subscription's
approved fields, and the router's own signature over all of it plus a reference to the
original — its department-stream entry id (``originentry``), its producer's key id
(``originsigner``) and the SHA-256 of the bytes the producer signed (``origindigest``). A
consumer verifies an inbox entry exactly as it verifies any signed entry (docs/wire-format.md,
section 10), with the router's key; an auditor ties it to the archived original with
:func:`check_against_original`.

What a subscription may see comes from the topology (:func:`disclosures`): its ``fields:``, or
by default every non-personal field of the contract. A service whose subscription withholds
fields the contract requires reads its events through a :class:`Projection` of the contract:
a typed model with only the fields it was approved for.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Protocol

from bus.contracts import Contract
from bus.decoding import texts as _texts
from bus.envelope import format_time
from bus.errors import ConfigurationError, ContractViolation
from bus.signing import SIGNATURE, SIGNED_AT, Signer, canonical_bytes

__all__ = [
    "FORWARDING_FIELDS",
    "ORIGIN_DIGEST",
    "ORIGIN_ENTRY",
    "ORIGIN_SIGNER",
    "Disclosure",
    "Projection",
    "check_against_original",
    "disclosures",
    "forward",
    "forward_each",
    "is_forwarded",
    "original_digest",
    "project_data",
    "withheld_required",
]

# Extension attributes (docs/wire-format.md, section 11) the router adds to an inbox entry.
ORIGIN_ENTRY = "originentry"  # the original's entry id on its department stream
ORIGIN_SIGNER = "originsigner"  # the key id that signed the original (its producer)
ORIGIN_DIGEST = "origindigest"  # hex SHA-256 of the original's signed bytes (section 10.2)
FORWARDING_FIELDS = (ORIGIN_ENTRY, ORIGIN_SIGNER, ORIGIN_DIGEST)
_SIGNER = "signer"
_SIGNER_B = _SIGNER.encode()
_SIGNED_AT_B = SIGNED_AT.encode()
_SIGNATURE_B = SIGNATURE.encode()
_ORIGIN_ENTRY_B, _ORIGIN_SIGNER_B, _ORIGIN_DIGEST_B = (f.encode() for f in FORWARDING_FIELDS)
_REPLACED = frozenset(f.encode() for f in (SIGNATURE, _SIGNER, SIGNED_AT, *FORWARDING_FIELDS))


@dataclass(frozen=True)
class Disclosure:
    """What one subscription (a service's group x an event type) may see of its events.

    ``fields``: the top-level ``data`` fields approved for it; None means every field (the
    audit archive, or an owner's explicit ``fields: all``).
    """

    group: str
    event_type: str
    fields: frozenset[str] | None

    def allows(self, name: str) -> bool:
        return self.fields is None or name in self.fields


class _SubscriptionLike(Protocol):
    @property
    def type(self) -> str: ...


class _ServiceLike(Protocol):
    @property
    def group(self) -> str: ...
    @property
    def subscriptions(self) -> Iterable[_SubscriptionLike]: ...


class _TopologyLike(Protocol):
    """What :func:`disclosures` reads of a ``bus.access.topology.Topology``."""

    @property
    def services(self) -> Iterable[_ServiceLike]: ...
    def approved_fields(self, group: str, event_type: str) -> frozenset[str] | None: ...


def disclosures(topology: _TopologyLike) -> dict[tuple[str, str], Disclosure]:
    """(group, event type) -> its :class:`Disclosure`, for every subscription of the topology."""
    return {
        (service.group, sub.type): Disclosure(
            service.group, sub.type, topology.approved_fields(service.group, sub.type)
        )
        for service in topology.services
        for sub in service.subscriptions
    }


# -- the router's side ---------------------------------------------------------------------------


def original_digest(fields: Mapping[str, str] | Mapping[bytes, bytes]) -> str:
    """Lower-case hex SHA-256 of the bytes the original's signature covers (section 10.2)."""
    return hashlib.sha256(canonical_bytes(fields)).hexdigest()


def project_data(data: str, disclosure: Disclosure, *, event_type: str = "") -> str:
    """``data`` (a JSON object's text) with only the disclosed top-level fields, compact JSON
    in the original's order; unchanged (byte for byte) when every field is disclosed."""
    if disclosure.fields is None:
        return data
    try:
        payload = json.loads(data)
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        raise ContractViolation(
            event_type or disclosure.event_type, [("(payload)", "data is not a JSON object")]
        )
    kept = {name: value for name, value in payload.items() if name in disclosure.fields}
    return json.dumps(kept, ensure_ascii=False, separators=(",", ":"))


def forward(
    fields: Mapping[str, str] | Mapping[bytes, bytes],
    *,
    disclosure: Disclosure,
    signer: Signer,
    origin: str,
    at: datetime | None = None,
) -> dict[str, str]:
    """The inbox entry for ``fields`` (an admitted, producer-signed entry whose department
    stream entry id is ``origin``) under ``disclosure``, signed by the router's ``signer``.

    Every attribute of the original stays as it was except ``data`` (projected), ``signer``,
    ``signedat`` and ``signature`` (the router's); the three ``origin*`` extension attributes
    name the original. ``at``: the signing time (default now).
    """
    (entry,) = forward_each(fields, [disclosure], signer=signer, origin=origin, at=at)
    return {name.decode(): value.decode() for name, value in entry.items()}


def forward_each(
    fields: Mapping[str, str] | Mapping[bytes, bytes],
    disclosures: Sequence[Disclosure],
    *,
    signer: Signer,
    origin: str,
    at: datetime | None = None,
) -> list[dict[bytes, bytes]]:
    """:func:`forward` for every subscription of one event at once, as bytes: the entry for
    ``disclosures[i]`` at index ``i``.

    Subscriptions that may see the same fields get the same entry (the same object): the
    entry does not name its subscription, so one signature serves them all. The original's
    digest and the signing time are computed once per event. Signing is the router's main
    cost per inbox entry (decision 0012), so this is what the router calls.
    """
    original = _utf8_fields(fields)
    event_type = original.get(b"type", b"").decode()
    for disclosure in disclosures:
        if event_type != disclosure.event_type:
            raise ConfigurationError(
                f"a {event_type[:80] or '(untyped)'} event cannot be forwarded under the "
                f"disclosure of {disclosure.event_type} for group {disclosure.group}"
            )
    base = {name: value for name, value in original.items() if name not in _REPLACED}
    data = original.get(b"data", b"")
    reference = {
        _ORIGIN_ENTRY_B: origin.encode(),
        _ORIGIN_SIGNER_B: original.get(_SIGNER_B, b""),
        _ORIGIN_DIGEST_B: hashlib.sha256(canonical_bytes(original)).hexdigest().encode(),
        _SIGNER_B: signer.key_id.encode(),
        _SIGNED_AT_B: _now_text(at).encode(),
    }
    by_fields: dict[frozenset[str] | None, dict[bytes, bytes]] = {}
    out = []
    for disclosure in disclosures:
        entry = by_fields.get(disclosure.fields)
        if entry is None:
            entry = dict(base)
            if disclosure.fields is None:
                entry[b"data"] = data
            else:
                entry[b"data"] = project_data(data.decode(), disclosure).encode()
            entry.update(reference)
            entry[_SIGNATURE_B] = signer.signature_of(entry).encode()
            by_fields[disclosure.fields] = entry
        out.append(entry)
    return out


def _utf8_fields(fields: Mapping[str, str] | Mapping[bytes, bytes]) -> dict[bytes, bytes]:
    """``fields`` as UTF-8 bytes; undecodable bytes as the replacement character, as
    :func:`bus.decoding.texts` reads them (so the result is the same whichever form came)."""
    items: list[tuple[Any, Any]] = list(fields.items())
    if all(isinstance(name, bytes) and isinstance(value, bytes) for name, value in items):
        try:
            for name, value in items:
                name.decode()
                value.decode()
        except UnicodeDecodeError:
            pass
        else:
            return dict(items)
    return {k.encode(): v.encode() for k, v in _texts(fields).items()}


def is_forwarded(fields: Mapping[str, str] | Mapping[bytes, bytes]) -> bool:
    """Whether an entry names an original (an inbox entry the router wrote)."""
    return ORIGIN_DIGEST in fields or ORIGIN_DIGEST.encode() in fields


def check_against_original(
    forwarded: Mapping[str, str] | Mapping[bytes, bytes],
    original: Mapping[str, str] | Mapping[bytes, bytes],
) -> str | None:
    """None if ``forwarded`` (an inbox entry) is a faithful projection of ``original`` (the
    archived department-stream entry) — or, for a subscription that may see every field, the
    original itself, as admitted (docs/wire-format.md, 11.2) — else what differs: names, never
    values.

    Signatures are checked elsewhere (the router's by the consumer's keyring, the producer's by
    the archive): this ties the two together.
    """
    inbox, source = _texts(forwarded), _texts(original)
    if ORIGIN_DIGEST not in inbox:  # a subscription that may see everything: the original
        if inbox != source:
            return "the entry names no original, and it is not the original as admitted"
        return None
    if inbox.get(ORIGIN_DIGEST) != original_digest(source):
        return f"{ORIGIN_DIGEST} is not the SHA-256 of the original's signed bytes"
    if inbox.get(ORIGIN_SIGNER, "") != source.get(_SIGNER, ""):
        return f"{ORIGIN_SIGNER} does not name the original's signer"
    skipped = {"data", SIGNATURE, _SIGNER, SIGNED_AT, *FORWARDING_FIELDS}
    changed = sorted(
        name
        for name in (inbox.keys() | source.keys()) - skipped
        if inbox.get(name) != source.get(name)
    )
    if changed:
        return f"attribute(s) {', '.join(changed)} differ from the original"
    return _data_differs(inbox.get("data", ""), source.get("data", ""))


def _data_differs(shown_text: str, full_text: str) -> str | None:
    try:
        shown, full = json.loads(shown_text), json.loads(full_text)
    except ValueError:
        return "data is not JSON"
    if not (isinstance(shown, dict) and isinstance(full, dict)):
        return "data is not a JSON object"
    differ = sorted(name for name in shown if name not in full or full[name] != shown[name])
    if differ:
        return f"disclosed field(s) {', '.join(differ)} differ from the original"
    return None


# -- the consumer's side -------------------------------------------------------------------------


def withheld_required(model: type[Contract], disclosure: Disclosure) -> list[str]:
    """The fields ``model`` (a handler's contract or projection) requires that ``disclosure``
    withholds: every event of that subscription would fail its validation. Empty: it fits."""
    return sorted(
        name
        for name, info in model.model_fields.items()
        if info.is_required() and not disclosure.allows(name)
    )


class Projection(Contract):
    """A contract seen through a subscription that withholds some of its fields.

    Declare the fields the subscription discloses, with the contract's types, and name the
    contract; handlers registered with ``service.on(TheProjection)`` get it::

        class BirthNotice(Projection, of=CitizenBorn):
            child_ref: Pseudonym
            born_on: PastDate
            kelurahan: KelurahanCode

    Every field must be one of the contract's (checked when the class is made); the projection
    shares the contract's identity (``__contract__``) but is not registered: the contract stays
    the one model of its type.
    """

    __projection_of__: ClassVar[type[Contract]]

    @classmethod
    def __pydantic_init_subclass__(cls, *, of: type[Contract] | None = None, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        if of is None:
            if cls.__module__ == __name__:  # this base class itself
                return
            raise ConfigurationError(
                f"projection {cls.__qualname__} must name its contract: "
                f"class {cls.__name__}(Projection, of=TheContract)"
            )
        if not (isinstance(of, type) and issubclass(of, Contract)) or "__contract__" not in vars(
            of
        ):
            raise ConfigurationError(f"projection {cls.__qualname__}: {of!r} is not a contract")
        unknown = sorted(set(cls.model_fields) - set(of.model_fields))
        if unknown:
            raise ConfigurationError(
                f"projection {cls.__qualname__}: {', '.join(unknown)} not field(s) of "
                f"{of.__contract__.event_type} (its fields: {', '.join(of.model_fields)})"
            )
        cls.__contract__ = of.__contract__
        cls.__projection_of__ = of


def _now_text(at: datetime | None) -> str:
    return format_time(at or datetime.now(UTC))
