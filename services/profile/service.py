"""The Profile service: one profile per citizen, written from every department's events."""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from bus import (
    ComponentSettings,
    Contract,
    EventContext,
    Service,
    Settings,
    Store,
    Tx,
    get_logger,
)
from schemas.bapenda import PaymentReceived, TaxAssessed
from schemas.common import Identifier, pseudonym
from schemas.dinsos import AssistanceSuspended
from schemas.dpmptsp import PermitRejected
from schemas.dukcapil import CitizenDied, CitizenMoved, FamilyCardIssued
from schemas.identity import AccountLinked, AccountUnlinked
from services._common import now_text, today_in_malang
from services.profile import api, projections, ratelimit, view
from services.profile import db as tables
from services.profile.db import Stamp
from services.profile.metrics import LookupMetrics
from services.profile.policy import Caller, Policy, Tokens
from services.profile.ratelimit import RateLimit, Verdict

__all__ = [
    "PSEUDONYM_KEY_ENV",
    "WRITES",
    "Policy",
    "Profile",
    "ProfileSettings",
    "RateLimit",
    "Tokens",
    "create",
]

PSEUDONYM_KEY_ENV = "SIMPUL_PSEUDONYM_KEY"


class ProfileSettings(ComponentSettings):
    """The profile's knobs, from ``SIMPUL_PROFILE_*`` and the city's ``SIMPUL_PSEUDONYM_KEY``
    (the rate limit has its own: :class:`RateLimit`, ``SIMPUL_PROFILE_RATE_*``)."""

    model_config = SettingsConfigDict(env_prefix="SIMPUL_PROFILE_")

    tokens: SecretStr | None = Field(
        default=None, description="role=token,... of the API's callers (unset: every call 401)"
    )
    pseudonym_key: SecretStr | None = Field(
        default=None,
        validation_alias=PSEUDONYM_KEY_ENV,
        description="the city's key for the pseudonyms in access records",
    )


_log = get_logger("services.profile")

Write = Callable[[Tx, Any, Stamp], None]
WRITES: dict[type[Contract], Write] = {
    projections.Birth: tables.born,
    CitizenDied: tables.died,
    CitizenMoved: tables.moved,
    FamilyCardIssued: tables.family_card,
    projections.PermitApplication: tables.permit_applied,
    projections.IssuedPermit: tables.permit_issued,
    PermitRejected: tables.permit_rejected,
    projections.Registration: tables.taxpayer_registered,
    TaxAssessed: tables.tax_assessed,
    PaymentReceived: tables.payment_received,
    projections.Grant: tables.assistance_granted,
    AssistanceSuspended: tables.assistance_suspended,
    AccountLinked: tables.account_linked,
    AccountUnlinked: tables.account_unlinked,
}
"""What each consumed event type does to the store."""


