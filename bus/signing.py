"""Event signatures (Ed25519): every producer signs what it publishes, services verify.

A producer with a :class:`Signer` (its private key and key id) adds three fields to each event
it publishes: ``signer`` (the key id), ``signedat`` (when it signed: RFC 3339, UTC, milliseconds)
and ``signature`` (base64 of the Ed25519 signature of :func:`canonical_bytes`, which covers every
other field of the entry). A service with a :class:`KeyRing` — the producers' public keys, the
event types each key may sign and when each key is valid — checks every event its handlers would
get, before the contract is validated; an event that fails a check is dead-lettered with one of
:data:`bus.deadletter.SIGNATURE_REASONS` and never reaches a handler.

docs/wire-format.md, section 10, specifies the signed bytes, so that a PHP or Java producer can
sign (and any consumer verify) without Simpul.

Why ``signedat`` and not ``time``: ``time`` is when the source system recorded the fact, which
for an adapter's first import of a legacy table is years ago. Key validity and the replay window
are about when the event was *signed*; the replay window compares that with when the entry
*arrived* in its stream (its entry id), so a consumer that was down for a week still accepts
what was published during that week, while an old signed event added to a stream again is not.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import struct
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import yaml
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey as _PrivateKey
from nacl.signing import VerifyKey
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from bus import keys
from bus.deadletter import Reason
from bus.devmaterial import is_dev_key, refuse_dev_keys
from bus.envelope import Envelope, format_time, is_rfc3339
from bus.errors import ConfigurationError
from bus.logging import get_logger
from bus.settings import ComponentSettings

if TYPE_CHECKING:
    from bus.settings import Settings

__all__ = [
    "CONTEXT",
    "DEFAULT_MAX_AGE",
    "DEFAULT_MAX_SKEW",
    "SIGNED_AT",
    "KeyRing",
    "KeySpec",
    "PublicSigningKey",
    "Rejection",
    "Signer",
    "canonical_bytes",
    "check_key_id",
    "fingerprint",
    "load_keyring_file",
    "verify_fields",
]

# The first bytes of every signed message: a signature made for Simpul events means nothing
# anywhere else, and a key used elsewhere cannot be made to sign an event by accident.
CONTEXT = b"simpul-event-signature-v1\n"
SIGNATURE = "signature"  # the only field not covered by the signature
SIGNED_AT = "signedat"  # CloudEvents extension attribute: when the producer signed
DEFAULT_MAX_AGE = timedelta(days=7)  # = the dedupe window: older replays are not deduplicated
DEFAULT_MAX_SKEW = timedelta(minutes=5)
KEY_ID = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"  # also the topology's keys[].id
KEY_ID_PATTERN = re.compile(KEY_ID)
_SIGNATURE_BYTES = 64
_KEY_BYTES = 32
_SIGNATURE_B = SIGNATURE.encode()
_u32 = struct.Struct(">I").pack
_log = get_logger("bus.signing")


def canonical_bytes(fields: Mapping[bytes, bytes] | Mapping[str, str]) -> bytes:
    """The bytes an event's signature covers (docs/wire-format.md, section 10).

    :data:`CONTEXT`, then for every field except ``signature``, in ascending byte order of the
    field names: the UTF-8 length of the name as 4 bytes big-endian, the name, the length of the
    value likewise, the value. Absent fields contribute nothing; an empty value is a length 0.
    """
    items: list[tuple[bytes, bytes]] = list(fields.items())  # type: ignore[arg-type]
    if items and not (isinstance(items[0][0], bytes) and isinstance(items[0][1], bytes)):
        items = [(_utf8(name), _utf8(value)) for name, value in items]  # text, not raw bytes
    items.sort()
    parts = [CONTEXT]
    for name, value in items:
        if name != _SIGNATURE_B:
            parts += (_u32(len(name)), name, _u32(len(value)), value)
    return b"".join(parts)


def _utf8(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


def fingerprint(public_key: bytes) -> str:
    """A short, stable name for a public key: the first 16 hex digits of its SHA-256."""
    return hashlib.sha256(public_key).hexdigest()[:16]


def verify_fields(public_key: bytes, fields: Mapping[bytes, bytes] | Mapping[str, str]) -> bool:
    """Whether ``fields`` (a whole entry) carry a valid signature by ``public_key``.

    Only the cryptography: no keyring, no types, no time checks (use :class:`KeyRing` for those).
    """
    texts = {
        (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
        for k, v in fields.items()
    }
    try:
        signature = base64.b64decode(texts.get(SIGNATURE, ""), validate=True)
        VerifyKey(public_key).verify(canonical_bytes(fields), signature)
    except (binascii.Error, BadSignatureError, ValueError, TypeError):
        return False
    return True


# -- producers ---------------------------------------------------------------------------------


class SignerSettings(ComponentSettings):
    """``SIMPUL_SIGNING_KEY_FILE`` and ``SIMPUL_SIGNER``, the two variables of
    :meth:`Signer.from_environment` (empty: unset)."""

    key_file: str | None = Field(default=None, validation_alias="SIMPUL_SIGNING_KEY_FILE")
    signer: str | None = Field(default=None, validation_alias="SIMPUL_SIGNER")


class Signer:
    """A producer's private key and its key id: signs every event a publisher publishes.

    Load it with :meth:`from_file` (``SIMPUL_SIGNING_KEY_FILE``, written by
    ``simpul keys generate``); the key file holds the base64 of the 32-byte Ed25519 seed.
    """

    __slots__ = ("_key", "key_id", "public_key")

    def __init__(self, key_id: str, seed: bytes) -> None:
        check_key_id(key_id)
        if len(seed) != _KEY_BYTES:
            raise ConfigurationError(
                f"an Ed25519 private key (seed) is {_KEY_BYTES} bytes, got {len(seed)}"
            )
        self.key_id = key_id
        self._key = _PrivateKey(seed)
        self.public_key: bytes = bytes(self._key.verify_key)

    def __repr__(self) -> str:  # never the private key
        return f"Signer(key_id={self.key_id!r}, public_key={fingerprint(self.public_key)}...)"

    @classmethod
    def generate(cls, key_id: str) -> Signer:
        """A new random key (the operating system's CSPRNG)."""
        return cls(key_id, bytes(_PrivateKey.generate()))

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], key_id: str | None = None) -> Signer:
        """Read a key file; ``key_id`` defaults to the file name without ``.key``.

        The file holds base64 text: the 32-byte seed (what ``simpul keys generate`` writes), or
        libsodium's 64-byte secret key (seed followed by the public key, as PHP's
        ``sodium_crypto_sign_secretkey`` returns it).
        """
        file = Path(path)
        try:
            text = file.read_text(encoding="ascii").strip()
            mode = file.stat().st_mode
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not ASCII text"
            raise ConfigurationError(f"cannot read signing key file {file}: {reason}") from None
        try:
            raw = base64.b64decode(text, validate=True)
        except binascii.Error:
            raw = b""
        if len(raw) not in (_KEY_BYTES, 2 * _KEY_BYTES):
            raise ConfigurationError(
                f"signing key file {file} does not hold an Ed25519 private key (base64 of a "
                f"{_KEY_BYTES}-byte seed, as `simpul keys generate` writes)"
            )
        signer = cls(key_id or file.name.removesuffix(".key"), raw[:_KEY_BYTES])
        if len(raw) == 2 * _KEY_BYTES and raw[_KEY_BYTES:] != signer.public_key:
            raise ConfigurationError(
                f"signing key file {file}: its second half is not the seed's public key"
            )
        if mode & 0o077:
            _log.warning("signing_key_file_not_private", path=str(file), mode=oct(mode & 0o777))
        return signer

    @classmethod
    def from_settings(cls, settings: Settings) -> Signer | None:
        """``SIMPUL_SIGNING_KEY_FILE`` and ``SIMPUL_SIGNER``; None when no key file is set."""
        if not settings.signing_key_file:
            return None
        return _not_development(cls.from_file(settings.signing_key_file, settings.signer))

    @classmethod
    def from_environment(cls) -> Signer | None:
        """Like :meth:`from_settings`, reading just those two variables from the environment
        (what a :class:`~bus.publisher.Publisher` built without ``signer=`` does)."""
        read = SignerSettings.load()
        path, key_id = read.key_file, read.signer
        if not path:
            if key_id:
                raise ConfigurationError(
                    "SIMPUL_SIGNER is set but SIMPUL_SIGNING_KEY_FILE is not: which key signs?"
                )
            return None
        return _not_development(cls.from_file(path, key_id))

    def private_key_text(self) -> str:
        """The key file's content: base64 of the seed and a newline. Keep it secret."""
        return base64.b64encode(bytes(self._key)).decode() + "\n"

    def write(self, path: str | os.PathLike[str]) -> Path:
        """Write the private key file, readable by its owner only (0600); never overwrites."""
        file = Path(path)
        try:
            fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise ConfigurationError(f"{file} exists: not overwriting a key") from None
        with os.fdopen(fd, "w", encoding="ascii") as out:
            os.fchmod(out.fileno(), 0o600)
            out.write(self.private_key_text())
        return file

    def sign(self, envelope: Envelope, *, at: datetime | None = None) -> Envelope:
        """A signed copy of ``envelope``: ``signer``, ``signedat`` (``at`` or now) and
        ``signature`` set, every other field as it was."""
        extensions = dict(envelope.extensions or {})
        extensions[SIGNED_AT] = format_time(at or datetime.now(UTC))
        signed = envelope.with_attributes(signer=self.key_id, signature=None, extensions=extensions)
        signed.signature = self.signature_of(signed.to_fields())  # our own fresh copy
        return signed

    def signature_of(self, fields: Mapping[str, str] | Mapping[bytes, bytes]) -> str:
        """base64 of the signature of ``fields`` (which must already name this signer)."""
        signature = self._key.sign(canonical_bytes(fields)).signature
        return base64.b64encode(signature).decode()


