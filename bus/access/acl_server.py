"""The rendered ACL (:mod:`bus.access.acl`) and a running Redis: compare, load, re-read, check.

:func:`normalize` folds a user's rules, rendered or listed by ``ACL LIST``, into facts, and
:func:`diff` compares them user by user. :func:`apply` loads the rules into a running Redis with
one ``ACL SETUSER`` per user that differs (atomic per user; connected clients stay connected),
then ``ACL SAVE`` when the server has an ``aclfile``. :func:`reload` asks the server to re-read
its own ``aclfile`` (``ACL LOAD``; Redis 7.0 then disconnects the clients of every user) and
checks it matches the render. :func:`check` asks the server whether a principal may run a
command (``ACL DRYRUN``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoPermissionError, ResponseError

from bus.access.acl import AclUser, _sha256
from bus.decoding import text as _text
from bus.errors import ConfigurationError

__all__ = [
    "ApplyReport",
    "Change",
    "Normalized",
    "apply",
    "check",
    "diff",
    "live_acl",
    "normalize",
    "reload",
]


# -- comparing with a running server ------------------------------------------------------------


@dataclass(frozen=True)
class Normalized:
    """An ACL user as a set of facts, whatever the order or spelling of its rules: how a
    rendered user is compared with an ``ACL LIST`` line."""

    enabled: bool
    passwords: frozenset[str]  # sha256 hex digests, or {"nopass"}
    commands: frozenset[str]
    keys: frozenset[str]
    channels: frozenset[str]
    selectors: frozenset[tuple[frozenset[str], frozenset[str], frozenset[str]]]


def normalize(rules: Sequence[str]) -> Normalized:
    """Fold ``ACL SETUSER``-style rules (or the rules of an ``ACL LIST`` line) into facts."""
    state = _State()
    for rule in rules:
        if rule.startswith("(") and rule.endswith(")"):
            inner = _State(commands={"-@all"})  # a selector starts from nothing
            for token in rule[1:-1].split():
                inner.apply(token)
            state.selectors.add(
                (frozenset(inner.commands), frozenset(inner.keys), frozenset(inner.channels))
            )
        elif rule.lower() == "clearselectors":
            state.selectors.clear()
        else:
            state.apply(rule)
    return Normalized(
        enabled=state.enabled,
        passwords=frozenset(state.passwords),
        commands=frozenset(state.commands),
        keys=frozenset(state.keys),
        channels=frozenset(state.channels),
        selectors=frozenset(state.selectors),
    )


@dataclass
class _State:
    enabled: bool = False
    passwords: set[str] = field(default_factory=set)
    commands: set[str] = field(default_factory=set)
    keys: set[str] = field(default_factory=set)
    channels: set[str] = field(default_factory=set)
    selectors: set[tuple[frozenset[str], frozenset[str], frozenset[str]]] = field(
        default_factory=set
    )

    def apply(self, token: str) -> None:  # noqa: PLR0912 - one branch per ACL rule kind
        lower = token.lower()
        if lower in ("on", "off"):
            self.enabled = lower == "on"
        elif token.startswith("#"):
            self.passwords.discard("nopass")
            self.passwords.add(lower[1:])
        elif token.startswith(">"):
            self.passwords.discard("nopass")
            self.passwords.add(_sha256(token[1:]))
        elif lower == "nopass":
            self.passwords = {"nopass"}
        elif lower == "resetpass":
            self.passwords.clear()
        elif lower == "resetkeys":
            self.keys.clear()
        elif lower == "allkeys":
            self.keys.add("~*")
        elif token.startswith(("~", "%")):
            self.keys.add(
                "~" + token.split("~", 1)[1] if token.upper().startswith("%RW~") else token
            )
        elif lower == "resetchannels":
            self.channels.clear()
        elif lower == "allchannels":
            self.channels.add("&*")
        elif token.startswith("&"):
            self.channels.add(token)
        elif lower in ("allcommands", "nocommands"):
            self.commands = {"+@all" if lower == "allcommands" else "-@all"}
        elif token.startswith(("+", "-")):
            if lower in ("+@all", "-@all"):
                self.commands.clear()
            self.commands.add(lower)
        elif lower == "reset":
            self.enabled = False
            for facts in (self.passwords, self.keys, self.channels, self.selectors):
                facts.clear()
            self.commands = {"-@all"}
        # Other flags (sanitize-payload, skip-sanitize-payload) grant nothing: ignored.


@dataclass(frozen=True)
class Change:
    """How one user of the server differs from the render."""

    user: str
    action: Literal["add", "change", "remove", "same"]
    desired: AclUser | None = None
    live: str | None = None  # the server's ACL LIST line
    details: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.action == "add":
            return f"+ {self.user}: missing on the server; will be created"
        if self.action == "remove":
            return f"- {self.user}: not in the topology"
        if self.action == "same":
            return f"= {self.user}"
        return f"~ {self.user}: " + "; ".join(self.details)


def diff(desired: Sequence[AclUser], live: Sequence[str]) -> list[Change]:
    """Compare the render with the server's ``ACL LIST`` lines, user by user (render order,
    then the server's extra users)."""
    by_name = {}
    for line in live:
        name, rules = _split_line(line)
        by_name[name] = (line, rules)
    changes = []
    for user in desired:
        found = by_name.pop(user.name, None)
        if found is None:
            changes.append(Change(user.name, "add", desired=user))
            continue
        line, rules = found
        details = _differences(normalize(rules), normalize(user.rules()))
        action: Literal["change", "same"] = "change" if details else "same"
        changes.append(Change(user.name, action, user, line, tuple(details)))
    changes += [Change(name, "remove", live=line) for name, (line, _) in by_name.items()]
    return changes


