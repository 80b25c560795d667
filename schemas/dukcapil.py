"""Dinas Kependudukan dan Pencatatan Sipil (civil registry) events."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from bus import PERSONAL, Classification, Contract
from schemas.common import NIK, KecamatanCode


class CitizenDied(
    Contract,
    event_type="dukcapil.citizen.died.v1",
    minor=0,
    owner="dukcapil",
    classification=Classification.PERSONAL,
):
    """A death was recorded in the civil registry."""

    nik: Annotated[NIK, PERSONAL]
    date_of_death: date
    kecamatan: KecamatanCode


class CitizenMoved(
    Contract,
    event_type="dukcapil.citizen.moved.v1",
    minor=0,
    owner="dukcapil",
    classification=Classification.PERSONAL,
):
    """A citizen's registered address changed (within or into Kota Malang)."""

    nik: Annotated[NIK, PERSONAL]
    address: Annotated[str, PERSONAL]
    kecamatan: KecamatanCode
    moved_on: date
