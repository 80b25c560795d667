"""Fixing what is stuck: dead letters, group positions, stream trimming.

The typed async API behind ``simpul dlq``, ``simpul group reset`` and ``simpul trim`` — and
behind the web dashboard's buttons. Everything that changes Redis is planned first (a dry run
is the plan) and applied by one script per step, so a crash or two operators clicking at once
never lose or double anything.

Dead letters (docs/wire-format.md, section 6) live in ``<stream>:dlq:<group>``: the original
entry's fields plus ``dlq.*`` fields. :class:`DeadLetters` lists, shows, replays and purges them.

**Replay** has two targets (:class:`Target`):

* ``Target.GROUP`` (the default): the original stream entry (``dlq.entry``) is put back into the
  pending entries list of the group that gave up — ``XCLAIM <stream> <group> <consumer> 0 <entry>
  IDLE <1 year> RETRYCOUNT 0 FORCE JUSTID`` — and the dead letter is deleted, in one script.
  ``FORCE`` creates the pending entry for that group only: no other group sees anything. The
  group's consumers pick it up with their next reclaim sweep (every ``reclaim_interval_ms``; it
  is idle for "a year", so it is due at once; on a partition, its owner's) with a fresh delivery
  count of 1. No consumer change is needed: it is the way retries already travel. The original
  entry must still be in the stream: once retention trimmed it, only ``Target.STREAM`` can
  replay it (refused with that reason otherwise).

  Why not a new entry for one group: ``XADD`` reaches every group, and nothing scopes it to
  one — ``XACK`` of an entry a group has not read yet does nothing (it is not in that group's
  pending list; the group still reads it), and moving the other groups' position past it
  (``XGROUP SETID``) would also skip whatever they have not read yet.

* ``Target.STREAM``: a new entry on the stream with the dead letter's fields minus ``dlq.*`` —
  the same event id, source, time, data — added and the dead letter deleted in one script
  (``XADD`` + ``XDEL``). **Every group** gets the event again, also those that handled it fine
  the first time: their ``once=True`` handlers recognise the event id (the ``done`` marker lives
  ``dedupe_ttl_ms``, 7 days by default) and skip it, which is what you want — the side effect
  happened already; other handlers run again (at-least-once: they must tolerate it). After
  ``dedupe_ttl_ms`` even ``once=True`` handlers run again. The dead letter's own group gets it
  too; its ``once`` handler had failed, so no marker blocks it. Use it when the original entry
  was trimmed, or when every group should see the event again. The producer's dedupe marker
  (``...:seen:<id>``) is bypassed on purpose: the event was published before.

**Honesty.** Before anything is put back, the dead letter is checked (:meth:`DeadLetters.verify`):
its event fields must be those of the original entry while that is still in the stream
(``tampered`` otherwise: stream entries cannot change, so a difference is the dead letter's),
and its signature must verify against the keyring (the key valid when the original arrived,
``dlq.entry``) — a dead letter added by hand, altered or forged is refused with the keyring's
reason. The keyring is the one a service builds from the same core settings
(:meth:`KeyRing.from_settings`): ``SIMPUL_KEYRING_FILE``, the services' signature limits, and
development keys refused unless ``SIMPUL_DEV_MODE=1`` (the replay stops before any step, naming
the keys and the setting). With no keyring a replay is refused unless ``SIMPUL_SIGNATURES=off``,
which is logged.

A dead letter whose stream no longer exists is refused unless ``recreate_stream=True`` (stream
target only: the stream is created with the replayed entry; services recreate their groups at
``0`` when they notice, and read it).

**Masking.** Lists and details never show personal data unless ``reveal=True`` (which is
logged): payloads, subjects and the values ``dlq.error`` quotes are masked by the one rule of
``bus.privacy``.

**Routed delivery** (docs/decisions/0011). A service's dead letters are then those of its inbox,
``simpul:inbox:{<group>/<dept>.<aggregate>}:dlq:<group>``; they are listed, shown, replayed and
purged like a department stream's (a ref's ``stream`` is then the inbox key). Only the group
reads its inbox, so both targets reach that group alone: ``Target.GROUP`` hands the original
inbox entry back (``XCLAIM``) while it is still there, and once the router trimmed it (it trims
what the group acked, every few seconds) adds the dead letter's fields to the inbox as a new
entry; ``Target.STREAM`` always adds the new entry. The signature checked is the router's
(decision 0012), exactly as the service checks it. What the router refused from a producer,
``simpul:intake:{<principal>}:dlq`` (group ``router``), is listed and shown read-only: a
refusal replayed would be refused again, so replay refuses it, and purge leaves it as evidence.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from redis.asyncio import Redis

from bus import keys
from bus.admin.deadletter_types import (
    DeadLetter,
    DeadLetterDetail,
    DeadLetterRef,
    NotFound,
    Outcome,
    ProgressCallback,
    PurgePlan,
    PurgeStep,
    Queue,
    ReplayReport,
    ReplayResult,
    Target,
)
from bus.admin.positions import (
    _ENTRY_ID,
    _PAGE,
    _count,
    _ms,
)
from bus.admin.streams import (
    UnknownGroup,
    UnknownStream,
    dead_letter_key,
    dead_letter_keys,
    group_names,
    is_within,
    kind_of,
    scan,
    source_key,
    split_dead_letter_key,
)
from bus.connection import TRANSIENT, simpul_error
from bus.contracts import Registry, default_registry
from bus.deadletter import original_fields
from bus.decoding import text as _text
from bus.decoding import texts
from bus.entry_ids import MAX_SEQ as _MAX_SEQ
from bus.entry_ids import after as _after
from bus.envelope import Envelope
from bus.errors import ConfigurationError, DecodeError
from bus.functions import BusFunction
from bus.logging import get_logger, os_user
from bus.privacy import contract_of, mask_attribute, mask_data, mask_error, mask_text
from bus.replies import field_pairs
from bus.settings import Settings
from bus.signing import KeyRing

__all__ = ["REPLAY_CONSUMER", "DeadLetters"]

_log = get_logger("bus.admin.deadletters")

# Consumer a group-replayed entry is parked under when the dead letter names none (dlq.consumer).
REPLAY_CONSUMER = "simpul-replay"
# Idle time given to a group-replayed entry: longer than any claim_idle_ms, so the next reclaim
# sweep of the group takes it (XCLAIM's IDLE must not exceed the server's clock in ms).
_DUE_NOW_IDLE_MS = 365 * 24 * 3600 * 1000


def _int(value: str | None) -> int | None:
    return int(value) if value is not None and value.isdigit() else None


def _masked(value: str | None) -> str | None:
    return None if value is None else mask_text(value)


class DeadLetters:
    """Dead letters of every group in one Redis: list, show, replay, purge.

    ``registry`` says which fields are personal (``bus.contracts.default_registry``: import
    the contracts, e.g. ``schemas.*``, before use). Methods raise :class:`RedisUnavailable`
    when Redis does not answer, :class:`UnknownStream`/:class:`UnknownGroup` for names that
    exist nowhere, :class:`NotFound` for unknown dead-letter ids.
    """

    def __init__(
        self,
        redis: Redis,
        *,
        registry: Registry = default_registry,
        keyring: KeyRing | None = None,
        signatures: bool | None = None,
        settings: Settings | None = None,
    ) -> None:
        """``keyring``: what replays verify dead letters against (default: the one a service
        builds from ``settings``, :meth:`KeyRing.from_settings`). ``signatures``: False replays
        without verifying signatures (default: unless ``SIMPUL_SIGNATURES=off``). ``settings``:
        the core :class:`~bus.settings.Settings` (default: read from the environment when a
        replay first needs them, so listing and showing never do) — replays verify with the
        keyring file, limits and development-key rule the services run with."""
        self.redis = redis
        self.registry = registry
        self._settings = settings
        self._signatures = signatures
        self._keyring = keyring
        self._keyring_built = keyring is not None
        self._replay = BusFunction(redis, "dlq_replay")  # bus/dlq_replay.lua
        self._purge = BusFunction(redis, "dlq_purge")  # bus/dlq_purge.lua

    @property
    def signatures(self) -> bool:
        """Whether replays verify signatures (``SIMPUL_SIGNATURES``, unless given)."""
        if self._signatures is None:
            self._signatures = self._core().signatures != "off"
        return self._signatures

    @property
    def keyring(self) -> KeyRing | None:
        """What replays verify against: the keyring given, else the services' own
        (:meth:`KeyRing.from_settings`: ``SIMPUL_KEYRING_FILE``, ``SIMPUL_REQUIRE_SIGNATURES``,
        ``SIMPUL_SIGNATURE_MAX_AGE_S``/``_MAX_SKEW_S``; development keys refused unless
        ``SIMPUL_DEV_MODE=1``, raising :class:`ConfigurationError`). None: no keyring file, or
        signatures off."""
        if not self._keyring_built:
            if self.signatures:
                self._keyring = KeyRing.from_settings(self._core())
            self._keyring_built = True
        return self._keyring

    def _core(self) -> Settings:
        if self._settings is None:
            self._settings = Settings.load()
        return self._settings

    # -- reading ------------------------------------------------------------------------------

    async def queues(self, stream: str | None = None, group: str | None = None) -> list[Queue]:
        """The non-empty dead-letter streams, of one stream/group or of all, sorted."""
        try:
            return await self._queues(stream, group)
        except TRANSIENT as exc:
            raise simpul_error(exc) from exc

    async def _queues(self, stream: str | None, group: str | None) -> list[Queue]:
        source = source_key(stream) if stream else None
        if source is not None:
            await self._check(source, group)
        found = await dead_letter_keys(self.redis, source, group)
        named = [split_dead_letter_key(key) for key in found]
        pairs = [
            (dead_letter_key(*parts), parts)
            for parts in named
            if parts is not None and is_within(parts[0], source)
        ]
        async with self.redis.pipeline(transaction=False) as pipe:
            for key, (origin, _) in pairs:
                pipe.xlen(key)
                pipe.xrange(key, count=1)
                pipe.xrevrange(key, count=1)
                pipe.exists(origin)
            replies = await pipe.execute()
        queues = []
        for index, (_, (origin, name)) in enumerate(pairs):
            length, first, last, exists = replies[index * 4 : index * 4 + 4]
            if length:
                queues.append(
                    Queue(
                        origin,
                        name,
                        int(length),
                        first[0][0].decode() if first else None,
                        last[0][0].decode() if last else None,
                        bool(exists),
                    )
                )
        return queues

    async def _check(self, source: str, group: str | None) -> None:
        """Raise UnknownStream/UnknownGroup for names neither Redis nor its dead letters know.
        A department stream's groups include those of its inboxes (routed delivery)."""
        found = [
            split_dead_letter_key(key) for key in await dead_letter_keys(self.redis, source, None)
        ]
        dead = {parts[1] for parts in found if parts is not None and is_within(parts[0], source)}
        exists = bool(await self.redis.exists(source))
        kind = kind_of(source)
        if not exists and not dead:
            raise UnknownStream(
                f"unknown {kind} {source}: it does not exist and has no dead letters"
            )
        if group is None or group in dead:
            return
        if kind == "stream":
            inboxes = f"{keys.INBOXES}{{*/{source[len(keys.PREFIX) + 2 : -1]}}}"
            mine = [
                keys.inbox_of(key)
                async for batch in scan(self.redis, inboxes, 1000)
                for key in map(_text, batch)
            ]
            known = set(await group_names(self.redis, source)) | dead
            known |= {m[1] for m in mine if m is not None and m[0] == source}
        elif kind == "inbox":
            known = {keys.inbox_of(source)[1]}  # type: ignore[index]
        else:
            known = {keys.ROUTER_GROUP}
        if group not in known:
            raise UnknownGroup(
                f"unknown group {group!r} on {source} "
                f"(groups: {', '.join(sorted(known)) or 'none'})"
            )

    async def entries(
        self,
        stream: str | None = None,
        group: str | None = None,
        *,
        after: DeadLetterRef | None = None,
        limit: int | None = 100,
    ) -> list[DeadLetter]:
        """Dead letters, oldest first per group, groups in key order; masked summaries.

        ``limit`` bounds the answer (None: all); pass the last ref as ``after`` for the next page.
        """
        try:
            out: list[DeadLetter] = []
            for queue in await self._queues(stream, group):
                start = "-"
                if after is not None:
                    if (queue.stream, queue.group) < (after.stream, after.group):
                        continue
                    if (queue.stream, queue.group) == (after.stream, after.group):
                        start = f"({after.entry_id}"
                while limit is None or len(out) < limit:
                    want = _PAGE if limit is None else min(_PAGE, limit - len(out))
                    page: Any = await self.redis.xrange(queue.key, min=start, count=want)
                    for entry_id, fields in page:
                        ref = DeadLetterRef(queue.stream, queue.group, entry_id.decode())
                        out.append(self._summary(ref, fields)[0])
                    if len(page) < want:
                        break
                    start = f"({page[-1][0].decode()}"
                if limit is not None and len(out) >= limit:
                    break
            return out
        except TRANSIENT as exc:
            raise simpul_error(exc) from exc

    async def find(
        self, entry_id: str, stream: str | None = None, group: str | None = None
    ) -> DeadLetterRef:
        """The dead letter with this entry id (searched in every dead-letter stream unless
        ``stream``/``group`` narrow it). Raises NotFound, or ConfigurationError if ambiguous."""
        if not _ENTRY_ID.match(entry_id):
            raise ConfigurationError(f"{entry_id!r} is not an entry id (like 1796132045036-0)")
        entry_id = entry_id if "-" in entry_id else f"{entry_id}-0"
        try:
            queues = await self._queues(stream, group)
            async with self.redis.pipeline(transaction=False) as pipe:
                for queue in queues:
                    pipe.xrange(queue.key, min=entry_id, max=entry_id)
                replies = await pipe.execute()
        except TRANSIENT as exc:
            raise simpul_error(exc) from exc
        hits = [
            DeadLetterRef(q.stream, q.group, entry_id)
            for q, r in zip(queues, replies, strict=True)
            if r
        ]
        if not hits:
            where = f" of {source_key(stream)}" if stream else ""
            where += f" in group {group}" if group else ""
            raise NotFound(f"no dead letter {entry_id}{where}")
        if len(hits) > 1:
            names = ", ".join(f"{h.stream} {h.group}" for h in hits)
            raise ConfigurationError(
                f"dead letter id {entry_id} exists in several groups ({names}): "
                "name the stream and the group"
            )
        return hits[0]

    async def get(self, ref: DeadLetterRef) -> DeadLetter:
        """One dead letter's summary; NotFound if it is not (or no longer) there."""
        return (await self._read(ref))[0]

    async def show(
        self, ref: DeadLetterRef, *, reveal: bool = False, by: str | None = None
    ) -> DeadLetterDetail:
        """One dead letter decoded. ``reveal`` shows personal data and is logged (warning
        ``dead_letter_revealed`` with ``by``, default the OS user)."""
        dead_letter, fields, raw = await self._read(ref)
        attributes = {
            name: value
            for name, value in fields.items()
            if name != "data" and not name.startswith("dlq.")
        }
        data_text = fields.get("data")
        data: Any = data_text
        if data_text is not None:
            try:
                data = json.loads(data_text)
            except ValueError:
                data = data_text
        contract = contract_of(dead_letter.event_type, self.registry)
        decode_error = None
        try:
            Envelope.from_fields(original_fields(raw))
        except DecodeError as exc:
            decode_error = mask_error(str(exc), contract, data, fields.get("subject"))
        if reveal:
            _log.warning(
                "dead_letter_revealed",
                stream=ref.stream,
                group=ref.group,
                entry_id=ref.entry_id,
                by=by or os_user(),
            )
        else:
            data = mask_data(data, contract)
            attributes = {
                name: mask_attribute(name, value, contract) or ""
                for name, value in attributes.items()
            }
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.exists(ref.stream)
                original = dead_letter.original_entry
                if original and _ENTRY_ID.match(original):
                    pipe.xrange(ref.stream, min=original, max=original)
                replies = await pipe.execute()
        except TRANSIENT as exc:
            raise simpul_error(exc) from exc
        return DeadLetterDetail(
            dead_letter,
            attributes,
            data,
            reveal,
            decode_error,
            original_in_stream=len(replies) > 1 and bool(replies[1]),
            stream_exists=bool(replies[0]),
        )

    async def _read(
        self, ref: DeadLetterRef
    ) -> tuple[DeadLetter, dict[str, str], Mapping[bytes, bytes]]:
        try:
            found: Any = await self.redis.xrange(ref.key, min=ref.entry_id, max=ref.entry_id)
        except TRANSIENT as exc:
            raise simpul_error(exc) from exc
        if not found:
            raise NotFound(f"no dead letter {ref.entry_id} of {ref.stream} in group {ref.group}")
        return (*self._summary(ref, found[0][1]), found[0][1])

    def summary(self, ref: DeadLetterRef, raw: Mapping[bytes, bytes]) -> DeadLetter:
        """The masked summary of the dead letter ``ref`` whose fields a caller read itself
        (e.g. the monitor, pipelining the XRANGEs of every queue in one round trip)."""
        return self._summary(ref, raw)[0]

    def _summary(
        self, ref: DeadLetterRef, raw: Mapping[bytes, bytes]
    ) -> tuple[DeadLetter, dict[str, str]]:
        fields = texts(raw)
        event_type = fields.get("type")
        data: Any = None
        try:
            data = json.loads(fields.get("data", "null"))
        except ValueError:
            data = fields.get("data")
        dead_letter = DeadLetter(
            ref=ref,
            reason=fields.get("dlq.reason", "unknown"),
            error=mask_error(
                fields.get("dlq.error", ""),
                contract_of(event_type, self.registry),
                data,
                fields.get("subject"),
            ),
            attempts=_int(fields.get("dlq.attempts")),
            original_entry=fields.get("dlq.entry"),
            consumer=_masked(fields.get("dlq.consumer")),
            dead_lettered_at=fields.get("dlq.time"),
            # A producer chooses its ids (wire-format: any text): one built from a NIK would
            # otherwise reach every listing, the dashboard's unauthenticated one included.
            event_id=_masked(fields.get("id")),
            event_type=_masked(event_type),
        )
        return dead_letter, fields

    # -- selecting ----------------------------------------------------------------------------

    async def select(
        self,
        stream: str | None = None,
        group: str | None = None,
        ids: Sequence[str] = (),
    ) -> list[DeadLetterRef]:
        """Refs of the dead letters of a stream/group (or all), or of the given entry ids in
        them. Unknown ids raise NotFound. The router's refusals (intakes) are selected only by
        id or by naming the intake: they cannot be replayed or purged, and "all" means what
        can."""
        if ids:
            return [await self.find(entry_id, stream, group) for entry_id in dict.fromkeys(ids)]
        refs: list[DeadLetterRef] = []
        explicit = stream is not None and kind_of(source_key(stream)) == "intake"
        try:
            for queue in await self._queues(stream, group):
                if kind_of(queue.stream) == "intake" and not explicit:
                    continue
                start = "-"
                while True:
                    page: Any = await self.redis.xrange(queue.key, min=start, count=_PAGE)
                    refs += [DeadLetterRef(queue.stream, queue.group, e.decode()) for e, _ in page]
                    if len(page) < _PAGE:
                        break
                    start = f"({page[-1][0].decode()}"
        except TRANSIENT as exc:
            raise simpul_error(exc) from exc
        return refs

    # -- replay -------------------------------------------------------------------------------

    async def replay(
        self,
        refs: Iterable[DeadLetterRef],
        *,
        to: Target = Target.GROUP,
        dry_run: bool = False,
        recreate_stream: bool = False,
        on_progress: ProgressCallback | None = None,
        by: str | None = None,
    ) -> ReplayReport:
        """Replay dead letters, one atomic script each (see the module doc for the targets).

        ``dry_run`` runs every check and changes nothing (outcome ``would_replay`` or
        ``refused``). ``recreate_stream`` lets a stream-target replay create a deleted stream.
        ``on_progress(result, done, total)`` (sync or async) is called after each dead letter.
        ``by`` names who asked, for the log line ``dead_letters_replayed`` (default: the OS user).
        Concurrent replays of the same dead letter: one replays it, the others see ``gone``.
        If Redis fails, that dead letter and the rest are ``failed`` (each is intact or moved,
        never both or neither: list again and replay what is left).
        """
        todo = list(refs)
        _ = self.keyring  # a keyring the services would refuse stops the replay before any step
        report = ReplayReport(to, dry_run)
        broken: str | None = None
        for done, ref in enumerate(todo, start=1):
            if broken is not None:
                result = ReplayResult(ref, Outcome.FAILED, to, None, f"not attempted: {broken}")
            else:
                try:
                    result = await self._replay_one(ref, to, dry_run, recreate_stream)
                except TRANSIENT as exc:
                    broken = f"Redis unavailable ({type(exc).__name__})"
                    result = ReplayResult(
                        ref,
                        Outcome.FAILED,
                        to,
                        None,
                        f"{broken}: the dead letter is either untouched or replayed; "
                        "list the dead letters again",
                    )
            report.results.append(result)
            if not dry_run and result.outcome is Outcome.REPLAYED:
                _log.debug(
                    "dead_letter_replayed",
                    stream=ref.stream,
                    group=ref.group,
                    entry_id=ref.entry_id,
                    target=to.value,
                    new_entry_id=result.entry_id,
                )
            if on_progress is not None:
                maybe = on_progress(result, done, len(todo))
                if inspect.isawaitable(maybe):
                    await maybe
        if todo and not dry_run:
            counts = {o.value: report.count(o) for o in Outcome if report.count(o)}
            _log.info("dead_letters_replayed", target=to.value, by=by or os_user(), **counts)
        return report

    async def verify(self, ref: DeadLetterRef) -> str | None:  # noqa: PLR0911 - one per refusal
        """None if the dead letter may be put back, else why not (see "Honesty" above). A dead
        letter that is gone gives None: the replay script then says so."""
        found: Any = await self.redis.xrange(ref.key, min=ref.entry_id, max=ref.entry_id)
        if not found:
            return None
        raw = found[0][1]
        fields = original_fields(raw)
        entry_b = raw.get(b"dlq.entry")
        entry = entry_b.decode("utf-8", "replace") if entry_b else None
        if entry and _ENTRY_ID.fullmatch(entry):
            original: Any = await self.redis.xrange(ref.stream, min=entry, max=entry)
            if original and list(field_pairs(original[0][1])) != list(field_pairs(fields)):
                return (
                    f"tampered: the dead letter's event fields differ from the original entry "
                    f"{entry} of {ref.stream} (stream entries cannot change: the dead letter "
                    "was altered or forged); purge it"
                )
        if not self.signatures:
            _log.warning(
                "dead_letter_replayed_unverified",
                stream=ref.stream,
                group=ref.group,
                entry_id=ref.entry_id,
                reason="SIMPUL_SIGNATURES=off",
            )
            return None
        if self.keyring is None:
            return (
                "no keyring to verify its signature against: set SIMPUL_KEYRING_FILE (the "
                "topology), or SIMPUL_SIGNATURES=off to replay unverified (development only)"
            )
        try:
            envelope = Envelope.from_fields(fields)
        except DecodeError as exc:
            return f"undecodable: {mask_text(str(exc))}"
        rejection = self.keyring.check(envelope, fields, entry if entry else None)
        if rejection is not None:
            return f"{rejection.reason.value}: {mask_text(rejection.error)}"
        return None

    async def _replay_one(
        self, ref: DeadLetterRef, to: Target, dry_run: bool, recreate: bool
    ) -> ReplayResult:
        if ref.kind == "intake":
            return ReplayResult(ref, Outcome.REFUSED, to, None, _INTAKE_REFUSAL)
        why = await self.verify(ref)
        if why is not None:
            return ReplayResult(ref, Outcome.REFUSED, to, None, why)
        consumer = REPLAY_CONSUMER
        if to is Target.GROUP:
            found: Any = await self.redis.xrange(ref.key, min=ref.entry_id, max=ref.entry_id)
            if found:
                named = found[0][1].get(b"dlq.consumer")
                consumer = named.decode("utf-8", "replace") if named else REPLAY_CONSUMER
        args = [
            ref.entry_id,
            to.value,
            "1" if dry_run else "0",
            "1" if recreate else "0",
            ref.group,
            consumer,
            str(_DUE_NOW_IDLE_MS),
        ]
        if ref.kind == "inbox" and to is Target.STREAM:
            why = await self._arrives_stale(ref)
            if why is not None:
                return ReplayResult(ref, Outcome.REFUSED, to, None, why)
        code_b, entry_b = await self._replay(keys=[ref.key, ref.stream], args=args)
        code, entry = code_b.decode(), (entry_b.decode() or None)
        if code == "trimmed" and ref.kind == "inbox":
            # Only the group reads its inbox: a new entry there reaches it alone.
            why = await self._arrives_stale(ref)
            if why is not None:
                return ReplayResult(ref, Outcome.REFUSED, to, entry, why)
            args[1] = Target.STREAM.value
            code_b, entry_b = await self._replay(keys=[ref.key, ref.stream], args=args)
            code, new = code_b.decode(), (entry_b.decode() or None)
            if code in ("replayed", "would"):
                return self._readded(ref, to, entry, new, dry_run)
            entry = new
        return self._result(ref, to, code, entry, dry_run)

    async def _arrives_stale(self, ref: DeadLetterRef) -> str | None:
        """Why a new inbox entry of this dead letter, arriving now, would be refused by the
        service as ``stale_event`` (signed longer than the keyring's ``max_age`` ago); None
        if it would not (or nothing is verified)."""
        if not self.signatures or self.keyring is None:
            return None
        found: Any = await self.redis.xrange(ref.key, min=ref.entry_id, max=ref.entry_id)
        if not found:
            return None
        fields = original_fields(found[0][1])
        try:
            envelope = Envelope.from_fields(fields)
        except DecodeError:
            return None  # verify() said so already
        rejection = self.keyring.check(envelope, fields, None)
        if rejection is None or rejection.reason.value != "stale_event":
            return None
        return (
            f"stale_event: added to the inbox now, the service would refuse it "
            f"({mask_text(rejection.error)}); only the original entry could be handed back, "
            "and the router trimmed it"
        )

    @staticmethod
    def _readded(
        ref: DeadLetterRef, to: Target, original: str | None, entry: str | None, dry_run: bool
    ) -> ReplayResult:
        verb = "would be" if dry_run else "was"
        detail = (
            f"the original entry {original} is no longer in inbox {ref.stream} (the router trims "
            f"what the group acked): the event {verb} added to it as a new entry"
            f"{f' {entry}' if entry else ''}, which only group {ref.group} reads"
        )
        done = Outcome.WOULD_REPLAY if dry_run else Outcome.REPLAYED
        return ReplayResult(ref, done, to, entry, detail)

    @staticmethod
    def _result(
        ref: DeadLetterRef, to: Target, code: str, entry: str | None, dry_run: bool
    ) -> ReplayResult:
        stream, group = ref.stream, ref.group
        done = Outcome.WOULD_REPLAY if dry_run else Outcome.REPLAYED
        verb = "would be" if dry_run else "was"
        match code:
            case "replayed" | "would" if to is Target.STREAM and ref.kind == "inbox":
                detail = (
                    f"{verb} added to inbox {stream} as a new entry{f' {entry}' if entry else ''} "
                    f"(only group {group} reads it)"
                )
                return ReplayResult(ref, done, to, entry, detail)
            case "replayed" | "would" if to is Target.STREAM:
                detail = (
                    f"{verb} added to {stream} as a new entry{f' {entry}' if entry else ''} "
                    "(every group of the stream gets it)"
                )
                return ReplayResult(ref, done, to, entry, detail)
            case "replayed" | "would":
                detail = (
                    f"entry {entry} {verb} handed back to group {group} "
                    "(its next reclaim sweep delivers it; no other group sees it)"
                )
                return ReplayResult(ref, done, to, entry, detail)
            case "unread" | "would_unread":
                detail = (
                    f"group {group} has not read entry {entry} (again) yet and will get it as "
                    f"usual; the dead letter {verb} removed"
                )
                return ReplayResult(ref, done, to, entry, detail)
            case "gone":
                return ReplayResult(
                    ref,
                    Outcome.GONE,
                    to,
                    None,
                    "no longer a dead letter (replayed or purged meanwhile): nothing to do",
                )
            case _:
                why = _refusal(code, to, stream, group, entry)
        return ReplayResult(ref, Outcome.REFUSED, to, entry, why)

    # -- purge --------------------------------------------------------------------------------

    async def plan_purge(
        self,
        stream: str | None = None,
        group: str | None = None,
        *,
        ids: Sequence[str] = (),
        older_than: timedelta | None = None,
        now: datetime | None = None,
    ) -> PurgePlan:
        """What :meth:`purge` will delete: the given ids, those dead-lettered more than
        ``older_than`` ago, or (neither) every dead letter present now — not ones added later."""
        if ids and older_than is not None:
            raise ConfigurationError("purge by ids or by age, not both")
        if stream is not None and kind_of(source_key(stream)) == "intake":
            raise ConfigurationError(_INTAKE_PURGE)
        if ids:
            refs = await self.select(stream, group, ids)
            if any(ref.kind == "intake" for ref in refs):
                raise ConfigurationError(_INTAKE_PURGE)
            by_queue: dict[tuple[str, str], list[str]] = {}
            for ref in refs:
                by_queue.setdefault((ref.stream, ref.group), []).append(ref.entry_id)
            steps = [
                PurgeStep(s, g, len(i), ids=tuple(i)) for (s, g), i in sorted(by_queue.items())
            ]
            return PurgePlan(tuple(steps))
        try:
            queues = await self._queues(stream, group)
            steps = []
            for queue in queues:
                if kind_of(queue.stream) == "intake":  # evidence: never purged from here
                    continue
                if older_than is None:
                    assert queue.last_id is not None
                    minid, count = _after(queue.last_id), queue.length
                else:
                    cutoff = _ms((now or datetime.now(UTC)) - older_than)
                    minid = f"{cutoff}-0"
                    count = await _count(self.redis, queue.key, "-", f"{cutoff - 1}-{_MAX_SEQ}")
                if count:
                    steps.append(PurgeStep(queue.stream, queue.group, count, minid=minid))
        except TRANSIENT as exc:
            raise simpul_error(exc) from exc
        return PurgePlan(tuple(steps))

    async def purge(self, plan: PurgePlan) -> int:
        """Delete what ``plan`` lists (one script per group); returns how many went."""
        gone = 0
        try:
            for step in plan.steps:
                args = ["minid", step.minid] if step.minid else ["ids", *step.ids]
                gone += int(await self._purge(keys=[step.key], args=args))
                _log.info(
                    "dead_letters_purged", stream=step.stream, group=step.group, count=step.count
                )
        except TRANSIENT as exc:
            raise simpul_error(exc) from exc
        return gone


