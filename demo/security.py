"""The demo's bus runs as the city's does: every component its own Redis principal, every event
signed by its producer, admitted by the router and forwarded to each subscription's inbox
signed by the router, which every service verifies (routed delivery, docs/decisions/0011).

At start the demo takes deploy/topology.yaml (plus its own archive service), makes a password
for every principal and a signing key for every publishing one and for the router (nothing is
reused between runs and nothing is written outside the demo's temporary folder), loads the
rendered ACLs into its Redis and gives each adapter and service its own URL, key file, intake
or inboxes, and the keyring.

ACLs are applied when the demo owns its Redis and that Redis is version 7 or newer (ACL
selectors); with ``SIMPUL_REDIS_URL`` (someone else's server) or the Redis 6.2 fallback binary
every component connects with the given URL, and events are still routed, signed and verified.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import yaml
from redis.asyncio import Redis
from redis.exceptions import NoPermissionError

from adapters.dukcapil import SOURCE as DUKCAPIL_SOURCE
from bus import Publisher, Signer, connect, default_registry, keys
from bus.access import acl, acl_server
from bus.access.topology import Topology
from bus.admin import load_functions
from bus.router import Router, RouterConfig
from bus.signing import KeyRing
from schemas.dukcapil import CitizenDied

TOPOLOGY = Path(__file__).parent.parent / "deploy" / "topology.yaml"
ARCHIVE = "svc-arsip"
OPERATOR = "operator"
IDENTITY = "adapter-identitas"
ROUTER = "router"
ROUTER_REPLICAS = 2  # as docker-compose.yml runs it: they share the sources (decision 0011)

# The demo's archive (a consumer whose disk is full for Kedungkandang): a service like any other.
_ARCHIVE_SPEC = {
    "principal": ARCHIVE,
    "department": "diskominfo",
    "group": "arsip-demo",
    # An archive keeps the whole record: every field approved (decision 0012).
    "subscriptions": [
        {"type": "dukcapil.citizen.moved.v1", "approved_by": "dukcapil", "fields": "all"}
    ],
}


@dataclass
class Security:
    """Who is who on the demo's bus: a URL per principal, key files, the keyring file."""

    base_url: str
    folder: Path
    topology: Topology
    passwords: dict[str, str]
    key_files: dict[str, Path] = field(default_factory=dict)  # principal -> private key file
    signers: dict[str, Signer] = field(default_factory=dict)
    acl_applied: bool = False
    acl_note: str = ""

    @property
    def keyring_file(self) -> Path:
        return self.folder / "topology.yaml"

    def url(self, principal: str) -> str:
        """The Redis URL ``principal`` connects with (the base URL until ACLs are applied)."""
        if not self.acl_applied:
            return self.base_url
        parts = urlsplit(self.base_url)
        host = parts.hostname or "127.0.0.1"
        netloc = f"{principal}:{quote(self.passwords[principal], safe='')}@{host}:{parts.port}"
        return parts._replace(netloc=netloc).geturl()

    def connect(self, principal: str) -> Redis:
        return connect(self.url(principal), client_name=f"demo-{principal}")

    def signer(self, principal: str) -> Signer:
        return self.signers[principal]

    def settings(self, principal: str) -> dict[str, Any]:
        """Settings of a service running as ``principal``: its inboxes, its key and intake (if
        it publishes), the keyring, every event verified."""
        extra: dict[str, Any] = {
            "keyring_file": str(self.keyring_file),
            "require_signatures": True,
            "inboxes": True,
        }
        if principal in self.key_files:
            extra["signing_key_file"] = str(self.key_files[principal])
            extra["signer"] = self.signers[principal].key_id
            extra["intake"] = principal
        return extra

    def routers(self) -> list[Router]:
        """The router's replicas, each as the router principal with the router's key; the
        topology's keys are their keyring (every producer's signature checked at admission)."""
        return [
            Router(
                connect(self.url(ROUTER), client_name=f"demo-router-{n}"),
                self.topology,
                default_registry,
                keyring=KeyRing(self.topology.signing_keys()),
                signer=self.signers[ROUTER],
                # The day's summary counts what each inbox got, so acked entries stay for an
                # hour here; a router trims them every 5 s by default.
                config=RouterConfig(block_ms=100, trim_every_s=3600.0),
                replica=f"demo-router-{n}",
            )
            for n in range(1, ROUTER_REPLICAS + 1)
        ]

    @property
    def principals(self) -> int:
        return len(self.passwords)


