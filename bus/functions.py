"""The bus's Lua code as one Redis Functions library, loaded by the admin only.

No principal but the admin loads code into Redis: producers and services are granted ``FCALL``
(and the keys each function touches) and nothing of ``EVAL``/``EVALSHA``/``SCRIPT``/``FUNCTION``
(bus.access.acl). So a busy loop or an unkillable script is not something a stolen password can
run. The library is loaded once, by ``simpul functions load`` or ``simpul acl apply`` (and by
the embedded servers of the demo and the tests); Redis keeps it in its RDB/AOF and replicates it
to replicas; in a cluster it is loaded on every master.

The library's name and every function name carry :data:`VERSION`: a bus that needs another
version than the one loaded finds no ``simpul_<VERSION>_version`` and says to run
``simpul functions load``. Two versions can be loaded side by side during a rolling upgrade.

Each function's body is a ``bus/*.lua`` file written against ``KEYS``/``ARGV`` as a script;
the library wraps it. On a Redis older than 7 (no Functions: the 6.2 binary of the embedded
fallback, which has no ACL selectors either) the same bodies run with ``EVAL``.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

from redis.exceptions import ResponseError

from bus.errors import ConfigurationError

__all__ = [
    "FUNCTIONS",
    "LIBRARY",
    "VERSION",
    "BusFunction",
    "FunctionsNotLoaded",
    "library_code",
    "load",
    "load_sync",
]

VERSION = 1
LIBRARY = f"simpul_{VERSION}"
MAX_ENTRY_BYTES = 1_048_576  # the cap publish.lua and publish_batch.lua enforce


@dataclass(frozen=True)
class Spec:
    """One function of the library: its short name, its body file, whether it writes."""

    short: str
    file: str | tuple[str, ...]  # several: concatenated (shared helpers first)
    read_only: bool = False
    allow_oom: bool = False  # runs when Redis refuses writes for memory (it frees some)

    @property
    def name(self) -> str:
        return f"{LIBRARY}_{self.short}"

    @property
    def body(self) -> str:
        names = (self.file,) if isinstance(self.file, str) else self.file
        return "".join(files("bus").joinpath(name).read_text() for name in names)


FUNCTIONS: dict[str, Spec] = {
    spec.short: spec
    for spec in (
        Spec("publish", "publish.lua"),
        Spec("publish_batch", "publish_batch.lua"),
        Spec("admit_batch", ("id_compare.lua", "admit_batch.lua")),
        Spec("forward_batch", ("id_compare.lua", "forward_batch.lua")),
        Spec("router_read", "router_read.lua"),
        Spec("intake_cap", "intake_cap.lua", allow_oom=True),
        Spec("claim", "claim.lua"),
        Spec("deadletter", "deadletter.lua"),
        Spec("dedupe", "dedupe.lua"),
        Spec("touch", "touch.lua"),
        Spec("heartbeat", "partition_heartbeat.lua"),
        Spec("renew", "partition_renew.lua"),
        Spec("release", "partition_release.lua"),
        Spec("quarantine_add", "quarantine_add.lua"),
        Spec("quarantine_remove", "quarantine_remove.lua"),
        Spec("audit_head", "audit_head.lua"),
        Spec("dlq_replay", ("id_compare.lua", "dlq_replay.lua")),
        Spec("dlq_purge", "dlq_purge.lua"),
        Spec("trim", ("id_compare.lua", "trim.lua")),
    )
}
VERSION_FUNCTION = f"{LIBRARY}_version"


class FunctionsNotLoaded(ConfigurationError):
    """The server lacks this version of the bus's library."""


def library_code() -> str:
    """The library's source, as ``FUNCTION LOAD`` takes it."""
    parts = [f"#!lua name={LIBRARY}\n"]
    for spec in FUNCTIONS.values():
        parts.append(f"local function {spec.short}(KEYS, ARGV)\n{spec.body}\nend\n")
        flags = "{'no-writes'}" if spec.read_only else "{'allow-oom'}" if spec.allow_oom else "{}"
        parts.append(
            f"redis.register_function{{function_name='{spec.name}', callback={spec.short}, "
            f"flags={flags}}}\n"
        )
    parts.append(
        f"redis.register_function{{function_name='{VERSION_FUNCTION}', "
        f"callback=function() return {VERSION} end, flags={{'no-writes'}}}}\n"
    )
    return "".join(parts)


