"""Who could do what in the demo's day: the ACLs, the signatures on the department streams and in
the inboxes, and what stolen passwords got (demo.security plays the intrusions)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from redis.asyncio import Redis
from rich.table import Table

from bus import keys, verify_fields
from demo.city import Day
from demo.departments import City
from demo.report import _suspended, console
from demo.security import SILENCING, Intrusion, Security


@dataclass(frozen=True)
class Victim:
    """A resident with a city account whom the day leaves alone (alive, same address)."""

    nik: str
    kecamatan: str
    account_id: str


def _living_account_holder(day: Day) -> Victim:
    touched = {row["nik"] for row in day.siak}
    people = {p.nik: p for p in day.residents}
    for account in day.accounts:
        if account.nik not in touched and account.nik in people:
            kecamatan = people[account.nik].address.kecamatan
            return Victim(account.nik, kecamatan, account.account_id)
    raise RuntimeError("the demo's day has no account holder the registry leaves alone")


async def trust(
    city: City,
    redis: Redis,
    *,
    day: Day,
    intrusion: Intrusion,
    silencing: dict[str, str],
    account_id: str,
) -> None:
    """Who could do what: the ACLs, the signatures on the bus, what stolen passwords got."""
    table = Table(title="trust (least privilege, signed events, the router)", title_justify="left")
    table.add_column("check")
    table.add_column("outcome")
    table.add_row("Redis ACLs from deploy/topology.yaml", city.security.acl_note)
    valid, total = await _signed(redis, city.security, inboxes=False)
    table.add_row(
        "signatures on the department streams",
        f"{valid} of {total} events signed by a principal allowed their type "
        "(the router admitted them)",
    )
    valid, total = await _signed(redis, city.security, inboxes=True)
    table.add_row(
        "signatures in the inboxes",
        f"{valid} of {total} inbox entries signed by the router (the audit's: by their "
        "producer, the originals; every service verifies)",
    )
    if intrusion.cross_department:
        table.add_row(
            "stolen dukcapil password: write bapenda's payment stream",
            f"refused by Redis: {intrusion.cross_department}",
        )
    refused = keys.intake_dead_letters("adapter-dukcapil")
    entries: list[tuple[bytes, dict[bytes, bytes]]] = await redis.xrange(refused)  # type: ignore[assignment]
    reasons = [
        f[b"dlq.reason"].decode()
        for _, f in entries
        if f.get(b"id", b"").decode() == intrusion.forged_event_id
    ]
    delivered = await _delivered(redis, intrusion.forged_event_id)
    linked = await city.profile.by_account(account_id) is not None
    account = "still linked" if linked else "CLOSED (!)"
    table.add_row(
        "...and an unsigned death of a living resident",
        f"refused by the router: {', '.join(reasons) or 'NOT REFUSED (!)'}; in {delivered} "
        f"inboxes; the resident's account is {account}",
    )
    if silencing:
        answers = Counter(silencing[what] for what in SILENCING)
        shown = ", ".join(f"{n} x {answer}" for answer, n in sorted(answers.items()))
        suspended = len(await _suspended(city, day))
        table.add_row(
            f"stolen dinkes password vs dinsos's inbox ({', '.join(SILENCING)})",
            f"refused by Redis: {shown}; dinsos still got the deaths: {suspended} grants suspended",
        )
    console.print(table)


async def _delivered(redis: Redis, event_id: str) -> int:
    """How many inboxes hold an entry of event ``event_id`` (dead letters included)."""
    found = set()
    async for key in redis.scan_iter(match="simpul:inbox:{*}", count=1000, _type="stream"):
        entries: list[tuple[bytes, dict[bytes, bytes]]] = await redis.xrange(key)  # type: ignore[assignment]
        if any(f.get(b"id", b"").decode() == event_id for _, f in entries):
            inbox = keys.inbox_of(key.decode().partition(":dlq:")[0])
            found.add(inbox[1] if inbox else key)
    return len(found)


def _sees_all(inbox: str, security: Security) -> bool:
    """Whether the inbox's group is approved for every field of everything it subscribes."""
    found = keys.inbox_of(inbox)
    assert found is not None
    service = next(s for s in security.topology.services if s.group == found[1])
    return all(
        security.topology.approved_fields(service.group, sub.type) is None
        for sub in service.subscriptions
    )


async def _signed(redis: Redis, security: Security, *, inboxes: bool) -> tuple[int, int]:
    """(entries validly signed by a principal allowed their type, all entries) on the
    department streams, or in the inboxes (entries validly signed by the router, or by their
    producer in an inbox approved for every field: the original as admitted, all)."""
    ring = {key.key_id: key for key in security.topology.signing_keys()}
    router = security.signer("router").key_id
    valid = total = 0
    match = "simpul:inbox:{*}" if inboxes else "simpul:{*}"
    async for key_b in redis.scan_iter(match=match, count=1000, _type="stream"):
        key = key_b.decode()
        if not (keys.is_inbox(key) if inboxes else keys.is_stream(key)):
            continue
        entries: list[tuple[bytes, dict[bytes, bytes]]] = await redis.xrange(key_b)  # type: ignore[assignment]
        for _, fields in entries:
            total += 1
            signer = ring.get(fields.get(b"signer", b"").decode())
            allowed = signer is not None and fields.get(b"type", b"").decode() in signer.types
            if inboxes and signer is not None and signer.key_id != router:
                # only a subscription that may see everything gets the producer's original
                allowed = allowed and keys.inbox_of(key) is not None and _sees_all(key, security)
            valid += bool(allowed and signer and verify_fields(signer.public_key, fields))
    return valid, total
