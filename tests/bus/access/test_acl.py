"""The rendered ACLs in a real Redis 7: every principal x every key x every operation.

One private redis-server for the module (tests/bus/routed.py), started with the ACL file
rendered from deploy/topology.yaml (routed delivery, decision 0011) and deploy/dev.env, flushed
before each test, the bus's functions library loaded by the admin. Each principal connects with
its own development password and runs what its code runs (the real Publisher, Settler, Dedupe,
checkpoints and quarantine) or the raw commands behind them, on every department stream, every
intake and every inbox; what the topology allows must work and everything else must be refused
with NOPERM. The expectations are written out by hand below (who writes which intake, which
group reads which inbox), not derived from the topology under test.

What the router itself refuses (oversize entries, foreign types, bad signatures) and what a
producer's far-future or maximum id on its intake does (nothing to anyone else) are in
tests/bus/test_router.py, on the same rendered ACL.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from redis.exceptions import NoPermissionError, ResponseError
from typer.testing import CliRunner

from adapters import dpmptsp, dukcapil
from adapters.dpmptsp.fixtures import payloads
from adapters.dukcapil import fixtures as siak
from bus import functions, gaps, keys
from bus.access import acl, acl_server
from bus.access.topology import Topology, contracts, load_topology
from bus.adapter import Problem, Record, Rejected
from bus.adapter.checkpoint import RedisCheckpoints
from bus.adapter.quarantine import Quarantine
from bus.adapter.sources.webhook import running as running_app
from bus.admin import DeadLetterRef, DeadLetters, Inspector, Target
from bus.admin.deadletter_types import Outcome
from bus.cli.app import app
from bus.connection import connect
from bus.context import EventContext
from bus.contracts import Contract, default_registry
from bus.deadletter import Reason, Verdict
from bus.dedupe import Dedupe
from bus.errors import ConfigurationError
from bus.health import Health
from bus.publisher import Publisher
from bus.router import Router, RouterConfig
from bus.service import Service
from bus.settle import Settlement, Settler
from bus.testing import quick_settings, wait_until
from schemas.bapenda import PaymentReceived
from schemas.dinsos import AssistanceSuspended
from schemas.dukcapil import CitizenDied
from services.dinsos.projections import Birth, Move
from tests.bus.routed import (
    RoutedServer,
    assert_runs_no_code_of_its_own,
    router_signer,
    running,
)

ROOT = Path(__file__).parents[3]
EXAMPLES = ROOT / "schemas" / "examples"
ENV = acl.read_env_file(ROOT / "deploy/dev.env")
TOPOLOGY: Topology = load_topology(ROOT / "deploy/topology.yaml", registry=contracts())
PASSWORDS = acl.passwords(TOPOLOGY, ENV)

STREAMS = sorted({m.__contract__.stream for m in contracts()})
CITY = [
    "--topology",
    str(ROOT / "deploy/topology.yaml"),
    "--passwords",
    str(ROOT / "deploy/dev.env"),
]


def s(aggregate: str) -> str:
    return keys.stream(aggregate)


# -- what the city decided, written out by hand -------------------------------------------------

ADMIN = "operator"
READONLY = "operator-readonly"
MONITOR = "monitor"  # role monitor: the dashboard, read-only plus dead-letter replay
EXPORTER = "exporter"  # role exporter: counts and positions, no entry reads
HEALTH = "redis-health"  # role health: PING alone
REPLICATION = "redis-replication"  # the servers' own links under Sentinel: no key at all
SENTINEL = "redis-sentinel"
ROUTER = "router"  # the router (decision 0011): intakes -> department streams -> inboxes
# What each principal may publish: the department streams of its types. Under routed delivery
# it writes them only through its intake; the router admits them onto these streams.
PUBLISHES: dict[str, set[str]] = {
    "adapter-dukcapil": {s("dukcapil.citizen")},
    "adapter-dpmptsp": {s("dpmptsp.permit")},
    "adapter-bapenda": {s("bapenda.payment")},
    "adapter-identitas": {s("identity.account")},
    "adapter-disnaker": {s("disnaker.jobseeker")},
    "svc-dinsos": {s("dinsos.assistance")},
    "svc-bapenda": {s("bapenda.taxpayer")},
    "svc-dinkes": {s("dinkes.immunisation")},
}
# The department streams each service was approved to read: it reads them as one inbox each.
READS: dict[str, set[str]] = {
    "svc-profile": {
        s(a)
        for a in (
            "dukcapil.citizen",
            "dukcapil.family",
            "dpmptsp.permit",
            "bapenda.taxpayer",
            "bapenda.tax",
            "bapenda.payment",
            "dinsos.assistance",
            "identity.account",
        )
    },
    "svc-dinsos": {s("dukcapil.citizen"), s("dukcapil.family"), s("disnaker.jobseeker")},
    "svc-bapenda": {s("dpmptsp.permit"), s("dukcapil.citizen")},
    "svc-dinkes": {s("dukcapil.citizen")},
    "svc-notifier": {
        s("identity.account"),
        s("dukcapil.citizen"),
        s("dpmptsp.permit"),
        s("bapenda.payment"),
    },
    "svc-audit": set(STREAMS),
}
GROUPS = {
    "svc-profile": "profile",
    "svc-dinsos": "dinsos",
    "svc-bapenda": "bapenda",
    "svc-dinkes": "dinkes",
    "svc-notifier": "notifier",
    "svc-audit": "audit",
}
INTAKES = {principal: keys.intake(principal) for principal in PUBLISHES}
INBOXES = {
    principal: {keys.inbox(stream, GROUPS[principal]) for stream in streams}
    for principal, streams in READS.items()
}
ALL_INBOXES = sorted(set().union(*INBOXES.values()))
KEYS = [*STREAMS, *sorted(INTAKES.values()), *ALL_INBOXES]
OWN_ADAPTER = {
    "adapter-dukcapil": "dukcapil-siak",
    "adapter-dpmptsp": "dpmptsp-sicantik",
    "adapter-bapenda": "bapenda-pembayaran",
    "adapter-identitas": "diskominfo-identitas",
    "adapter-disnaker": "disnaker-pencaker",
}
PRINCIPALS = [
    ADMIN,
    READONLY,
    MONITOR,
    EXPORTER,
    HEALTH,
    REPLICATION,
    SENTINEL,
    ROUTER,
    *OWN_ADAPTER,
    *GROUPS,
]
# What replaying a dead letter takes (the library's simpul_1_dlq_replay runs with the caller's
# rights): an entry back into a group's pending list (XCLAIM, as the keep-alive function does)
# or a new entry on the stream (XADD); adding to a dead-letter stream comes with it. Under
# routed delivery the dead letters are the inboxes', so the monitor's grant names the inboxes
# (simpul:inbox:{...}), never a department stream: what it added there the router would forward
# signed. XCLAIM comes with its LASTID option (docs/security.md: an operator's password).
MONITOR_OPS = {"xadd", "claim", "claim-lastid", "keep-alive", "dlq-xadd", "replay"}
ADAPTERS = list(OWN_ADAPTER.values())

PUBLISH_OPS = ("publish", "publish-batch", "xadd")
CONSUME_OPS = (
    "readgroup",
    "claim",
    "claim-lastid",
    "autoclaim",
    "keep-alive",
    "ack",
    "dead-letter",
    "dlq-xadd",
    "dedupe",
    "group-create",
    "gap-check",
)
# XINFO STREAM FULL returns every entry (COUNT 0) and Redis grants it with XINFO STREAM: whoever
# may see a stream's counters may read its entries (docs/security.md, "Known limits").
READ_OPS = ("xrange", "pending", "xinfo-full")
# Last: the destructive ones (the admin's RENAME moves the key away from UNLINK and DEL).
ADMIN_OPS = (
    "other-cursor",
    "group-setid",
    "create-consumer",
    "del-consumer",
    "xsetid",
    "xdel",
    "xtrim",
    "set",
    "expire",
    "copy",
    "group-destroy",
    "rename",
    "unlink",
    "del",
)
# The library's functions no service, producer or reader may run on these keys: the router's
# fenced read and the dead-letter replay (the monitor's and the admin's).
FUNCTION_OPS = ("router-read", "replay")
# The router reads intakes and department streams as group "router" (read, ack, create its
# group, see what is pending) and writes department streams and inboxes (the publish
# function); it trims intakes and inboxes below what is settled. It never claims, never
# dead-letters through a group's dead letters (its own are <intake>:dlq) and never reads an
# inbox. Its keep-alive passes the ACL but does nothing: the library's function only XPENDINGs
# (the seeded entries are another consumer's), which the router may, and never gets to XCLAIM.
# It moves its group on a department stream past what admission forwarded itself (decision
# 0014); the department streams have no other principal's group to move.
ROUTER_OPS = {
    "intake": {"readgroup", "ack", "group-create", "xtrim", "keep-alive", "router-read"},
    "stream": {
        "readgroup",
        "ack",
        "group-create",
        "group-setid",
        "keep-alive",
        "router-read",
        *PUBLISH_OPS,
    },
    "inbox": {"xtrim", "keep-alive", *PUBLISH_OPS},
}


def kind_of(key: str) -> str:
    if keys.intake_owner(key) is not None:
        return "intake"
    return "inbox" if keys.is_inbox(key) else "stream"


def group_for(principal: str, key: str) -> str:
    """The group the operations on ``key`` name: an inbox's own group (for anyone else, that
    is the attack: acting as another department's group), the router's on an intake, else the
    principal's own group on a department stream."""
    inbox = keys.inbox_of(key)
    if inbox is not None:
        return inbox[1]
    if kind_of(key) == "intake" or principal == ROUTER:
        return keys.ROUTER_GROUP
    return GROUPS.get(principal, "probe")


