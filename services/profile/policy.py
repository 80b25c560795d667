"""Who may see what: roles (shipped in ``data/roles.json``) and the tokens that act as them.

A role names the lookups it may make (``by-nik``, ``by-account``) and the sections of a
profile it may see. Tokens come from ``SIMPUL_PROFILE_TOKENS`` as ``role=token,role=token``
(a role may have several tokens, e.g. one per client during a rotation); each token is at
least 16 characters. Error messages name roles and positions, never a token.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from bus import ConfigurationError, refuse_dev_token
from services._common import same_token

SECTIONS = ("registry", "address", "family", "permits", "tax", "assistance", "accounts")
LOOKUPS = ("by-nik", "by-account")
TOKENS_ENV = "SIMPUL_PROFILE_TOKENS"
MIN_TOKEN_LENGTH = 16


@dataclass(frozen=True, slots=True)
class Role:
    name: str
    lookups: frozenset[str]
    sections: tuple[str, ...]  # in the order of SECTIONS
    access_records: bool = False

    def withheld(self) -> list[str]:
        return [s for s in SECTIONS if s not in self.sections]


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated client: its role and a fingerprint of its token (for access records)."""

    role: Role
    fingerprint: str

    @property
    def name(self) -> str:
        return f"{self.role.name}#{self.fingerprint}"


class Policy:
    """The roles and what each may see."""

    def __init__(self, roles: Mapping[str, Role]) -> None:
        self.roles = dict(roles)

    @classmethod
    def load(cls, path: Path | None = None) -> Policy:
        """The policy in ``path``, else the one shipped with the service."""
        text = (
            path.read_text(encoding="utf-8")
            if path is not None
            else files("services.profile").joinpath("data/roles.json").read_text(encoding="utf-8")
        )
        return cls.parse(json.loads(text))

    @classmethod
    def parse(cls, document: Mapping[str, Any]) -> Policy:
        roles: dict[str, Role] = {}
        for name, spec in dict(document.get("roles", {})).items():
            lookups = frozenset(spec.get("lookups", ()))
            sections = set(spec.get("sections", ()))
            if unknown := sorted(lookups - set(LOOKUPS)):
                raise ConfigurationError(f"profile role {name}: unknown lookups {unknown}")
            if unknown := sorted(sections - set(SECTIONS)):
                raise ConfigurationError(f"profile role {name}: unknown sections {unknown}")
            if lookups and not sections:
                raise ConfigurationError(f"profile role {name} may look up but see no section")
            ordered = tuple(s for s in SECTIONS if s in sections)
            roles[name] = Role(name, lookups, ordered, bool(spec.get("access_records", False)))
        if not roles:
            raise ConfigurationError("the profile policy defines no roles")
        return cls(roles)


class Tokens:
    """Bearer tokens and the roles they act as."""

    def __init__(self, policy: Policy, pairs: list[tuple[str, str]]) -> None:
        self._entries: list[tuple[bytes, Caller]] = []
        seen: set[str] = set()
        for position, (role_name, token) in enumerate(pairs, start=1):
            role = policy.roles.get(role_name)
            if role is None:
                known = ", ".join(sorted(policy.roles))
                raise ConfigurationError(
                    f"{TOKENS_ENV} entry {position}: unknown role {role_name!r} (known: {known})"
                )
            if len(token) < MIN_TOKEN_LENGTH:
                raise ConfigurationError(
                    f"{TOKENS_ENV} entry {position} (role {role_name}): a token has at least "
                    f"{MIN_TOKEN_LENGTH} characters"
                )
            refuse_dev_token(token, f"{TOKENS_ENV} entry {position} (role {role_name})")
            if token in seen:
                raise ConfigurationError(f"{TOKENS_ENV} entry {position}: token given twice")
            seen.add(token)
            self._entries.append((token.encode(), Caller(role, _fingerprint(token))))

    @classmethod
    def parse(cls, policy: Policy, text: str | None) -> Tokens:
        """``role=token,role=token`` (whitespace around entries ignored); None or "": none."""
        pairs: list[tuple[str, str]] = []
        for position, entry in enumerate((text or "").split(","), start=1):
            if not entry.strip():
                continue
            role, sep, token = entry.strip().partition("=")
            if not sep or not role.strip() or not token.strip():
                raise ConfigurationError(
                    f"{TOKENS_ENV} entry {position} is not role=token "
                    "(format: role=token,role=token)"
                )
            pairs.append((role.strip(), token.strip()))
        return cls(policy, pairs)

    def __len__(self) -> int:
        return len(self._entries)

    def authenticate(self, presented: str) -> Caller | None:
        """The caller whose token this is, or None. Every token is compared, in constant time
        each, so the time taken does not tell which one nearly matched."""
        found: Caller | None = None
        for token, caller in self._entries:
            if same_token(presented, token):
                found = caller
        return found


def _fingerprint(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:8]
