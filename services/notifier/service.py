"""The Notifier service: links, deaths, the inbox and the e-mail outbox of city accounts."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from bus import (
    ComponentSettings,
    ConfigurationError,
    EventContext,
    Service,
    Settings,
    Store,
    Tx,
    get_logger,
    refuse_dev_token,
)
from schemas.common import Identifier
from schemas.dpmptsp import PermitRejected
from schemas.dukcapil import CitizenDied
from schemas.identity import AccountLinked, AccountUnlinked, UnlinkReason
from services._common import now_text, today_in_malang, utc_text
from services.notifier import texts
from services.notifier.api import inbox_app
from services.notifier.db import DROP_UNSENT, PENDING, SCHEMA
from services.notifier.mail import (
    EmailNotSent,
    InvalidAddress,
    Mailer,
    SmtpSettings,
    SmtpUnavailable,
    check_email,
    compose,
    message_id,
)
from services.notifier.projections import IssuedPermit, Payment
from services.notifier.texts import Notice

__all__ = [
    "SOURCE",
    "EmailNotSent",
    "InboxItem",
    "InvalidAddress",
    "Notifier",
    "SmtpSettings",
    "SmtpUnavailable",
    "create",
]

SOURCE = "urn:malangkota:diskominfo:notifier"
TOKEN_VARIABLE = "SIMPUL_NOTIFIER_TOKEN"
MAX_AGE_VARIABLE = "SIMPUL_NOTIFIER_MAX_AGE_DAYS"


DEFAULT_MAX_AGE = timedelta(days=7)


class NotifierSettings(ComponentSettings):
    """The notifier's knobs, from ``SIMPUL_NOTIFIER_*`` (e-mail has its own:
    :class:`SmtpSettings`, ``SIMPUL_SMTP_*``)."""

    model_config = SettingsConfigDict(env_prefix="SIMPUL_NOTIFIER_")

    token: SecretStr | None = Field(
        default=None, description="bearer token of the inbox API (16+ characters; unset: off)"
    )
    max_age_days: int = Field(
        default=DEFAULT_MAX_AGE.days,
        ge=0,
        description="events older than this are not notified (0: no limit)",
    )


KEEP_UNMATCHED = timedelta(days=90)
"""How long the death of a NIK never linked here is kept, for a link handled after it."""
_log = get_logger("services.notifier")


@dataclass(frozen=True, slots=True)
class InboxItem:
    """One notice in an account's in-app inbox."""

    event_id: str
    kind: str
    title: str
    body: str
    occurred_at: str  # when the decision or payment was recorded (the event's time), UTC
    created_at: str  # when the notifier stored it, UTC

    def as_json(self) -> dict[str, str]:
        return {
            "event_id": self.event_id,
            "kind": self.kind,
            "title": self.title,
            "body": self.body,
            "occurred_at": self.occurred_at,
            "created_at": self.created_at,
        }


