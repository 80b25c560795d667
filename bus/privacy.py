"""Personal data kept out of what people and other systems see: one rule, in one place.

Logs (:mod:`bus.logging`), ``simpul tail`` and ``pending`` (:mod:`bus.admin.entries`), ``simpul
dlq`` (:mod:`bus.admin.deadletters`), dead-letter errors (:mod:`bus.deadletter`), the dashboard and
the exporter mask with these functions and nothing else. (Masking was once written three times; the
copies disagreed, and a contract violation was shown in clear by one and masked by another.) The
rule:

* The event's contract is known. A field it marks personal (``x-personal``) is replaced whole
  by ``***``. A field that holds personal fields inside (an address with a personal street)
  is masked inside when it has the declared shape (an object, a list), and whole when it has
  not — contract violations are exactly what lands in dead letters, so an address sent as a
  string must not show. A field the contract does not declare (a newer minor's, a mistake)
  has no known meaning: only its shape shows ("text, 7 characters"). Anywhere else, a run of
  16 digits (a NIK, a KK) is masked. The ``subject`` is masked when the contract says its
  events' subject is personal (``x-personal-subject``).
* No contract for the type, or ``data`` that is not JSON: every value shows only its shape —
  a name or a street has no pattern to mask it by.
* A text (an error message) has 16-digit runs masked and every value the rule above masks in
  the event it is about, where it quotes one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from typing import Any

from pydantic import ValidationError

from bus.contracts import ContractInfo, Registry, default_registry
from bus.envelope import OPTIONAL, REQUIRED

__all__ = [
    "MASK",
    "contract_of",
    "error_text",
    "mask_attribute",
    "mask_data",
    "mask_error",
    "mask_quoted",
    "mask_subject",
    "mask_text",
    "mask_value",
    "shape",
    "shapes",
]

MASK = "***"
# 16 ASCII digits not embedded in a longer digit run: NIK and KK numbers.
_SIXTEEN_DIGITS = re.compile(r"(?<![0-9])[0-9]{16}(?![0-9])")
_SHORTEST_QUOTED = 3  # a 1-2 character value would mask half of a message where it is quoted
# pydantic shows an input whose repr is longer than 50 characters as its first 25 and last 24
# characters (quotes included) around "..." (pydantic_core's truncate_safe_repr).
_PYDANTIC_SHOWN, _PYDANTIC_HEAD, _PYDANTIC_TAIL = 50, 25, 24


def mask_text(text: str) -> str:
    """Replace every 16-digit run (a NIK or KK number) in ``text``."""
    return _SIXTEEN_DIGITS.sub(MASK, text)


def mask_value(value: Any) -> Any:
    """A value of known, non-personal meaning: NIK-shaped text or numbers masked, else as is."""
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, int) and not isinstance(value, bool) and len(str(abs(value))) == 16:
        return MASK
    if isinstance(value, BaseException):
        return mask_text(f"{type(value).__name__}: {value}")
    return value


def error_text(exc: BaseException) -> str:
    """``exc``'s message as code may show it before masking: a pydantic ValidationError by its
    field paths and rules only, since its own text quotes each input (a model of a handler's
    own, built from an event); any other exception as it says itself."""
    if isinstance(exc, ValidationError):
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or '(input)'}: {error['msg']}"
            for error in exc.errors(include_url=False, include_input=False, include_context=False)
        )
        return f"{exc.error_count()} validation error(s) for {exc.title}: {problems}"
    return str(exc)


def shape(value: Any) -> str:
    """What a value looks like, without the value ("15 digits", "text, 12 characters"): for
    values of unknown meaning, where masking by pattern would let names and streets through."""
    if value is None or isinstance(value, bool):
        return "null" if value is None else str(value).lower()
    text = str(value)
    if text.isascii() and text.isdigit():
        return f"{len(text)} digit{'s' if len(text) != 1 else ''}"
    if not text.strip():
        return "blank"
    kind = "non-ASCII text" if not text.isascii() else "text"
    return f"{kind}, {len(text)} character{'s' if len(text) != 1 else ''}"


def shapes(value: Any) -> Any:
    """``value`` with its structure and field names kept and every leaf replaced by its
    :func:`shape` (null and booleans stay): a payload of unknown meaning, safe to show."""
    if isinstance(value, dict):
        return {str(name): shapes(item) for name, item in value.items()}
    if isinstance(value, list):
        return [shapes(item) for item in value]
    if value is None or isinstance(value, bool):
        return value
    return f"<{shape(value)}>"


def contract_of(
    event_type: str | None, registry: Registry = default_registry
) -> ContractInfo | None:
    """The contract of ``event_type``, or None: no type, or none registered for it."""
    if event_type is None or event_type not in registry:
        return None
    return registry.resolve(event_type).__contract__


# The extension attributes the bus itself writes (bus.signing, bus.projection; tests check the
# names): what they hold is known, as for the CloudEvents attributes.
BUS_EXTENSIONS = frozenset({"signedat", "originentry", "originsigner", "origindigest"})
_KNOWN_ATTRIBUTES = frozenset(REQUIRED + OPTIONAL) | BUS_EXTENSIONS


def mask_attribute(name: str, value: str, contract: ContractInfo | None) -> str | None:
    """An envelope attribute (not ``data``) as it may be shown: a personal ``subject`` masked,
    a CloudEvents or bus attribute with its 16-digit runs masked, and an extension attribute
    a producer added only as its shape — the spec forbids personal data there, but nothing says
    what a ``nama`` or ``alamat`` a client added holds."""
    if name == "subject":
        return mask_subject(value, contract)
    if name in _KNOWN_ATTRIBUTES:
        return mask_text(value)
    return f"<{shape(value)}>"


def mask_data(data: Any, contract: ContractInfo | None) -> Any:
    """``data`` (parsed JSON, or the text when it is not JSON) masked by the rule above."""
    if contract is None or not isinstance(data, dict):  # a contract describes an object
        return shapes(data)
    return _Rule(contract).mask(data, "")


def mask_subject(subject: str | None, contract: ContractInfo | None) -> str | None:
    """An event's ``subject`` as it may be shown."""
    if subject is None:
        return None
    if contract is not None and contract.personal_subject:
        return MASK
    return mask_text(subject)


