"""A local SMTP server that keeps what it receives: where the demo's e-mails go."""

from __future__ import annotations

from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from bus.local import free_port


@dataclass
class Inbox:
    """aiosmtpd handler: every accepted message, parsed."""

    messages: list[Message] = field(default_factory=list)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802 - aiosmtpd's hook name
        content = envelope.original_content or b""
        self.messages.append(message_from_bytes(content))
        return "250 OK"


class MailCatcher:
    """An SMTP server on a free loopback port, in a thread, for the length of a ``with``."""

    def __init__(self) -> None:
        self.inbox = Inbox()
        self.port = free_port()
        self._controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)

    def __enter__(self) -> MailCatcher:
        self._controller.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._controller.stop()

    @property
    def messages(self) -> list[Message]:
        return self.inbox.messages
