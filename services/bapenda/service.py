"""The Bapenda service: local taxpayers registered from permits, kept in step with dukcapil."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta

from bus import EventContext, Service, Settings, Store, get_logger
from schemas.bapenda import TaxKind, TaxpayerRegistered
from schemas.dpmptsp import PermitIssued, PermitKind
from schemas.dukcapil import CitizenDied, CitizenMoved
from services._common import Migration, today_in_malang
from services.bapenda import db
from services.bapenda.db import BillingAddress, Review, TaxpayerRecord
from services.bapenda.rules import Rules, checked, default_rules

SOURCE = "urn:malangkota:bapenda:pajak-daerah"
KEEP_UNMATCHED = timedelta(days=90)
"""How long a move or death of a NIK without a registration is kept: for a permit registering
the person that arrives after it (streams are consumed independently)."""
_log = get_logger("services.bapenda")


class Bapenda:
    """Local taxpayer registration of Kota Malang.

    ``store``: default ``Store.for_service("bapenda")`` (``SIMPUL_BAPENDA_DB``, else
    ``.simpul/bapenda.db``). ``rules``: permit kind -> self-assessed taxes (default:
    ``data/permit_taxes.json``). ``today``: the date of decisions (default: today in WIB).
    ``keep_unmatched``: how long the latest move and the death of a NIK without a registration
    are kept, to be applied if a permit registers the person later (default
    :data:`KEEP_UNMATCHED`).
    """

    def __init__(
        self,
        store: Store | None = None,
        *,
        settings: Settings | None = None,
        rules: Rules | None = None,
        today: Callable[[], date] = today_in_malang,
        keep_unmatched: timedelta = KEEP_UNMATCHED,
    ) -> None:
        self.store = store or Store.for_service("bapenda")
        self.rules = default_rules() if rules is None else checked(rules)
        self.today = today
        self.keep_unmatched = keep_unmatched
        self._forgotten_on: date | None = None
        self._migration = Migration(self.store, db.TABLES)
        self.service = Service("bapenda", source=SOURCE, settings=settings)
        self.service.on(PermitIssued)(self.on_permit_issued)
        self.service.on(CitizenMoved)(self.on_citizen_moved)
        self.service.on(CitizenDied)(self.on_citizen_died)
        self.service.on_startup(self.open)
        self.service.on_shutdown(self.store.close)

    async def open(self) -> None:
        """Create the tables if missing (once per instance; the service does it at start)."""
        await self._migration()

    # -- handlers --------------------------------------------------------------------------------

    async def on_permit_issued(self, event: PermitIssued, ctx: EventContext) -> None:
        """Register the holder of a permit that carries a self-assessed tax; publish it."""
        taxes = self.rules[PermitKind(event.kind)]
        if not taxes:
            _log.info("permit_without_tax", event_id=ctx.event_id, kind=event.kind.value)
            return
        permit = db.Permit(
            permit_no=event.permit_no,
            kind=event.kind.value,
            scheme=event.applicant.scheme,
            value=event.applicant.value,
            site=event.site.model_dump(mode="json"),
            issued_on=event.issued_on,
        )
        today = self.today()
        outcome = await self.store.once(
            f"{ctx.event_id}:register",
            lambda tx: db.register(tx, permit, taxes, ctx.event_id, today),
        )
        # From the store: a retry after a failed publish finds the registration done and
        # must still publish it.
        row = await self.store.run(lambda tx: db.announcement(tx, ctx.event_id))
        if row is not None:
            registered = TaxpayerRegistered.parse(
                {
                    "npwpd": row["npwpd"],
                    "taxpayer": {"scheme": row["scheme"], "value": row["identifier"]},
                    "tax_kinds": row["tax_kinds"].split(","),
                    "address": {k: row[f"site_{k}"] for k in db.SITE_FIELDS},
                    "permit_no": row["permit_no"],
                    "registered_on": row["registered_on"],
                }
            )
            await ctx.publish(registered, subject=row["npwpd"])
        _log.info(
            "permit_applied",
            event_id=ctx.event_id,
            outcome=outcome or "done-before",
            published=row is not None,
        )

    async def on_citizen_moved(self, event: CitizenMoved, ctx: EventContext) -> None:
        """Bills of the person's registrations go to the new address (unless one is newer);
        without a registration, the move is remembered for a while (a permit may follow)."""
        today = self.today()
        outcome = await self.store.once(
            f"{ctx.event_id}:move",
            lambda tx: db.move(
                tx, event.nik, event.address, event.kecamatan, event.moved_on, today=today
            ),
        )
        updated, newer, remembered = outcome or (None, None, None)
        _log.info(
            "move_applied",
            event_id=ctx.event_id,
            updated=updated,
            kept_newer=newer,
            remembered=remembered,
        )
        await self._forget_unmatched(today)

    async def on_citizen_died(self, event: CitizenDied, ctx: EventContext) -> None:
        """Open a status review of each registration of the person; without a registration,
        the death is remembered for a while (a permit may follow)."""
        today = self.today()
        opened = await self.store.once(
            f"{ctx.event_id}:death",
            lambda tx: db.open_death_reviews(
                tx, event.nik, event.date_of_death, ctx.event_id, today
            ),
        )
        _log.info("death_applied", event_id=ctx.event_id, reviews_opened=opened)
        await self._forget_unmatched(today)

    async def _forget_unmatched(self, today: date) -> None:
        """Once a day per instance, in a transaction of its own: the deletion reads the whole
        table, and in every handler's transaction it would make concurrent replicas conflict."""
        if self._forgotten_on == today:
            return
        before = today - self.keep_unmatched
        forgotten = await self.store.run(lambda tx: db.forget_unmatched(tx, before))
        self._forgotten_on = today
        _log.info("unmatched_forgotten", niks=forgotten)

    # -- reads -----------------------------------------------------------------------------------

    async def taxpayer_of(self, permit_no: str) -> TaxpayerRecord | None:
        """The taxpayer a permit registered (or added taxes to), if any."""
        await self.open()
        return await self.store.run(lambda tx: db.taxpayer_of(tx, permit_no))

    async def taxpayers_by(self, scheme: str, value: str) -> list[TaxpayerRecord]:
        """The registrations of an identifier (scheme ``nik`` or ``nib``): none or one."""
        await self.open()
        return await self.store.run(lambda tx: db.taxpayers_by(tx, scheme, value))

    async def billing_address(self, npwpd: str) -> BillingAddress | None:
        await self.open()
        return await self.store.run(lambda tx: db.billing_address(tx, npwpd))

    async def open_reviews(self, npwpd: str | None = None) -> list[Review]:
        """Open status reviews (of every taxpayer, or of one), oldest first."""
        await self.open()
        return await self.store.run(lambda tx: db.open_reviews(tx, npwpd))

    def taxes_for(self, kind: PermitKind) -> tuple[TaxKind, ...]:
        """The taxes a permit of this kind registers its holder for (empty: none)."""
        return self.rules[kind]


def create() -> Service:
    """What ``simpul run services.bapenda:create`` runs."""
    return Bapenda().service