class Notifier:
    """The notifier service: its store, its SMTP mailer and its ``.service``."""

    def __init__(
        self,
        store: Store | None = None,
        *,
        settings: Settings | None = None,
        smtp: SmtpSettings | None = None,
        token: str | None = None,
        max_age: timedelta | None = None,
    ) -> None:
        """``smtp``: default from ``SIMPUL_SMTP_*`` (host unset: inbox only). ``token``: the
        bearer token of the inbox API, default ``SIMPUL_NOTIFIER_TOKEN`` (unset: API off).
        ``max_age``: events older than this (by their ``time``) are not notified, default
        ``SIMPUL_NOTIFIER_MAX_AGE_DAYS`` or 7 days; ``timedelta(0)``: no limit."""
        self.store = store or Store.for_service("notifier")
        own = NotifierSettings.load()
        self.max_age = max_age if max_age is not None else timedelta(days=own.max_age_days)
        self.smtp = smtp if smtp is not None else SmtpSettings.from_env()
        self.mailer = Mailer(self.smtp)
        if token is None and own.token is not None:
            token = own.token.get_secret_value()
        if token is not None and len(token) < 16:
            raise ConfigurationError(f"{TOKEN_VARIABLE} must be at least 16 characters")
        refuse_dev_token(token, TOKEN_VARIABLE)
        self._token = token
        self._forgotten_on: date | None = None
        self.service = Service("notifier", source=SOURCE, settings=settings)
        self.service.on(AccountLinked)(self.on_account_linked)
        self.service.on(AccountUnlinked)(self.on_account_unlinked)
        self.service.on(CitizenDied)(self.on_citizen_died)
        self.service.on(IssuedPermit)(self.on_permit_issued)
        self.service.on(PermitRejected)(self.on_permit_rejected)
        self.service.on(Payment)(self.on_payment_received)
        self.service.mount(inbox_app(self, token))
        self.service.on_startup(self.open)
        self.service.on_shutdown(self.store.close)

    async def open(self) -> None:
        await self.store.migrate(SCHEMA)
        if self.smtp.enabled:
            _log.info(
                "email_enabled",
                host=self.smtp.host,
                port=self.smtp.port,
                starttls=self.smtp.starttls,
                tls=self.smtp.tls,
            )
            keep_alive_s = self.service.settings.claim_idle_ms / 2000
            if self.smtp.send_timeout_s >= keep_alive_s:
                # A handler still sending then may outlive its claim: a second replica could
                # send the same message (with the same Message-ID).
                _log.warning(
                    "email_send_timeout_too_long",
                    send_timeout_s=self.smtp.send_timeout_s,
                    claim_idle_ms=self.service.settings.claim_idle_ms,
                )
        else:
            _log.warning("email_disabled", reason="SIMPUL_SMTP_HOST is not set: in-app inbox only")
        if self._token is None:
            _log.warning("inbox_api_disabled", reason=f"{TOKEN_VARIABLE} is not set")

    # -- who is who ---------------------------------------------------------------------------

    async def on_account_linked(self, event: AccountLinked, ctx: EventContext) -> None:
        nik, account, at = event.nik, str(event.account_id), utc_text(event.linked_at)
        key = f"{ctx.event_id}:link"
        applied = await self.store.once(key, lambda tx: _link(tx, nik, account, at))
        _log.info("account_linked", event_id=ctx.event_id, applied=applied)

    async def on_account_unlinked(self, event: AccountUnlinked, ctx: EventContext) -> None:
        nik, account, at = event.nik, str(event.account_id), utc_text(event.unlinked_at)
        fraud = event.reason == UnlinkReason.FRAUD

        def work(tx: Tx) -> bool:
            applied = _unlink(tx, nik, account, at)
            if fraud:  # the inbox showed the victim's affairs: it goes, unsent mail too
                tx.execute(DROP_UNSENT, (account,))
                tx.execute("DELETE FROM notifier_inbox WHERE account_id = ?", (account,))
            return applied

        applied = await self.store.once(f"{ctx.event_id}:unlink", work)
        _log.info(
            "account_unlinked", event_id=ctx.event_id, applied=applied, reason=event.reason.value
        )

    async def on_citizen_died(self, event: CitizenDied, ctx: EventContext) -> None:
        nik, day = event.nik, event.date_of_death.isoformat()
        today = today_in_malang().isoformat()

        def work(tx: Tx) -> int:
            known = tx.execute("UPDATE notifier_link SET deceased_on = ? WHERE nik = ?", (day, nik))
            if not known:  # its link may still come (another stream): remember, for a while
                tx.execute(
                    "INSERT INTO notifier_death (nik, died_on, remembered_on) VALUES (?, ?, ?) "
                    "ON CONFLICT DO NOTHING",
                    (nik, day, today),
                )
            return known

        known = await self.store.once(f"{ctx.event_id}:death", work)
        _log.info("citizen_died", event_id=ctx.event_id, known=bool(known))
        await self._forget_unmatched()

    async def _forget_unmatched(self) -> None:
        """Once a day per instance, in a transaction of its own (it reads the whole table)."""
        today = today_in_malang()
        if self._forgotten_on == today:
            return
        before = (today - KEEP_UNMATCHED).isoformat()
        forgotten = await self.store.run(
            lambda tx: tx.execute("DELETE FROM notifier_death WHERE remembered_on < ?", (before,))
        )
        self._forgotten_on = today
        _log.info("unmatched_deaths_forgotten", deaths=forgotten)

    async def set_contact(self, account_id: str | uuid.UUID, email: str | None) -> None:
        """Record (or, with None, remove) the e-mail address of a city account.

        In production the super-app calls this (it owns the address and the citizen's consent);
        raises :class:`InvalidAddress` or ValueError (bad account id) without quoting values.
        """
        account = _account(account_id)
        if email is None:
            forget = "DELETE FROM notifier_contact WHERE account_id = ?"
            await self.store.run(lambda tx: tx.execute(forget, (account,)))
            _log.info("contact_removed")
            return
        address, now = check_email(email), now_text()
        # One statement, so two PUTs racing for a new account cannot both try an INSERT (an
        # UPDATE then an INSERT could: a unique violation under READ COMMITTED). Under
        # SERIALIZABLE the loser of a conflict is run again by the store; the last one wins.
        upsert = (
            "INSERT INTO notifier_contact (account_id, email, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT (account_id) DO UPDATE SET email = excluded.email, "
            "updated_at = excluded.updated_at"
        )
        await self.store.run(lambda tx: tx.execute(upsert, (account, address, now)))
        _log.info("contact_set")

    # -- notifications ------------------------------------------------------------------------

    async def on_permit_issued(self, event: IssuedPermit, ctx: EventContext) -> None:
        await self._notify(ctx, event.applicant, texts.permit_issued(event))

    async def on_permit_rejected(self, event: PermitRejected, ctx: EventContext) -> None:
        await self._notify(ctx, event.applicant, texts.permit_rejected(event))

    async def on_payment_received(self, event: Payment, ctx: EventContext) -> None:
        await self._notify(ctx, event.taxpayer, texts.payment_received(event))

    async def _notify(self, ctx: EventContext, who: Identifier, notice: Notice) -> None:
        event_id, moment = ctx.event_id, ctx.envelope.timestamp
        occurred, email = utc_text(moment), self.smtp.enabled
        # On its first start the service reads each stream from the beginning: old decisions
        # are history, not news (the links in that history still count).
        stale = bool(self.max_age) and datetime.now(UTC) - moment > self.max_age

        def work(tx: Tx) -> tuple[str, bool]:
            if stale:
                outcome, mailed = "skipped:stale", False
            else:
                outcome, mailed = _store_notice(tx, event_id, occurred, who, notice, email=email)
            _count(tx, outcome)
            return outcome, mailed

        done = await self.store.once(f"{event_id}:notify", work)
        if done is not None:  # first time: say what was decided (a redelivery decided nothing)
            outcome, mailed = done
            if outcome == "notified":
                _log.info("notified", event_id=event_id, kind=notice.kind, email=mailed)
            else:
                _log.info(
                    "notification_skipped",
                    event_id=event_id,
                    kind=notice.kind,
                    reason=outcome.removeprefix("skipped:"),
                )
        await self._send_pending(event_id)

    async def _send_pending(self, event_id: str) -> int:
        """Send the e-mails of ``event_id`` not yet marked sent; raise if any failed."""
        if not self.smtp.enabled:
            return 0
        rows = await self.store.run(lambda tx: tx.all(PENDING, (event_id,)))
        failure: EmailNotSent | None = None
        sent = 0
        for row in rows:
            try:
                if await self._send_one(row):
                    sent += 1
            except EmailNotSent as exc:
                failure = failure or exc
        if failure is not None:
            raise failure
        return sent

    async def _send_one(self, row: dict[str, Any]) -> bool:
        key = (row["event_id"], row["account_id"])
        if row["email"] is None:  # the address was removed since the notice was stored
            await self.store.run(lambda tx: _no_address(tx, *key))
            _log.info("email_no_address", event_id=row["event_id"])
            return False
        message = compose(
            self.smtp,
            to=row["email"],
            subject=row["title"],
            text=texts.email_text(row["body"]),
            msgid=row["message_id"],
        )
        try:
            await self.mailer.send(message)
        except EmailNotSent as exc:
            error = str(exc)
            await self.store.run(lambda tx: _attempt_failed(tx, *key, error))
            _log.warning(
                "email_failed", event_id=row["event_id"], error=error, permanent=exc.permanent
            )
            raise
        await self.store.run(lambda tx: _mark_sent(tx, *key))
        _log.info("email_sent", event_id=row["event_id"])
        return True

    async def send_pending(self, event_ids: Iterable[str]) -> int:
        """Operator tool: send the unsent e-mails of these events (e.g. dead-lettered after an
        SMTP outage) without replaying the events. Returns how many were sent; raises
        :class:`EmailNotSent` after trying them all if any failed.

        Do not use it for events the bus is still retrying: the two could send one message
        twice (with the same Message-ID).
        """
        sent = 0
        failure: EmailNotSent | None = None
        for event_id in dict.fromkeys(event_ids):
            try:
                sent += await self._send_pending(event_id)
            except EmailNotSent as exc:
                failure = failure or exc
        if failure is not None:
            raise failure
        return sent

    # -- read methods -------------------------------------------------------------------------

    async def inbox(self, account_id: str | uuid.UUID, *, limit: int = 50) -> list[InboxItem]:
        """The newest ``limit`` notices of an account (ValueError if the id is not a UUID)."""
        account = _account(account_id)
        rows = await self.store.run(
            lambda tx: tx.all(
                "SELECT event_id, kind, title, body, occurred_at, created_at FROM notifier_inbox "
                "WHERE account_id = ? ORDER BY created_at DESC, event_id DESC LIMIT ?",
                (account, int(limit)),
            )
        )
        return [InboxItem(**row) for row in rows]

    async def sent_mail(self) -> list[tuple[str, str]]:
        """(event id, account id) of every e-mail marked sent, oldest first. No addresses."""
        rows = await self.store.run(
            lambda tx: tx.all(
                "SELECT event_id, account_id FROM notifier_outbox WHERE status = 'sent' "
                "ORDER BY sent_at, event_id, account_id"
            )
        )
        return [(row["event_id"], row["account_id"]) for row in rows]

    async def sent_count(self) -> int:
        count = await self.store.run(
            lambda tx: tx.value("SELECT COUNT(*) FROM notifier_outbox WHERE status = 'sent'")
        )
        return int(count or 0)

    async def pending_mail(self) -> list[dict[str, Any]]:
        """E-mails not sent yet: event id, account id, attempts, last error (no addresses)."""
        return await self.store.run(
            lambda tx: tx.all(
                "SELECT event_id, account_id, attempts, last_error FROM notifier_outbox "
                "WHERE status = 'pending' ORDER BY created_at, event_id, account_id"
            )
        )

    async def counts(self) -> dict[str, int]:
        """How events ended: ``notified``, ``skipped:business``, ``skipped:no-account``,
        ``skipped:deceased``, ``skipped:stale`` and ``email:no-address`` (inbox only: the
        account has no address). Counted once per event, whatever the redeliveries."""
        rows = await self.store.run(lambda tx: tx.all("SELECT name, n FROM notifier_counter"))
        return {row["name"]: int(row["n"]) for row in rows}

    async def account_of(self, nik: str) -> str | None:
        """The account a NIK is linked to now (None if none)."""
        value = await self.store.run(
            lambda tx: tx.value("SELECT account_id FROM notifier_link WHERE nik = ?", (nik,))
        )
        return None if value is None else str(value)