def _differences(live: Normalized, want: Normalized) -> list[str]:
    found = []
    if live.enabled != want.enabled:
        found.append("on -> off" if live.enabled else "off -> on")
    if live.passwords != want.passwords:
        found.append("password changes")
    for what, have, need in (
        ("commands", live.commands, want.commands),
        ("keys", live.keys, want.keys),
        ("channels", live.channels, want.channels),
    ):
        if have != need:
            found.append(f"{what}: {_delta(have, need)}")
    for selector in sorted(live.selectors - want.selectors, key=_selector_text):
        found.append(f"drop selector {_selector_text(selector)}")
    for selector in sorted(want.selectors - live.selectors, key=_selector_text):
        found.append(f"add selector {_selector_text(selector)}")
    return found


def _delta(have: frozenset[str], need: frozenset[str]) -> str:
    parts = [f"drop {' '.join(sorted(have - need))}"] if have - need else []
    if need - have:
        parts.append(f"add {' '.join(sorted(need - have))}")
    return ", ".join(parts)


def _selector_text(selector: tuple[frozenset[str], frozenset[str], frozenset[str]]) -> str:
    commands, patterns, channels = selector
    return "(" + " ".join([*sorted(commands), *sorted(patterns), *sorted(channels)]) + ")"


def _split_line(line: str) -> tuple[str, list[str]]:
    """``user NAME rule rule (selector rules) ...`` -> (NAME, rules); a selector stays one."""
    tokens: list[str] = []
    depth = 0
    for word in line.split():
        if depth:
            tokens[-1] += " " + word
        else:
            tokens.append(word)
        depth += word.count("(") - word.count(")")
    if len(tokens) < 2 or tokens[0] != "user":
        raise ConfigurationError(f"not an ACL user line: {line[:60]!r}")
    return tokens[1], tokens[2:]


async def _command(redis: Redis, *args: str) -> Any:
    return await redis.execute_command(*args)  # type: ignore[no-untyped-call]


async def live_acl(redis: Redis) -> list[str]:
    """The server's users, as ``ACL LIST`` prints them."""
    return [_text(line) for line in await _command(redis, "ACL", "LIST")]


@dataclass
class ApplyReport:
    """What :func:`apply` changed, and whether the server wrote its aclfile."""

    changes: list[Change]
    applied: list[str]  # users created, changed or deleted
    aclfile: str | None  # the server's aclfile, if it has one
    saved: bool
    save_error: str | None = None