def expected(principal: str, key: str, op: str) -> bool:  # noqa: PLR0911 - one per rule
    kind = kind_of(key)
    if principal == ADMIN:
        return True
    if principal == ROUTER:
        return op in ROUTER_OPS[kind] or op in ("pending", "xinfo-full")
    if principal == MONITOR:
        return op in (MONITOR_OPS if kind == "inbox" else set()) or op in READ_OPS
    if principal in (READONLY, EXPORTER):  # readonly: %R~simpul:* reads; exporter: counts
        return op in ("pending", "xinfo-full") or (principal == READONLY and op == "xrange")
    if kind == "intake":  # only its own producer, only adding and reading back (replays)
        return INTAKES.get(principal) == key and op in (*PUBLISH_OPS, "xrange")
    if kind == "inbox":  # only its own service, only as a consumer
        own = (*CONSUME_OPS, "pending", "xinfo-full")
        return key in INBOXES.get(principal, set()) and op in own
    return False  # a department stream: the router's alone


def test_the_hand_written_expectations_cover_the_city() -> None:
    assert TOPOLOGY.routed and TOPOLOGY.router is not None
    assert TOPOLOGY.router.principal == ROUTER
    assert sorted(PRINCIPALS) == sorted([ROUTER, *TOPOLOGY.principals()])
    assert len(STREAMS) == 11
    router = Router(Redis(), TOPOLOGY, default_registry, keyring=None)
    assert sorted(inbox for inbox, _ in router.inboxes()) == ALL_INBOXES
    assert len(ALL_INBOXES) == 29  # one per group x stream, for 47 subscriptions
    assert sorted(INTAKES.values()) == router.intakes


def test_a_missing_password_is_named_with_its_principal_and_what_to_add() -> None:
    env = {k: v for k, v in ENV.items() if k != "SIMPUL_REDIS_PASSWORD_SVC_DINSOS"}
    with pytest.raises(ConfigurationError) as raised:
        acl.passwords(TOPOLOGY, env, source="deploy/dev.env")
    message = str(raised.value)
    assert message.startswith(
        "deploy/dev.env lacks SIMPUL_REDIS_PASSWORD_SVC_DINSOS (the password of svc-dinsos): "
        "add each as VARIABLE=<a new random password"
    ), message
    assert not any(password in message for password in ENV.values())


# -- the server: tests/bus/routed.py's, flushed before each test ---------------------------------


@pytest.fixture
async def clients(routed: RoutedServer) -> AsyncIterator[dict[str, Redis]]:
    made = {p: connect(routed.url(p), client_name=f"test:{p}") for p in PRINCIPALS}
    yield made
    for client in made.values():
        await client.aclose()


def _example(model: type[Contract]) -> Contract:
    folder = EXAMPLES / model.__contract__.event_type
    first = sorted(folder.glob("valid-*.json"))[0]
    return model.parse(first.read_text())


EXAMPLE_OF = {}  # stream -> a valid event published to it
for _model in contracts():
    EXAMPLE_OF.setdefault(_model.__contract__.stream, _model)


def _denied(exc: BaseException) -> bool:
    text = str(exc)
    return isinstance(exc, NoPermissionError) or (
        isinstance(exc, ResponseError)
        # In a script: "... can't access at least one of the keys" / "can't run this command"
        and (
            "NOPERM" in text
            or "no permissions" in text
            or "user executing the script can't" in text
        )
    )


async def outcome(call: Callable[[], Awaitable[Any]]) -> str:
    """'allowed' (it ran, or Redis got past the ACL and answered about the data), 'denied'
    (NOPERM), or the unexpected error."""
    try:
        await call()
    except ResponseError as exc:
        if _denied(exc):
            return "denied"
        if str(exc).startswith(("BUSYGROUP", "WRONGTYPE", "SIMPUL_NOT_HOLDER")):
            return "allowed"  # past the ACL: refused for the data's sake
        return f"error: {exc}"
    return "allowed"


def _seed(server: RoutedServer, principal: str) -> dict[str, list[str]]:
    """Each key: three entries pending for the group ``principal`` names there (consumer
    'seed'); returns their ids."""
    ids: dict[str, list[str]] = {}
    with server.admin() as admin:
        for key in KEYS:
            group = group_for(principal, key)
            ids[key] = [admin.xadd(key, {"seed": str(i)}).decode() for i in range(3)]
            admin.xgroup_create(key, group, "0")
            admin.xreadgroup(group, "seed", {key: ">"})
    return ids