def create() -> Service:
    """What ``simpul run services.notifier:create`` runs."""
    return Notifier().service


# -- in the store's transaction ---------------------------------------------------------------


def _new_link(tx: Tx, nik: str, account: str | None, at: str) -> None:
    """The NIK's first link row, with its death if that was handled first."""
    died_on = tx.value("SELECT died_on FROM notifier_death WHERE nik = ?", (nik,))
    tx.execute(
        "INSERT INTO notifier_link (nik, account_id, changed_at, deceased_on) VALUES (?, ?, ?, ?)",
        (nik, account, at, died_on),
    )
    if died_on is not None:
        tx.execute("DELETE FROM notifier_death WHERE nik = ?", (nik,))


def _link(tx: Tx, nik: str, account: str, at: str) -> bool:
    row = tx.one("SELECT changed_at FROM notifier_link WHERE nik = ?", (nik,))
    if row is None:
        _new_link(tx, nik, account, at)
        return True
    if at < row["changed_at"]:  # an older fact, retried or reordered: the newer one stands
        return False
    tx.execute(
        "UPDATE notifier_link SET account_id = ?, changed_at = ? WHERE nik = ?", (account, at, nik)
    )
    return True


def _unlink(tx: Tx, nik: str, account: str, at: str) -> bool:
    row = tx.one("SELECT account_id, changed_at FROM notifier_link WHERE nik = ?", (nik,))
    if row is None:
        # The unlink overtook its link (a retry): remember it, so the older link stays ignored.
        _new_link(tx, nik, None, at)
        return True
    # A relink publishes "unlinked old" and "linked new", possibly with one timestamp: at a
    # tie, only the account it names is unlinked.
    newer = at > row["changed_at"] or (at == row["changed_at"] and row["account_id"] == account)
    if not newer:
        return False
    tx.execute(
        "UPDATE notifier_link SET account_id = NULL, changed_at = ? WHERE nik = ?", (at, nik)
    )
    return True