def prepare(base_url: str, folder: Path) -> Security:
    """Passwords, keys and the keyring for one run of the demo, in ``folder``."""
    document = yaml.safe_load(TOPOLOGY.read_text(encoding="utf-8"))
    document["services"].append(_ARCHIVE_SPEC)
    keys = folder / "keys"
    keys.mkdir(mode=0o700, parents=True, exist_ok=True)
    signers: dict[str, Signer] = {}
    key_files: dict[str, Path] = {}
    publishing = [w for w in (*document["producers"], *document["services"]) if w.get("publishes")]
    for who in [*publishing, document["router"]]:  # the router signs what it forwards
        signer = Signer.generate(f"{who['principal']}-demo")
        key_files[who["principal"]] = signer.write(keys / f"{signer.key_id}.key")
        signers[who["principal"]] = signer
        public = base64.b64encode(signer.public_key).decode()
        who["keys"] = [{"id": signer.key_id, "public_key": public}]
    topology = Topology.parse(document, source="the demo's topology")
    (folder / "topology.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    assert topology.routed and topology.router is not None, "deploy/topology.yaml is routed"
    principals = [topology.router.principal, *topology.principals()]
    passwords = {p: secrets.token_urlsafe(18) for p in principals}
    return Security(base_url, folder, topology, passwords, key_files, signers)


async def lock_down(security: Security, *, owned: bool) -> None:
    """Load the topology's ACLs into the demo's own Redis (7+): the default user goes off and
    every component must log in as its principal from then on."""
    if not owned:
        security.acl_note = "not applied: SIMPUL_REDIS_URL is someone else's server"
        return
    redis = connect(security.base_url)
    try:
        version = (await redis.info("server"))["redis_version"]
        if int(str(version).split(".")[0]) < 7:
            security.acl_note = f"not applied: Redis {version} has no ACL selectors (needs 7)"
            return
        # The operator first, so that the rest is applied by an admin of the topology.
        password = security.passwords[OPERATOR]
        await redis.acl_setuser(
            OPERATOR,
            enabled=True,
            passwords=[f"+{password}"],
            keys=["*"],
            channels=["*"],
            commands=["+@all"],
        )
    finally:
        await redis.aclose()
    security.acl_applied = True
    admin = security.connect(OPERATOR)
    try:
        await acl_server.apply(admin, acl.acl_users(security.topology, security.passwords))
        await load_functions(admin)  # as `simpul acl apply` does: only the admin loads code
    finally:
        await admin.aclose()
    security.acl_note = f"{security.principals} principals, default user off"


# -- stolen passwords --------------------------------------------------------------------------


@dataclass
class Intrusion:
    """What someone holding the dukcapil adapter's Redis password (not its signing key) got."""

    cross_department: str  # Redis' answer to writing bapenda's payment stream; "" if not tried
    forged_event_id: str  # the unsigned death it could write into the adapter's own intake


async def stolen_password(security: Security, victim_nik: str, kecamatan: str) -> Intrusion:
    """Write a bapenda payment onto bapenda's stream, then publish an unsigned death of a
    living resident, as ``adapter-dukcapil`` without its key: Redis refuses the first (ACL: a
    department stream is the router's alone), the router the second (no signature, into the
    adapter's own dead letters), so no service ever sees it."""
    redis = security.connect("adapter-dukcapil")
    try:
        answer = ""
        if security.acl_applied:  # on a bus without ACLs the payment would land: don't
            try:
                await redis.xadd(keys.stream("bapenda.payment"), {"id": "stolen-0001"})
                answer = "accepted (!)"
            except NoPermissionError as exc:
                answer = str(exc).split(":")[0] or "NOPERM"
        forger = Publisher(redis, source=DUKCAPIL_SOURCE, signer=None, intake="adapter-dukcapil")
        death = CitizenDied(nik=victim_nik, date_of_death=date.today(), kecamatan=kecamatan)
        published = await forger.publish(death)
        return Intrusion(answer, published.event_id)
    finally:
        await redis.aclose()


# What the holder of svc-dinkes's password tries against dinsos's inbox of citizen events, so
# that dinsos would miss the day's deaths: each is one Redis command on dinsos's group.
SILENCING = ("read", "ack", "claim", "claim-lastid", "setid")


async def silence_another_department(security: Security) -> dict[str, str]:
    """With ``svc-dinkes``'s password (stolen), try to read, ack, claim (plain and with
    XCLAIM's LASTID) and move (XGROUP SETID) dinsos's inbox group before the day's deaths
    arrive. Each attempt -> Redis' answer ("NOPERM" when refused). Empty when the demo's Redis
    has no ACLs (someone else's server, Redis 6.2): there it would work, so it is not tried."""
    if not security.acl_applied:
        return {}
    inbox = keys.inbox(keys.stream("dukcapil.citizen"), "dinsos")
    admin = security.connect(OPERATOR)
    try:  # dinsos's group exists from its start; its own entries are what is at stake
        [(entry, _)] = await admin.xrevrange(inbox, count=1) or [(b"0-1", {})]
    finally:
        await admin.aclose()
    future = "18446744073709551615-0"
    attempts = {
        "read": ("XREADGROUP", "GROUP", "dinsos", "dinkes", "STREAMS", inbox, ">"),
        "ack": ("XACK", inbox, "dinsos", entry),
        "claim": ("XCLAIM", inbox, "dinsos", "dinkes", "0", entry),
        "claim-lastid": ("XCLAIM", inbox, "dinsos", "dinkes", "0", entry, "LASTID", future),
        "setid": ("XGROUP", "SETID", inbox, "dinsos", "$"),
    }
    assert tuple(attempts) == SILENCING
    redis = security.connect("svc-dinkes")
    answers: dict[str, str] = {}
    try:
        for what, command in attempts.items():
            try:
                await redis.execute_command(*command)  # type: ignore[no-untyped-call]
                answers[what] = "accepted (!)"
            except NoPermissionError:
                answers[what] = "NOPERM"
    finally:
        await redis.aclose()
    return answers