def _missing(where: str, name: str = VERSION_FUNCTION) -> FunctionsNotLoaded:
    return FunctionsNotLoaded(
        f"Redis{where} has no function {name}: the bus's library {LIBRARY} is not loaded "
        "there, or an older one is (a new server, another version of Simpul, or FUNCTION "
        "FLUSH); as the admin run `simpul functions load` (or `simpul acl apply`), "
        "docs/operations.md"
    )


def _is_cluster(redis: Any) -> bool:
    return hasattr(redis, "get_primaries")


async def load(redis: Any, *, replicas_wait_s: float = 60.0) -> list[str]:
    """``FUNCTION LOAD REPLACE`` the library (on every master of a cluster); the connection must
    be allowed ``FUNCTION`` (the admin). Returns the library name per server loaded.

    A master with ``min-replicas-to-write`` refuses the load (``NOREPLICAS``) until a replica is
    in sync, e.g. while a deployment starts: retried for ``replicas_wait_s``."""
    code = library_code()
    if _is_cluster(redis):
        await redis.initialize()  # learns the masters (returns at once when it already knows)
        loaded = []
        for node in redis.get_primaries():
            await _load_on(redis, code, replicas_wait_s, target_nodes=node)
            loaded.append(f"{LIBRARY}@{node.host}:{node.port}")
        return loaded
    reply = await _load_on(redis, code, replicas_wait_s)
    _MODES.pop(redis, None)
    return [reply.decode() if isinstance(reply, bytes) else str(reply)]


async def _load_on(redis: Any, code: str, replicas_wait_s: float, **options: Any) -> Any:
    deadline = time.monotonic() + replicas_wait_s
    while True:
        try:
            return await redis.execute_command("FUNCTION", "LOAD", "REPLACE", code, **options)
        except ResponseError as exc:
            if not str(exc).startswith("NOREPLICAS") or time.monotonic() >= deadline:
                raise
            await asyncio.sleep(0.5)


def load_sync(redis: Any) -> None:
    """:func:`load` for a synchronous client (the embedded servers); nothing on Redis < 7."""
    try:
        redis.execute_command("FUNCTION", "LOAD", "REPLACE", library_code())
    except ResponseError as exc:
        if "unknown command" not in str(exc).lower():
            raise


# Per client: True when the server has Functions and our library, False when it is older than
# Redis 7 (EVAL of the same bodies). Asked once per client with the version function.
_MODES: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()


async def _uses_functions(redis: Any) -> bool:
    mode = _MODES.get(redis)
    if mode is None:
        if _is_cluster(redis):
            # redis-py routes a command only once it knows the slots; a first FCALL of no key
            # would otherwise meet an empty command table.
            await redis.initialize()
        try:
            version = await redis.execute_command("FCALL", VERSION_FUNCTION, 0)
        except ResponseError as exc:
            text = str(exc).lower()
            if "unknown command" in text:
                mode = False
            elif "function not found" in text:
                raise _missing("") from None
            else:
                raise
        else:
            if int(version) != VERSION:  # pragma: no cover - the name carries the version
                raise _missing("")
            mode = True
        _MODES[redis] = mode
    return mode


class BusFunction:
    """Call one function of the library the way redis-py's ``AsyncScript`` is called:
    ``await f(keys=[...], args=[...])``, or queued on a pipeline with ``client=pipe``."""

    def __init__(self, redis: Any, short: str) -> None:
        self.redis = redis
        self.spec = FUNCTIONS[short]

    async def command_head(self) -> tuple[str, str]:
        """``("FCALL", name)``, or ``("EVAL", body)`` on a Redis older than 7: what precedes
        numkeys, keys and arguments (for callers that build pipelines themselves)."""
        if await _uses_functions(self.redis):
            return ("FCALL", self.spec.name)
        return ("EVAL", self.spec.body)

    def translate(self, exc: ResponseError) -> Exception:
        """A clear error for a library missing since the client first asked (FUNCTION FLUSH,
        another server after a failover that never had it); other errors as they are."""
        if "function not found" in str(exc).lower():
            _MODES.pop(self.redis, None)
            return _missing("", self.spec.name)
        return exc

    async def __call__(
        self, keys: Sequence[Any] = (), args: Sequence[Any] = (), client: Any = None
    ) -> Any:
        client = self.redis if client is None else client
        command = (*await self.command_head(), len(keys), *keys, *args)
        try:
            reply = client.execute_command(*command)
            if reply is client:  # queued on a pipeline
                return client
            return await reply
        except ResponseError as exc:
            raise self.translate(exc) from None
