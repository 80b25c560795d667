"""Dead letters: entries a group gave up on, kept with the reason, never dropped.

A dead letter is the original entry's fields, verbatim, plus ``dlq.*`` fields saying why
(docs/wire-format.md, "Dead letters"). Moving an entry there and acking it is one script.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bus.durability import NO_WAITS, ReplicaWait, Waits
from bus.envelope import format_time
from bus.errors import NotDurable
from bus.privacy import mask_text
from bus.replies import EntryFields, field_pairs

PREFIX = b"dlq."
MAX_ERROR = 500  # characters of the error text kept in a dead letter


class Reason(enum.StrEnum):
    """Why an entry was dead-lettered. Stable codes: dashboards and alerts key on them."""

    UNDECODABLE = "undecodable"  # not wire format v1 (missing fields, not UTF-8, bad time...)
    UNKNOWN_TYPE = "unknown_type"  # no contract registered for its type
    WRONG_STREAM = "wrong_stream"  # its type belongs to another aggregate's stream
    CONTRACT_VIOLATION = "contract_violation"  # data does not satisfy the contract
    HANDLER_FAILED = "handler_failed"  # the handler raised on each of max_deliveries attempts
    GIVEN_UP = "given_up"  # the handler raised bus.GiveUp: it will never succeed
    MAX_DELIVERIES = "max_deliveries_exceeded"  # delivered too often without an outcome (crashes)
    # Signature checks (bus.signing), made only by a service that has a keyring:
    UNSIGNED = "unsigned"  # no signature, and this service requires signed events
    UNKNOWN_SIGNER = "unknown_signer"  # its signer (key id) is not in the service's keyring
    SIGNER_NOT_ALLOWED = "signer_not_allowed"  # the key's principal may not publish this type
    BAD_SIGNATURE = "bad_signature"  # the signature does not match the fields (altered, forged)
    SIGNER_EXPIRED = "signer_expired"  # signed outside the key's validity window
    STALE_EVENT = "stale_event"  # signed too long before it arrived (a replay?) or in the future


# The reasons only a service verifying signatures gives (docs/wire-format.md, section 10).
SIGNATURE_REASONS = frozenset(
    {
        Reason.UNSIGNED,
        Reason.UNKNOWN_SIGNER,
        Reason.SIGNER_NOT_ALLOWED,
        Reason.BAD_SIGNATURE,
        Reason.SIGNER_EXPIRED,
        Reason.STALE_EVENT,
    }
)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a consumer decided about one entry it will not process further."""

    reason: Reason
    error: str
    attempts: int


def dead_letter_fields(
    raw: Mapping[bytes, bytes],
    verdict: Verdict,
    *,
    stream: str,
    group: str,
    consumer: str,
    entry_id: str,
) -> list[bytes | str]:
    """Field/value list of the dead letter: the original entry, then the ``dlq.*`` fields."""
    flat: list[bytes | str] = []
    for name, value in field_pairs(raw):  # every pair, a repeated name too: verbatim
        if not name.startswith(PREFIX):
            flat += (name, value)
    flat += [
        "dlq.reason",
        verdict.reason.value,
        "dlq.error",
        mask_text(verdict.error)[:MAX_ERROR],
        "dlq.attempts",
        str(verdict.attempts),
        "dlq.stream",
        stream,
        "dlq.entry",
        entry_id,
        "dlq.group",
        group,
        "dlq.consumer",
        consumer,
        "dlq.time",
        format_time(datetime.now(UTC)),
    ]
    return flat


def original_fields(dead_letter: Mapping[bytes, bytes]) -> EntryFields:
    """The entry as it was before it was dead-lettered (for replay and for decoding it again):
    every pair, a repeated field name too."""
    flat: list[bytes] = []
    for name, value in field_pairs(dead_letter):
        if not name.startswith(PREFIX):
            flat += (name, value)
    return EntryFields.of(flat)


async def wait_for_replicas(replicas: ReplicaWait, pipe: Any, dead_letters: str) -> Waits:
    """Queue a WAIT behind the dead-letter moves queued in ``pipe`` (bus.durability); returns
    what it queued: ``count`` replies at the end of the pipeline's (0: no replicas to wait
    for)."""
    if not await replicas.required():
        return NO_WAITS
    return replicas.add(pipe, [dead_letters])


def confirm_moves(
    replicas: ReplicaWait, waits: Waits, replies: list[Any], dead_letters: str, log: Any
) -> None:
    """Log, not raise, a dead-letter move the replicas did not confirm: the entry was acked and
    moved on the master; if a failover loses both, the entry is pending or unread again on the
    new master and comes back to be judged again — redelivered, never lost. Nothing for the
    consumer to retry."""
    if not waits.count:
        return
    try:
        replicas.confirm(waits, replies, f"a move to {dead_letters}")
    except NotDurable as exc:
        log.warning("dead_letter_not_confirmed", dead_letters=dead_letters, error=str(exc))
