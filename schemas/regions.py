"""Kemendagri region codes of Kota Malang, loaded from ``schemas/data/regions.json``.

BPS (statistics) codes are a different scheme: never mix them with these.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib.resources import files


@dataclass(frozen=True)
class Region:
    code: str
    name: str
    parent: str | None


@cache
def regions() -> dict[str, Region]:
    """Every region of the city by code: the city, its kecamatan and its kelurahan."""
    raw = json.loads(files("schemas").joinpath("data/regions.json").read_text(encoding="utf-8"))
    city = raw["city"]
    found = {city["code"]: Region(city["code"], city["name"], raw["province"]["code"])}
    for kecamatan in raw["kecamatan"]:
        found[kecamatan["code"]] = Region(kecamatan["code"], kecamatan["name"], city["code"])
        for serial, name in enumerate(kecamatan["kelurahan"], start=1001):
            code = f"{kecamatan['code']}.{serial}"
            found[code] = Region(code, name, kecamatan["code"])
    return found


def kecamatan_codes() -> list[str]:
    return [code for code in regions() if code.count(".") == 2]


def kelurahan_codes(kecamatan: str | None = None) -> list[str]:
    return [
        code
        for code, region in regions().items()
        if code.count(".") == 3 and (kecamatan is None or region.parent == kecamatan)
    ]


def kecamatan_of(kelurahan: str) -> str:
    """The kecamatan of a kelurahan: its code's first three parts (``35.73.05.1001`` ->
    ``35.73.05``), as Kemendagri codes are built. ValueError if ``kelurahan`` is not shaped like
    a kelurahan code (the message does not quote it)."""
    parts = kelurahan.split(".")
    if len(parts) != 4 or not all(part.isdigit() for part in parts):
        raise ValueError("not a kelurahan code (a kecamatan code, a dot and the kelurahan number)")
    return ".".join(parts[:3])
