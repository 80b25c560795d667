"""Operator commands of the notifier (same environment as the service: SIMPUL_NOTIFIER_DB,
SIMPUL_SMTP_*):

    python -m services.notifier pending                  # unsent e-mails: event, attempts, error
    python -m services.notifier send-pending EVENT_ID... # send them now, without a replay

Prints event ids, account ids, counts and SMTP codes only: never an address.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from bus import SimpulError
from services.notifier.service import EmailNotSent, Notifier


async def _pending(notifier: Notifier) -> int:
    await notifier.open()
    for row in await notifier.pending_mail():
        print(row["event_id"], row["account_id"], row["attempts"], row["last_error"] or "-")
    return 0


async def _send(notifier: Notifier, event_ids: list[str]) -> int:
    await notifier.open()
    try:
        sent = await notifier.send_pending(event_ids)
    except EmailNotSent as exc:
        print(f"not all sent: {exc}", file=sys.stderr)
        return 1
    print(f"sent {sent}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.notifier")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("pending", help="list the e-mails not sent yet")
    send = commands.add_parser("send-pending", help="send the unsent e-mails of these events")
    send.add_argument("event_ids", nargs="+", metavar="EVENT_ID")
    args = parser.parse_args(argv)

    async def run() -> int:
        notifier = Notifier()
        try:
            if args.command == "pending":
                return await _pending(notifier)
            return await _send(notifier, list(args.event_ids))
        finally:
            await notifier.store.close()

    try:
        return asyncio.run(run())
    except SimpulError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
