"""Notifier (Diskominfo): tells citizens about what concerns them, by e-mail and in-app inbox.

For whom: citizens with a city account (the super-app), when a department decides something
about them — a permit issued or rejected by DPMPTSP, a tax payment received by Bapenda.

Consumes:

* ``identity.account.linked`` / ``identity.account.unlinked`` — which city account a NIK
  belongs to (one NIK, at most one account; the latest fact by its own timestamp wins, so
  retried or reordered events cannot resurrect a stale link);
* ``dukcapil.citizen.died`` — stops notifications about that NIK (a death handled before the
  NIK's link, as on a first start, which reads dukcapil.citizen before identity.account, is
  kept for 90 days and carried into the link when it comes);
* ``dpmptsp.permit.issued`` / ``dpmptsp.permit.rejected`` and ``bapenda.payment.received`` —
  when the applicant or taxpayer is a person (scheme ``nik``) with a linked account: one inbox
  row and, if the account has a contact address and e-mail is configured, one e-mail.
  Businesses (``nib``), persons without an account, deceased persons and events older than
  ``SIMPUL_NOTIFIER_MAX_AGE_DAYS`` (default 7: the first start reads the streams' history)
  are counted and skipped.

Publishes nothing.

Stores (``Store.for_service("notifier")``): the NIK -> account link (with the time of the last
fact and a death mark), deaths of NIKs not linked here yet (NIK and date, for 90 days), each
account's contact e-mail (written by the super-app through
:meth:`Notifier.set_contact`), the inbox rows (title and body only: record numbers, kind,
amount, date), the e-mail outbox (event id, account, Message-ID, status, attempt count, last
SMTP code) and counters.

Deliberately NOT stored: names, addresses, NOPs, the event payloads, and the recipient address
in the outbox (it is looked up from the contact table when sending, so a changed or deleted
address is honoured and the mail log holds no addresses). No NIK is written to the inbox, the
outbox or the logs.

Exactly-once e-mail, as far as SMTP allows: the inbox row and the outbox row commit together
with the event id (``store.once``); the e-mail is sent afterwards and marked sent. A redelivered
event finds the rows and sends only what is not marked sent; an SMTP failure raises: a refusal
is retried and finally dead-lettered, while an outage (server unreachable, too slow, 421:
``SmtpUnavailable``, a ``DependencyUnavailable``) is retried for as long as it lasts without
spending attempts. The one window left: a crash after the SMTP server accepted
the message but before ``sent`` was recorded sends it again, with the same Message-ID.
"""

from services.notifier.service import (
    SOURCE,
    EmailNotSent,
    InboxItem,
    InvalidAddress,
    Notifier,
    SmtpSettings,
    SmtpUnavailable,
    create,
)

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