def mask_error(
    error: str, contract: ContractInfo | None, data: Any, subject: str | None = None
) -> str:
    """``error`` with NIK-shaped runs, and every value :func:`mask_data` hides in ``data``
    (and a personal ``subject``), masked where the text quotes it, in upper or lower case too."""
    text = mask_text(error)
    hidden = set(_hidden(data, contract))
    if subject and (contract is None or contract.personal_subject):
        hidden.add(subject)
    quoted = {form for secret in hidden for form in _quoted_forms(secret)}
    for secret in sorted(quoted, key=len, reverse=True):
        if len(secret) >= _SHORTEST_QUOTED:
            # In any case: code quotes a name as it found it, or upper-cased for a register.
            text = re.sub(re.escape(secret), MASK, text, flags=re.IGNORECASE)
    return text


def mask_quoted(text: str, data: Any) -> str:
    """``text`` with 16-digit runs masked and every value in ``data`` masked where the text
    quotes it (``'value'`` or ``"value"``, as ``repr()`` and ``!r`` write it, in any case).

    For a message about values of no known meaning (a legacy record's columns): a name is no
    pattern, and masking each value wherever it appears would also hide the words a message
    is made of ("Kota Malang" in a rule, when a column holds "Malang")."""
    text = mask_text(text)
    quoted = {form for secret in _leaves(data) for form in _quoted_forms(secret)}
    for secret in sorted(quoted, key=len, reverse=True):
        if secret:
            for quote in ("'", '"'):
                pattern = re.escape(f"{quote}{secret}{quote}")
                text = re.sub(pattern, f"{quote}{MASK}{quote}", text, flags=re.IGNORECASE)
    return text


def _quoted_forms(value: str) -> Iterator[str]:
    """How a message may quote ``value``: as it is, escaped by ``repr()`` (an address with a
    line break: ``'Jl. Kenari 7\\nRT 003'``) or by JSON (``json.dumps`` writes ``é`` as
    ``\\u00e9``), and cut as pydantic cuts a long input in its errors — the first 24 and
    the last 23 characters of the value, around ``...`` — of a model of its own in a handler."""
    yield value
    for escaped in {repr(value)[1:-1], json.dumps(value)[1:-1]}:
        yield escaped
        if len(escaped) + 2 > _PYDANTIC_SHOWN:  # repr: quotes included
            yield escaped[: _PYDANTIC_HEAD - 1]
            yield escaped[-(_PYDANTIC_TAIL - 1) :]


class _Rule:
    """The contract's markings, walked along a payload."""

    def __init__(self, contract: ContractInfo) -> None:
        self.personal = contract.personal_fields
        self.declared = contract.field_paths
        # Personal paths with personal fields inside (``address`` of ``address.street``).
        self.holders = frozenset(p.rsplit(".", 1)[0] for p in self.personal if "." in p)

    def mask(self, value: Any, prefix: str) -> Any:
        if isinstance(value, list):
            return [self.mask(item, prefix) for item in value]
        if not isinstance(value, dict):
            return mask_value(value)
        masked: dict[str, Any] = {}
        for name, item in value.items():
            path = f"{prefix}{name}"
            if path in self.holders:
                masked[name] = self._holder(item, path)
            elif path in self.personal:
                masked[name] = MASK
            elif path not in self.declared:
                masked[name] = shapes(item)
            else:
                masked[name] = self.mask(item, f"{path}.")
        return masked

    def _holder(self, value: Any, path: str) -> Any:
        """A personal object (or list of them): masked inside, or whole if it is not one."""
        if isinstance(value, dict):
            return self.mask(value, f"{path}.")
        if isinstance(value, list):
            return [self._holder(item, path) for item in value]
        return MASK

    def hidden(self, value: Any, prefix: str) -> Iterator[str]:
        """The values :meth:`mask` replaces, as text."""
        if isinstance(value, list):
            for item in value:
                yield from self.hidden(item, prefix)
        elif isinstance(value, dict):
            for name, item in value.items():
                path = f"{prefix}{name}"
                if path in self.holders:
                    yield from self._hidden_in_holder(item, path)
                elif path in self.personal or path not in self.declared:
                    yield from _leaves(item)
                else:
                    yield from self.hidden(item, f"{path}.")

    def _hidden_in_holder(self, value: Any, path: str) -> Iterator[str]:
        if isinstance(value, dict):
            yield from self.hidden(value, f"{path}.")
        elif isinstance(value, list):
            for item in value:
                yield from self._hidden_in_holder(item, path)
        else:
            yield from _leaves(value)


def _hidden(data: Any, contract: ContractInfo | None) -> Iterable[str]:
    if contract is None or not isinstance(data, dict):
        return _leaves(data)  # no meaning known: any value may be personal
    return _Rule(contract).hidden(data, "")


def _leaves(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, list):
        for item in value:
            yield from _leaves(item)
    elif value is not None and not isinstance(value, bool):
        yield str(value)