def _store_notice(
    tx: Tx, event_id: str, occurred: str, who: Identifier, notice: Notice, *, email: bool
) -> tuple[str, bool]:
    """Decide whom to tell; write the inbox row and the outbox row. Returns (outcome, mailed)."""
    if who.scheme != "nik":
        return "skipped:business", False
    row = tx.one("SELECT account_id, deceased_on FROM notifier_link WHERE nik = ?", (who.value,))
    if row is None or row["account_id"] is None:
        return "skipped:no-account", False
    if row["deceased_on"] is not None:
        return "skipped:deceased", False
    account, now = str(row["account_id"]), now_text()
    tx.execute(
        "INSERT INTO notifier_inbox (account_id, event_id, kind, title, body, occurred_at, "
        "created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (account, event_id, notice.kind, notice.title, notice.body, occurred, now),
    )
    if not email:
        return "notified", False
    if tx.one("SELECT 1 AS known FROM notifier_contact WHERE account_id = ?", (account,)) is None:
        _count(tx, "email:no-address")
        return "notified", False
    tx.execute(
        "INSERT INTO notifier_outbox (event_id, account_id, message_id, status, attempts, "
        "created_at) VALUES (?, ?, ?, 'pending', 0, ?)",
        (event_id, account, message_id(event_id, account), now),
    )
    return "notified", True


