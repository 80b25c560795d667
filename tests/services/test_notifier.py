"""The notifier against real Redis, a real SMTP server (aiosmtpd on loopback) and its store
(SQLite, and PostgreSQL where marked): one e-mail per event and account, whatever happens."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from functools import partial
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from aiosmtpd.controller import Controller
from redis.asyncio import Redis

from bus import Publisher, keys, serving_http
from bus.local.redis import free_port
from bus.settings import Settings
from bus.store import Store
from bus.testing import capture_logs, quick_settings, wait_until
from schemas.bapenda import PaymentReceived
from schemas.common import Address, Identifier
from schemas.dpmptsp import PermitIssued, PermitKind, PermitRejected
from schemas.dukcapil import CitizenDied
from schemas.identity import AccountLinked, AccountUnlinked
from services.notifier import Notifier, SmtpSettings
from services.notifier.mail import EmailNotSent, Mailer, compose

NIK = "3573025203900002"
OTHER_NIK = "3573051708850003"
NIB = "9120001234567"
ACCOUNT = "0b7e4d12-95c3-4f7a-b1d8-7c6a3e2f9d40"
NEW_ACCOUNT = "6f1c2a9e-3b7d-4c55-9a0e-2d4b8f7e1a35"
EMAIL = "warga.satu@example.co.id"
NEW_EMAIL = "warga.baru@example.co.id"
SENDER = "Pemerintah Kota Malang <noreply@malangkota.go.id>"
TOKEN = "s3cret-token-for-the-super-app"
SOURCE = "urn:test:notifier"
PERMITS = PermitIssued.__contract__.stream
PAYMENTS = PaymentReceived.__contract__.stream
T0 = datetime(2026, 11, 2, 2, 30, tzinfo=UTC)
SITE = Address(
    street="Jl. Ijen No. 25", rt="003", rw="005", kelurahan="35.73.02.1008", kecamatan="35.73.02"
)


# -- a real SMTP server ------------------------------------------------------------------------


@dataclass
class Mailbox:
    """aiosmtpd handler: keeps what it accepts; can refuse DATA (a queue of replies) or RCPT."""

    received: list[tuple[list[str], EmailMessage]] = field(default_factory=list)
    refuse_data: list[str] = field(default_factory=list)
    refuse_rcpt: str | None = None

    async def handle_RCPT(  # noqa: N802 (aiosmtpd's hook names)
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if self.refuse_rcpt is not None:
            return self.refuse_rcpt.format(address=address)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        if self.refuse_data:
            return self.refuse_data.pop(0)
        message = message_from_bytes(envelope.content, policy=policy.default)
        self.received.append((list(envelope.rcpt_tos), cast(EmailMessage, message)))
        return "250 2.0.0 Message accepted"

    @property
    def messages(self) -> list[EmailMessage]:
        return [message for _, message in self.received]


@dataclass
class Smtp:
    mailbox: Mailbox
    port: int
    controller: Controller

    def settings(self) -> SmtpSettings:
        return SmtpSettings(host="127.0.0.1", port=self.port, sender=SENDER, starttls=False)

    def start(self) -> None:
        self.controller.start()


@pytest.fixture
def smtp_down() -> Iterator[Smtp]:
    """An SMTP server on a free port, not started yet (``.start()`` it)."""
    mailbox = Mailbox()
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    smtp = Smtp(mailbox, port, controller)
    yield smtp
    with contextlib.suppress(Exception):  # never started, or already stopped
        controller.stop()


@pytest.fixture
def smtp(smtp_down: Smtp) -> Smtp:
    smtp_down.start()
    return smtp_down


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'notifier.db'}"


# -- helpers -----------------------------------------------------------------------------------


def make_notifier(redis_url: str, store_url: str, smtp: SmtpSettings, **overrides: Any) -> Notifier:
    settings = quick_settings(redis_url, **overrides)
    return Notifier(Store(store_url), settings=settings, smtp=smtp, token=TOKEN)


def linked(nik: str, account: str, at: datetime = T0) -> AccountLinked:
    return AccountLinked.model_validate(
        {"account_id": account, "nik": nik, "verification": "counter", "linked_at": at}
    )


def unlinked(nik: str, account: str, reason: str, at: datetime) -> AccountUnlinked:
    return AccountUnlinked.model_validate(
        {"account_id": account, "nik": nik, "reason": reason, "unlinked_at": at}
    )


def issued(who: Identifier, permit_no: str = "PBG-357302-12112026-01") -> PermitIssued:
    kind = PermitKind.IZIN_USAHA if who.scheme == "nib" else PermitKind.PBG
    return PermitIssued(
        application_no="PBG/2026/11/000412",
        permit_no=permit_no,
        kind=kind,
        applicant=who,
        site=SITE,
        issued_on=date(2026, 11, 12),
        valid_until=date(2031, 11, 11),
    )


def person(nik: str = NIK) -> Identifier:
    return Identifier(scheme="nik", value=nik)


async def link(publisher: Publisher, notifier: Notifier, nik: str, account: str) -> None:
    await publisher.publish(linked(nik, account))
    await wait_until(lambda: _is_linked(notifier, nik, account))


async def _is_linked(notifier: Notifier, nik: str, account: str | None) -> bool:
    return await notifier.account_of(nik) == account


async def handled(redis: Redis, stream: str, entry_id: str, group: str = "notifier") -> bool:
    """The group has read ``entry_id`` and has nothing pending on ``stream``."""
    for info in await redis.xinfo_groups(stream):
        if _text(info["name"]) == group:
            last = tuple(int(p) for p in _text(info["last-delivered-id"]).split("-"))
            wanted = tuple(int(p) for p in entry_id.split("-"))
            return last >= wanted and int(info["pending"]) == 0
    return False


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def counted(notifier: Notifier, name: str, expected: int) -> bool:
    return (await notifier.counts()).get(name, 0) == expected


# -- the happy path and redelivery ---------------------------------------------------------------


async def test_permit_issued_to_a_linked_person_is_mailed_once_and_put_in_the_inbox(
    redis: Redis, redis_url: str, store_url: str, smtp: Smtp
) -> None:
    notifier = make_notifier(redis_url, store_url, smtp.settings())
    publisher = Publisher(redis, source=SOURCE)
    async with notifier.service.running():
        await link(publisher, notifier, NIK, ACCOUNT)
        await notifier.set_contact(ACCOUNT, EMAIL)
        envelope = publisher.envelope(issued(person()), id="permit-event-1")
        first = await publisher.publish(envelope)
        await wait_until(lambda: len(smtp.mailbox.received) == 1)
        await wait_until(lambda: handled(redis, PERMITS, first.entry_id))

        # The same event again: a second publish is deduplicated by the bus; a replay (the
        # entry added to the stream by hand, as from a dead letter) reaches the handler.
        assert (await publisher.publish(envelope)).duplicate
        again = await redis.xadd(PERMITS, envelope.to_fields())  # type: ignore[arg-type]
        await wait_until(lambda: handled(redis, PERMITS, again.decode()))

        assert len(smtp.mailbox.received) == 1
        recipients, message = smtp.mailbox.received[0]
        assert recipients == [EMAIL]
        assert message["To"] == EMAIL
        assert message["From"] == SENDER
        assert message["Subject"] == "Izin Anda telah terbit"
        assert message["Message-ID"].startswith("<permit-event-1.")
        assert message["Message-ID"].endswith("@notifier.simpul.malangkota.go.id>")
        assert ACCOUNT not in message["Message-ID"]
        assert message["Auto-Submitted"] == "auto-generated"
        text = cast(str, cast(EmailMessage, message.get_body()).get_content())
        assert "PBG-357302-12112026-01" in text and "Persetujuan Bangunan Gedung" in text
        assert "12 November 2026" in text and "11 November 2031" in text
        assert NIK not in text and "Ijen" not in text  # no NIK, no address

        inbox = await notifier.inbox(ACCOUNT)
        assert [(i.event_id, i.kind, i.title) for i in inbox] == [
            ("permit-event-1", "permit-issued", "Izin Anda telah terbit")
        ]
        assert "PBG-357302-12112026-01" in inbox[0].body and NIK not in inbox[0].body
        assert await notifier.sent_mail() == [("permit-event-1", ACCOUNT)]
        assert await notifier.sent_count() == 1
        assert await notifier.pending_mail() == []
        assert await notifier.counts() == {"notified": 1}


async def test_a_redelivery_after_a_crash_between_store_and_send_sends_once(
    redis: Redis, redis_url: str, sqlite_url: str, smtp: Smtp
) -> None:
    """The first delivery stored the notice and died before sending (its consumer was killed):
    the redelivery finds the outbox row pending and sends it, once."""
    notifier = make_notifier(redis_url, sqlite_url, smtp.settings())
    publisher = Publisher(redis, source=SOURCE)
    real_send = notifier.mailer.send
    calls = 0

    async def crash_once(message: EmailMessage) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("the process died here")  # not an SMTP failure: a crash
        await real_send(message)

    notifier.mailer.send = crash_once  # type: ignore[method-assign]
    async with notifier.service.running():
        await link(publisher, notifier, NIK, ACCOUNT)
        await notifier.set_contact(ACCOUNT, EMAIL)
        published = await publisher.publish(issued(person()))
        await wait_until(lambda: handled(redis, PERMITS, published.entry_id))
        assert calls == 2
        assert len(smtp.mailbox.received) == 1
        assert len(await notifier.inbox(ACCOUNT)) == 1
        assert await notifier.counts() == {"notified": 1}


# -- SMTP failures ----------------------------------------------------------------------------


async def test_a_temporary_smtp_refusal_is_retried_and_the_mail_arrives_once(
    redis: Redis, redis_url: str, sqlite_url: str, smtp: Smtp, caplog: pytest.LogCaptureFixture
) -> None:
    smtp.mailbox.refuse_data = ["451 4.3.0 Mailbox of warga.satu@example.co.id busy, try later"]
    notifier = make_notifier(redis_url, sqlite_url, smtp.settings())
    publisher = Publisher(redis, source=SOURCE)
    caplog.set_level(logging.DEBUG)
    with capture_logs() as logs:
        async with notifier.service.running():
            await link(publisher, notifier, NIK, ACCOUNT)
            await notifier.set_contact(ACCOUNT, EMAIL)
            published = await publisher.publish(issued(person()))
            await wait_until(lambda: handled(redis, PERMITS, published.entry_id))
            assert len(smtp.mailbox.received) == 1
            assert smtp.mailbox.refuse_data == []  # the refusal did happen
            assert await notifier.sent_count() == 1
            assert await notifier.pending_mail() == []

    failed = [log for log in logs if log["event"] == "email_failed"]
    assert len(failed) == 1
    assert failed[0]["error"] == "SMTP server refused the message data (code 451, status 4.3.0)"
    assert any(log["event"] == "handler_failed" for log in logs)
    assert any(log["event"] == "email_sent" for log in logs)
    # No personal data in any log line, ours or the bus's (the test SMTP server's own stdlib
    # log, "mail.log", is the far side and not ours).
    ours = [r.getMessage() for r in caplog.records if not r.name.startswith("mail.log")]
    for text in [repr(logs), *ours]:
        assert EMAIL not in text and NIK not in text and ACCOUNT not in text


async def test_smtp_down_at_first_then_up_delivers_once_after_the_retry(
    redis: Redis, redis_url: str, store_url: str, smtp_down: Smtp
) -> None:
    notifier = make_notifier(redis_url, store_url, smtp_down.settings(), max_deliveries=100)
    publisher = Publisher(redis, source=SOURCE)
    async with notifier.service.running():
        await link(publisher, notifier, NIK, ACCOUNT)
        await notifier.set_contact(ACCOUNT, EMAIL)
        published = await publisher.publish(issued(person()))

        async def attempted() -> bool:
            pending = await notifier.pending_mail()
            return bool(pending) and pending[0]["attempts"] >= 1

        await wait_until(attempted)
        pending = await notifier.pending_mail()
        assert pending[0]["event_id"] == published.event_id
        assert pending[0]["last_error"] == "SMTP server unreachable (SMTPConnectError)"
        assert len(await notifier.inbox(ACCOUNT)) == 1  # the inbox does not wait for SMTP

        smtp_down.start()
        await wait_until(lambda: handled(redis, PERMITS, published.entry_id))
        assert len(smtp_down.mailbox.received) == 1
        assert await notifier.sent_mail() == [(published.event_id, ACCOUNT)]
        assert await redis.xlen(keys.dead_letters(PERMITS, "notifier")) == 0


async def test_a_permanent_smtp_refusal_ends_in_the_dead_letters_and_can_be_replayed(
    redis: Redis, redis_url: str, sqlite_url: str, smtp: Smtp
) -> None:
    smtp.mailbox.refuse_rcpt = "550 5.1.1 <{address}>: Recipient address rejected"
    notifier = make_notifier(redis_url, sqlite_url, smtp.settings(), max_deliveries=3)
    publisher = Publisher(redis, source=SOURCE)
    dlq = keys.dead_letters(PERMITS, "notifier")
    async with notifier.service.running():
        await link(publisher, notifier, NIK, ACCOUNT)
        await notifier.set_contact(ACCOUNT, EMAIL)
        published = await publisher.publish(issued(person()))
        await wait_until(lambda: _length_is(redis, dlq, 1))

        [(_, letter)] = await redis.xrange(dlq)
        assert letter[b"dlq.reason"] == b"handler_failed"
        assert letter[b"dlq.attempts"] == b"3"
        error = letter[b"dlq.error"].decode()
        assert "refused the recipient (code 550, status 5.1.1)" in error
        assert EMAIL not in error and "warga" not in error
        assert smtp.mailbox.received == []
        assert len(await notifier.inbox(ACCOUNT)) == 1  # the citizen still sees it in the app
        [pending] = await notifier.pending_mail()
        assert (pending["event_id"], pending["attempts"]) == (published.event_id, 3)

        # The operator fixes the cause, then replays the dead letter onto the stream.
        smtp.mailbox.refuse_rcpt = None
        original = {k: v for k, v in letter.items() if not k.startswith(b"dlq.")}
        replayed = await redis.xadd(PERMITS, original)  # type: ignore[arg-type]
        await wait_until(lambda: handled(redis, PERMITS, replayed.decode()))
        assert len(smtp.mailbox.received) == 1
        # ... and the operator command finds nothing left to send.
        assert await notifier.send_pending([published.event_id]) == 0
        assert len(smtp.mailbox.received) == 1
        assert len(await notifier.inbox(ACCOUNT)) == 1
        assert await notifier.counts() == {"notified": 1}


async def test_send_pending_sends_a_dead_lettered_mail_without_a_replay(
    redis: Redis, redis_url: str, sqlite_url: str, smtp: Smtp
) -> None:
    smtp.mailbox.refuse_data = ["554 5.7.1 Rejected"] * 2
    notifier = make_notifier(redis_url, sqlite_url, smtp.settings(), max_deliveries=2)
    publisher = Publisher(redis, source=SOURCE)
    async with notifier.service.running():
        await link(publisher, notifier, NIK, ACCOUNT)
        await notifier.set_contact(ACCOUNT, EMAIL)
        published = await publisher.publish(issued(person()))
        await wait_until(lambda: _length_is(redis, keys.dead_letters(PERMITS, "notifier"), 1))
        assert await notifier.send_pending([published.event_id]) == 1
        assert await notifier.send_pending([published.event_id]) == 0
        assert len(smtp.mailbox.received) == 1
        assert await notifier.sent_count() == 1


async def _length_is(redis: Redis, key: str, length: int) -> bool:
    return int(await redis.xlen(key)) == length


async def test_a_contact_removed_before_the_retry_is_not_mailed(
    redis: Redis, redis_url: str, sqlite_url: str, smtp_down: Smtp
) -> None:
    notifier = make_notifier(redis_url, sqlite_url, smtp_down.settings(), max_deliveries=100)
    publisher = Publisher(redis, source=SOURCE)
    async with notifier.service.running():
        await link(publisher, notifier, NIK, ACCOUNT)
        await notifier.set_contact(ACCOUNT, EMAIL)
        published = await publisher.publish(issued(person()))
        await wait_until(lambda: _attempted(notifier))
        await notifier.set_contact(ACCOUNT, None)  # the citizen withdrew the address
        smtp_down.start()
        await wait_until(lambda: handled(redis, PERMITS, published.entry_id))
        assert smtp_down.mailbox.received == []
        assert await notifier.pending_mail() == []
        assert await notifier.counts() == {"notified": 1, "email:no-address": 1}
        assert len(await notifier.inbox(ACCOUNT)) == 1


async def _attempted(notifier: Notifier) -> bool:
    return any(row["attempts"] >= 1 for row in await notifier.pending_mail())


# -- who gets what ----------------------------------------------------------------------------


async def test_payment_received_is_mailed_with_amount_and_reference(
    redis: Redis, redis_url: str, sqlite_url: str, smtp: Smtp
) -> None:
    notifier = make_notifier(redis_url, sqlite_url, smtp.settings())
    publisher = Publisher(redis, source=SOURCE)
    payment = PaymentReceived.model_validate(
        {
            "payment_ref": "QRIS-20260815-7731",
            "assessment_no": "SPPT-2026-357305000300200450",
            "tax_kind": "pbb-p2",
            "nop": "357305000300200450",
            "taxpayer": {"scheme": "nik", "value": OTHER_NIK},
            "amount": 386400,
            "channel": "qris",
            "paid_at": "2026-08-15T20:05:00Z",
        }
    )
    async with notifier.service.running():
        await link(publisher, notifier, OTHER_NIK, NEW_ACCOUNT)
        await notifier.set_contact(NEW_ACCOUNT, NEW_EMAIL)
        published = await publisher.publish(payment)
        await wait_until(lambda: handled(redis, PAYMENTS, published.entry_id))
        [(recipients, message)] = smtp.mailbox.received
        assert recipients == [NEW_EMAIL]
        assert message["Subject"] == "Pembayaran pajak Anda telah diterima"
        text = cast(str, cast(EmailMessage, message.get_body()).get_content())
        assert "PBB-P2 sebesar Rp386.400 (referensi QRIS-20260815-7731)" in text
        assert "16 Agustus 2026" in text  # 20:05 UTC is the next morning in Malang (WIB)
        assert "357305000300200450" not in text and OTHER_NIK not in text
        [item] = await notifier.inbox(NEW_ACCOUNT)
        assert item.kind == "payment-received"


async def test_businesses_strangers_and_the_deceased_are_counted_and_skipped(
    redis: Redis, redis_url: str, sqlite_url: str, smtp: Smtp
) -> None:
    notifier = make_notifier(redis_url, sqlite_url, smtp.settings())
    publisher = Publisher(redis, source=SOURCE)
    died = CitizenDied(nik=OTHER_NIK, date_of_death=date(2026, 11, 20), kecamatan="35.73.05")
    stranger = CitizenDied(
        nik="3573011203850002", date_of_death=date(2026, 11, 20), kecamatan="35.73.01"
    )
    with capture_logs() as logs:
        async with notifier.service.running():
            await link(publisher, notifier, OTHER_NIK, NEW_ACCOUNT)
            await notifier.set_contact(NEW_ACCOUNT, NEW_EMAIL)
            await publisher.publish(died)
            await publisher.publish(stranger)  # never linked here: a no-op, not an error
            await wait_until(lambda: sum(log["event"] == "citizen_died" for log in logs) == 2)
            await publisher.publish(issued(Identifier(scheme="nib", value=NIB), "OSS-1"))
            await publisher.publish(issued(person(NIK), "PBG-2"))  # a person without account
            await publisher.publish(issued(person(OTHER_NIK), "PBG-3"))  # deceased
            rejected = PermitRejected(
                application_no="REK/2026/11/000007",
                kind="reklame",
                applicant=person(NIK),
                reason="zoning-mismatch",
                rejected_on=date(2026, 11, 13),
            )
            await publisher.publish(rejected)
            old = datetime.now(UTC) - timedelta(days=8)  # history, read on a first start
            await publisher.publish(issued(person(OTHER_NIK), "PBG-4"), time=old)
            await wait_until(lambda: counted(notifier, "skipped:stale", 1))
            await wait_until(lambda: counted(notifier, "skipped:no-account", 2))
            await wait_until(lambda: counted(notifier, "skipped:deceased", 1))
            assert await notifier.counts() == {
                "skipped:business": 1,
                "skipped:no-account": 2,
                "skipped:deceased": 1,
                "skipped:stale": 1,
            }
            assert await notifier.inbox(NEW_ACCOUNT) == []
            assert smtp.mailbox.received == []
            assert await notifier.account_of("3573011203850002") is None
    skipped = [log for log in logs if log["event"] == "notification_skipped"]
    assert sorted(log["reason"] for log in skipped) == [
        "business",
        "deceased",
        "no-account",
        "no-account",
        "stale",
    ]
    assert all(set(log) <= {"event", "log_level", "event_id", "kind", "reason"} for log in skipped)
    assert NIB not in repr(logs) and NIK not in repr(logs) and OTHER_NIK not in repr(logs)


async def test_a_relinked_nik_is_notified_on_its_new_account_whatever_the_order(
    redis: Redis, redis_url: str, sqlite_url: str, smtp: Smtp
) -> None:
    notifier = make_notifier(redis_url, sqlite_url, smtp.settings())
    publisher = Publisher(redis, source=SOURCE)
    relinked_at = T0 + timedelta(days=3)
    async with notifier.service.running():
        await link(publisher, notifier, NIK, ACCOUNT)
        await notifier.set_contact(ACCOUNT, EMAIL)
        await notifier.set_contact(NEW_ACCOUNT, NEW_EMAIL)
        # One relink is two facts with one timestamp; here they arrive the wrong way round.
        await publisher.publish(linked(NIK, NEW_ACCOUNT, relinked_at))
        await publisher.publish(unlinked(NIK, ACCOUNT, "relinked", relinked_at))
        await publisher.publish(linked(NIK, ACCOUNT, T0 + timedelta(days=1)))  # stale, late
        last = await publisher.publish(unlinked(NIK, ACCOUNT, "holder-request", T0))  # stale
        await wait_until(lambda: handled(redis, last.stream, last.entry_id))
        assert await notifier.account_of(NIK) == NEW_ACCOUNT

        first = await publisher.publish(issued(person(), "PBG-A"))
        await wait_until(lambda: handled(redis, PERMITS, first.entry_id))
        [(recipients, _)] = smtp.mailbox.received
        assert recipients == [NEW_EMAIL]
        assert [i.event_id for i in await notifier.inbox(NEW_ACCOUNT)] == [first.event_id]
        assert await notifier.inbox(ACCOUNT) == []

        # Unlinked by its holder: nobody is told any more.
        await publisher.publish(unlinked(NIK, NEW_ACCOUNT, "holder-request", T0 + timedelta(5)))
        await wait_until(lambda: _is_linked(notifier, NIK, None))
        second = await publisher.publish(issued(person(), "PBG-B"))
        await wait_until(lambda: handled(redis, PERMITS, second.entry_id))
        assert len(smtp.mailbox.received) == 1
        assert await notifier.counts() == {"notified": 1, "skipped:no-account": 1}


async def test_an_account_unlinked_for_fraud_loses_its_inbox(
    redis: Redis, redis_url: str, sqlite_url: str, smtp: Smtp
) -> None:
    notifier = make_notifier(redis_url, sqlite_url, smtp.settings())
    publisher = Publisher(redis, source=SOURCE)
    async with notifier.service.running():
        await link(publisher, notifier, NIK, ACCOUNT)
        published = await publisher.publish(issued(person()))  # no contact: inbox only
        await wait_until(lambda: handled(redis, PERMITS, published.entry_id))
        assert len(await notifier.inbox(ACCOUNT)) == 1
        assert await notifier.counts() == {"notified": 1, "email:no-address": 1}
        await publisher.publish(unlinked(NIK, ACCOUNT, "fraud", T0 + timedelta(days=1)))
        await wait_until(lambda: _is_linked(notifier, NIK, None))
        assert await notifier.inbox(ACCOUNT) == []
        assert smtp.mailbox.received == []


async def test_without_an_smtp_host_the_inbox_still_fills(
    redis: Redis, redis_url: str, sqlite_url: str
) -> None:
    notifier = make_notifier(redis_url, sqlite_url, SmtpSettings())
    publisher = Publisher(redis, source=SOURCE)
    with capture_logs() as logs:
        async with notifier.service.running():
            await link(publisher, notifier, NIK, ACCOUNT)
            await notifier.set_contact(ACCOUNT, EMAIL)
            published = await publisher.publish(issued(person()))
            await wait_until(lambda: handled(redis, PERMITS, published.entry_id))
            assert len(await notifier.inbox(ACCOUNT)) == 1
            assert await notifier.pending_mail() == []
            assert await notifier.sent_count() == 0
    assert any(log["event"] == "email_disabled" for log in logs)


# -- the inbox API ----------------------------------------------------------------------------


async def test_the_api_wants_the_bearer_token_and_serves_inbox_and_contact(
    redis: Redis, redis_url: str, sqlite_url: str, smtp: Smtp
) -> None:
    notifier = make_notifier(redis_url, sqlite_url, smtp.settings(), http="127.0.0.1:0")
    publisher = Publisher(redis, source=SOURCE)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with notifier.service.running(), httpx.AsyncClient(timeout=5) as client:
        base = f"{notifier.service.http_url}/accounts/{ACCOUNT}"
        # The super-app writes the contact address.
        with capture_logs() as logs:
            assert (await client.put(f"{base}/contact", json={"email": EMAIL})).status_code == 401
        [refusal] = [e for e in logs if e["event"] == "api_refused"]
        assert (refusal["status"], refusal["client"]) == (401, "127.0.0.1")
        bad = await client.put(f"{base}/contact", json={"email": "warga@"}, headers=auth)
        assert bad.status_code == 422 and "warga@" not in bad.text
        assert (await client.put(f"{base}/contact", content=b"{", headers=auth)).status_code == 422
        assert (await client.delete(f"{base}/contact", headers=auth)).status_code == 204
        done = await client.put(f"{base}/contact", json={"email": EMAIL}, headers=auth)
        assert done.status_code == 204

        await link(publisher, notifier, NIK, ACCOUNT)
        published = await publisher.publish(issued(person()))
        await wait_until(lambda: handled(redis, PERMITS, published.entry_id))
        assert [to for to, _ in smtp.mailbox.received] == [[EMAIL]]

        url = f"{base}/inbox"
        assert (await client.get(url)).status_code == 401
        wrong = {"Authorization": "Bearer not-the-token-at-all"}
        refused = await client.get(url, headers=wrong)
        assert refused.status_code == 401
        assert refused.headers["WWW-Authenticate"] == "Bearer"
        assert (await client.get(url, headers={"Authorization": TOKEN})).status_code == 401

        answer = await client.get(url, headers=auth)
        assert answer.status_code == 200
        [item] = answer.json()["items"]
        assert item["event_id"] == published.event_id
        assert item["kind"] == "permit-issued"
        assert item["title"] == "Izin Anda telah terbit"
        assert NIK not in answer.text and EMAIL not in answer.text

        other = f"{notifier.service.http_url}/accounts/{NEW_ACCOUNT}/inbox"
        assert (await client.get(other, headers=auth)).json() == {"items": []}
        nonsense = f"{notifier.service.http_url}/accounts/not-a-uuid/inbox"
        assert (await client.get(nonsense, headers=auth)).status_code == 400
        assert (await client.get(f"{url}?limit=0", headers=auth)).status_code == 400


async def test_without_a_token_the_inbox_api_is_closed(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SIMPUL_NOTIFIER_TOKEN", raising=False)
    notifier = Notifier(Store(sqlite_url), smtp=SmtpSettings())
    await notifier.open()
    try:
        app = notifier.service.http_app
        assert app is not None
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://notifier") as client:
            answer = await client.get(
                f"/accounts/{ACCOUNT}/inbox", headers={"Authorization": "Bearer "}
            )
            assert answer.status_code == 503
    finally:
        await notifier.store.close()


async def test_two_replicas_setting_a_new_contact_at_once_both_succeed(
    store_url: str, settings: Settings
) -> None:
    """Two PUTs for one new account on two replicas: one statement each, no unique violation
    (on PostgreSQL the loser of a serialization conflict is run again by bus.store)."""
    replicas = [
        Notifier(Store(store_url), settings=settings, smtp=SmtpSettings(), token=TOKEN)
        for _ in range(2)
    ]
    await replicas[0].open()
    accounts = [str(uuid.UUID(int=n)) for n in range(1, 31)]
    try:
        for account in accounts:
            await asyncio.gather(
                replicas[0].set_contact(account, EMAIL), replicas[1].set_contact(account, NEW_EMAIL)
            )
        rows = await replicas[0].store.run(
            lambda tx: tx.all("SELECT account_id, email FROM notifier_contact")
        )
    finally:
        for replica in replicas:
            await replica.store.close()
    assert sorted(row["account_id"] for row in rows) == sorted(accounts)  # one row each
    assert {row["email"] for row in rows} <= {EMAIL, NEW_EMAIL}


async def test_the_api_answers_503_while_the_store_is_unavailable(sqlite_url: str) -> None:
    notifier = Notifier(Store(sqlite_url), smtp=SmtpSettings(), token=TOKEN)
    await notifier.open()
    await notifier.store.close()  # as a lost database: every call raises StoreUnavailable
    app = notifier.service.http_app
    assert app is not None
    transport = httpx.ASGITransport(app=app)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://notifier") as client:
        put = await client.put(f"/accounts/{ACCOUNT}/contact", json={"email": EMAIL}, headers=auth)
        read = await client.get(f"/accounts/{ACCOUNT}/inbox", headers=auth)
    assert (put.status_code, read.status_code) == (503, 503)
    assert EMAIL not in put.text


async def test_a_slow_smtp_server_cannot_hold_a_send_past_its_overall_deadline() -> None:
    """Each reply comes within the per-operation timeout, but the conversation as a whole
    would take ~1.75 s: the deadline of the whole send (SIMPUL_SMTP_SEND_TIMEOUT_S) ends it."""

    async def slow_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def reply(line: str) -> None:
            await asyncio.sleep(0.25)
            writer.write(line.encode() + b"\r\n")
            await writer.drain()

        with contextlib.suppress(ConnectionError):
            await reply("220 slow.example ESMTP")
            in_data = False
            while line := await reader.readline():
                if in_data:
                    if line == b".\r\n":
                        in_data = False
                        await reply("250 2.0.0 queued")
                    continue
                verb = line[:4].upper()
                if verb == b"QUIT":
                    await reply("221 bye")
                    break
                in_data = verb == b"DATA"
                await reply("354 go on" if in_data else "250 slow.example")
        writer.close()

    server = await asyncio.start_server(slow_server, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    settings = SmtpSettings(
        host="127.0.0.1",
        port=port,
        sender=SENDER,
        starttls=False,
        timeout_s=1.0,
        send_timeout_s=0.5,
    )
    message = compose(settings, to=EMAIL, subject="Tes", text="Tes.", msgid="<t@example.org>")
    try:
        started = time.monotonic()
        with pytest.raises(EmailNotSent, match=r"longer than 0\.5 s") as caught:
            await Mailer(settings).send(message)
        assert time.monotonic() - started < 1.0
        assert EMAIL not in str(caught.value)
    finally:
        server.close()
        await server.wait_closed()


async def test_a_send_deadline_beyond_the_keep_alive_point_is_warned_about(
    sqlite_url: str, redis_url: str
) -> None:
    smtp = SmtpSettings(host="127.0.0.1", port=2525, sender=SENDER, send_timeout_s=30)
    for claim_idle_ms, warned in [(120_000, False), (60_000, True)]:
        settings = quick_settings(redis_url, claim_idle_ms=claim_idle_ms)
        notifier = Notifier(Store(sqlite_url), settings=settings, smtp=smtp, token=TOKEN)
        with capture_logs() as logs:
            await notifier.open()
        await notifier.store.close()
        events = [line["event"] for line in logs]
        assert ("email_send_timeout_too_long" in events) is warned, claim_idle_ms


@pytest.mark.parametrize("death_first", [False, True], ids=["link-first", "death-first"])
async def test_a_death_handled_before_the_link_still_stops_notifications(
    redis: Redis, redis_url: str, store_url: str, smtp: Smtp, death_first: bool
) -> None:
    """A first start reads dukcapil.citizen before identity.account: the death of a NIK comes
    before its link, and must not be lost."""
    notifier = make_notifier(redis_url, store_url, smtp.settings())
    publisher = Publisher(redis, source=SOURCE)
    died = CitizenDied(nik=OTHER_NIK, date_of_death=date(2026, 11, 20), kecamatan="35.73.05")
    link_fact = linked(OTHER_NIK, NEW_ACCOUNT)
    async with notifier.service.running():
        for event in [died, link_fact] if death_first else [link_fact, died]:
            published = await publisher.publish(event)
            await wait_until(partial(handled, redis, published.stream, published.entry_id))
        await notifier.set_contact(NEW_ACCOUNT, NEW_EMAIL)
        await publisher.publish(issued(person(OTHER_NIK), "PBG-3"))
        await wait_until(lambda: counted(notifier, "skipped:deceased", 1))
        assert await notifier.inbox(NEW_ACCOUNT) == []
        remembered = await notifier.store.run(lambda tx: tx.all("SELECT * FROM notifier_death"))
    assert smtp.mailbox.received == []
    assert remembered == []  # carried into the link row


async def test_an_smtp_outage_longer_than_the_retry_budget_dead_letters_nothing(
    redis: Redis, redis_url: str, sqlite_url: str, smtp_down: Smtp
) -> None:
    """docs/delivery.md: an outage of a handler's dependency never dead-letters good events."""
    notifier = make_notifier(redis_url, sqlite_url, smtp_down.settings(), max_deliveries=3)
    publisher = Publisher(redis, source=SOURCE)
    dlq = keys.dead_letters(PERMITS, "notifier")
    async with notifier.service.running():
        await link(publisher, notifier, NIK, ACCOUNT)
        await notifier.set_contact(ACCOUNT, EMAIL)
        published = await publisher.publish(issued(person()))

        async def past_the_budget() -> bool:  # twice the attempts a bad event would get
            pending = await notifier.pending_mail()
            return (bool(pending) and pending[0]["attempts"] >= 6) or await redis.exists(dlq) > 0

        await wait_until(past_the_budget, timeout=60)
        assert await redis.xlen(dlq) == 0, "an SMTP outage dead-lettered a good event"
        assert notifier.service.health.dependency_down == "SmtpUnavailable"
        smtp_down.start()
        await wait_until(lambda: handled(redis, PERMITS, published.entry_id), timeout=60)
        assert len(smtp_down.mailbox.received) == 1
        assert await redis.xlen(dlq) == 0
        assert notifier.service.health.dependency_down is None