def _publisher(redis: Redis, key: str) -> Publisher:
    """The real Publisher aimed at ``key``: a department stream (direct), or an intake."""
    owner = keys.intake_owner(key)
    return Publisher(redis, source="urn:malangkota:test:acl", intake=owner)


def _model_for(key: str) -> type[Contract]:
    owner = keys.intake_owner(key)
    if owner is not None:  # a type its producer may publish
        return EXAMPLE_OF[sorted(PUBLISHES[owner])[0]]
    inbox = keys.inbox_of(key)
    return EXAMPLE_OF[inbox[0] if inbox else key]


def _stream_ops(
    redis: Redis, key: str, group: str, entries: list[str]
) -> dict[str, Callable[[], Awaitable[Any]]]:
    model = _model_for(key)
    settler = Settler(
        redis, group=group, consumer="c", health=Health(stale_after_s=30.0), log=_NoLog()
    )
    dedupe = Dedupe(redis, group=group, consumer="c", lease_ms=1000, ttl_ms=1000)
    verdict = Verdict(Reason.HANDLER_FAILED, "boom", 5)
    first, second, third = entries
    dlq = keys.dead_letters(key, group)
    if keys.is_inbox(key):  # no Publisher writes an inbox: the router's forward call, raw
        forward = f"{functions.LIBRARY}_forward_batch"
        mark = keys.routed_mark(key)

        def one() -> Awaitable[Any]:
            return redis.fcall(forward, 2, key, mark, "1-1", "2", "type", "x")  # type: ignore[arg-type]

        def many() -> Awaitable[Any]:
            entries = ("2-1", "2", "type", "x", "2-2", "2", "type", "y")
            return redis.fcall(forward, 2, key, mark, *entries)  # type: ignore[arg-type]

    else:
        one = lambda: _publisher(redis, key).publish(_example(model))  # noqa: E731
        many = lambda: _publisher(redis, key).publish_many([_example(model)])  # noqa: E731
    return {
        "publish": one,
        "publish-batch": many,
        "xadd": lambda: redis.xadd(key, {"type": "forged"}),
        "xrange": lambda: redis.xrange(key, count=1),
        "readgroup": lambda: redis.xreadgroup(group, "c", {key: "0"}, count=1),
        "pending": lambda: redis.xpending(key, group),
        "claim": lambda: redis.xclaim(key, group, "c", 0, [first]),
        # What issue 16 found: XCLAIM's LASTID moves the group's last-delivered id, so the
        # group would never be given what lies before it.
        "claim-lastid": lambda: redis.execute_command(
            "XCLAIM", key, group, "c", 0, first, "LASTID", entries[-1]
        ),
        "autoclaim": lambda: redis.xautoclaim(key, group, "c", 0, count=1),
        "keep-alive": lambda: settler.keep(key, [first]),
        "ack": lambda: settler.settle(key, Settlement(acks=[second])),
        "dead-letter": lambda: settler.settle(
            key, Settlement(dead=[(third, {b"seed": b"2"}, verdict)])
        ),
        "dlq-xadd": lambda: redis.xadd(dlq, {"dlq.reason": "handler_failed"}),
        "dedupe": lambda: dedupe.begin(key, "event-1", first),
        "group-create": lambda: redis.xgroup_create(key, group, "$"),
        "gap-check": lambda: gaps.check(redis, key, group),
        "xinfo-full": lambda: redis.execute_command("XINFO", "STREAM", key, "FULL", "COUNT", 1),
        # The router's fenced read: the lease is nobody's here, so past the ACL it answers
        # SIMPUL_NOT_HOLDER; a dry-run replay of a dead letter that does not exist, 'gone'.
        "router-read": lambda: redis.fcall(
            f"{functions.LIBRARY}_router_read",
            2,
            key,
            keys.router_lease(key),
            "replica",
            group,
            "c",
            "1",
            "0",
        ),  # type: ignore[arg-type]
        "replay": lambda: redis.fcall(
            f"{functions.LIBRARY}_dlq_replay", 2, dlq, key, "1-1", "stream", "1", "0", group
        ),  # type: ignore[arg-type]
        "other-cursor": lambda: redis.hset(keys.cursor(key, "other"), "id", "0-1"),
        "group-setid": lambda: redis.xgroup_setid(key, group, "0"),
        "create-consumer": lambda: redis.xgroup_createconsumer(key, group, "intruder"),
        "del-consumer": lambda: redis.xgroup_delconsumer(key, group, "seed"),
        "xsetid": lambda: redis.execute_command("XSETID", key, "99999999999999-0"),
        "xdel": lambda: redis.xdel(key, first),
        "xtrim": lambda: redis.xtrim(key, maxlen=1000),
        "set": lambda: redis.set(key, "overwritten"),
        "expire": lambda: redis.expire(key, 3600),
        "copy": lambda: redis.copy(key, f"{key}:copy"),
        "group-destroy": lambda: redis.xgroup_destroy(key, group),
        "rename": lambda: redis.rename(key, f"{key}:renamed"),
        "unlink": lambda: redis.unlink(key),
        "del": lambda: redis.delete(key),
    }


class _NoLog:
    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *args, **kwargs: None


@pytest.mark.parametrize("principal", PRINCIPALS)
async def test_every_key_operation_is_allowed_exactly_where_the_topology_says(
    routed: RoutedServer, clients: dict[str, Redis], principal: str
) -> None:
    """Every department stream, intake and inbox: a producer adds only to its own intake, a
    service consumes only its own inboxes (another department's inbox group cannot be read,
    acked, claimed, moved with XCLAIM LASTID or XGROUP SETID), the router alone writes the
    department streams and inboxes."""
    seeded = _seed(routed, principal)
    wrong = []
    for key in KEYS:
        group = group_for(principal, key)
        ops = _stream_ops(clients[principal], key, group, seeded[key])
        assert set(ops) == {*PUBLISH_OPS, *READ_OPS, *CONSUME_OPS, *ADMIN_OPS, *FUNCTION_OPS}
        for op, call in ops.items():
            got = await outcome(call)
            want = "allowed" if expected(principal, key, op) else "denied"
            if got != want:
                wrong.append(f"{op} on {key} as group {group}: {got}, expected {want}")
    assert not wrong, f"{principal}:\n" + "\n".join(wrong)