async def apply(
    redis: Redis, desired: Sequence[AclUser], *, prune: bool = False, dry_run: bool = False
) -> ApplyReport:
    """Make the server's users those of the render: ``ACL SETUSER`` each user that differs
    (``resetpass clearselectors`` + its rules: atomic per user), ``ACL DELUSER`` users the
    topology lacks if ``prune``, then ``ACL SAVE`` if the server has an aclfile.

    The connection must be an admin of the render (it is updated last, so it keeps the rights
    to finish). A failed ``ACL SAVE`` (e.g. a read-only mount) leaves the rules live but lost at
    the next restart: the report says so."""
    whoami = _text(await _command(redis, "ACL", "WHOAMI"))
    admins = {u.name for u in desired if u.kind == "admin"}
    if whoami not in admins:
        raise ConfigurationError(
            f"connected as {whoami!r}, which is not an admin of the topology "
            f"({', '.join(sorted(admins)) or 'none'}): apply as one of them"
        )
    changes = diff(desired, await live_acl(redis))
    aclfile = await _aclfile(redis)
    report = ApplyReport(changes, [], aclfile, saved=False)
    if dry_run:
        return report
    todo = [c for c in changes if c.action in ("add", "change") or (prune and c.action == "remove")]
    todo.sort(key=lambda c: c.user == whoami)  # our own user last
    for change in todo:
        if change.action == "remove":
            await _command(redis, "ACL", "DELUSER", change.user)
        else:
            assert change.desired is not None
            rules = ["resetpass", "clearselectors", *change.desired.rules()]
            await _command(redis, "ACL", "SETUSER", change.user, *rules)
        report.applied.append(change.user)
    left = [c for c in diff(desired, await live_acl(redis)) if c.action in ("add", "change")]
    if left:
        raise ConfigurationError(
            "the server's users still differ after apply: " + "; ".join(c.describe() for c in left)
        )
    if aclfile and report.applied:
        try:
            await _command(redis, "ACL", "SAVE")
            report.saved = True
        except ResponseError as exc:
            report.save_error = str(exc)
    return report


async def reload(redis: Redis, desired: Sequence[AclUser]) -> list[Change]:
    """``ACL LOAD``: the server re-reads its aclfile (atomic: all or nothing). Returns how the
    loaded users still differ from the render (empty when the file is this render).

    Redis 7.0 disconnects the clients of every user on ``ACL LOAD`` (this one too); they
    reconnect."""
    if not await _aclfile(redis):
        raise ConfigurationError("the server has no aclfile to load: use apply without --load")
    try:
        await _command(redis, "ACL", "LOAD")
    except ResponseError as exc:
        raise ConfigurationError(f"the server refused its aclfile: {exc}") from None
    except RedisConnectionError:
        pass  # disconnected by the load itself (Redis 7.0): what loaded is checked below
    try:
        live = await live_acl(redis)
    except RedisConnectionError:  # this connection too was closed: the next one is new
        live = await live_acl(redis)
    return [c for c in diff(desired, live) if c.action != "same"]


async def _aclfile(redis: Redis) -> str | None:
    reply = await redis.config_get("aclfile")
    values = [_text(v) for v in reply.values() if v]
    return values[0] if values else None


async def check(redis: Redis, principal: str, command: Sequence[str]) -> tuple[bool, str]:
    """``ACL DRYRUN``: would ``principal`` be allowed ``command`` (with its arguments)?
    Returns (allowed, Redis's reason). For a script, only the keys it declares are checked:
    the commands inside it are checked when it runs."""
    if not command:
        raise ConfigurationError("give the command to check, e.g. xadd 'simpul:{x.y}' '*' f v")
    try:
        reply = _text(await _command(redis, "ACL", "DRYRUN", principal, *command))
    except NoPermissionError:
        raise  # this connection may not ask: not an answer about the principal
    except ResponseError as exc:
        raise ConfigurationError(f"Redis cannot check that: {exc}") from None
    return reply == "OK", reply
