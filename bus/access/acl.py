"""Least-privilege Redis ACLs, rendered from the topology (:mod:`bus.access.topology`).

Every principal starts from nothing (``resetkeys resetchannels -@all``) and gets only the commands
its code runs, each on only the keys it needs. Redis 7 checks a command against the user's root
rules and each of its *selectors* (``(...)``): it runs if one of them allows the command **and**
all of its keys. So every grant below is its own selector, pairing a few commands with a few key
patterns — ``XADD`` on a service's dead letters does not also allow ``XADD`` on the streams it
reads. Functions gain nothing: Redis checks each ``redis.call`` inside a function again, and the
keys ``FCALL`` declares must be allowed for the function's own selector.

* every non-admin principal: ``PING``, ``CLIENT SETNAME`` (the connection's name), and, if its
  code calls the bus's functions, ``FCALL`` (the library is loaded by the admin only,
  :mod:`bus.functions`; nothing of ``EVAL``/``EVALSHA``/``SCRIPT``/``FUNCTION``: no principal
  but the admin runs code of its own in Redis);
* a **producer** (adapter): on the streams of the types it may publish, ``XADD`` and ``XRANGE``
  (the webhook compares a replay with what it published); their producer dedupe markers
  ``<stream>:seen:*`` with ``GET``/``SET``; the publish functions with those keys; its own
  checkpoint (``GET``/``SET``), its own quarantine stream and index (the quarantine functions,
  ``XRANGE``/``XLEN``/``XDEL``/``HGET``/``HSET``/``HDEL``: list, retry, discard) and its own
  report ``simpul:adapter:{<adapter>}:report`` (``HSET``/``PEXPIRE``, write only:
  bus.adapter.report);
* a **service**: on the streams of its approved subscriptions, the consumer's commands
  (``XREADGROUP``, ``XACK``, ``XCLAIM``, ``XAUTOCLAIM``, ``XPENDING``, ``XGROUP CREATE`` and the
  claim, dead-letter and keep-alive functions), ``XADD`` on only its own dead letters
  ``<stream>:dlq:<group>``, its own consumer dedupe markers ``<stream>:done:<group>:*``
  (``GET``/``SET``/``DEL`` through the dedupe function), its handlers' last errors beside pending
  entries ``<stream>:failure:<group>:*`` (``GET``/``SET``), ``XINFO STREAM``/``GROUPS`` of those
  streams and its group's cursor ``<stream>:cursor:<group>`` (bus.gaps); a service that
  publishes also gets its own streams like a producer; the archive (``archive: true``) also
  writes ``simpul:audit:head``;
* an operator: ``admin`` gets every command on every key and channel; ``readonly`` gets a
  fixed list of read commands (metrics, status, tail) on the ``simpul:*`` keys; ``monitor``
  (the dashboard, which faces HTTP) gets those and the dead-letter replay: ``FCALL`` of
  ``simpul_1_dlq_replay`` with what it runs (``XADD``/``XCLAIM``/``XPENDING``/``XINFO GROUPS`` on
  the streams; ``XDEL``/``XLEN``/``DEL`` on dead letters), no ``XACK``, no ``XGROUP``, no trim,
  no ``DEL`` of a stream; ``exporter``
  gets what ``simpul exporter`` runs and no entry reads (``SCAN``, ``INFO``, ``TIME``,
  ``XLEN``, ``XPENDING``, ``XINFO`` on ``simpul:*``; ``HGETALL``/``PTTL`` of the adapters'
  reports): no ``XRANGE``/``XREAD``/``GET`` — but ``XINFO STREAM`` does show each stream's
  first and last entry, which Redis cannot grant apart; ``health`` gets ``PING`` (and
  ``CLIENT SETNAME``) alone;
  ``replication`` (a replica's ``masteruser``) only ``PSYNC``, ``REPLCONF`` and ``PING``, no
  key; ``sentinel`` (the Sentinels' ``auth-user``) only what a Sentinel sends to the servers
  it watches and fails over (``INFO``, ``ROLE``, ``REPLICAOF``/``SLAVEOF`` in ``MULTI``,
  ``CONFIG REWRITE``, ``CLIENT KILL``/``SETNAME``, ``SCRIPT KILL``) and its hello channel, no
  key (the Redis ACL documentation's rules for Sentinel and replicas);
* ``default`` is off.

The ACL file holds only ``#<sha256>`` of each password, read from the variables the topology
names (:func:`bus.access.topology.password_variable`).

:mod:`bus.access.acl_server` compares the rendered users with a running Redis and loads them.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from bus import keys
from bus.access.topology import Operator, Producer, ServiceSpec, Topology, password_variable
from bus.errors import ConfigurationError

__all__ = [
    "AUDIT_HEAD",
    "MIN_PASSWORD",
    "AclUser",
    "Grant",
    "acl_users",
    "passwords",
    "read_env_file",
    "render",
]

AUDIT_HEAD = f"{keys.PREFIX}:audit:head"  # services.audit.head_key(); bus never imports services
MIN_PASSWORD = 16

# redis-py names its connections (bus.connection); its cluster client learns the slots and the
# keys of commands (docs/cluster.md).
# WAIT and ROLE: every write waits for its replicas, and a client without a configured count
# asks ROLE whether the master has any (bus.durability); neither touches a key.
CONNECT = ("+ping", "+client|setname", "+cluster|slots", "+command", "+wait", "+role")
# FCALL of the admin's library (bus.functions); with no key (its version probe) at the root, with
# keys only in the selectors that allow them. Nothing of EVAL/EVALSHA/SCRIPT/FUNCTION.
SCRIPTS = ("+fcall",)
CONSUME = ("+xreadgroup", "+xack", "+xclaim", "+xautoclaim", "+xpending", "+xgroup|create")
READONLY = (
    "+info",
    "+time",
    "+scan",
    "+type",
    "+exists",
    "+ttl",
    "+pttl",
    "+dbsize",
    "+get",
    "+mget",
    "+strlen",
    "+hget",
    "+hmget",
    "+hgetall",
    "+hlen",
    "+hexists",
    "+xlen",
    "+xrange",
    "+xrevrange",
    "+xread",
    "+xpending",
    "+xinfo|stream",
    "+xinfo|groups",
    "+xinfo|consumers",
)

# `simpul exporter` (bus.admin.inspect.Inspector.snapshot): counts and positions, no entries.
EXPORTER = (
    "+time",
    "+info",
    "+scan",
    "+xlen",
    "+xpending",
    "+xinfo|stream",
    "+xinfo|groups",
    "+xinfo|consumers",
)
# The links of the servers themselves under Sentinel: no key, no data.
REPLICATION = ("+psync", "+replconf", "+ping")
SENTINEL = (
    "+ping",
    "+info",
    "+role",
    "+multi",
    "+exec",
    "+slaveof",
    "+config|rewrite",
    "+client|setname",
    "+client|kill",
    "+script|kill",
    "+subscribe",
    "+publish",
)
SENTINEL_CHANNEL = "&__sentinel__:hello"

Kind = Literal[
    "default",
    "admin",
    "readonly",
    "monitor",
    "exporter",
    "health",
    "replication",
    "sentinel",
    "router",
    "producer",
    "service",
]


@dataclass(frozen=True)
class Grant:
    """Commands allowed on key patterns (``~p`` read and write, ``%R~p`` read, ``%W~p`` write)."""

    commands: tuple[str, ...]
    keys: tuple[str, ...] = ()
    why: str = ""  # for people; not rendered

    def tokens(self) -> list[str]:
        return [*self.commands, *self.keys]

    def selector(self) -> str:
        return "(" + " ".join(self.tokens()) + ")"


@dataclass(frozen=True)
class AclUser:
    """One ACL user as rendered: root rules, selectors, password hashes."""

    name: str
    kind: Kind
    enabled: bool
    password_hashes: tuple[str, ...]
    root: Grant
    selectors: tuple[Grant, ...] = ()
    all_channels: bool = False

    def rules(self) -> list[str]:
        """The rules after the user name: for the ACL file and for ``ACL SETUSER``."""
        rules = ["on" if self.enabled else "off", *(f"#{h}" for h in self.password_hashes)]
        rules += ["resetkeys", "resetchannels", "-@all"]
        if self.all_channels:
            rules.append("&*")
        rules += self.root.tokens()
        rules += [s.selector() for s in self.selectors]
        return rules

    def line(self) -> str:
        return " ".join(["user", self.name, *self.rules()])


# -- passwords ----------------------------------------------------------------------------------


def read_env_file(path: str | Path) -> dict[str, str]:
    """``KEY=VALUE`` lines (``#`` comments, blank lines, optional ``export `` and quotes)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"cannot read {path}: {exc.strerror or exc}") from None
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.removeprefix("export ").partition("=")
        if not sep or not name.strip():
            raise ConfigurationError(f"{path}:{number}: expected NAME=VALUE")  # no value quoted
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[name.strip()] = value
    return values


def passwords(
    topology: Topology, env: Mapping[str, str] | None = None, *, source: str = "the environment"
) -> dict[str, str]:
    """Principal -> password, from the variable each principal names (default: os.environ).

    Every missing or too short password is reported at once, by variable name only."""
    env = os.environ if env is None else env
    found: dict[str, str] = {}
    missing: list[str] = []  # "VARIABLE (principal)"
    short: list[str] = []
    routers = [topology.router] if topology.routed and topology.router is not None else []
    for principal in (*topology.operators, *routers, *topology.producers, *topology.services):
        variable = password_variable(principal)
        value = env.get(variable)
        if not value:
            missing.append(f"{variable} (the password of {principal.principal})")
        elif len(value) < MIN_PASSWORD:
            short.append(variable)
        else:
            found[principal.principal] = value
    problems = []
    if missing:
        problems.append(
            f"{source} lacks {', '.join(missing)}: add each as VARIABLE=<a new random password "
            f"of at least {MIN_PASSWORD} characters> (e.g. from `openssl rand -base64 32`)"
        )
    if short:
        problems.append(f"{', '.join(short)} must be at least {MIN_PASSWORD} characters")
    if problems:
        raise ConfigurationError("; ".join(problems))
    return found


def _sha256(password: str) -> str:
    return hashlib.sha256(password.encode()).hexdigest()


# -- the rules per principal --------------------------------------------------------------------


def acl_users(topology: Topology, secrets: Mapping[str, str]) -> list[AclUser]:
    """Every ACL user of the topology: ``default`` (off), operators, producers, services."""
    users = [AclUser("default", "default", False, (), Grant(()))]
    routed = topology.routed
    inboxes = _inboxes(topology) if routed else None
    for operator in topology.operators:
        users.append(_operator(operator, _hashes(secrets, operator.principal), inboxes))
    if routed and topology.router is not None:
        users.append(_router(topology, _hashes(secrets, topology.router.principal)))
    for producer in topology.producers:
        users.append(_producer(producer, _hashes(secrets, producer.principal), routed=routed))
    for service in topology.services:
        users.append(_service(service, _hashes(secrets, service.principal), routed=routed))
    return users


def render(topology: Topology, secrets: Mapping[str, str]) -> str:
    """The ACL file: one ``user`` line per principal (an ACL file has no comments)."""
    return "".join(user.line() + "\n" for user in acl_users(topology, secrets))


def _hashes(secrets: Mapping[str, str], principal: str) -> tuple[str, ...]:
    if principal not in secrets:
        raise ConfigurationError(f"no password given for principal {principal}")
    return (_sha256(secrets[principal]),)


_KEYLESS: dict[str, Grant] = {
    "health": Grant(("+ping", "+client|setname"), why="a healthcheck's PING"),
    "replication": Grant(REPLICATION, why="a replica's link to its master"),
    "sentinel": Grant((*SENTINEL, SENTINEL_CHANNEL), why="a Sentinel's links to the servers"),
}


def _operator(
    operator: Operator, hashes: tuple[str, ...], inboxes: Sequence[tuple[str, str]] | None = None
) -> AclUser:
    """``inboxes`` (routed delivery): every (inbox, group) of the topology, where the monitor
    replays dead letters."""
    if operator.role == "admin":
        root = Grant(("+@all",), ("~*",), why="operators: every command, key and channel")
        return AclUser(operator.principal, "admin", True, hashes, root, all_channels=True)
    if operator.role == "exporter":
        root = Grant((*CONNECT, *EXPORTER), (f"%R~{keys.PREFIX}:*",), why="metrics, no entries")
        reports = Grant(
            ("+hgetall", "+pttl"),
            (f"%R~{keys.adapter_report('*')}",),
            why="the adapters' reports (positions, counts, last error)",
        )
        return AclUser(operator.principal, "exporter", True, hashes, root, (reports,))
    if operator.role == "monitor":
        root = Grant(
            (*CONNECT, *READONLY, "+fcall"),
            (f"%R~{keys.PREFIX}:*",),
            why="the dashboard's reads (status, dead letters, throughput)",
        )
        # Dead letters live where the services consume: the department streams under direct
        # delivery, the inboxes under routed delivery. There the department streams stay the
        # router's alone: an entry the monitor added to one would be forwarded, signed by the
        # router; one it adds to an inbox meets the service's own signature check. Each inbox
        # is named exactly: a pattern (simpul:inbox:{*}) would also match other keys ending in
        # a brace (a dedupe marker of an event id that ends in one) and any new key.
        streams: tuple[str, ...] = (f"~{keys.PREFIX}:{{*}}",)
        dead: tuple[str, ...] = (f"~{keys.PREFIX}:{{*}}:dlq:*",)
        if inboxes is not None:
            streams = tuple(f"~{inbox}" for inbox, _ in inboxes)
            dead = tuple(f"~{keys.dead_letters(inbox, group)}" for inbox, group in inboxes)
        replay = Grant(
            ("+fcall", "+exists", "+xadd", "+xinfo|groups", "+xrange", "+xpending", "+xclaim"),
            (*streams, *dead),
            why="dead-letter replay (simpul_1_dlq_replay): back to the group, or a new entry",
        )
        moved = Grant(("+xdel", "+xlen", "+del"), dead, why="a replayed dead letter goes")
        return AclUser(operator.principal, "monitor", True, hashes, root, (replay, moved))
    if operator.role in _KEYLESS:  # health, replication, sentinel: no key, no data
        return AclUser(operator.principal, operator.role, True, hashes, _KEYLESS[operator.role])
    root = Grant((*CONNECT, *READONLY), (f"%R~{keys.PREFIX}:*",), why="read-only operations")
    return AclUser(operator.principal, "readonly", True, hashes, root)


def _publishing(streams: Sequence[str]) -> list[Grant]:
    seen = tuple(f"~{keys.seen(s, '*')}" for s in streams)
    own = tuple(f"~{s}" for s in streams)
    return [
        Grant(("+fcall",), own + seen, why="the publish functions, with the keys they declare"),
        Grant(("+xadd", "+xrange"), own, why="add to its own streams (and read them back)"),
        Grant(("+get", "+set"), seen, why="producer dedupe markers of its own streams"),
    ]


def _refusals(principal: str) -> Grant:
    """Read-only access to its intake's dead letters: why the router refused its events."""
    return Grant(
        ("+xrange", "+xrevrange", "+xlen"),
        (f"%R~{keys.intake_dead_letters(principal)}",),
        why="why the router refused its events (its intake's dead letters): read only",
    )


def _producer(producer: Producer, hashes: tuple[str, ...], *, routed: bool = False) -> AclUser:
    streams = [keys.intake(producer.principal)] if routed else _streams(producer.publishes)
    quarantine = (
        f"~{keys.quarantine(producer.adapter)}",
        f"~{keys.quarantine_index(producer.adapter)}",
    )
    selectors = [
        *_publishing(streams),
        Grant(("+get", "+set"), (f"~{keys.checkpoint(producer.adapter)}",), why="checkpoint"),
        Grant(
            ("+hset", "+pexpire"),
            (f"%W~{keys.adapter_report(producer.adapter)}",),
            why="its own report for operators (status, exporter): written, never read",
        ),
        Grant(
            ("+fcall", "+xadd", "+xrange", "+xlen", "+xdel", "+hget", "+hset", "+hdel"),
            quarantine,
            why="its own quarantine: add, list, retry, discard",
        ),
    ]
    if routed:
        selectors.append(_refusals(producer.principal))
    root = Grant((*CONNECT, *SCRIPTS))
    return AclUser(producer.principal, "producer", True, hashes, root, tuple(selectors))


def _service(service: ServiceSpec, hashes: tuple[str, ...], *, routed: bool = False) -> AclUser:
    group = service.group
    streams = _streams(s.type for s in service.subscriptions)
    if routed:  # its own inboxes, never the department streams (decision 0011)
        streams = [keys.inbox(s, group) for s in streams]
    dead = tuple(keys.dead_letters(s, group) for s in streams)
    selectors = [
        Grant(
            (*CONSUME, "+fcall"),
            (*(f"~{s}" for s in streams), *(f"~{d}" for d in dead)),
            why="consume as its group; the claim, dead-letter and keep-alive functions",
        ),
        Grant(("+xadd",), tuple(f"%W~{d}" for d in dead), why="its own dead letters"),
        Grant(
            ("+xinfo|stream", "+xinfo|groups", "+hgetall", "+hset"),
            (*(f"%R~{s}" for s in streams), *(f"~{keys.cursor(s, group)}" for s in streams)),
            why="its group's cursor: entries trimmed before it read them are reported (bus.gaps)",
        ),
        Grant(
            ("+fcall", "+get", "+set", "+del"),
            tuple(f"~{keys.done(s, group, '*')}" for s in streams),
            why="its own consumer dedupe markers (once=True)",
        ),
        Grant(
            ("+get", "+set"),
            tuple(f"~{keys.last_failure(s, group, '*')}" for s in streams),
            why="its handler's last error beside a pending entry, for a dead letter after crashes",
        ),
    ]
    partitions = [s for s in streams if keys.is_partition(s)]
    if partitions:
        selectors.append(
            Grant(
                (
                    "+fcall",
                    "+set",
                    "+get",
                    "+pexpire",
                    "+del",
                    "+time",
                    "+zadd",
                    "+zrem",
                    "+zremrangebyscore",
                    "+zcard",
                ),
                (*(f"~{keys.lease(s, group)}" for s in partitions), f"~{keys.members(group)}"),
                why="its leases on partitions and its group's membership (bus.partitions)",
            )
        )
    if service.publishes:
        own = [keys.intake(service.principal)] if routed else _streams(service.publishes)
        selectors += _publishing(own)
        if routed:
            selectors.append(_refusals(service.principal))
    if service.archive:
        selectors.append(
            Grant(
                ("+fcall", "+hget", "+hset", "+hmget"),
                (f"~{AUDIT_HEAD}",),
                why="the head of the archive's hash chain",
            )
        )
    root = Grant((*CONNECT, *SCRIPTS))
    return AclUser(service.principal, "service", True, hashes, root, tuple(selectors))


def _router(topology: Topology, hashes: tuple[str, ...]) -> AclUser:
    """The router (decision 0011): reads every intake as group ``router`` and dead-letters
    there; is the only writer of the department streams (the publish function: XADD ``*`` and
    the dedupe markers) and of the inboxes; reads the department streams as its group; trims
    intakes it has settled and inboxes their group has acked; holds its leases."""
    assert topology.router is not None
    intakes = [keys.intake(p.principal) for p in topology.publishers()]
    dead = [keys.intake_dead_letters(p.principal) for p in topology.publishers()]
    streams = topology.department_streams()
    inboxes = [inbox for inbox, _ in _inboxes(topology)]
    router_consume = (
        "+xreadgroup",
        "+xread",
        "+xrevrange",
        "+xack",
        "+xgroup|create",
        "+xinfo|stream",
        "+xinfo|groups",
        "+xpending",
    )
    selectors = [
        Grant(
            (*router_consume, "+xtrim", "+fcall", "+xlen", "+memory|usage"),
            (*(f"~{i}" for i in intakes), *(f"~{d}" for d in dead)),
            why="admission: read every intake, trim what it settled, the dead-letter function; "
            "the cap on what an intake and its refusals hold (the intake_cap function)",
        ),
        Grant(("+xadd",), tuple(f"%W~{d}" for d in dead), why="the producers' dead letters"),
        Grant(
            ("+del",),
            tuple(f"%W~{keys.seen(i, '*')}" for i in intakes),
            why="a refused event's dedupe marker, so its correction can be published again",
        ),
        Grant(
            (*router_consume, "+xadd", "+fcall"),
            (*(f"~{s}" for s in streams), *(f"~{keys.seen(s, '*')}" for s in streams)),
            why="the only writer of the department streams; fan-out reads them as its group",
        ),
        Grant(
            ("+fcall",),
            (
                *(f"~{s}" for s in streams),
                *(f"~{keys.seen(s, '*')}" for s in streams),
                *(f"~{i}" for i in inboxes),
                *(f"~{keys.routed_mark(i)}" for i in inboxes),
            ),
            why="admission in one call: a department stream, its markers, inboxes, their marks",
        ),
        Grant(
            ("+xgroup|setid",),
            tuple(f"~{s}" for s in streams),
            why="the fan-out's group moved past what admission forwarded itself",
        ),
        Grant(
            ("+get", "+set"),
            (
                *(f"~{keys.seen(s, '*')}" for s in streams),
                *(f"~{keys.routed_mark(i)}" for i in inboxes),
            ),
            why="dedupe markers of what it admitted, high-water marks of what it forwarded",
        ),
        Grant(
            ("+xadd", "+fcall", "+xinfo|stream", "+xinfo|groups", "+xpending", "+xtrim"),
            (*(f"~{i}" for i in inboxes), *(f"~{keys.routed_mark(i)}" for i in inboxes)),
            why="the only writer of the inboxes; trims what their group acked",
        ),
        Grant(
            ("+set", "+get", "+pexpire", "+del"),
            tuple(f"~{keys.router_lease(s)}" for s in [*intakes, *streams]),
            why="one replica reads a source at a time",
        ),
        Grant(
            ("+fcall",),
            tuple(f"~{k}" for s in [*intakes, *streams] for k in (s, keys.router_lease(s))),
            why="its reads, fenced by the lease (the read function names source and lease)",
        ),
        Grant(
            ("+zadd", "+zremrangebyscore", "+zcard", "+zrem"),
            (f"~{keys.ROUTER_REPLICAS}",),
            why="the live replicas, so each holds its share of the sources",
        ),
    ]
    root = Grant((*CONNECT, *SCRIPTS, "+time"))
    return AclUser(topology.router.principal, "router", True, hashes, root, tuple(selectors))


def _inboxes(topology: Topology) -> list[tuple[str, str]]:
    """Every (inbox, group) of routed delivery: one per group and department stream it reads."""
    return sorted(
        {
            (keys.inbox(s, v.group), v.group)
            for v in topology.services
            for s in _streams(x.type for x in v.subscriptions)
        }
    )


def _streams(types: Iterable[str]) -> list[str]:
    """Every stream key the types travel on (each partition of a partitioned aggregate)."""
    return sorted({s for t in types for s in keys.streams(keys.aggregate_of(t))})
