"""Which puskesmas serves a kelurahan: ``data/puskesmas.json`` (codes are placeholders)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import Any

from pydantic import TypeAdapter, ValidationError

from bus import ConfigurationError
from schemas.dinkes import PuskesmasCode
from schemas.regions import kecamatan_codes, kecamatan_of, regions

_CODE: TypeAdapter[str] = TypeAdapter(PuskesmasCode)


@dataclass(frozen=True, slots=True)
class Puskesmas:
    code: str
    name: str
    kecamatan: str


@dataclass(frozen=True, slots=True)
class Areas:
    """The puskesmas of each kelurahan known, and the default one of each kecamatan."""

    by_kelurahan: dict[str, Puskesmas]
    by_kecamatan: dict[str, Puskesmas]

    def serving(self, kelurahan: str) -> Puskesmas:
        """The kelurahan's puskesmas, else its kecamatan's default (KeyError: not a kelurahan
        of Kota Malang; contracts only let valid codes in)."""
        found = self.by_kelurahan.get(kelurahan)
        if found is not None:
            return found
        if kelurahan not in regions():
            raise KeyError("not a kelurahan of Kota Malang")
        return self.by_kecamatan[kecamatan_of(kelurahan)]


@cache
def default_areas() -> Areas:
    raw = json.loads(files(__package__).joinpath("data/puskesmas.json").read_text("utf-8"))
    return load(raw["puskesmas"])


def load(entries: list[dict[str, Any]]) -> Areas:
    """Check and index the entries: valid codes of their kecamatan, one default per kecamatan,
    known kelurahan of the puskesmas' kecamatan, each listed once."""
    by_kelurahan: dict[str, Puskesmas] = {}
    by_kecamatan: dict[str, Puskesmas] = {}
    for entry in entries:
        puskesmas = Puskesmas(_code(entry["code"]), entry["name"], entry["kecamatan"])
        if not puskesmas.code.startswith("P" + puskesmas.kecamatan.replace(".", "")):
            raise ConfigurationError(f"puskesmas {puskesmas.code}: code of another kecamatan")
        if entry["default"]:
            if puskesmas.kecamatan in by_kecamatan:
                raise ConfigurationError(f"kecamatan {puskesmas.kecamatan}: two defaults")
            by_kecamatan[puskesmas.kecamatan] = puskesmas
        for kelurahan in entry["kelurahan"]:
            if kelurahan not in regions() or kecamatan_of(kelurahan) != puskesmas.kecamatan:
                raise ConfigurationError(
                    f"puskesmas {puskesmas.code}: {kelurahan} is not a kelurahan of its kecamatan"
                )
            if kelurahan in by_kelurahan:
                raise ConfigurationError(f"kelurahan {kelurahan} is listed twice")
            by_kelurahan[kelurahan] = puskesmas
    missing = set(kecamatan_codes()) - set(by_kecamatan)
    if missing:
        raise ConfigurationError(f"no default puskesmas for {', '.join(sorted(missing))}")
    return Areas(by_kelurahan, by_kecamatan)


def _code(value: str) -> str:
    try:
        return _CODE.validate_python(value)
    except ValidationError:
        raise ConfigurationError(f"{value!r} is not a puskesmas code of Kota Malang") from None
