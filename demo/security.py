"""The demo's bus runs as the city's does: every component its own Redis principal, every event
signed by its producer and verified by every service.

At start the demo takes deploy/topology.yaml (plus its own archive service), makes a password
for every principal and a signing key for every publishing one (nothing is reused between runs
and nothing is written outside the demo's temporary folder), loads the rendered ACLs into its
Redis and gives each adapter and service its own URL, key file and the keyring.

ACLs are applied when the demo owns its Redis and that Redis is version 7 or newer (ACL
selectors); with ``SIMPUL_REDIS_URL`` (someone else's server) or the Redis 6.2 fallback binary
every component connects with the given URL, and events are still signed and verified.
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
from bus import Publisher, Signer, connect, keys
from bus.access import acl
from bus.access.topology import Topology
from bus.admin import load_functions
from schemas.dukcapil import CitizenDied

TOPOLOGY = Path(__file__).parent.parent / "deploy" / "topology.yaml"
ARCHIVE = "svc-arsip"
OPERATOR = "operator"
IDENTITY = "adapter-identitas"

# The demo's archive (a consumer whose disk is full for Kedungkandang): a service like any other.
_ARCHIVE_SPEC = {
    "principal": ARCHIVE,
    "department": "diskominfo",
    "group": "arsip-demo",
    "subscriptions": [{"type": "dukcapil.citizen.moved.v1", "approved_by": "dukcapil"}],
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
        """Settings of a service running as ``principal``: its key (if it publishes), the
        keyring, every event verified."""
        extra: dict[str, Any] = {
            "keyring_file": str(self.keyring_file),
            "require_signatures": True,
        }
        if principal in self.key_files:
            extra["signing_key_file"] = str(self.key_files[principal])
            extra["signer"] = self.signers[principal].key_id
        return extra

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
    for who in [*document["producers"], *document["services"]]:
        if not who.get("publishes"):
            continue
        signer = Signer.generate(f"{who['principal']}-demo")
        key_files[who["principal"]] = signer.write(keys / f"{signer.key_id}.key")
        signers[who["principal"]] = signer
        public = base64.b64encode(signer.public_key).decode()
        who["keys"] = [{"id": signer.key_id, "public_key": public}]
    topology = Topology.parse(document, source="the demo's topology")
    (folder / "topology.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    principals = [
        p.principal for p in (*topology.operators, *topology.producers, *topology.services)
    ]
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
        await acl.apply(admin, acl.acl_users(security.topology, security.passwords))
        await load_functions(admin)  # as `simpul acl apply` does: only the admin loads code
    finally:
        await admin.aclose()
    security.acl_note = f"{security.principals} principals, default user off"


# -- a stolen password ------------------------------------------------------------------------


@dataclass
class Intrusion:
    """What someone holding the dukcapil adapter's Redis password (not its signing key) got."""

    cross_department: str  # Redis' answer to publishing a bapenda payment; "" if not tried
    forged_event_id: str  # the unsigned death it could write to dukcapil's own stream


async def stolen_password(security: Security, victim_nik: str, kecamatan: str) -> Intrusion:
    """Publish a bapenda payment, then an unsigned death of a living resident, as
    ``adapter-dukcapil`` without its key: Redis refuses the first (ACL), every service the
    second (no signature), so no handler ever sees it."""
    redis = security.connect("adapter-dukcapil")
    try:
        answer = ""
        if security.acl_applied:  # on a bus without ACLs the payment would land: don't
            try:
                await redis.xadd(keys.stream("bapenda.payment"), {"id": "stolen-0001"})
                answer = "accepted (!)"
            except NoPermissionError as exc:
                answer = str(exc).split(":")[0] or "NOPERM"
        forger = Publisher(redis, source=DUKCAPIL_SOURCE, signer=None)
        death = CitizenDied(nik=victim_nik, date_of_death=date.today(), kecamatan=kecamatan)
        published = await forger.publish(death)
        return Intrusion(answer, published.event_id)
    finally:
        await redis.aclose()