def _count(tx: Tx, name: str) -> None:
    tx.execute(
        "INSERT INTO notifier_counter (name, n) VALUES (?, 1) "
        "ON CONFLICT (name) DO UPDATE SET n = notifier_counter.n + 1",
        (name,),
    )


def _mark_sent(tx: Tx, event_id: str, account: str) -> None:
    tx.execute(
        "UPDATE notifier_outbox SET status = 'sent', sent_at = ?, attempts = attempts + 1, "
        "last_error = NULL WHERE event_id = ? AND account_id = ?",
        (now_text(), event_id, account),
    )


def _attempt_failed(tx: Tx, event_id: str, account: str, error: str) -> None:
    tx.execute(
        "UPDATE notifier_outbox SET attempts = attempts + 1, last_error = ? "
        "WHERE event_id = ? AND account_id = ?",
        (error[:200], event_id, account),
    )


def _no_address(tx: Tx, event_id: str, account: str) -> None:
    tx.execute(
        "UPDATE notifier_outbox SET status = 'no-address' WHERE event_id = ? AND account_id = ?",
        (event_id, account),
    )
    _count(tx, "email:no-address")


def _account(account_id: str | uuid.UUID) -> str:
    try:
        return str(account_id if isinstance(account_id, uuid.UUID) else uuid.UUID(account_id))
    except (ValueError, TypeError, AttributeError):
        raise ValueError("an account id is a UUID: 32 hex digits as 8-4-4-4-12") from None