_INTAKE_REFUSAL = (
    "the router refused this event from its producer at admission (dlq.reason says why): "
    "replayed, it would be refused again; intake refusals are read-only evidence: fix the "
    "producer and have it publish the event again"
)
_INTAKE_PURGE = (
    "the router's refusals (simpul:intake:{<principal>}:dlq) are read-only evidence of what a "
    "producer sent: simpul dlq does not purge them"
)


def _refusal(code: str, to: Target, stream: str, group: str, entry: str | None) -> str:
    """Why the replay script refused, and what to do instead."""
    if code == "no_stream" and to is Target.STREAM:
        return (
            f"stream {stream} no longer exists; replay with recreate_stream "
            "(--recreate-stream) to create it with this event"
        )
    reasons = {
        "no_stream": f"stream {stream} no longer exists, so group {group} has nothing to re-read; "
        "replay to the stream (--to stream --recreate-stream) instead",
        "no_group": f"group {group} no longer exists on {stream}; replay to the stream "
        "(--to stream) if the other groups should get the event"
        if not keys.is_inbox(stream)
        else f"group {group} no longer exists on its inbox {stream}: start the service (it "
        "creates its group and reads the inbox), then replay",
        "trimmed": f"the original entry {entry} was trimmed from {stream}; only a new entry can "
        "carry it, which every group gets: replay with --to stream",
        "mismatch": f"entry {entry} of {stream} is another event than this dead letter's",
        "pending": f"entry {entry} is pending in group {group} already (being handled or "
        "retried): wait for it, or purge this dead letter",
        "no_original": "the dead letter names no original entry (dlq.entry): replay with "
        "--to stream",
        "empty": "the dead letter holds no event fields: nothing to replay (purge it)",
    }
    return reasons.get(code, f"unexpected answer {code!r} from the replay script")