@pytest.mark.parametrize("principal", PRINCIPALS)
async def test_checkpoints_quarantines_and_the_audit_head_belong_to_their_owner(
    routed: RoutedServer, clients: dict[str, Redis], principal: str
) -> None:
    redis = clients[principal]
    reader = principal == READONLY
    wrong = []
    for adapter in ADAPTERS:
        mine = principal == ADMIN or OWN_ADAPTER.get(principal) == adapter
        quarantine = Quarantine(redis, adapter)
        record = Record("k1", "1", None, {"nik": "3573014107780004"})
        rejected = Rejected("tabel", "event-1", record, [Problem("nik", "bad")])
        other = Rejected("tabel", "event-2", record, [Problem("nik", "bad")])
        await Quarantine(clients[ADMIN], adapter).add([other])
        [seeded] = await Quarantine(clients[ADMIN], adapter).entries()
        ops: dict[str, tuple[Callable[[], Awaitable[Any]], bool]] = {
            "checkpoint save": (lambda a=adapter: RedisCheckpoints(redis).save(a, {"at": 1}), mine),
            "checkpoint load": (
                lambda a=adapter: RedisCheckpoints(redis).load(a),
                mine or reader or principal == MONITOR,
            ),
            "quarantine add": (lambda q=quarantine, r=rejected: q.add([r]), mine),
            "quarantine list": (
                lambda q=quarantine: q.entries(),
                mine or reader or principal == MONITOR,
            ),
            "quarantine discard": (lambda q=quarantine, e=seeded: q.discard(e), mine),
            # What bus.adapter.report.Reporter sends (it swallows its errors, so raw here).
            "report write": (lambda a=adapter: _write_report(redis, a), mine),
            "report read": (
                lambda a=adapter: _read_report(redis, a),
                principal in (ADMIN, READONLY, MONITOR, EXPORTER),
            ),
        }
        for op, (call, allowed) in ops.items():
            got = await outcome(call)
            if got != ("allowed" if allowed else "denied"):
                wrong.append(f"{op} of {adapter}: {got}")
    archive = principal in (ADMIN, "svc-audit")
    for op, call, allowed in [
        ("audit head write", lambda: redis.hset(acl.AUDIT_HEAD, "seq", "1"), archive),
        (
            "audit head read",
            lambda: redis.hmget(acl.AUDIT_HEAD, ["seq"]),
            archive or principal in (READONLY, MONITOR),
        ),
    ]:
        got = await outcome(call)
        if got != ("allowed" if allowed else "denied"):
            wrong.append(f"{op}: {got}")
    assert not wrong, f"{principal}:\n" + "\n".join(wrong)


async def _write_report(redis: Redis, adapter: str) -> None:
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hset(keys.adapter_report(adapter), mapping={"state": "running", "published": "1"})
        pipe.pexpire(keys.adapter_report(adapter), 60_000)
        await pipe.execute()


async def _read_report(redis: Redis, adapter: str) -> None:
    await redis.hgetall(keys.adapter_report(adapter))
    await redis.pttl(keys.adapter_report(adapter))


KEYLESS = {
    "flushall": ("FLUSHALL",),
    "flushdb": ("FLUSHDB",),
    "config": ("CONFIG", "GET", "maxmemory"),
    "keys": ("KEYS", "*"),
    "acl": ("ACL", "LIST"),
    "script flush": ("SCRIPT", "FLUSH"),
    "eval": ("EVAL", "return 1", "0"),
    "eval_ro": ("EVAL_RO", "return 1", "0"),
    "script load": ("SCRIPT", "LOAD", "return 1"),
    "evalsha": ("EVALSHA", "e0e1f9fabfc9d4800c877a703b823ac0578ff8db", "0"),  # of "return 1"
    "script exists": ("SCRIPT", "EXISTS", "e0e1f9fabfc9d4800c877a703b823ac0578ff8db"),
    "script kill": ("SCRIPT", "KILL"),
    "function load": (
        "FUNCTION",
        "LOAD",
        "#!lua name=mine\nredis.register_function('mine', function() return 1 end)",
    ),
    "function delete": ("FUNCTION", "DELETE", functions.LIBRARY),
    "function flush": ("FUNCTION", "FLUSH"),
    "function restore": ("FUNCTION", "RESTORE", "x"),
    "function list": ("FUNCTION", "LIST"),
    "function kill": ("FUNCTION", "KILL"),
    "publish": ("PUBLISH", "news", "hello"),
    "client list": ("CLIENT", "LIST"),
    "info": ("INFO", "server"),
    "debug": ("DEBUG", "SLEEP", "0"),
    "shutdown": ("SHUTDOWN", "NOSAVE"),
    "module": ("MODULE", "LIST"),
    "monitor": ("MONITOR",),
    # Keyspace notifications and every other channel: nobody listens but the admin (and a
    # Sentinel on its hello channel).
    "subscribe": ("SUBSCRIBE", "__keyspace@0__:simpul:x"),
    "psubscribe": ("PSUBSCRIBE", "__key*__:*"),
    "ssubscribe": ("SSUBSCRIBE", "simpul:x"),
    "pubsub": ("PUBSUB", "CHANNELS"),
    "slowlog": ("SLOWLOG", "GET"),  # quotes the arguments of slow commands: entries
    "client kill": ("CLIENT", "KILL", "ID", "999999999"),
    "client pause": ("CLIENT", "PAUSE", "1", "WRITE"),
    "client no-evict": ("CLIENT", "NO-EVICT", "on"),
    "config set": ("CONFIG", "SET", "maxmemory-clients", "0"),
    "fcall_ro": ("FCALL_RO", f"{functions.LIBRARY}_version", "0"),
    "swapdb": ("SWAPDB", "0", "1"),
    "bgsave": ("BGSAVE",),
    "slaveof": ("SLAVEOF", "NO", "ONE"),  # a no-op on a master
    "replicaof": ("REPLICAOF", "NO", "ONE"),
    "psync": ("PSYNC", "?", "-1"),  # the whole data set, as a replica receives it
    "sync": ("SYNC",),
    "migrate": ("MIGRATE", "127.0.0.1", "1", "simpul:x", "0", "1"),
    "restore": ("RESTORE", "simpul:x", "0", "not a dump"),
    "sort store": ("SORT", "simpul:x", "STORE", "simpul:y"),
    "object": ("OBJECT", "ENCODING", "simpul:x"),
    "memory usage": ("MEMORY", "USAGE", "simpul:x"),
    "latency": ("LATENCY", "LATEST"),
}
# What a Sentinel sends to the servers it watches and a replica to its master (the Redis ACL
# documentation's rules): neither reads a key, but SLAVEOF replaces a server's whole data set
# (functions included) with another's and PSYNC hands over all of it (docs/security.md).
KEYLESS_OF = {
    SENTINEL: {"info", "script kill", "client kill", "slaveof"},
    REPLICATION: {"psync"},
    READONLY: {"info"},
    MONITOR: {"info"},
    EXPORTER: {"info"},
}
NEVER_RUN = (
    "debug",
    "shutdown",
    "monitor",
    "flushall",
    "flushdb",
    "script flush",
    "module",
    "script kill",
    "function load",
    "function delete",
    "function flush",
    "function restore",
    "function kill",
    "evalsha",
    "script exists",
    "eval_ro",
    "subscribe",
    "psubscribe",
    "ssubscribe",
    "client pause",
    "config set",
    "swapdb",
    "bgsave",
    "replicaof",
    "psync",
    "sync",
    "migrate",
    "restore",
)


