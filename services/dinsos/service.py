"""The Dinsos service: grants, households and re-checks, following the civil registry."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

from redis.asyncio import Redis

from bus import EventContext, Publisher, Service, Settings, Store, event_id, get_logger
from schemas.dinsos import AssistanceGranted, AssistanceSuspended, Programme
from schemas.dukcapil import CitizenDied
from services._common import Migration, today_in_malang
from services.dinsos import db
from services.dinsos.db import Grant, Recheck
from services.dinsos.projections import Birth, FamilyCard, Move, Placed

SOURCE = "urn:malangkota:dinsos:bansos"
KEEP_UNMATCHED = timedelta(days=90)
"""How long the death of someone dinsos does not know is kept: for a family card or birth
listing the person that arrives after the death (streams are consumed independently)."""
_log = get_logger("services.dinsos")


class Dinsos:
    """Social assistance of Kota Malang, kept in step with the civil registry.

    ``store``: default ``Store.for_service("dinsos")`` (``SIMPUL_DINSOS_DB``, else
    ``.simpul/dinsos.db``). ``today``: the date of decisions (default: today in WIB).
    ``keep_unmatched``: how long a death of someone in no kept household is remembered, in case
    a card or birth listing the person arrives late (default :data:`KEEP_UNMATCHED`).
    """

    def __init__(
        self,
        store: Store | None = None,
        *,
        settings: Settings | None = None,
        today: Callable[[], date] = today_in_malang,
        keep_unmatched: timedelta = KEEP_UNMATCHED,
    ) -> None:
        self.store = store or Store.for_service("dinsos")
        self.today = today
        self.keep_unmatched = keep_unmatched
        self._forgotten_on: date | None = None
        self._migration = Migration(self.store, db.TABLES)
        self.service = Service("dinsos", source=SOURCE, settings=settings)
        self.service.on(CitizenDied)(self.on_citizen_died)
        self.service.on(Birth)(self.on_citizen_born)
        self.service.on(Move)(self.on_citizen_moved)
        self.service.on(FamilyCard)(self.on_family_card_issued)
        self.service.on(Placed)(self.on_jobseeker_placed)
        self.service.on_startup(self.open)
        self.service.on_shutdown(self.store.close)

    async def open(self) -> None:
        """Create the tables if missing (once per instance; the service does it at start)."""
        await self._migration()

    # -- what dinsos decides itself ------------------------------------------------------------

    async def grant(
        self,
        redis_or_publisher: Redis | Publisher,
        *,
        recipient: str,
        kk: str,
        kelurahan: str,
        programme: Programme | str,
        amount: int,
        frequency: str,
        starts_on: date,
        granted_on: date,
        ends_on: date | None = None,
        grant_no: str | None = None,
    ) -> str:
        """Record a grant and publish ``dinsos.assistance.granted``; return its number.

        Idempotent: the same terms find the same grant (by ``grant_no`` if given, else by
        programme, recipient and start) and republish the same event id, a no-op on the bus.
        Other terms for an existing grant raise :class:`~services.dinsos.db.GrantConflict`.
        Invalid terms raise ``ContractViolation`` before anything is stored.
        """
        terms: dict[str, Any] = {
            "programme": Programme(programme).value,
            "recipient": recipient,
            "kk": kk,
            "kelurahan": kelurahan,
            "amount": amount,
            "frequency": frequency,
            "starts_on": starts_on.isoformat(),
            "ends_on": None if ends_on is None else ends_on.isoformat(),
            "granted_on": granted_on.isoformat(),
        }
        AssistanceGranted.parse({"grant_no": grant_no or "DINSOS/NEW", **terms})
        await self.open()
        stored = await self.store.run(lambda tx: db.record_grant(tx, terms, grant_no))
        event = AssistanceGranted.parse({**terms, "grant_no": stored.grant_no})
        publisher = (
            redis_or_publisher
            if isinstance(redis_or_publisher, Publisher)
            else Publisher(redis_or_publisher, source=SOURCE)
        )
        published = await publisher.publish(
            event, id=event_id(SOURCE, "grant", stored.grant_no), subject=stored.grant_no
        )
        _log.info("assistance_granted", event_id=published.event_id, duplicate=published.duplicate)
        return stored.grant_no

    # -- handlers --------------------------------------------------------------------------------

    async def on_citizen_died(self, event: CitizenDied, ctx: EventContext) -> None:
        """Suspend the person's grants (one event each); re-verify their households' grants;
        remember the death (a card listing the person may arrive later)."""
        cause = db.Cause(ctx.event_id, self.today())
        outcome = await self.store.once(
            f"{ctx.event_id}:death",
            lambda tx: db.apply_death(tx, event.nik, event.date_of_death, cause),
        )
        # Published from the store, not from ``outcome``: a retry after a failed publish finds
        # the store work done (``outcome`` None) and must still publish every suspension.
        suspended = await self.store.run(lambda tx: db.suspended_by(tx, ctx.event_id))
        for grant in suspended:
            await ctx.publish(_suspension(grant), key=grant.grant_no, subject=grant.grant_no)
        _log.info(
            "death_applied",
            event_id=ctx.event_id,
            grants_suspended=len(suspended),
            rechecks_opened=None if outcome is None else outcome[1],
            redelivered=outcome is None,
        )
        await self._forget_unmatched(cause.today)

    async def on_citizen_born(self, event: Birth, ctx: EventContext) -> None:
        """Add the child to the household (if dinsos keeps it) and re-verify its grants."""
        cause = db.Cause(ctx.event_id, self.today())
        opened = await self.store.once(
            f"{ctx.event_id}:birth",
            lambda tx: db.apply_birth(tx, event.kk, event.nik, cause),
        )
        _log.info("birth_applied", event_id=ctx.event_id, rechecks_opened=opened)

    async def on_citizen_moved(self, event: Move, ctx: EventContext) -> None:
        """Area re-check of the person's grants administered in another kecamatan."""
        cause = db.Cause(ctx.event_id, self.today())
        outcome = await self.store.once(
            f"{ctx.event_id}:move",
            lambda tx: db.apply_move(tx, event.nik, event.kecamatan, event.moved_on, cause),
        )
        opened, closed = outcome or (None, None)
        _log.info(
            "move_applied", event_id=ctx.event_id, rechecks_opened=opened, rechecks_closed=closed
        )

    async def on_family_card_issued(self, event: FamilyCard, ctx: EventContext) -> None:
        """Take a family card's members as the household's, for households dinsos keeps."""
        cause = db.Cause(ctx.event_id, self.today())
        opened = await self.store.once(
            f"{ctx.event_id}:card",
            lambda tx: db.apply_family_card(tx, event.kk, event.members, event.issued_on, cause),
        )
        _log.info("family_card_applied", event_id=ctx.event_id, rechecks_opened=opened)

    async def on_jobseeker_placed(self, event: Placed, ctx: EventContext) -> None:
        """Re-verify the grants of the person and of their households: a household whose
        member found work may no longer be eligible. Nothing of the job is kept."""
        cause = db.Cause(ctx.event_id, self.today())
        opened = await self.store.once(
            f"{ctx.event_id}:placement",
            lambda tx: db.apply_placement(tx, event.nik, event.placed_on, cause),
        )
        _log.info("placement_applied", event_id=ctx.event_id, rechecks_opened=opened)

    async def _forget_unmatched(self, today: date) -> None:
        """Once a day per instance, in a transaction of its own: the deletion reads the whole
        table, and in every handler's transaction it would make concurrent replicas conflict."""
        if self._forgotten_on == today:
            return
        before = today - self.keep_unmatched
        forgotten = await self.store.run(lambda tx: db.forget_unmatched_deaths(tx, before))
        self._forgotten_on = today
        _log.info("unmatched_deaths_forgotten", deaths=forgotten)

    # -- reads -----------------------------------------------------------------------------------

    async def grants_of(self, recipient: str) -> list[Grant]:
        """Every grant of a recipient (by NIK), active and suspended, by grant number."""
        await self.open()
        return await self.store.run(lambda tx: db.grants_of(tx, recipient))

    async def household_of(self, kk: str) -> list[str]:
        """NIKs of the household's members as dinsos knows them (empty: not kept), sorted."""
        await self.open()
        return await self.store.run(lambda tx: db.household(tx, kk))

    async def rechecks(
        self, grant_no: str | None = None, *, status: str | None = "open"
    ) -> list[Recheck]:
        """Re-checks (all grants, or one), open ones by default (``status=None``: all)."""
        await self.open()
        return await self.store.run(lambda tx: db.rechecks(tx, grant_no, status))


def _suspension(grant: Grant) -> AssistanceSuspended:
    assert grant.reason and grant.suspended_on and grant.effective_from
    return AssistanceSuspended.parse(
        {
            "grant_no": grant.grant_no,
            "programme": grant.programme.value,
            "recipient": grant.recipient,
            "reason": grant.reason.value,
            "suspended_on": grant.suspended_on.isoformat(),
            "effective_from": grant.effective_from.isoformat(),
        }
    )


def create() -> Service:
    """What ``simpul run services.dinsos:create`` runs."""
    return Dinsos().service
