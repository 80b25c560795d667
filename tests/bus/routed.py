"""A routed bus for tests (decision 0011): a private Redis 7 with the ACL rendered from
deploy/topology.yaml plus the router principal, each principal connecting with its own
password, and a router replica running in-process as the ``router`` user."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from redis import Redis as SyncRedis
from redis.asyncio import Redis
from redis.exceptions import NoPermissionError

from bus.access import acl
from bus.access.topology import Topology, contracts
from bus.connection import connect
from bus.contracts import default_registry
from bus.functions import load_sync
from bus.local.redis import EmbeddedRedis
from bus.router import Router, RouterConfig
from bus.signing import KeyRing, Signer

ROOT = Path(__file__).parent.parent.parent
ADMIN = "operator"
ROUTER = "router"


def routed_document() -> dict[str, Any]:
    document = yaml.safe_load((ROOT / "deploy/topology.yaml").read_text())
    document["delivery"] = "router"
    return dict(document)


TOPOLOGY: Topology = Topology.parse(routed_document(), registry=contracts())
PASSWORDS = acl.passwords(TOPOLOGY, acl.read_env_file(ROOT / "deploy/dev.env"))


def signer(principal: str) -> Signer:
    key = next(k for k in TOPOLOGY.signing_keys() if k.principal == principal)
    return Signer.from_file(ROOT / "deploy/keys" / f"{key.key_id}.key", key.key_id)


def router_signer() -> Signer:
    assert TOPOLOGY.router is not None
    key = TOPOLOGY.router.keys[0].id
    return Signer.from_file(ROOT / "deploy/keys" / f"{key}.key", key)


def keyring() -> KeyRing:
    return KeyRing(TOPOLOGY.signing_keys())


@dataclass
class RoutedServer:
    port: int
    aclfile: Path

    def url(self, principal: str) -> str:
        return f"redis://{principal}:{PASSWORDS[principal]}@127.0.0.1:{self.port}/0"

    def admin(self) -> SyncRedis:
        return SyncRedis(port=self.port, username=ADMIN, password=PASSWORDS[ADMIN])

    def connect(self, principal: str) -> Redis:
        return connect(self.url(principal), client_name=f"test:{principal}")

    def admitted_and_refused(
        self, stream: str, intake: str, *, by: bytes
    ) -> tuple[list[dict[str, str]], bytes, dict[str, dict[str, str]]]:
        """As the admin sees them: ``stream``'s entries (decoded), its first entry id, and
        ``intake``'s refusals keyed by their field ``by`` (``id``, or ``dlq.entry`` where a
        refusal carries none of the event's fields)."""

        def text(fields: dict[bytes, bytes]) -> dict[str, str]:
            return {k.decode(): v.decode() for k, v in fields.items()}

        with self.admin() as admin:
            entries = admin.xrange(stream)
            refusals = admin.xrange(intake + ":dlq")
        return (
            [text(raw) for _, raw in entries],
            entries[0][0],
            {fields[by].decode(): text(fields) for _, fields in refusals},
        )

    def router(self, replica: str = "router-1", **config: Any) -> Router:
        values = {"block_ms": 50, "lease_ms": 1_000, "trim_every_s": 0.2, **config}
        return Router(
            self.connect(ROUTER),
            TOPOLOGY,
            default_registry,
            keyring=keyring(),
            signer=router_signer(),
            config=RouterConfig(**values),
            replica=replica,
        )


@contextlib.contextmanager
def acl_server(
    aclfile: Path, *, functions: bool = True, extra_args: tuple[str, ...] = ()
) -> Iterator[RoutedServer]:
    """A private Redis 7 in the folder of ``aclfile``, started with it (the default user off),
    answering the admin, who loads the bus's library unless ``functions`` is False (a test of
    the steps that load it). ``extra_args``: more of the server's options (``--maxmemory``).
    Skips the test on Redis < 7.0: the rendered ACLs use selectors."""
    server = EmbeddedRedis(
        aclfile.parent,
        appendfsync="no",
        extra_args=extra_args,
        aclfile=aclfile,
        admin=(ADMIN, PASSWORDS[ADMIN]),
        functions=functions,
    )
    if int(server.version.split(".")[0]) < 7:
        pytest.skip("ACL selectors need Redis >= 7.0; only the bundled 6.2 server was found")
    with server:
        yield RoutedServer(server.port, aclfile)


@pytest.fixture(scope="module")
def routed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RoutedServer]:
    aclfile = tmp_path_factory.mktemp("routed-redis") / "users.acl"
    aclfile.write_text(acl.render(TOPOLOGY, PASSWORDS))
    with acl_server(aclfile) as server:
        yield server


@pytest.fixture
def routed(routed_server: RoutedServer) -> RoutedServer:
    with routed_server.admin() as admin:
        admin.flushall()
        admin.script_flush()
        load_sync(admin)  # the bus's library, as the admin loads it (FLUSHALL keeps it anyway)
    return routed_server


@contextlib.asynccontextmanager
async def running(router: Router) -> AsyncIterator[Router]:
    task = asyncio.create_task(router.run())
    try:
        yield router
    finally:
        router.stop()
        await asyncio.wait_for(task, 10)
        await router.redis.aclose()


# Commands that would run code of a principal's own in Redis: only the admin may (decision 0013).
CODE_OF_ITS_OWN: tuple[tuple[str, ...], ...] = (
    ("SCRIPT", "LOAD", "return 1"),
    ("EVAL", "while true do end", "0"),
    ("EVALSHA", "e0e1f9fabfc9d4800c877a703b823ac0578ff8db", "0"),
    (
        "FUNCTION",
        "LOAD",
        "#!lua name=mine\nredis.register_function('mine', function() return 1 end)",
    ),
)


async def assert_runs_no_code_of_its_own(redis: Redis) -> None:
    """Each of :data:`CODE_OF_ITS_OWN` is refused for ``redis``'s user (NOPERM)."""
    for command in CODE_OF_ITS_OWN:
        with pytest.raises(NoPermissionError):
            await redis.execute_command(*command)
