"""E-mail over SMTP: settings from ``SIMPUL_SMTP_*``, address checks, composing and sending.

Errors never carry an address: SMTP servers echo recipients in their replies ("550 <x@y>: no
such user"), so a failure is reported by its SMTP code and the kind of failure only. The text
of an error ends up in logs and in the dead letter of the event.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import re
from collections.abc import Mapping
from email.message import EmailMessage
from email.utils import formatdate, parseaddr

import aiosmtplib
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from bus import ComponentSettings, DependencyUnavailable

__all__ = [
    "MESSAGE_ID_DOMAIN",
    "EmailNotSent",
    "InvalidAddress",
    "Mailer",
    "SmtpSettings",
    "SmtpUnavailable",
    "check_email",
    "compose",
    "message_id",
]

MESSAGE_ID_DOMAIN = "notifier.simpul.malangkota.go.id"
_SERVICE_NOT_AVAILABLE = 421

# RFC 5321/5322 "dot-atom" local part and an LDH domain name with at least two labels.
_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_ATOM = re.compile(r"[A-Za-z0-9._-]{1,128}")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class InvalidAddress(ValueError):
    """Not an e-mail address this service sends to (the message never quotes the value)."""


class EmailNotSent(Exception):
    """The SMTP server could not be reached or refused the message (worth retrying).

    ``code`` is the SMTP reply code when the server answered, else None.
    """

    def __init__(self, description: str, code: int | None = None) -> None:
        self.code = code
        super().__init__(description)

    @property
    def permanent(self) -> bool:
        """A 5xx reply: retrying the same message will most likely fail again."""
        return self.code is not None and 500 <= self.code < 600


class SmtpUnavailable(EmailNotSent, DependencyUnavailable):
    """The SMTP server could not be reached, answered too slowly, or said it is not available
    (421): an outage, not the message's fault. The bus retries the event without spending its
    attempts for as long as the outage lasts (docs/delivery.md), so no good event is
    dead-lettered because the mail server was down."""


def check_email(value: str) -> str:
    """``value`` as a deliverable ASCII address ``local@domain`` (domain lowercased).

    Strict on purpose: no display names, comments, quoted local parts, IP literals or
    internationalised domains — and never a CR or LF (header injection).
    """
    if not isinstance(value, str):
        raise InvalidAddress("an e-mail address is a string")
    address = value.strip()
    if not 3 <= len(address) <= 254 or not address.isascii():
        raise InvalidAddress("an e-mail address is 3-254 ASCII characters")
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        raise InvalidAddress("an e-mail address is local-part@domain")
    if len(local) > 64 or not _LOCAL.fullmatch(local):
        raise InvalidAddress(
            "the local part of an e-mail address is 1-64 letters, digits and !#$%&'*+/=?^_`{|}~- "
            "separated by single dots"
        )
    labels = domain.split(".")
    if len(labels) < 2 or not all(_LABEL.fullmatch(label) for label in labels):
        raise InvalidAddress(
            "the domain of an e-mail address is a host name with a dot (e.g. example.go.id)"
        )
    if labels[-1].isdigit():
        raise InvalidAddress("the domain of an e-mail address is a name, not an IP address")
    return f"{local}@{domain.lower()}"


class SmtpSettings(ComponentSettings):
    """How to reach the SMTP server, from ``SIMPUL_SMTP_*`` (the sender: ``SIMPUL_SMTP_FROM``;
    values stripped, empty means unset). ``host`` unset: e-mail is disabled (in-app inbox
    only)."""

    model_config = SettingsConfigDict(env_prefix="SIMPUL_SMTP_")

    host: str | None = Field(default=None, description="SMTP server; unset disables e-mail")
    port: int = Field(default=25, ge=1, le=65535, description="SMTP port (25, 587, 465...)")
    sender: str | None = Field(
        default=None,
        validation_alias="SIMPUL_SMTP_FROM",
        description="From header, e.g. 'Pemkot Malang <noreply@malangkota.go.id>'; "
        "required with a host",
    )
    user: str | None = Field(default=None, description="SMTP AUTH user, if the server wants one")
    password: SecretStr | None = Field(default=None, description="SMTP AUTH password")
    starttls: bool | None = Field(
        default=None,
        description="True: require STARTTLS; False: never; None: use it if the server offers it",
    )
    tls: bool = Field(default=False, description="implicit TLS from the first byte (port 465)")
    timeout_s: float = Field(default=10.0, gt=0, le=300, description="per SMTP operation")
    send_timeout_s: float = Field(
        default=30.0,
        gt=0,
        le=300,
        description="the whole delivery of one message, connection to QUIT: keep it well "
        "below SIMPUL_CLAIM_IDLE_MS / 2, so a slow server cannot keep a handler past the "
        "point where its entry may be claimed by another replica",
    )

    @property
    def enabled(self) -> bool:
        return self.host is not None

    @property
    def sender_address(self) -> str:
        """The bare address of :attr:`sender` (the SMTP envelope sender)."""
        return parseaddr(self.sender or "")[1]

    @model_validator(mode="before")
    @classmethod
    def _stripped(cls, values: object) -> object:
        if not isinstance(values, dict):
            return values
        stripped = {k: v.strip() if isinstance(v, str) else v for k, v in values.items()}
        return {k: v for k, v in stripped.items() if v != ""}

    @field_validator("starttls", "tls", mode="before")
    @classmethod
    def _flag(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        if value.lower() in _TRUE:
            return True
        if value.lower() in _FALSE:
            return False
        raise ValueError("must be true or false")

    @model_validator(mode="after")
    def _consistent(self) -> SmtpSettings:
        if self.host is None:
            return self
        if not self.host.strip() or any(c.isspace() for c in self.host):
            raise ValueError("SIMPUL_SMTP_HOST: a host name or IP address without spaces")
        if self.sender is None:
            raise ValueError("SIMPUL_SMTP_FROM is required when SIMPUL_SMTP_HOST is set")
        if "\r" in self.sender or "\n" in self.sender:
            raise ValueError("SIMPUL_SMTP_FROM must be one line")
        try:
            check_email(self.sender_address)
        except InvalidAddress as exc:
            raise ValueError(
                f"SIMPUL_SMTP_FROM: {exc} (optionally with a display name: Name <address>)"
            ) from None
        if (self.user is None) != (self.password is None):
            raise ValueError("SIMPUL_SMTP_USER and SIMPUL_SMTP_PASSWORD are set together or not")
        if self.tls and self.starttls:
            raise ValueError("SIMPUL_SMTP_TLS and SIMPUL_SMTP_STARTTLS exclude each other")
        clear = not self.tls and self.starttls is False
        if self.user is not None and clear and not _loopback(self.host):
            raise ValueError(
                "refusing to send SMTP credentials unencrypted: set SIMPUL_SMTP_STARTTLS=true "
                "or SIMPUL_SMTP_TLS=true (or use a relay on the loopback interface)"
            )
        return self

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SmtpSettings:
        """Read ``SIMPUL_SMTP_*`` (default: from the environment); a bad value raises one
        ConfigurationError naming it."""
        return cls.load(environ)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def message_id(event_id: str, account_id: str) -> str:
    """A Message-ID stable across redeliveries of one event to one account.

    The account appears as a digest (the id is personal data once linked to a NIK); an event id
    that is not a plain token (the bus allows any text) is replaced by its digest too.
    """
    event = event_id if _ATOM.fullmatch(event_id) else _digest(event_id, 32)
    return f"<{event}.{_digest(account_id, 16)}@{MESSAGE_ID_DOMAIN}>"


def _digest(text: str, length: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def compose(
    settings: SmtpSettings, *, to: str, subject: str, text: str, msgid: str
) -> EmailMessage:
    """A plain-text UTF-8 message from the notifier to one citizen."""
    message = EmailMessage()
    message["From"] = settings.sender or ""
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = msgid
    message["Date"] = formatdate(usegmt=True)
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies
    message["Content-Language"] = "id"
    message.set_content(text, charset="utf-8")
    return message


class Mailer:
    """Sends one message per SMTP connection (volumes are a few per citizen per month)."""

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings

    async def send(self, message: EmailMessage) -> None:
        """Deliver ``message`` to the server, or raise :class:`EmailNotSent` (no address in it)."""
        s = self.settings
        if s.host is None:
            raise EmailNotSent("e-mail is disabled (SIMPUL_SMTP_HOST is not set)")
        # Each operation has timeout_s, but a delivery is some eight of them (connect, greeting,
        # EHLO, STARTTLS, AUTH, MAIL, RCPT, DATA...): one deadline bounds the whole.
        deadline = asyncio.timeout(s.send_timeout_s)
        try:
            async with deadline:
                await aiosmtplib.send(
                    message,
                    hostname=s.host,
                    port=s.port,
                    username=s.user,
                    password=s.password.get_secret_value() if s.password is not None else None,
                    use_tls=s.tls,
                    start_tls=s.starttls,
                    timeout=s.timeout_s,
                )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            first = exc.recipients[0] if exc.recipients else None
            code = first.code if first is not None else None
            status = _status(first.message) if first is not None else ""
            text = f"SMTP server refused the recipient (code {code}{status})"
            raise EmailNotSent(text, code) from None
        except aiosmtplib.SMTPResponseException as exc:
            kind = _KINDS.get(type(exc), "refused the message")
            status = _status(exc.message)
            # 421: the server is going away or overloaded, whatever the message (RFC 5321).
            error = SmtpUnavailable if exc.code == _SERVICE_NOT_AVAILABLE else EmailNotSent
            raise error(f"SMTP server {kind} (code {exc.code}{status})", exc.code) from None
        except (aiosmtplib.SMTPException, OSError) as exc:  # TimeoutError is an OSError
            if deadline.expired():
                raise SmtpUnavailable(
                    f"SMTP delivery took longer than {s.send_timeout_s:g} s "
                    "(SIMPUL_SMTP_SEND_TIMEOUT_S)"
                ) from None
            # Connection refused, timeouts, TLS failures: the text names host and port at
            # most, but take no chances and keep the type only.
            raise SmtpUnavailable(f"SMTP server unreachable ({type(exc).__name__})") from None


def _status(reply: str) -> str:
    """The enhanced status code of a reply (RFC 3463, e.g. 5.1.1), never the rest of its text."""
    found = _ENHANCED.search(reply or "")
    return f", status {found[0]}" if found else ""


_ENHANCED = re.compile(r"(?<![0-9.])[245]\.[0-9]{1,3}\.[0-9]{1,3}(?![0-9.])")
_KINDS: dict[type[Exception], str] = {
    aiosmtplib.SMTPSenderRefused: "refused the sender",
    aiosmtplib.SMTPRecipientRefused: "refused the recipient",
    aiosmtplib.SMTPDataError: "refused the message data",
    aiosmtplib.SMTPAuthenticationError: "refused the credentials",
    aiosmtplib.SMTPHeloError: "refused the greeting",
    aiosmtplib.SMTPConnectResponseError: "refused the connection",
}
