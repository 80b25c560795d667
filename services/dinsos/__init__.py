"""Dinas Sosial: social assistance follows civil-registry events.

A death suspends the person's assistance; a move re-checks that they still live in the city's
service area. The registry here is in memory; the persistent one belongs to the dinsos service
proper.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bus import EventContext, Service
from schemas.dukcapil import CitizenDied, CitizenMoved

service = Service("dinsos", source="urn:malangkota:dinsos:bansos")


@dataclass
class Assistance:
    """Who receives assistance (by NIK) and what happened to them."""

    active: set[str] = field(default_factory=set)
    suspended: dict[str, str] = field(default_factory=dict)  # nik -> reason
    rechecks: list[str] = field(default_factory=list)


registry = Assistance()


@service.on(CitizenDied, once=True)
async def suspend_on_death(event: CitizenDied, ctx: EventContext) -> None:
    if event.nik in registry.active:
        registry.active.discard(event.nik)
        registry.suspended[event.nik] = f"died {event.date_of_death} (event {ctx.event_id})"


@service.on(CitizenMoved)
async def recheck_area(event: CitizenMoved) -> None:
    if event.nik in registry.active:
        registry.rechecks.append(event.nik)