@pytest.mark.parametrize("principal", PRINCIPALS)
async def test_dangerous_and_keyless_commands_are_denied_to_all_but_the_admin(
    routed: RoutedServer, clients: dict[str, Redis], principal: str
) -> None:
    redis = clients[principal]
    admin = clients[ADMIN]
    wrong = []
    for name, command in KEYLESS.items():
        # A Sentinel sends SCRIPT KILL to a master busy with a script (harmless: no principal
        # but the admin can start one); it cannot kill a function (FUNCTION KILL).
        allowed = principal == ADMIN or name in KEYLESS_OF.get(principal, set())
        # Ask Redis (ACL DRYRUN) instead of running what must not run in this test even when
        # allowed (the admin's FLUSHALL, MODULE is disabled by config), or ever (SHUTDOWN, a
        # replica's stream).
        others = ("debug", "shutdown", "monitor", "script kill", "psync", "sync")
        dry = NEVER_RUN if principal == ADMIN else others
        if name in dry:
            got = "allowed" if (await acl_server.check(admin, principal, command))[0] else "denied"
        else:
            got = await outcome(lambda c=command: redis.execute_command(*c))  # type: ignore[misc]
        if got != ("allowed" if allowed else "denied"):
            wrong.append(f"{name}: {got}")
    assert not wrong, f"{principal}:\n" + "\n".join(wrong)


# -- the cases named in the brief, spelled out ---------------------------------------------------


async def test_a_producer_publishes_only_into_its_own_intake(clients: dict[str, Redis]) -> None:
    """The real Publisher as adapter-dukcapil: not onto the department stream (the router's
    alone), not into another producer's intake, only into its own. (A bapenda type in its own
    intake passes Redis and is refused by the router as type_not_allowed, into the producer's
    own dead letters: tests/bus/test_router.py.)"""
    redis = clients["adapter-dukcapil"]
    source = "urn:malangkota:dukcapil:siak"
    direct = Publisher(redis, source=source, intake=None)
    with pytest.raises(NoPermissionError, match="keys used as arguments"):
        await direct.publish(_example(CitizenDied))
    posing = Publisher(redis, source=source, intake="adapter-bapenda")
    with pytest.raises(NoPermissionError):
        await posing.publish(_example(PaymentReceived))
    with pytest.raises(NoPermissionError):
        await posing.publish_many([_example(PaymentReceived)])
    admin = clients[ADMIN]
    assert await admin.exists(s("dukcapil.citizen"), s("bapenda.payment")) == 0
    assert await admin.exists(keys.intake("adapter-bapenda")) == 0
    own = Publisher(redis, source=source, intake="adapter-dukcapil")
    assert not (await own.publish(_example(CitizenDied))).duplicate
    assert await admin.xlen(keys.intake("adapter-dukcapil")) == 1


async def test_a_service_reads_only_its_own_inboxes(clients: dict[str, Redis]) -> None:
    dinkes, admin = clients["svc-dinkes"], clients[ADMIN]
    citizen = s("dukcapil.citizen")
    own, other = keys.inbox(citizen, "dinkes"), keys.inbox(citizen, "dinsos")
    await admin.xgroup_create(own, "dinkes", "$", mkstream=True)
    await admin.xgroup_create(other, "dinsos", "$", mkstream=True)
    await admin.xgroup_create(citizen, "dinkes", "$", mkstream=True)
    with pytest.raises(NoPermissionError, match="no permissions to access one of the keys"):
        await dinkes.xreadgroup("dinkes", "c", {citizen: ">"})  # the department stream
    with pytest.raises(NoPermissionError):
        await dinkes.xreadgroup("dinsos", "c", {other: ">"})  # another department's inbox
    with pytest.raises(NoPermissionError):  # one foreign inbox among its own refuses the read
        await dinkes.xreadgroup("dinkes", "c", {own: ">", other: ">"})
    with pytest.raises(NoPermissionError):
        await dinkes.xrange(own)  # its inbox only as its group
    assert await dinkes.xreadgroup("dinkes", "c", {own: ">"}) == []


async def test_no_principal_but_the_admin_runs_code_of_its_own(clients: dict[str, Redis]) -> None:
    """SCRIPT LOAD, EVAL, EVALSHA and FUNCTION LOAD are refused to every principal but the
    admin (the matrix above, run), so a stolen password cannot busy-loop Redis or leave an
    unkillable script; the admin's library is all there is, and FCALL of it works."""
    for principal, redis in clients.items():
        if principal == ADMIN:
            continue
        await assert_runs_no_code_of_its_own(redis)
    libraries = await clients[ADMIN].function_list()
    names = [dict(zip(lib[::2], lib[1::2], strict=True))[b"library_name"] for lib in libraries]
    assert names == [functions.LIBRARY.encode()]
    for principal in [*OWN_ADAPTER, *GROUPS]:  # the version probe every client makes first
        assert await clients[principal].fcall(functions.VERSION_FUNCTION, 0) == functions.VERSION


async def test_the_bus_functions_reach_no_key_their_caller_could_not(
    clients: dict[str, Redis],
) -> None:
    """Functions add no power: the keys FCALL declares are checked against the caller's
    selectors, and every redis.call inside again."""
    dinsos, admin = clients["svc-dinsos"], clients[ADMIN]
    stream = s("dukcapil.citizen")
    own, other = keys.inbox(stream, "dinsos"), keys.inbox(stream, "dinkes")
    publish = f"{functions.LIBRARY}_publish"
    for target in (stream, own):  # the router's to write, never a service's
        with pytest.raises(NoPermissionError):
            await dinsos.fcall(
                publish, 2, target, keys.seen(target, "x"), "1000", "", "type", "forged"
            )  # type: ignore[arg-type]
    dead = f"{functions.LIBRARY}_deadletter"
    await admin.xgroup_create(other, "dinkes", "$", mkstream=True)
    with pytest.raises(NoPermissionError):  # another group's dead letters, on its inbox
        await dinsos.fcall(
            dead, 2, other, keys.dead_letters(other, "dinkes"), "dinkes", "0-1", "f", "v"
        )  # type: ignore[arg-type]
    assert await admin.exists(keys.dead_letters(other, "dinkes"), stream, own) == 0
    assert await admin.xlen(other) == 0


# -- what issue 16 found, and what remains ------------------------------------------------------


async def test_another_departments_group_is_out_of_reach_only_its_own_dead_letters_are_not(
    clients: dict[str, Redis],
) -> None:
    """Under direct delivery any service reading a stream could ack, claim or move (XCLAIM
    LASTID) another group's entries on it: groups are not keys to a Redis ACL. With inboxes the
    group's key is its own, so the notifier cannot touch dinsos's. What remains, pinned so a
    change is noticed (docs/security.md, "Known limits"): a service can write what it likes
    into its own inbox's dead letters (replay verifies each one first, decision 0013)."""
    admin, notifier, dinsos = clients[ADMIN], clients["svc-notifier"], clients["svc-dinsos"]
    inbox = keys.inbox(s("dukcapil.citizen"), "dinsos")
    ids = [await admin.xadd(inbox, {"seed": str(i)}) for i in range(3)]
    await admin.xgroup_create(inbox, "dinsos", "0")
    await admin.xreadgroup("dinsos", "d1", {inbox: ">"}, count=1)
    for command in (
        ("XACK", inbox, "dinsos", ids[0]),
        ("XCLAIM", inbox, "dinsos", "x", 0, ids[0]),
        ("XCLAIM", inbox, "dinsos", "x", 0, ids[0], "LASTID", ids[-1]),
        ("XAUTOCLAIM", inbox, "dinsos", "x", 0, "0"),
        ("XGROUP", "SETID", inbox, "dinsos", "$"),
        ("XGROUP", "DESTROY", inbox, "dinsos"),
        ("XDEL", inbox, ids[1]),
        ("XTRIM", inbox, "MAXLEN", "0"),
        ("XADD", keys.dead_letters(inbox, "dinsos"), "*", "dlq.reason", "junk"),
    ):
        with pytest.raises(NoPermissionError):
            await notifier.execute_command(*command)
    [group] = await admin.xinfo_groups(inbox)
    assert group["last-delivered-id"] == ids[0] and group["pending"] == 1
    await dinsos.xadd(keys.dead_letters(inbox, "dinsos"), {"dlq.reason": "junk"})
    assert await admin.xlen(keys.dead_letters(inbox, "dinsos")) == 1