class Profile:
    """The profile store, its consumer and its API.

    ``tokens``: ``role=token,...`` (default: ``SIMPUL_PROFILE_TOKENS``); ``policy``: the roles
    (default: the shipped ``data/roles.json``); ``pseudonym_key``: the city's key for the
    pseudonyms in access records (default: ``SIMPUL_PSEUDONYM_KEY``); ``rate``: how fast each
    token may look up (default: ``SIMPUL_PROFILE_RATE_*``, :mod:`services.profile.ratelimit`).
    """

    def __init__(
        self,
        store: Store | None = None,
        *,
        settings: Settings | None = None,
        profile_settings: ProfileSettings | None = None,
        tokens: str | None = None,
        policy: Policy | None = None,
        pseudonym_key: bytes | None = None,
        rate: RateLimit | None = None,
    ) -> None:
        self.store = store or Store.for_service("profile")
        self.rate = rate or RateLimit.load()
        self.policy = policy or Policy.load()
        own = profile_settings or ProfileSettings.load()
        if tokens is None and own.tokens is not None:
            tokens = own.tokens.get_secret_value()
        self.tokens = Tokens.parse(self.policy, tokens)
        env_key = own.pseudonym_key.get_secret_value().encode() if own.pseudonym_key else b""
        self._key_given = bool(pseudonym_key or env_key)
        self._pseudonym_key = pseudonym_key or env_key or secrets.token_bytes(32)
        self.service = Service("profile", settings=settings)
        for model, write in WRITES.items():
            self.service.on(model)(self._handler(write))
        self.service.on_startup(self.open)
        self.service.on_shutdown(self.store.close)
        self.lookup_metrics = LookupMetrics().register(self.service.metrics.registry)
        self.app = api.build(self)
        self.service.mount(self.app)

    async def open(self) -> None:
        await self.store.migrate(tables.MIGRATIONS)
        if not self._key_given:
            # Access records then name subjects by a key that dies with the process.
            _log.warning("profile_pseudonym_key_missing", variable=PSEUDONYM_KEY_ENV)
        if not len(self.tokens):
            _log.warning("profile_api_without_tokens", effect="every request gets 401")

    # -- consuming ---------------------------------------------------------------------------

    def _handler(self, write: Write) -> Callable[[Any, EventContext], Awaitable[None]]:
        async def handle(event: Any, ctx: EventContext) -> None:
            party: Identifier | None = getattr(event, "applicant", None) or getattr(
                event, "taxpayer", None
            )
            if party is not None and party.scheme != "nik":
                _log.debug(
                    "profile_business_event_skipped", event_id=ctx.event_id, type=ctx.envelope.type
                )
                return
            stamp = Stamp.of(ctx.envelope.timestamp, ctx.event_id)
            done = await self.store.once(f"{ctx.event_id}:profile", _applying(write, event, stamp))
            _log.debug(
                "profile_updated",
                event_id=ctx.event_id,
                type=ctx.envelope.type,
                duplicate=done is None,
            )

        return handle

    # -- reading -----------------------------------------------------------------------------

    async def person(self, nik: str) -> dict[str, Any] | None:
        """Every section of the profile of ``nik``, or None when no department mentioned it.

        ``{"nik": ..., "sections": {"registry": ..., "address": ..., "family": ...,
        "permits": [...], "tax": {...}, "assistance": [...], "accounts": {...}}}``
        """
        today = today_in_malang()
        return await self.store.run(lambda tx: view.person(tx, nik, today))

    async def by_account(self, account_id: str | uuid.UUID) -> dict[str, Any] | None:
        """The profile of the person ``account_id`` is linked to now, or None (no open link:
        never linked, unlinked, relinked elsewhere, or the person died)."""
        try:
            account = str(uuid.UUID(str(account_id)))
        except ValueError:
            return None
        today = today_in_malang()

        def read(tx: Tx) -> dict[str, Any] | None:
            nik = view.holder_of(tx, account)
            return None if nik is None else view.person(tx, nik, today)

        return await self.store.run(read)

    async def admit(self, caller: Caller) -> Verdict:
        """Take one of ``caller``'s tokens of rate (shared with the other replicas)."""
        now_ms = time.time_ns() // 1_000_000  # wall clock: the replicas compare their times
        return await self.store.run(lambda tx: ratelimit.take(tx, caller.name, now_ms, self.rate))

    # -- access records ----------------------------------------------------------------------

    async def record_access(
        self,
        caller: Caller,
        lookup: str,
        *,
        nik: str | None,
        outcome: int,
        sections: tuple[str, ...],
    ) -> None:
        """Record one lookup: who, when, whose data (as a pseudonym), what was disclosed."""
        subject = None if nik is None else pseudonym(self._pseudonym_key, "nik", nik)
        row = (
            uuid.uuid4().hex,
            now_text(),
            caller.name,
            lookup,
            subject,
            outcome,
            ",".join(sections),
        )
        await self.store.run(
            lambda tx: tx.execute(
                "INSERT INTO profile_access (id, at, caller, lookup, subject, outcome, sections) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                row,
            )
        )

    async def access_records(self, limit: int = 100) -> list[dict[str, Any]]:
        """The latest ``limit`` access records, newest first."""
        rows = await self.store.run(
            lambda tx: tx.all(
                "SELECT at, caller, lookup, subject, outcome, sections FROM profile_access "
                "ORDER BY at DESC, id LIMIT ?",
                (limit,),
            )
        )
        return [
            {
                **row,
                "outcome": int(row["outcome"]),
                "sections": row["sections"].split(",") if row["sections"] else [],
            }
            for row in rows
        ]

    def subject_of(self, nik: str) -> str:
        """The pseudonym access records name ``nik`` by (for an auditor's search)."""
        return pseudonym(self._pseudonym_key, "nik", nik)


def create() -> Service:
    """What ``simpul run services.profile:create`` runs."""
    return Profile().service


def _applying(write: Write, event: Any, stamp: Stamp) -> Callable[[Tx], bool]:
    def work(tx: Tx) -> bool:
        write(tx, event, stamp)
        return True

    return work
