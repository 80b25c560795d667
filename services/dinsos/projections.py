"""What dinsos' subscriptions show of other departments' events (deploy/topology.yaml,
decision 0012): the contract's non-personal fields and the personal ones dinsos uses. Its
handlers take these typed views; the inbox carries nothing more."""

from __future__ import annotations

from datetime import date

from bus import Projection
from schemas.common import KK, NIK, KecamatanCode, KelurahanCode, PastDate
from schemas.disnaker import JobseekerPlaced, KbjiCode, Placement
from schemas.dukcapil import CitizenBorn, CitizenMoved, FamilyCardIssued, FamilyCardReason

__all__ = ["Birth", "FamilyCard", "Move", "Placed"]


class Birth(Projection, of=CitizenBorn):
    """A birth: the child's NIK and family card (not its pseudonym or birth date)."""

    nik: NIK
    kk: KK
    kelurahan: KelurahanCode
    registered_on: PastDate


class Move(Projection, of=CitizenMoved):
    """A move: whose, into which kecamatan, when (not the street address)."""

    nik: NIK
    kecamatan: KecamatanCode
    moved_on: date


class FamilyCard(Projection, of=FamilyCardIssued):
    """A family card: its number and members (not the head or the address)."""

    kk: KK
    members: tuple[NIK, ...]
    reason: FamilyCardReason
    issued_on: PastDate


class Placed(Projection, of=JobseekerPlaced):
    """A job seeker placed: whose NIK, when (not the AK/I card number)."""

    nik: NIK
    placement: Placement
    occupation: KbjiCode | None = None
    placed_on: PastDate