async def test_limitation_a_producer_can_trim_its_own_intake_through_xadd(
    clients: dict[str, Redis],
) -> None:
    """XADD's MINID/MAXLEN options trim: a producer may add to its intake, so it may also drop
    what the router has not admitted yet from it — its own events only, never another
    producer's or a department stream's. XTRIM and XDEL themselves are denied."""
    admin, adapter = clients[ADMIN], clients["adapter-dukcapil"]
    intake = keys.intake("adapter-dukcapil")
    for i in range(3):
        await admin.xadd(intake, {"seed": str(i)})
    await adapter.xadd(intake, {"type": "x"}, maxlen=1, approximate=False)
    assert await admin.xlen(intake) == 1
    with pytest.raises(NoPermissionError):
        await adapter.xtrim(intake, maxlen=0)
    for other in (keys.intake("adapter-bapenda"), s("dukcapil.citizen")):
        with pytest.raises(NoPermissionError):
            await adapter.xadd(other, {"type": "x"}, maxlen=1)


# -- end to end: the real adapter and a real service under their own principals ------------------


def _siak_db(path: Path) -> tuple[Path, dict[str, int]]:
    rows = list(siak.rows(24, seed=11))
    bad = dict(rows[3], id_peristiwa=999, nik="35730")  # a NIK of 5 digits: quarantined
    siak.create_sqlite(path, [*rows, bad])
    kinds = {"LAHIR": 0, "KEMATIAN": 0, "PINDAH": 0}
    for row in rows:
        kinds[str(row["jenis_peristiwa"])] = kinds.get(str(row["jenis_peristiwa"]), 0) + 1
    return path, kinds


async def test_adapter_router_and_service_complete_a_cycle_under_their_own_principals(
    routed: RoutedServer, clients: dict[str, Redis], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As compose runs them: the SIAK adapter into its intake (SIMPUL_INTAKE), the router
    admitting and forwarding, the dinsos service reading its inboxes and publishing through its
    own intake, each as its own principal."""
    admin = clients[ADMIN]
    stream = s("dukcapil.citizen")
    inbox = keys.inbox(stream, "dinsos")
    db, kinds = _siak_db(tmp_path / "siak.db")
    assert kinds["LAHIR"] and kinds["KEMATIAN"] and kinds["PINDAH"], kinds
    monkeypatch.setenv("SIMPUL_INTAKE", "adapter-dukcapil")

    # The SIAK adapter as adapter-dukcapil: publish, quarantine, checkpoint; then a replay.
    runner = dukcapil.adapter(clients["adapter-dukcapil"], db, pseudonym_key=b"k" * 32)
    progress = await runner.run_once()
    assert (progress.published, progress.quarantined) == (sum(kinds.values()), 1)
    again = dukcapil.adapter(clients["adapter-dukcapil"], db, pseudonym_key=b"k" * 32)
    await RedisCheckpoints(clients["adapter-dukcapil"]).save(dukcapil.NAME, None)
    replay = await again.run_once()
    assert replay.published == 0 and replay.duplicates == sum(kinds.values())
    assert await admin.xlen(keys.intake("adapter-dukcapil")) == sum(kinds.values())
    assert await admin.exists(stream) == 0  # nothing reaches the stream but by the router
    assert await admin.xlen(keys.quarantine(dukcapil.NAME)) == 1
    report = await admin.hgetall(keys.adapter_report(dukcapil.NAME))  # written as the adapter
    assert (
        report[b"published"] == b"0" and report[b"duplicates"] == str(sum(kinds.values())).encode()
    )
    monkeypatch.delenv("SIMPUL_INTAKE")

    # A dinsos service as svc-dinsos: deaths publish a suspension (once), moves fail once
    # (retried through XCLAIM IDLE and the XAUTOCLAIM sweep), births always fail.
    settings = quick_settings(
        routed.url("svc-dinsos"),
        max_deliveries=2,
        claim_idle_ms=300,
        inboxes=True,
        intake="svc-dinsos",
    )
    service = Service("dinsos", source="urn:malangkota:dinsos:bansos", settings=settings)
    failed_moves: set[str] = set()
    suspension = _example(AssistanceSuspended)

    @service.on(CitizenDied, once=True)
    async def on_died(event: CitizenDied, ctx: EventContext) -> None:
        await ctx.publish(suspension)

    @service.on(Move)  # dinsos is approved a move's NIK, not the address: its view of a move
    async def on_moved(event: Move, ctx: EventContext) -> None:
        if ctx.event_id not in failed_moves:
            failed_moves.add(ctx.event_id)
            raise RuntimeError("first attempt fails")

    @service.on(Birth)
    async def on_born(event: Birth) -> None:
        raise RuntimeError("births always fail")

    total = sum(kinds.values()) + 1
    dlq = keys.dead_letters(inbox, "dinsos")

    async def settled() -> bool:
        groups = {g["name"]: g for g in await admin.xinfo_groups(inbox)}
        group = groups.get(b"dinsos")
        done = group and group["entries-read"] == total and group["pending"] == 0
        return bool(done and await admin.xlen(s("dinsos.assistance")) == kinds["KEMATIAN"])

    router = Router(
        connect(routed.url(ROUTER), client_name="test:router"),
        TOPOLOGY,
        default_registry,
        keyring=None,  # the tests' events are unsigned (SIMPUL_SIGNATURES=off)
        signer=router_signer(),
        config=RouterConfig(block_ms=50, lease_ms=1_000, trim_every_s=0.2),
    )
    async with running(router):
        await wait_until(lambda: _has(admin, inbox, sum(kinds.values())), timeout=20)
        # Poison an admin wrote into the inbox by hand: dead-lettered as undecodable.
        await admin.xadd(inbox, {"not": "an event"})
        async with service.running():
            await wait_until(settled, timeout=30)
    assert await admin.xlen(dlq) == kinds["LAHIR"] + 1
    reasons = [f[b"dlq.reason"] for _, f in await admin.xrange(dlq)]
    assert reasons.count(b"undecodable") == 1
    assert reasons.count(b"handler_failed") == kinds["LAHIR"]
    assert len(failed_moves) == kinds["PINDAH"]
    done = [k async for k in admin.scan_iter(match=keys.done(inbox, "dinsos", "*"))]
    assert len(done) == kinds["KEMATIAN"]
    assert await admin.xlen(keys.intake_dead_letters("svc-dinsos")) == 0


async def test_a_publisher_reads_its_own_refusals_and_nothing_more_of_them(
    routed: RoutedServer, clients: dict[str, Redis]
) -> None:
    """Why the router refused its events is the publisher's to read (XRANGE, XREVRANGE, XLEN
    on ``<intake>:dlq``); writing, deleting or trimming them, or reading another's, is not."""
    with routed.admin() as admin:
        for principal in INTAKES:
            admin.xadd(keys.intake_dead_letters(principal), {"dlq.reason": "type_not_allowed"})
    for principal in INTAKES:
        own = keys.intake_dead_letters(principal)
        other = keys.intake_dead_letters(next(p for p in INTAKES if p != principal))
        found = await _refusals_access(clients[principal], own, other)
        assert found == {
            **dict.fromkeys(("xrange", "xrevrange", "xlen"), "allowed"),
            **dict.fromkeys(("xadd", "xdel", "xtrim", "del", "other"), "denied"),
        }, principal