def _not_development(signer: Signer) -> Signer:
    """A signer of a deployment (settings, environment): a development key only in dev mode."""
    if is_dev_key(signer.public_key):
        refuse_dev_keys([signer.key_id], "the signing key file")
    return signer


def check_key_id(key_id: str) -> str:
    if not KEY_ID_PATTERN.match(key_id):
        raise ConfigurationError(
            f"key id {key_id[:80]!r} must be 1 to 128 letters, digits, '.', '_', ':' or '-', "
            "starting with a letter or digit (e.g. dukcapil-siak-2026-12)"
        )
    return key_id


# -- consumers ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PublicSigningKey:
    """A producer's public key, and what its holder may sign: what :func:`load_keyring_file` and
    ``bus.access.topology.Topology.signing_keys()`` return, what a :class:`KeyRing` holds.

    ``types``: the event types the key may sign (exact names). ``not_before`` / ``not_after``:
    the window in which the key may sign, ``not_before <= signedat < not_after`` (None:
    unbounded; a naive time is taken as UTC).
    """

    key_id: str
    principal: str
    department: str
    public_key: bytes
    types: frozenset[str]
    not_before: datetime | None = None
    not_after: datetime | None = None

    def valid_at(self, when: datetime) -> bool:
        """Whether ``when`` (timezone-aware) lies in the key's validity window."""
        if self.not_before is not None and when < self.not_before:
            return False
        return self.not_after is None or when < self.not_after


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a service refused an event: a dead-letter reason and a precise, data-free text."""

    reason: Reason
    error: str


@dataclass(frozen=True, slots=True)
class _Trusted:
    key: PublicSigningKey
    verify_key: VerifyKey
    types: frozenset[str]
    not_before_ms: int | None
    not_after_ms: int | None


class KeyRing:
    """The public keys a service trusts, and its policy for checking events against them.

    ``require_signatures``: an unsigned event is dead-lettered (``unsigned``); False accepts
    unsigned events (while producers migrate) but still rejects a bad signature. ``max_age``:
    how long after being signed an event may arrive in its stream (the replay window; a dead
    letter replayed later than that is refused as ``stale_event``). ``max_skew``: how far a
    producer's clock may run ahead of Redis's.
    """

    def __init__(
        self,
        keys: Iterable[PublicSigningKey],
        *,
        require_signatures: bool = True,
        max_age: timedelta = DEFAULT_MAX_AGE,
        max_skew: timedelta = DEFAULT_MAX_SKEW,
    ) -> None:
        if max_age <= timedelta(0) or max_skew < timedelta(0):
            raise ConfigurationError("a keyring's max_age must be positive, max_skew not negative")
        self.require_signatures = require_signatures
        self.max_age = max_age
        self.max_skew = max_skew
        self._max_age_ms = int(max_age.total_seconds() * 1000)
        self._max_skew_ms = int(max_skew.total_seconds() * 1000)
        self._keys: dict[str, _Trusted] = {}
        for key in keys:
            self._add(key)

    def _add(self, key: PublicSigningKey) -> None:
        check_key_id(key.key_id)
        if key.key_id in self._keys:
            raise ConfigurationError(f"key id {key.key_id} appears twice in the keyring")
        if len(key.public_key) != _KEY_BYTES:
            raise ConfigurationError(
                f"key {key.key_id}: an Ed25519 public key is {_KEY_BYTES} bytes, "
                f"got {len(key.public_key)}"
            )
        bad = sorted(t for t in key.types if not keys.TYPE_PATTERN.match(t))
        if bad:
            raise ConfigurationError(
                f"key {key.key_id}: {bad[:3]} are not event types (<dept>.<aggregate>.<verb>.v<n>)"
            )
        window = (_ms(key.not_before), _ms(key.not_after))
        if None not in window and window[0] >= window[1]:  # type: ignore[operator]
            raise ConfigurationError(f"key {key.key_id}: not_after must be after not_before")
        self._keys[key.key_id] = _Trusted(
            key, VerifyKey(bytes(key.public_key)), frozenset(key.types), *window
        )

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], **policy: Any) -> KeyRing:
        """A keyring from a YAML file of ``signing_keys`` (see :func:`load_keyring_file`)."""
        return cls(load_keyring_file(path), **policy)

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyRing | None:
        """``SIMPUL_KEYRING_FILE`` with the policy settings; None when no keyring file is set."""
        if not settings.keyring_file:
            return None
        keyring = cls.from_file(
            settings.keyring_file,
            require_signatures=settings.require_signatures,
            max_age=timedelta(seconds=settings.signature_max_age_s),
            max_skew=timedelta(seconds=settings.signature_max_skew_s),
        )
        if not keyring:  # every event a handler would get is refused
            _log.warning("keyring_has_no_keys", path=settings.keyring_file)
        refuse_dev_keys(
            (k.key_id for k in keyring if is_dev_key(k.public_key)),
            f"the keyring {settings.keyring_file}",
        )
        return keyring

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key_id: object) -> bool:
        return key_id in self._keys

    def __iter__(self) -> Iterator[PublicSigningKey]:
        return (trusted.key for trusted in self._keys.values())

    def get(self, key_id: str) -> PublicSigningKey | None:
        trusted = self._keys.get(key_id)
        return None if trusted is None else trusted.key

    def check(
        self,
        envelope: Envelope,
        raw: Mapping[bytes, bytes] | Mapping[str, str],
        entry_id: str | None = None,
    ) -> Rejection | None:
        """None if the event may be handled, else why not.

        ``envelope`` is ``raw`` decoded; ``entry_id`` is its stream entry id, whose time is when
        it arrived (None: now, for an entry not read from a stream).
        """
        if not envelope.signature:
            if not self.require_signatures:
                return None
            return Rejection(
                Reason.UNSIGNED,
                "the event has no signature, and this service accepts only signed events",
            )
        trusted = self._signer_of(envelope)
        if isinstance(trusted, Rejection):
            return trusted
        return self._check_signature(envelope, raw, trusted) or self._check_times(
            envelope, trusted, entry_id
        )

    def _signer_of(self, envelope: Envelope) -> _Trusted | Rejection:
        key_id = envelope.signer
        if not key_id:
            return Rejection(
                Reason.UNKNOWN_SIGNER, "the event has a signature but no signer naming its key"
            )
        trusted = self._keys.get(key_id)
        if trusted is None:
            return Rejection(
                Reason.UNKNOWN_SIGNER, f"signer {key_id[:80]!r} is not a key in this keyring"
            )
        if envelope.type not in trusted.types:
            key = trusted.key
            return Rejection(
                Reason.SIGNER_NOT_ALLOWED,
                f"key {key_id} of principal {key.principal} ({key.department}) may not sign "
                f"type {envelope.type}",
            )
        return trusted

    def _check_signature(
        self, envelope: Envelope, raw: Mapping[bytes, bytes] | Mapping[str, str], trusted: _Trusted
    ) -> Rejection | None:
        try:
            signature = base64.b64decode(envelope.signature or "", validate=True)
        except binascii.Error:
            signature = b""
        if len(signature) != _SIGNATURE_BYTES:
            return Rejection(
                Reason.BAD_SIGNATURE,
                f"the signature is not base64 of {_SIGNATURE_BYTES} bytes (an Ed25519 signature)",
            )
        try:
            trusted.verify_key.verify(canonical_bytes(raw), signature)
        except BadSignatureError:
            return Rejection(
                Reason.BAD_SIGNATURE,
                f"the signature does not match the entry's fields for key {trusted.key.key_id}: "
                "a field was changed, added or removed after signing, or another key signed",
            )
        return None

    def _check_times(  # noqa: PLR0911 - one return per refusal
        self, envelope: Envelope, trusted: _Trusted, entry_id: str | None
    ) -> Rejection | None:
        signed_text = (envelope.extensions or {}).get(SIGNED_AT)
        signed_ms = _parse_ms(signed_text) if signed_text else None
        if signed_ms is None:
            return Rejection(
                Reason.BAD_SIGNATURE,
                f"a signed event needs {SIGNED_AT}, an RFC 3339 time with an offset "
                "(section 10 of docs/wire-format.md)",
            )
        key_id = trusted.key.key_id
        if trusted.not_before_ms is not None and signed_ms < trusted.not_before_ms:
            return Rejection(
                Reason.SIGNER_EXPIRED,
                f"signed at {_show(signed_ms)}, before key {key_id} became valid "
                f"({_show(trusted.not_before_ms)})",
            )
        if trusted.not_after_ms is not None and signed_ms >= trusted.not_after_ms:
            return Rejection(
                Reason.SIGNER_EXPIRED,
                f"signed at {_show(signed_ms)}, after key {key_id} expired "
                f"({_show(trusted.not_after_ms)})",
            )
        arrived_ms = _arrival_ms(entry_id)
        if trusted.not_after_ms is not None and arrived_ms >= trusted.not_after_ms:
            # The entry id is the server's clock, not the producer's: a stolen key whose
            # not_after has passed cannot be kept alive with a back-dated signedat.
            return Rejection(
                Reason.SIGNER_EXPIRED,
                f"arrived in the stream at {_show(arrived_ms)}, after key {key_id} expired "
                f"({_show(trusted.not_after_ms)}), whatever its {SIGNED_AT} says",
            )
        if arrived_ms - signed_ms > self._max_age_ms:
            return Rejection(
                Reason.STALE_EVENT,
                f"signed at {_show(signed_ms)} but arrived in the stream at {_show(arrived_ms)}, "
                f"more than {_span(self._max_age_ms)} later (a replay of an old event?)",
            )
        if signed_ms - arrived_ms > self._max_skew_ms:
            return Rejection(
                Reason.STALE_EVENT,
                f"signed at {_show(signed_ms)}, after it arrived in the stream at "
                f"{_show(arrived_ms)} by more than the allowed clock skew of "
                f"{_span(self._max_skew_ms)}",
            )
        return None


def _public_key(value: Any) -> bytes:
    if not isinstance(value, str):
        raise ValueError(f"must be the base64 text of the {_KEY_BYTES}-byte Ed25519 public key")
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("is not valid base64") from None
    if len(raw) != _KEY_BYTES:
        raise ValueError(
            f"must decode to {_KEY_BYTES} bytes (an Ed25519 public key), got {len(raw)}"
        )
    return raw


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.utcoffset() is None:
        raise ValueError("needs a UTC offset, e.g. 2026-01-01T00:00:00+07:00")
    return value


PublicKey = Annotated[bytes, BeforeValidator(_public_key)]
"""base64 of a 32-byte Ed25519 public key, as key files and the topology write it."""
Moment = Annotated[datetime | None, AfterValidator(_aware)]
"""An RFC 3339 time with its offset (a key's not_before, not_after)."""
_Model = TypeVar("_Model", bound=BaseModel)


class KeySpec(BaseModel):
    """One public key of a publishing principal, as the topology lists it under ``keys:``
    (the private key never leaves its host). ``bus.access.topology`` and
    :func:`load_keyring_file` validate it with this one model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Annotated[str, Field(pattern=KEY_ID)]
    public_key: PublicKey
    not_before: Moment = None
    not_after: Moment = None


class _Holder(BaseModel):
    """What the key file loader reads of a producer or service of a topology."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    principal: Annotated[str, Field(min_length=1)]
    department: Annotated[str, Field(min_length=1)]
    publishes: list[str] | None = None
    keys: list[KeySpec] = []


class _KeyringEntry(BaseModel):
    """One entry of a keyring file's ``signing_keys:``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key_id: Annotated[str, Field(min_length=1)]
    principal: Annotated[str, Field(min_length=1)]
    department: Annotated[str, Field(min_length=1)]
    public_key: PublicKey
    types: list[str] | None = None
    not_before: Moment = None
    not_after: Moment = None


def load_keyring_file(path: str | os.PathLike[str]) -> list[PublicSigningKey]:
    """Public keys from a YAML (or JSON) file, in either of two shapes.

    * A keyring: ``signing_keys:``, a list of mappings with ``key_id``, ``principal``,
      ``department``, ``public_key`` (base64 of 32 bytes), ``types`` (the event types it may
      sign) and optionally ``not_before`` / ``not_after`` (RFC 3339 times).
    * The topology (``deploy/topology.yaml``): every ``keys:`` entry (``id``, ``public_key``,
      ``not_before``, ``not_after``: a :class:`KeySpec`) of a producer or service, which may
      sign the types that principal ``publishes``. Only what signing needs is read here;
      ``bus.access.topology`` validates the whole file (its ``Topology.signing_keys()`` feeds a
      :class:`KeyRing` directly).
    """
    file = Path(path)
    try:
        document = yaml.safe_load(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigurationError(f"cannot read keyring file {file}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"keyring file {file} is not YAML: {exc}") from None
    if isinstance(document, dict) and "signing_keys" not in document:
        return _topology_keys(file, document)
    entries = document.get("signing_keys") if isinstance(document, dict) else document
    if not isinstance(entries, list):
        raise ConfigurationError(f"keyring file {file} has no list of signing_keys")
    found = []
    for index, entry in enumerate(entries):
        e = _valid(_KeyringEntry, entry, f"keyring file {file}[{index}]")
        found.append(
            PublicSigningKey(
                key_id=e.key_id,
                principal=e.principal,
                department=e.department,
                public_key=e.public_key,
                types=frozenset(e.types or ()),
                not_before=e.not_before,
                not_after=e.not_after,
            )
        )
    return found


def _topology_keys(file: Path, document: dict[str, Any]) -> list[PublicSigningKey]:
    if "producers" not in document and "services" not in document:
        raise ConfigurationError(
            f"keyring file {file} has neither signing_keys nor producers/services (a topology)"
        )
    found: list[PublicSigningKey] = []
    for section in ("producers", "services"):
        for index, who in enumerate(document.get(section) or []):
            if not isinstance(who, dict) or not who.get("keys"):
                continue
            holder = _valid(_Holder, who, f"topology {file}, {section}[{index}]")
            found += _holder_keys(holder, frozenset(holder.publishes or ()))
    router = document.get("router")
    if isinstance(router, dict) and router.get("keys"):
        # The router forwards what it admitted (decision 0012): its keys may sign every type
        # some producer or service publishes.
        forwarded = frozenset(
            event_type
            for section in ("producers", "services")
            for who in document.get(section) or []
            if isinstance(who, dict) and isinstance(who.get("publishes"), list)
            for event_type in who["publishes"]
        )
        found += _holder_keys(_valid(_Holder, router, f"topology {file}, router"), forwarded)
    return found


def _holder_keys(holder: _Holder, types: frozenset[str]) -> list[PublicSigningKey]:
    return [
        PublicSigningKey(
            key_id=key.id,
            principal=holder.principal,
            department=holder.department,
            public_key=key.public_key,
            types=types,
            not_before=key.not_before,
            not_after=key.not_after,
        )
        for key in holder.keys
    ]


def _valid(model: type[_Model], data: object, where: str) -> _Model:
    """``data`` validated by ``model``, or a ConfigurationError naming every problem."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        missing = [".".join(map(str, e["loc"])) for e in exc.errors() if e["type"] == "missing"]
        problems = [f"missing {', '.join(missing)}"] if missing else []
        for error in exc.errors():
            at = ".".join(map(str, error["loc"]))
            if error["type"] == "extra_forbidden":
                problems.append(f"unknown field {at}")
            elif error["type"] != "missing":
                message = error["msg"].removeprefix("Value error, ")
                problems.append(f"{at}: {message}" if at else message)
        raise ConfigurationError(f"{where}: {'; '.join(problems)}") from None


def _ms(moment: datetime | None) -> int | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def _parse_ms(text: str) -> int | None:
    if not is_rfc3339(text):  # as strict as the decoder is with time: a lower-case t, no seconds
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return int(moment.timestamp() * 1000)


def _arrival_ms(entry_id: str | None) -> int:
    if entry_id:
        head = entry_id.partition("-")[0]
        if head.isdigit():
            return int(head)
    return int(time.time() * 1000)


def _show(ms: int) -> str:
    return format_time(datetime.fromtimestamp(ms / 1000, UTC))


def _span(ms: int) -> str:
    seconds = ms // 1000
    if seconds % 86_400 == 0 and seconds:
        return f"{seconds // 86_400} day(s)"
    if seconds % 3_600 == 0 and seconds:
        return f"{seconds // 3_600} hour(s)"
    return f"{seconds} s" if seconds % 60 else f"{seconds // 60} min"
