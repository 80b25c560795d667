"""The Dinkes service: a newborn's routine immunisation schedule at the right puskesmas."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

from bus import EventContext, Projection, Service, Settings, Store, get_logger
from schemas.common import KelurahanCode, PastDate, Pseudonym
from schemas.dinkes import ImmunisationScheduled
from schemas.dukcapil import CitizenBorn
from services._common import Migration, today_in_malang
from services.dinkes import db
from services.dinkes.db import Schedule
from services.dinkes.puskesmas import Areas, Puskesmas, default_areas
from services.dinkes.schedule import due_dates

SOURCE = "urn:malangkota:dinkes:imunisasi"
_log = get_logger("services.dinkes")


class BirthNotice(Projection, of=CitizenBorn):
    """A birth as dinkes' subscription shows it (deploy/topology.yaml, decision 0012): the
    child's pseudonym, birth date and kelurahan — never the child's NIK or the family card."""

    child_ref: Pseudonym
    born_on: PastDate
    kelurahan: KelurahanCode
    registered_on: PastDate


class Dinkes:
    """Routine immunisation of Kota Malang's newborns.

    ``store``: default ``Store.for_service("dinkes")`` (``SIMPUL_DINKES_DB``, else
    ``.simpul/dinkes.db``). ``areas``: puskesmas by area (default: ``data/puskesmas.json``).
    ``today``: the date of decisions (default: today in WIB).
    """

    def __init__(
        self,
        store: Store | None = None,
        *,
        settings: Settings | None = None,
        areas: Areas | None = None,
        today: Callable[[], date] = today_in_malang,
    ) -> None:
        self.store = store or Store.for_service("dinkes")
        self.areas = areas or default_areas()
        self.today = today
        self._migration = Migration(self.store, db.TABLES)
        self.service = Service("dinkes", source=SOURCE, settings=settings)
        self.service.on(BirthNotice)(self.on_citizen_born)
        self.service.on_startup(self.open)
        self.service.on_shutdown(self.store.close)

    async def open(self) -> None:
        """Create the tables if missing (once per instance; the service does it at start)."""
        await self._migration()

    async def on_citizen_born(self, event: BirthNotice, ctx: EventContext) -> None:
        """Open the child's schedule at the puskesmas of the family's kelurahan; publish it.

        Reads ``child_ref``, ``born_on`` and ``kelurahan`` only: the child's NIK and the KK
        are not dinkes' business; its inbox never carries them (:class:`BirthNotice`).
        """
        child_ref, born_on, kelurahan = event.child_ref, event.born_on, event.kelurahan
        schedule = Schedule(
            child_ref=child_ref,
            puskesmas=self.areas.serving(kelurahan).code,
            scheduled_on=self.today(),
            doses=tuple(due_dates(born_on)),
        )
        opened = await self.store.once(
            f"{ctx.event_id}:schedule", lambda tx: db.open_schedule(tx, schedule, ctx.event_id)
        )
        # From the store: a retry after a failed publish finds the schedule stored and must
        # still publish it; a second birth event of the same child publishes nothing.
        stored = await self.store.run(lambda tx: db.opened_by(tx, ctx.event_id))
        if stored is not None:
            scheduled = ImmunisationScheduled(
                child_ref=stored.child_ref,
                puskesmas=stored.puskesmas,
                schedule=stored.doses,
                scheduled_on=stored.scheduled_on,
            )
            await ctx.publish(scheduled, subject=stored.child_ref)
        _log.info(
            "birth_applied", event_id=ctx.event_id, opened=opened, published=stored is not None
        )

    async def schedule_of(self, child_ref: str) -> Schedule | None:
        """The child's schedule (by ``child_ref``), if one was opened."""
        await self.open()
        return await self.store.run(lambda tx: db.schedule_of(tx, child_ref))

    def puskesmas_serving(self, kelurahan: str) -> Puskesmas:
        """The puskesmas a kelurahan's newborns are scheduled at."""
        return self.areas.serving(kelurahan)


def create() -> Service:
    """What ``simpul run services.dinkes:create`` runs."""
    return Dinkes().service