async def _refusals_access(client: Redis, own: str, other: str) -> dict[str, str]:
    calls: dict[str, Callable[[], Awaitable[Any]]] = {
        "xrange": lambda: client.xrange(own),
        "xrevrange": lambda: client.xrevrange(own),
        "xlen": lambda: client.xlen(own),
        "xadd": lambda: client.xadd(own, {"dlq.reason": "forged"}),
        "xdel": lambda: client.xdel(own, "1-0"),
        "xtrim": lambda: client.xtrim(own, maxlen=0),
        "del": lambda: client.delete(own),
        "other": lambda: client.xrange(other),
    }
    return {name: await outcome(call) for name, call in calls.items()}


async def _has(redis: Redis, key: str, n: int) -> bool:
    return bool(await redis.exists(key)) and await redis.xlen(key) >= n


async def test_the_webhook_adapter_publishes_and_quarantines_under_its_principal(
    routed: RoutedServer, clients: dict[str, Redis], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIMPUL_INTAKE", "adapter-dpmptsp")  # as compose sets it
    token = "dpmptsp-test-token-0123"
    hook = dpmptsp.webhook(clients["adapter-dpmptsp"], token=token)
    payload = next(payloads(1, seed=5))
    async with (
        running_app(hook.app()) as url,
        httpx.AsyncClient(timeout=10, headers={"authorization": f"Bearer {token}"}) as http,
    ):
        assert (await http.post(url, json=payload)).status_code == 201
        assert (await http.post(url, json=payload)).status_code == 200  # a replay: XRANGE
        bad = await http.post(
            url, content=b"{not json", headers={"content-type": "application/json"}
        )
        assert bad.status_code == 400, bad.text
        assert bad.json()["quarantined"] is True
        assert (await http.get(url + "/healthz")).status_code == 200
    admin = clients[ADMIN]
    assert await admin.xlen(keys.intake("adapter-dpmptsp")) == 1
    assert await admin.exists(s("dpmptsp.permit")) == 0
    assert await admin.xlen(keys.quarantine(dpmptsp.NAME)) == 1


# -- the CLI: render, apply (with --dry-run), check ----------------------------------------------


def test_render_writes_the_file_with_hashes_only(tmp_path: Path) -> None:
    out = tmp_path / "users.acl"
    result = CliRunner().invoke(app, ["acl", "render", *CITY, "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text() == acl.render(TOPOLOGY, PASSWORDS)
    assert "can also read" not in result.output  # routed: an inbox holds approved types only
    for password in PASSWORDS.values():
        assert password not in out.read_text()


def test_render_names_missing_passwords_by_variable(tmp_path: Path) -> None:
    env = tmp_path / "partial.env"
    env.write_text(
        "# only one\nSIMPUL_REDIS_PASSWORD_OPERATOR='a-long-enough-password'\n"
        "export SIMPUL_REDIS_PASSWORD_SVC_DINSOS=short\n"
    )
    topology = ["--topology", str(ROOT / "deploy/topology.yaml")]
    result = CliRunner().invoke(app, ["acl", "render", *topology, "--passwords", str(env)])
    assert result.exit_code == 2
    assert "SIMPUL_REDIS_PASSWORD_ADAPTER_DUKCAPIL" in result.output
    assert "SIMPUL_REDIS_PASSWORD_SVC_DINSOS must be at least 16 characters" in result.output
    assert "short" not in result.output.replace("must be at least", "")
    assert "SIMPUL_REDIS_PASSWORD_OPERATOR," not in result.output  # that one was given


def test_render_refuses_a_broken_topology(tmp_path: Path) -> None:
    broken = tmp_path / "topology.yaml"
    text = (ROOT / "deploy/topology.yaml").read_text()
    broken.write_text(
        text.replace("approved_by: dpmptsp, personal", "approved_by: dukcapil, personal", 1)
    )
    passwords = ["--passwords", str(ROOT / "deploy/dev.env")]
    result = CliRunner().invoke(app, ["acl", "render", "--topology", str(broken), *passwords])
    assert result.exit_code == 2
    assert "services[0].subscriptions[4].approved_by" in result.output
    assert "only dpmptsp can approve reading it, not dukcapil" in result.output


def _cli(server: RoutedServer, *args: str, user: str = ADMIN) -> Any:
    return CliRunner().invoke(
        app,
        ["acl", *args],
        env={"SIMPUL_REDIS_URL": server.url(user)},
    )


def test_check_asks_the_server(routed: RoutedServer) -> None:
    allowed = _cli(
        routed,
        "check",
        "svc-dinsos",
        "xreadgroup",
        "group",
        "dinsos",
        "c",
        "streams",
        keys.inbox(s("dukcapil.citizen"), "dinsos"),
        ">",
    )
    assert allowed.exit_code == 0, allowed.output
    assert "allowed" in allowed.output
    denied = _cli(routed, "check", "adapter-dukcapil", "xadd", s("dukcapil.citizen"), "*", "a", "b")
    assert denied.exit_code == 1
    assert "denied" in denied.output and "simpul:{dukcapil.citizen}" in denied.output
    unknown = _cli(routed, "check", "nobody", "ping")
    assert unknown.exit_code == 2 and "nobody" in unknown.output
    not_admin = _cli(routed, "check", "svc-dinsos", "ping", user="svc-dinsos")
    assert not_admin.exit_code == 2 and "connect as an admin" in not_admin.output


def test_apply_dry_run_shows_the_drift_and_apply_repairs_it(routed: RoutedServer) -> None:
    topology = CITY
    with routed.admin() as admin:
        try:
            admin.execute_command("ACL", "SETUSER", "svc-dinsos", "+flushall", "~stray:*")
            admin.execute_command("ACL", "DELUSER", "svc-notifier")
            admin.execute_command(
                "ACL", "SETUSER", "intruder", "on", ">an-intruders-password", "+@all", "~*"
            )
            dry = _cli(routed, "apply", "--dry-run", *topology)
            assert dry.exit_code == 0, dry.output
            assert "~ svc-dinsos: commands: drop +flushall; keys: drop ~stray:*" in dry.output
            assert "+ svc-notifier: missing on the server" in dry.output
            assert "- intruder: not in the topology (kept; --prune deletes it)" in dry.output
            assert "dry run: nothing changed" in dry.output
            assert "+flushall" in admin.acl_getuser("svc-dinsos")["commands"]
            intruder = CliRunner().invoke(
                app,
                ["acl", "apply", *topology],
                env={
                    "SIMPUL_REDIS_URL": f"redis://intruder:an-intruders-password@127.0.0.1:"
                    f"{routed.port}/0"
                },
            )
            assert intruder.exit_code == 2
            assert "'intruder', which is not an admin of the topology (operator)" in (
                intruder.output
            )

            applied = _cli(routed, "apply", "--prune", *topology)
            assert applied.exit_code == 0, applied.output
            assert "saved to the server's aclfile" in applied.output
            users = acl.acl_users(TOPOLOGY, PASSWORDS)
            live = [str(line) for line in admin.acl_list()]
            saved = routed.aclfile.read_text().splitlines()  # ACL SAVE rewrote it
            for found in (live, saved):
                assert {c.action for c in acl_server.diff(users, found)} == {"same"}
            again = _cli(routed, "apply", *topology)
            assert "nothing to do" in again.output

            as_service = _cli(routed, "apply", *topology, user="svc-dinsos")
            assert as_service.exit_code == 2
            assert "connect as an admin" in as_service.output
        finally:
            routed.aclfile.write_text(acl.render(TOPOLOGY, PASSWORDS))
            admin.execute_command("ACL", "LOAD")


def test_apply_load_rereads_the_servers_file_and_checks_it(routed: RoutedServer) -> None:
    topology = CITY
    loaded = _cli(routed, "apply", "--load", *topology)
    assert loaded.exit_code == 0, loaded.output
    assert "it matches the render" in loaded.output
    original = routed.aclfile.read_text()
    try:
        routed.aclfile.write_text(original.replace(" +xdel", ""))  # an older file
        stale = _cli(routed, "apply", "--load", *topology)
        assert stale.exit_code == 2
        assert "adapter-dukcapil" in stale.output and "not this render" in stale.output
    finally:
        routed.aclfile.write_text(original)
        with routed.admin() as admin:
            admin.execute_command("ACL", "LOAD")


def test_normalize_reads_acl_list_lines_and_rules_alike() -> None:
    rendered = acl.acl_users(TOPOLOGY, PASSWORDS)
    for user in rendered:
        name, rules = acl_server._split_line(user.line())
        assert name == user.name
        assert acl_server.normalize(rules) == acl_server.normalize(user.rules())
    listed = (
        "user x on sanitize-payload #ab resetchannels -@all +ping "
        "(~k resetchannels -@all +get) (%W~d resetchannels -@all +xadd)"
    )
    same = acl_server.normalize(
        ["on", "#AB", "resetkeys", "-@all", "+ping", "(+get ~k)", "(+xadd %W~d)"]
    )
    assert acl_server.normalize(acl_server._split_line(listed)[1]) == same
    assert json.dumps(sorted(same.commands)) == '["+ping", "-@all"]'


async def test_the_exporter_takes_its_snapshot_but_reads_no_entry(
    routed: RoutedServer, clients: dict[str, Redis]
) -> None:
    """What faces HTTP holds only what it needs: `simpul exporter`'s whole snapshot runs as
    its own user, which cannot read an entry's fields (XRANGE, XREAD...) nor any other value."""
    seeded = _seed(routed, "svc-dinsos")
    stream = s("dukcapil.citizen")
    await clients[ADMIN].hset(keys.adapter_report("dukcapil-siak"), mapping={"state": "running"})
    exporter = clients[EXPORTER]
    snapshot = await Inspector(exporter, registry=default_registry).take()  # raises on NOPERM
    assert {st.key for st in snapshot.streams} >= set(STREAMS)
    assert snapshot.stream(stream).length == 3  # type: ignore[union-attr]
    assert len(snapshot.adapters) == 1  # the report, read by HGETALL of its own key pattern
    first = seeded[stream][0]
    for denied in (
        lambda: exporter.xrange(stream, count=1),
        lambda: exporter.xrevrange(stream, count=1),
        lambda: exporter.xread({stream: "0"}, count=1),
        lambda: exporter.xreadgroup("dinsos", "x", {stream: "0"}),
        lambda: exporter.xclaim(stream, "dinsos", "x", 0, [first]),
        lambda: exporter.get(keys.checkpoint("dukcapil-siak")),
        lambda: exporter.hgetall(keys.cursor(stream, "dinsos")),
        lambda: exporter.xadd(stream, {"type": "forged"}),
    ):
        assert await outcome(denied) == "denied"


async def test_the_health_user_may_only_ping(clients: dict[str, Redis]) -> None:
    health = clients[HEALTH]
    assert await health.ping()
    for denied in (
        health.info,
        lambda: health.get("simpul:anything"),
        lambda: health.xlen(s("dukcapil.citizen")),
        lambda: health.execute_command("CLIENT", "LIST"),
    ):
        assert await outcome(denied) == "denied"


@pytest.mark.parametrize("to", list(Target), ids=str)
async def test_the_monitor_replays_dead_letters_as_its_own_user(
    routed: RoutedServer, clients: dict[str, Redis], to: Target
) -> None:
    """The dashboard faces HTTP, so it runs as its own user, not the admin: its replay (the
    library's function, after verification) works both ways under that user, on a service's
    inbox, where its dead letters are; a department stream it may only read."""
    inbox = keys.inbox(s("dukcapil.citizen"), "dinsos")
    admin = clients[ADMIN]
    await admin.xgroup_create(inbox, "dinsos", "0", mkstream=True)
    original = (await admin.xadd(inbox, {"id": "e-1", "type": "x"})).decode()
    await admin.xreadgroup("dinsos", "dinsos-1", {inbox: ">"})
    dead = keys.dead_letters(inbox, "dinsos")
    await admin.xack(inbox, "dinsos", original)
    letter = (
        await admin.xadd(
            dead, {"id": "e-1", "type": "x", "dlq.entry": original, "dlq.consumer": "dinsos-1"}
        )
    ).decode()
    letters = DeadLetters(clients[MONITOR], signatures=False)  # the entry is unsigned here
    report = await letters.replay([DeadLetterRef(inbox, "dinsos", letter)], to=to)
    assert [r.outcome for r in report.results] == [Outcome.REPLAYED], report.results[0].detail
    assert await admin.xlen(dead) == 0
    if to is Target.GROUP:
        assert (await admin.xpending(inbox, "dinsos"))["pending"] == 1
    else:
        assert await admin.xlen(inbox) == 2
    with pytest.raises(NoPermissionError):  # the router's stream: forwarded signed if written
        await clients[MONITOR].xadd(s("dukcapil.citizen"), {"id": "e-2", "type": "x"})
    # The inboxes of the topology by name, nothing else that looks like one: no new key, no
    # dedupe marker of an event id ending in a brace (a stream there would wedge the service).
    for key in (f"{keys.INBOXES}{{nobody/x}}", keys.done(inbox, "dinsos", "e-1}")):
        with pytest.raises(NoPermissionError):
            await clients[MONITOR].xadd(key, {"id": "e-2", "type": "x"})
        with pytest.raises(NoPermissionError):
            await clients[MONITOR].delete(f"{key}:dlq:dinsos")