async def test_a_contact_body_json_cannot_hold_is_refused_clearly_and_changes_nothing(
    sqlite_url: str,
) -> None:
    notifier = Notifier(Store(sqlite_url), smtp=SmtpSettings(), token=TOKEN)
    await notifier.open()
    auth = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    cases = [
        ('{"email": ' + "[" * 100 + "]" * 100 + "}", 400, "deeper than 32"),
        ('{"email": ' + "9" * 1_000 + "}", 400, "more than 64 digits"),
        ('{"email": "' + "a" * 5_000 + '@example.go.id"}', 413, "exceeds 4096 bytes"),
        ('{"email": ' + "[" * 20_000 + "]" * 20_000 + "}", 413, "exceeds 4096 bytes"),
        ("{", 422, "email"),
    ]
    try:
        app = notifier.service.http_app
        assert app is not None
        async with serving_http(app) as url, httpx.AsyncClient(timeout=5) as client:
            contact = f"{url}/accounts/{ACCOUNT}/contact"
            answers = [await client.put(contact, content=body, headers=auth) for body, *_ in cases]
            done = await client.put(contact, json={"email": EMAIL}, headers=auth)
    finally:
        await notifier.store.close()
    for answer, (_, status, words) in zip(answers, cases, strict=True):
        assert answer.status_code == status, answer.text
        assert words in answer.json()["error"] and "Traceback" not in answer.text
    assert done.status_code == 204
