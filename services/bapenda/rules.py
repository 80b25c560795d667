"""Which taxes a permit registers its holder for, and how an NPWPD is numbered."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from importlib.resources import files
from types import MappingProxyType

from bus import ConfigurationError
from schemas.bapenda import ON_TAX_OBJECT, TaxKind
from schemas.dpmptsp import PermitKind

Rules = Mapping[PermitKind, tuple[TaxKind, ...]]


def default_rules() -> Rules:
    """Kota Malang's default table (``data/permit_taxes.json``; its note says what to confirm)."""
    raw = json.loads(files(__package__).joinpath("data/permit_taxes.json").read_text("utf-8"))
    return checked({PermitKind(k): tuple(TaxKind(t) for t in v) for k, v in raw["rules"].items()})


def checked(rules: Mapping[PermitKind, tuple[TaxKind, ...]]) -> Rules:
    """The table, refused if a permit kind is missing or a tax is levied on a tax object."""
    missing = set(PermitKind) - set(rules)
    if missing:
        raise ConfigurationError(f"tax rules lack permit kinds: {', '.join(sorted(missing))}")
    for kind, taxes in rules.items():
        on_object = ON_TAX_OBJECT & set(taxes)
        if on_object:
            raise ConfigurationError(
                f"tax rule for {kind}: {', '.join(sorted(on_object))} is levied on the NOP, "
                "not on a registered taxpayer"
            )
    return MappingProxyType(dict(rules))


def npwpd_for(permit_no: str, scheme: str, kecamatan: str, attempt: int = 0) -> str:
    """An NPWPD derived from the permit that led to it: ``P`` (person) or ``B`` (business),
    the kecamatan's two digits, ten digits of a hash of the permit number (``attempt`` > 0 on
    a collision). The same permit always gets the same number, so a redelivery changes
    nothing. A placeholder format: Bapenda's own numbering replaces it."""
    digest = hashlib.sha256(f"{permit_no}#{attempt}".encode()).digest()
    serial = int.from_bytes(digest[:8], "big") % 10**10
    prefix = "P" if scheme == "nik" else "B"
    return f"{prefix}.{kecamatan[-2:]}.{serial:010d}"
