"""Event signatures: producers sign (Ed25519), services verify before any handler runs.

Against a real Redis: each refusal reaches the group's dead letters with its reason while the
handler never runs; altering any field of a signed entry (an XADDed copy) is caught; the worked
example of docs/wire-format.md section 10 verifies, and so does an event signed with nothing but
PyNaCl and that section.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import stat
import struct
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from nacl.signing import SigningKey as NaclSigningKey
from redis.asyncio import Redis
from typer.testing import CliRunner

from bus import EventContext, Publisher, Service, keys
from bus.cli.app import app
from bus.contracts import Contract
from bus.deadletter import SIGNATURE_REASONS, Reason
from bus.envelope import Envelope, format_time
from bus.errors import ConfigurationError
from bus.settings import Settings
from bus.signing import (
    CONTEXT,
    KeyRing,
    PublicSigningKey,
    Rejection,
    Signer,
    canonical_bytes,
    load_keyring_file,
    verify_fields,
)
from bus.testing import quick_settings, wait_until
from schemas.dukcapil import CitizenBorn, CitizenDied, CitizenMoved
from tests.bus.test_wire_format import doc_block

SOURCE = "urn:malangkota:dukcapil:siak"
STREAM = CitizenDied.__contract__.stream  # simpul:{dukcapil.citizen}
GROUP = "signing"
DLQ = keys.dead_letters(STREAM, GROUP)
NIK = "3573014506900001"  # synthetic
DUKCAPIL_TYPES = frozenset(
    m.__contract__.event_type for m in (CitizenBorn, CitizenDied, CitizenMoved)
)
ADAPTER = Signer("dukcapil-siak-test", bytes(range(1, 33)))
STRANGER = Signer("dukcapil-siak-test", bytes(range(2, 34)))  # same id, another key
OTHER = Signer("dinsos-test", bytes(range(3, 35)))
SENTINEL = Signer("sentinel-test", bytes(range(7, 39)))  # always trusted by consuming()
runner = CliRunner()


def died(nik: str = NIK) -> CitizenDied:
    return CitizenDied(nik=nik, date_of_death=date(2026, 11, 27), kecamatan="35.73.02")


def moved(nik: str = NIK) -> CitizenMoved:
    return CitizenMoved(
        nik=nik, address="Jl. Ijen 1", kecamatan="35.73.01", moved_on=date(2026, 11, 1)
    )


def key_of(
    signer: Signer,
    *,
    types: frozenset[str] = DUKCAPIL_TYPES,
    principal: str = "adapter-dukcapil",
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> PublicSigningKey:
    return PublicSigningKey(
        key_id=signer.key_id,
        principal=principal,
        department=principal.rsplit("-", maxsplit=1)[-1],
        public_key=signer.public_key,
        types=types,
        not_before=not_before,
        not_after=not_after,
    )


def ring(*keys_: PublicSigningKey, **policy: Any) -> KeyRing:
    return KeyRing(keys_ or [key_of(ADAPTER)], **policy)


def texts(raw: Mapping[bytes, bytes]) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in raw.items()}


def now() -> datetime:
    return datetime.now(UTC)


# -- a service with a keyring, and what reached it -----------------------------------------------


@dataclass
class Seen:
    ids: list[str] = field(default_factory=list)
    envelopes: list[Envelope] = field(default_factory=list)


def verifying_service(settings: Settings, keyring: KeyRing | None, seen: Seen) -> Service:
    service = Service(GROUP, settings=settings, keyring=keyring)

    async def record(event: Contract, ctx: EventContext) -> None:
        seen.ids.append(ctx.event_id)
        seen.envelopes.append(ctx.envelope)

    service.on(CitizenDied)(record)
    service.on(CitizenMoved)(record)
    return service


@asynccontextmanager
async def consuming(
    redis: Redis, settings: Settings, keyring: KeyRing | None = None
) -> AsyncIterator[Seen]:
    """Run a verifying service; on leaving, a sentinel event (signed by a key added to the
    keyring) proves all before it were processed, and nothing is left pending."""
    seen = Seen()
    keyring = keyring or ring()
    trusting = KeyRing(
        [*keyring, key_of(SENTINEL)],
        require_signatures=keyring.require_signatures,
        max_age=keyring.max_age,
        max_skew=keyring.max_skew,
    )
    service = verifying_service(settings, trusting, seen)
    async with service.running():
        yield seen
        await Publisher(redis, source=SOURCE, signer=SENTINEL).publish(died(), id="sentinel")
        await wait_until(lambda: "sentinel" in seen.ids)
        await wait_until(lambda: _none_pending(redis))


async def _none_pending(redis: Redis) -> bool:
    return int((await redis.xpending(STREAM, GROUP))["pending"]) == 0


async def dead_letters(redis: Redis) -> dict[str, dict[str, str]]:
    """Dead letters by the event id they hold."""
    return {(f := texts(raw))["id"]: f for _, raw in await redis.xrange(DLQ)}


# -- signing and the signed bytes ---------------------------------------------------------------


def test_canonical_bytes_frame_every_field_but_the_signature() -> None:
    fields = {"type": "t", "signature": "zz", "data": "{}", "id": "", "é": "ü"}
    expected = CONTEXT + b"".join(
        struct.pack(">I", len(n)) + n + struct.pack(">I", len(v)) + v
        for n, v in sorted((k.encode(), v.encode()) for k, v in fields.items())
        if n != b"signature"
    )
    assert canonical_bytes(fields) == expected
    assert canonical_bytes({k.encode(): v.encode() for k, v in fields.items()}) == expected
    # Absent, empty and moved text all differ: the framing is unambiguous.
    assert canonical_bytes({"a": "bc"}) != canonical_bytes({"a": "b", "c": ""})
    assert canonical_bytes({"a": ""}) != canonical_bytes({})
    assert canonical_bytes({"ab": "c"}) != canonical_bytes({"a": "bc"})


def test_sign_adds_signer_signedat_and_a_signature_of_the_rest() -> None:
    publisher = Publisher(None, source=SOURCE, signer=ADAPTER)  # type: ignore[arg-type]
    at = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    envelope = ADAPTER.sign(publisher.envelope(died(), id="e-1"), at=at)
    fields = envelope.to_fields()

    assert fields["signer"] == ADAPTER.key_id
    assert fields["signedat"] == "2026-12-01T08:00:00.000Z"
    assert len(base64.b64decode(fields["signature"])) == 64
    assert verify_fields(ADAPTER.public_key, fields)
    assert not verify_fields(OTHER.public_key, fields)
    assert not verify_fields(ADAPTER.public_key, {**fields, "subject": "x"})
    assert Envelope.from_fields(fields) == envelope  # still plain wire format v1


def test_signer_never_shows_its_private_key(tmp_path: Path) -> None:
    secret = ADAPTER.private_key_text().strip()
    assert secret not in repr(ADAPTER)
    path = ADAPTER.write(tmp_path / "k.key")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(ConfigurationError, match="exists"):
        ADAPTER.write(path)
    (tmp_path / "bad.key").write_text("not a key " + secret[:10])
    with pytest.raises(ConfigurationError, match="does not hold an Ed25519 private key") as err:
        Signer.from_file(tmp_path / "bad.key")
    assert secret[:10] not in str(err.value)


def test_key_files_read_the_seed_or_libsodiums_secret_key(tmp_path: Path) -> None:
    seed_file = tmp_path / "dukcapil-siak-2026-12.key"
    ADAPTER.write(seed_file)
    loaded = Signer.from_file(seed_file)
    assert (loaded.key_id, loaded.public_key) == ("dukcapil-siak-2026-12", ADAPTER.public_key)
    assert Signer.from_file(seed_file, "other-id").key_id == "other-id"

    sodium = tmp_path / "php.key"  # what sodium_crypto_sign_secretkey() returns
    sodium.write_text(base64.b64encode(bytes(range(1, 33)) + ADAPTER.public_key).decode())
    assert Signer.from_file(sodium).public_key == ADAPTER.public_key
    sodium.write_text(base64.b64encode(bytes(range(1, 33)) + OTHER.public_key).decode())
    with pytest.raises(ConfigurationError, match="not the seed's public key"):
        Signer.from_file(sodium)


def test_publisher_signs_with_the_key_of_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ADAPTER.write(tmp_path / "adapter.key")
    monkeypatch.setenv("SIMPUL_SIGNING_KEY_FILE", str(tmp_path / "adapter.key"))
    monkeypatch.setenv("SIMPUL_SIGNER", "dukcapil-siak-test")
    signer = Publisher(None, source=SOURCE).signer  # type: ignore[arg-type]
    assert signer is not None
    assert (signer.key_id, signer.public_key) == (ADAPTER.key_id, ADAPTER.public_key)
    assert Publisher(None, source=SOURCE, signer=None).signer is None  # type: ignore[arg-type]

    monkeypatch.delenv("SIMPUL_SIGNING_KEY_FILE")
    with pytest.raises(ConfigurationError, match="SIMPUL_SIGNER is set"):
        Publisher(None, source=SOURCE)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="SIMPUL_SIGNING_KEY_FILE is not"):
        Settings.load(signer="x")


# -- the keyring --------------------------------------------------------------------------------


def test_keyring_refuses_a_broken_configuration() -> None:
    with pytest.raises(ConfigurationError, match="appears twice"):
        KeyRing([key_of(ADAPTER), key_of(STRANGER)])
    with pytest.raises(ConfigurationError, match="32 bytes"):
        KeyRing([PublicSigningKey("k", "p", "d", b"short", frozenset())])
    with pytest.raises(ConfigurationError, match="not event types"):
        KeyRing([key_of(ADAPTER, types=frozenset({"dukcapil.*"}))])
    with pytest.raises(ConfigurationError, match="not_after must be after not_before"):
        KeyRing([key_of(ADAPTER, not_before=now(), not_after=now() - timedelta(days=1))])
    with pytest.raises(ConfigurationError, match="key id"):
        KeyRing([PublicSigningKey("bad id", "p", "d", ADAPTER.public_key, frozenset())])


def test_keyring_takes_any_object_with_the_topologys_attributes() -> None:
    @dataclass(frozen=True)
    class TopologyKey:  # the shape of bus.access.topology.SigningKey
        key_id: str
        principal: str
        department: str
        public_key: bytes
        types: frozenset[str]
        not_before: datetime | None
        not_after: datetime | None

    keyring = KeyRing(
        [
            TopologyKey(
                ADAPTER.key_id,
                "adapter-dukcapil",
                "dukcapil",
                ADAPTER.public_key,
                DUKCAPIL_TYPES,
                None,
                None,
            )
        ]
    )
    plain = Publisher(None, source=SOURCE, signer=None).envelope(died())  # type: ignore[arg-type]
    envelope = ADAPTER.sign(plain)
    assert keyring.check(envelope, envelope.to_fields()) is None
    assert ADAPTER.key_id in keyring and len(keyring) == 1


def test_without_required_signatures_unsigned_passes_but_a_bad_signature_does_not() -> None:
    lenient = ring(require_signatures=False)
    plain = Publisher(None, source=SOURCE, signer=None).envelope(died())  # type: ignore[arg-type]
    assert lenient.check(plain, plain.to_fields()) is None
    forged = STRANGER.sign(plain)
    rejected = lenient.check(forged, forged.to_fields())
    assert rejected is not None and rejected.reason is Reason.BAD_SIGNATURE


def test_keyring_file_and_topology_file_give_the_same_keys(tmp_path: Path) -> None:
    key = base64.b64encode(ADAPTER.public_key).decode()
    flat = tmp_path / "keyring.yaml"
    flat.write_text(
        "signing_keys:\n"
        f"  - key_id: {ADAPTER.key_id}\n    principal: adapter-dukcapil\n"
        f"    department: dukcapil\n    public_key: {key}\n"
        f"    types: [{', '.join(sorted(DUKCAPIL_TYPES))}]\n"
        "    not_before: 2026-01-01T00:00:00+07:00\n"
    )
    topology = tmp_path / "topology.yaml"
    topology.write_text(
        "version: 1\nproducers:\n  - principal: adapter-dukcapil\n    department: dukcapil\n"
        "    adapter: dukcapil-siak\n    publishes:\n"
        + "".join(f"      - {t}\n" for t in sorted(DUKCAPIL_TYPES))
        + f'    keys:\n      - id: {ADAPTER.key_id}\n        public_key: "{key}"\n'
        '        not_before: "2026-01-01T00:00:00+07:00"\nservices:\n  - principal: svc-x\n'
    )
    expected = key_of(ADAPTER, not_before=datetime(2025, 12, 31, 17, tzinfo=UTC))
    assert load_keyring_file(flat) == load_keyring_file(topology) == [expected]
    (tmp_path / "broken.yaml").write_text("signing_keys:\n  - key_id: k\n    public_key: AAAA\n")
    with pytest.raises(ConfigurationError, match="missing principal, department"):
        load_keyring_file(tmp_path / "broken.yaml")


# -- a verifying service, against Redis ----------------------------------------------------------


async def test_signed_events_are_handled_and_publish_many_signs_each(
    redis: Redis, settings: Settings
) -> None:
    publisher = Publisher(redis, source=SOURCE, signer=ADAPTER)
    async with consuming(redis, settings) as seen:
        one = await publisher.publish(died(), id="one")
        many = await publisher.publish_many(
            [publisher.envelope(died(), id="two"), publisher.envelope(moved(), id="three")]
        )
        await wait_until(lambda: {"one", "two", "three"} <= set(seen.ids))

    assert await redis.xlen(DLQ) == 0
    entries = {texts(raw)["id"]: texts(raw) for _, raw in await redis.xrange(STREAM)}
    for published in [one, *many]:
        fields = entries[published.event_id]
        assert fields["signer"] == ADAPTER.key_id
        assert verify_fields(ADAPTER.public_key, fields)
    assert len({entries[e]["signature"] for e in ("one", "two", "three")}) == 3
    assert {e.signer for e in seen.envelopes if e.id != "sentinel"} == {ADAPTER.key_id}


def _stale_signed(at: datetime) -> Callable[[Publisher], Envelope]:
    return lambda p: ADAPTER.sign(p.envelope(died(), id="refused"), at=at)


# reason -> (publisher's signer, keyring, how the event is built, words the error must contain)
REFUSALS: dict[Reason, tuple[Signer | None, Callable[[], KeyRing], Any, str]] = {
    Reason.UNSIGNED: (None, ring, None, "no signature"),
    Reason.UNKNOWN_SIGNER: (OTHER, ring, None, "'dinsos-test' is not a key in this keyring"),
    Reason.SIGNER_NOT_ALLOWED: (
        ADAPTER,
        lambda: ring(key_of(ADAPTER, types=frozenset({"dukcapil.citizen.moved.v1"}))),
        None,
        "principal adapter-dukcapil (dukcapil) may not sign type dukcapil.citizen.died.v1",
    ),
    Reason.BAD_SIGNATURE: (STRANGER, ring, None, "does not match the entry's fields"),
    Reason.SIGNER_EXPIRED: (
        ADAPTER,
        lambda: ring(key_of(ADAPTER, not_after=now() - timedelta(minutes=1))),
        None,
        "after key dukcapil-siak-test expired",
    ),
    Reason.STALE_EVENT: (
        ADAPTER,
        ring,
        _stale_signed(now() - timedelta(days=8)),
        "more than 7 day(s) later (a replay",
    ),
}


def test_every_signature_reason_has_a_refusal_case() -> None:
    assert set(REFUSALS) == set(SIGNATURE_REASONS)


@pytest.mark.parametrize("reason", list(REFUSALS), ids=str)
async def test_refused_events_are_dead_lettered_and_never_handled(
    redis: Redis, settings: Settings, reason: Reason
) -> None:
    signer, keyring, build, words = REFUSALS[reason]
    publisher = Publisher(redis, source=SOURCE, signer=signer)
    async with consuming(redis, settings, keyring()) as seen:
        event = build(publisher) if build else publisher.envelope(died(), id="refused")
        await publisher.publish(event)

    assert "refused" not in seen.ids  # the handler never ran
    dead = (await dead_letters(redis))["refused"]
    assert dead["dlq.reason"] == reason.value
    assert words in dead["dlq.error"]
    assert NIK not in dead["dlq.error"]


async def test_an_event_signed_in_the_future_is_stale(redis: Redis, settings: Settings) -> None:
    publisher = Publisher(redis, source=SOURCE, signer=ADAPTER)
    async with consuming(redis, settings) as seen:
        await publisher.publish(_stale_signed(now() + timedelta(hours=1))(publisher))
    assert "refused" not in seen.ids
    dead = (await dead_letters(redis))["refused"]
    assert dead["dlq.reason"] == Reason.STALE_EVENT
    assert "by more than the allowed clock skew of 5 min" in dead["dlq.error"]


async def test_a_revoked_key_cannot_be_kept_alive_with_a_backdated_signedat(
    redis: Redis, settings: Settings
) -> None:
    """Revocation bounds the arrival time (the server's entry id), not only ``signedat``: the
    thief signs now but dates ``signedat`` before the revocation; the event arrives after it."""
    revoked_at = now() - timedelta(hours=1)
    keyring = ring(key_of(ADAPTER, not_after=revoked_at))
    publisher = Publisher(redis, source=SOURCE, signer=ADAPTER)
    backdated = ADAPTER.sign(
        publisher.envelope(died(), id="refused"), at=revoked_at - timedelta(hours=2)
    )
    async with consuming(redis, settings, keyring) as seen:
        await publisher.publish(backdated)
    assert "refused" not in seen.ids
    dead = (await dead_letters(redis))["refused"]
    assert dead["dlq.reason"] == Reason.SIGNER_EXPIRED
    assert "arrived in the stream at" in dead["dlq.error"]
    assert "after key dukcapil-siak-test expired" in dead["dlq.error"]
    # What arrived before the revocation (an entry id before not_after) still verifies: the
    # archive and replays of events from before a theft keep their meaning.
    fields = backdated.to_fields()
    before = f"{int((revoked_at - timedelta(minutes=1)).timestamp() * 1000)}-0"
    assert keyring.check(Envelope.from_fields(fields), fields, before) is None
    after = f"{int((revoked_at + timedelta(minutes=1)).timestamp() * 1000)}-0"
    rejection = keyring.check(Envelope.from_fields(fields), fields, after)
    assert rejection is not None and rejection.reason == Reason.SIGNER_EXPIRED


# Every field of a signed entry, altered so that the entry still decodes where it can.
ALTERATIONS: dict[str, Callable[[dict[str, str]], dict[str, str]]] = {
    "id": lambda f: {**f, "id": f["id"] + "x"},
    "source": lambda f: {**f, "source": "urn:malangkota:dinsos:bansos"},
    "type": lambda f: {**f, "type": "dukcapil.citizen.moved.v1"},
    "time": lambda f: {**f, "time": "2020-01-01T00:00:00.000Z"},
    "dataschema": lambda f: {**f, "dataschema": "simpul:dukcapil.citizen.died:1.1"},
    "data": lambda f: {**f, "data": f["data"].replace("35.73.02", "35.73.05")},
    "subject": lambda f: {**f, "subject": "cit-other"},
    "correlationid": lambda f: {k: v for k, v in f.items() if k != "correlationid"},
    "signer": lambda f: {**f, "signer": "dukcapil-siak-other"},  # another trusted key
    "signedat": lambda f: {**f, "signedat": format_time(now())},
    "signature": lambda f: {**f, "signature": base64.b64encode(bytes(64)).decode()},
    "extension added": lambda f: {**f, "tenant": "kota-malang"},
    "specversion": lambda f: {**f, "specversion": "1.1"},
    "datacontenttype": lambda f: {**f, "datacontenttype": "text/plain"},
}


async def test_altering_any_field_of_a_signed_entry_is_caught(
    redis: Redis, settings: Settings
) -> None:
    other_key = Signer("dukcapil-siak-other", bytes(range(4, 36)))
    keyring = ring(key_of(ADAPTER), key_of(other_key))
    publisher = Publisher(redis, source=SOURCE, signer=ADAPTER)
    original = publisher.envelope(died(), id="original", subject="cit-1", correlationid="c-1")
    fields = ADAPTER.sign(original).to_fields()
    assert set(fields) | {"extension added"} == set(ALTERATIONS)  # every field is covered
    assert keyring.check(Envelope.from_fields(fields), fields) is None

    async with consuming(redis, settings, keyring) as seen:
        entries = {}
        for name, alter in ALTERATIONS.items():
            copy = alter(fields)
            assert copy != fields
            entries[(await redis.xadd(STREAM, copy)).decode()] = name  # type: ignore[arg-type]
        await wait_until(lambda: _none_pending(redis))

    assert seen.ids == ["sentinel"], "an altered copy reached a handler"
    reasons = {
        entries[f["dlq.entry"]]: f["dlq.reason"]
        for _, raw in await redis.xrange(DLQ)
        if (f := texts(raw))
    }
    # One valid value for these; a type needs its dataschema changed with it.
    undecodable = {"specversion", "datacontenttype", "type"}
    assert reasons == {
        name: Reason.UNDECODABLE if name in undecodable else Reason.BAD_SIGNATURE
        for name in ALTERATIONS
    }


async def test_on_every_archives_only_verified_events(redis: Redis, settings: Settings) -> None:
    archived: list[str] = []
    service = Service("archive", settings=settings, keyring=ring())

    @service.on_every(streams=[STREAM])
    async def archive(envelope: Envelope, ctx: EventContext) -> None:
        archived.append(envelope.id)

    async with service.running():
        await Publisher(redis, source=SOURCE, signer=None).publish(died(), id="forged")
        await Publisher(redis, source=SOURCE, signer=ADAPTER).publish(died(), id="genuine")
        await wait_until(lambda: "genuine" in archived)
        await wait_until(lambda: redis.xlen(keys.dead_letters(STREAM, "archive")))
    assert archived == ["genuine"]
    [(_, dead)] = await redis.xrange(keys.dead_letters(STREAM, "archive"))
    assert texts(dead)["dlq.reason"] == Reason.UNSIGNED


class NoteMade(Contract, event_type="simpultest.note.made.v1", register=False):
    """What the publishing service below publishes."""

    text: str


async def test_a_service_verifies_and_signs_from_its_settings(
    redis: Redis, redis_url: str, tmp_path: Path
) -> None:
    """SIMPUL_KEYRING_FILE and SIMPUL_SIGNING_KEY_FILE: what ctx.publish writes is signed."""
    own = Signer("dinsos-bansos-test", bytes(range(5, 37)))
    own.write(tmp_path / "dinsos-bansos-test.key")
    (tmp_path / "keyring.yaml").write_text(
        yaml.safe_dump(
            {
                "signing_keys": [
                    {
                        "key_id": ADAPTER.key_id,
                        "principal": "adapter-dukcapil",
                        "department": "dukcapil",
                        "public_key": base64.b64encode(ADAPTER.public_key).decode(),
                        "types": sorted(DUKCAPIL_TYPES),
                    }
                ]
            }
        )
    )
    settings = quick_settings(
        redis_url,
        keyring_file=str(tmp_path / "keyring.yaml"),
        signing_key_file=str(tmp_path / "dinsos-bansos-test.key"),
    )
    service = Service("dinsos", source="urn:malangkota:dinsos:bansos", settings=settings)
    handled: list[str] = []

    @service.on(CitizenDied)
    async def note(event: CitizenDied, ctx: EventContext) -> None:
        handled.append(ctx.event_id)
        await ctx.publish(NoteMade(text="suspended"))

    note_stream = NoteMade.__contract__.stream
    async with service.running():
        await Publisher(redis, source=SOURCE, signer=None).publish(died(), id="unsigned")
        await Publisher(redis, source=SOURCE, signer=ADAPTER).publish(died(), id="signed")
        await wait_until(lambda: redis.xlen(note_stream))
        await wait_until(lambda: redis.xlen(keys.dead_letters(STREAM, "dinsos")))
    assert handled == ["signed"]
    [(_, raw)] = await redis.xrange(note_stream)
    assert texts(raw)["signer"] == own.key_id
    assert verify_fields(own.public_key, raw)


# -- the document ---------------------------------------------------------------------------------


def doc_example() -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """(key facts, fields, result facts) of the worked example in section 10.5."""

    def facts(block: str) -> dict[str, str]:
        return {
            k.strip(): v.strip()
            for k, v in (line.split(":", 1) for line in block.splitlines() if line.strip())
        }

    fields = json.loads(doc_block("signing-example-fields"))
    return (
        facts(doc_block("signing-example-key")),
        fields,
        facts(doc_block("signing-example-result")),
    )


def test_documented_example_verifies() -> None:
    key, fields, result = doc_example()
    seed = base64.b64decode(key["seed"])
    signer = Signer(key["key id"], seed)
    assert base64.b64encode(signer.public_key).decode() == key["public key"]
    signed = canonical_bytes(fields)
    shown = re.fullmatch(r"(\d+) bytes, SHA-256 ([0-9a-f]{64})", result["signed bytes"])
    assert shown is not None
    size, digest = shown.groups()
    assert (len(signed), hashlib.sha256(signed).hexdigest()) == (int(size), digest)
    assert signer.signature_of(fields) == result["signature"]

    entry = {**fields, "signature": result["signature"]}
    assert verify_fields(signer.public_key, entry)
    envelope = Envelope.from_fields(entry)
    keyring = KeyRing(
        [
            PublicSigningKey(
                key["key id"], "adapter-dukcapil", "dukcapil", signer.public_key, DUKCAPIL_TYPES
            )
        ]
    )
    arrived = f"{int(datetime.fromisoformat(fields['signedat']).timestamp() * 1000) + 5}-0"
    assert keyring.check(envelope, entry, arrived) is None
    assert keyring.check(envelope, {**entry, "time": "2026-11-28T13:07:26.124Z"}, arrived) == (
        Rejection(
            Reason.BAD_SIGNATURE,
            "the signature does not match the entry's fields for key test-dukcapil-2026: "
            "a field was changed, added or removed after signing, or another key signed",
        )
    )


def recipe_signed_bytes(fields: Mapping[str, str]) -> bytes:
    """Section 10.2, written from the document alone (no bus.signing)."""
    out = b"simpul-event-signature-v1\n"
    for name in sorted(fields, key=lambda n: n.encode()):
        if name != "signature":
            for part in (name.encode(), fields[name].encode()):
                out += len(part).to_bytes(4, "big") + part
    return out


async def test_an_event_signed_by_the_documents_recipe_alone_is_handled(
    redis: Redis, settings: Settings
) -> None:
    key, example, result = doc_example()
    nacl_key = NaclSigningKey(base64.b64decode(key["seed"]))
    example_signature = nacl_key.sign(recipe_signed_bytes(example)).signature
    assert base64.b64encode(example_signature).decode() == result["signature"]

    # A PHP or Java producer's event of today, signed with plain PyNaCl, XADDed by hand.
    fields = {
        **example,
        "id": "recipe-1",
        "time": format_time(now()),
        "subject": "cit-5f0c7d1e",
        "tenant": "kota-malang",
        "signer": key["key id"],
        "signedat": format_time(now()),
    }
    signature = nacl_key.sign(recipe_signed_bytes(fields)).signature
    fields["signature"] = base64.b64encode(signature).decode()
    keyring = KeyRing(
        [
            PublicSigningKey(
                key["key id"],
                "adapter-dukcapil",
                "dukcapil",
                bytes(nacl_key.verify_key),
                DUKCAPIL_TYPES,
            )
        ]
    )
    trusted = ring(key_of(ADAPTER), *keyring)
    async with consuming(redis, settings, trusted) as seen:
        await redis.xadd(STREAM, fields)  # type: ignore[arg-type]
        await redis.xadd(STREAM, {**fields, "id": "recipe-2"})  # type: ignore[arg-type]
        await wait_until(lambda: "recipe-1" in seen.ids)
    assert "recipe-2" not in seen.ids
    assert (await dead_letters(redis))["recipe-2"]["dlq.reason"] == Reason.BAD_SIGNATURE


# -- rotation -----------------------------------------------------------------------------------


async def test_rotation_both_keys_valid_in_the_overlap_old_refused_after(
    redis: Redis, settings: Settings
) -> None:
    new = Signer("dukcapil-siak-next", bytes(range(6, 38)))
    # The old key's not_after a little ahead, so that every event arrives before it (what
    # arrives after it is refused whatever it is signed at: the revocation test above): the
    # "after" events are signed past the cutover, within the allowed clock skew.
    cutover = now() + timedelta(minutes=2)
    keyring = ring(
        key_of(ADAPTER, not_before=now() - timedelta(days=30), not_after=cutover),
        key_of(new, not_before=now() - timedelta(minutes=20)),
    )
    in_overlap, after = now(), cutover + timedelta(minutes=1)
    old_publisher = Publisher(redis, source=SOURCE, signer=None)
    async with consuming(redis, settings, keyring) as seen:
        for signer, at, event_id in [
            (ADAPTER, in_overlap, "old-in-overlap"),
            (new, in_overlap, "new-in-overlap"),
            (ADAPTER, after, "old-after"),
            (new, after, "new-after"),
        ]:
            envelope = old_publisher.envelope(died(), id=event_id)
            await old_publisher.publish(signer.sign(envelope, at=at))

    assert {"old-in-overlap", "new-in-overlap", "new-after"} <= set(seen.ids)
    assert "old-after" not in seen.ids
    dead = await dead_letters(redis)
    assert list(dead) == ["old-after"]
    assert dead["old-after"]["dlq.reason"] == Reason.SIGNER_EXPIRED


def test_keys_rotate_prints_windows_that_overlap(tmp_path: Path) -> None:
    generated = runner.invoke(
        app,
        [
            "keys",
            "generate",
            "--id",
            "dukcapil-siak-2026-12",
            "--out",
            str(tmp_path),
            "--principal",
            "adapter-dukcapil",
            "--not-before",
            "2026-12-01T00:00:00Z",
            "--json",
        ],
    )
    assert generated.exit_code == 0, generated.output
    first = json.loads(generated.output)
    key_file = tmp_path / "dukcapil-siak-2026-12.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert first["public_key"] == (tmp_path / "dukcapil-siak-2026-12.pub").read_text().strip()
    topology = tmp_path / "topology.yaml"
    topology.write_text(_topology_with(first["snippet"]))

    rotated = runner.invoke(
        app,
        [
            "keys",
            "rotate",
            "--current",
            str(key_file),
            "--id",
            "dukcapil-siak-2027-01",
            "--out",
            str(tmp_path),
            "--keyring",
            str(topology),
            "--start",
            "2027-01-01T00:00:00+07:00",
            "--overlap-days",
            "7",
            "--json",
        ],
    )
    assert rotated.exit_code == 0, rotated.output
    plan = json.loads(rotated.output)
    assert plan["current"]["not_before"] == "2026-12-01T00:00:00.000Z"  # kept from the topology
    assert plan["current"]["not_after"] == "2027-01-07T17:00:00.000Z"  # start + overlap
    assert plan["next"]["not_before"] == "2026-12-31T17:00:00.000Z"
    assert len(plan["steps"]) == 4
    topology.write_text(_topology_with(plan["snippet"]))
    keyring = KeyRing(load_keyring_file(topology))
    old = Signer.from_file(key_file)
    new = Signer.from_file(tmp_path / "dukcapil-siak-2027-01.key")
    template = Publisher(None, source=SOURCE, signer=None).envelope(died())  # type: ignore[arg-type]

    def verdict(signer: Signer, at: str) -> Reason | None:
        moment = datetime.fromisoformat(at)
        envelope = signer.sign(template, at=moment)
        arrived = f"{int(moment.timestamp() * 1000) + 10}-0"
        rejected = keyring.check(envelope, envelope.to_fields(), arrived)
        return None if rejected is None else rejected.reason

    assert verdict(old, "2026-12-31T16:59:59Z") is None  # before the next key: only the old
    assert verdict(new, "2026-12-31T16:59:59Z") is Reason.SIGNER_EXPIRED
    assert verdict(old, "2027-01-03T00:00:00Z") is None  # the overlap: both
    assert verdict(new, "2027-01-03T00:00:00Z") is None
    assert verdict(old, "2027-01-07T17:00:00Z") is Reason.SIGNER_EXPIRED  # after: only the new
    assert verdict(new, "2027-01-07T17:00:00Z") is None


def _topology_with(snippet: str) -> str:
    """A minimal topology whose producer has the printed ``keys:``."""
    keys_part = "\n".join(line for line in snippet.splitlines() if not line.startswith("#"))
    return (
        "version: 1\nproducers:\n  - principal: adapter-dukcapil\n    department: dukcapil\n"
        "    adapter: dukcapil-siak\n    publishes: [dukcapil.citizen.died.v1]\n"
        f"{keys_part}\n"
    )


def test_keys_show_never_prints_the_private_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key_file = ADAPTER.write(tmp_path / "dukcapil-siak-test.key")
    shown = runner.invoke(app, ["keys", "show", str(key_file)])
    assert shown.exit_code == 0, shown.output
    assert base64.b64encode(ADAPTER.public_key).decode() in shown.output
    assert ADAPTER.key_id in shown.output
    assert ADAPTER.private_key_text().strip() not in shown.output

    topology = tmp_path / "topology.yaml"
    topology.write_text(
        _topology_with(
            f"    keys:\n      - id: {ADAPTER.key_id}\n        public_key: "
            f'"{base64.b64encode(ADAPTER.public_key).decode()}"\n'
            '        not_after: "2020-01-01T00:00:00Z"\n'
        )
    )
    monkeypatch.delenv("SIMPUL_SIGNING_KEY_FILE", raising=False)
    monkeypatch.setenv("SIMPUL_KEYRING_FILE", str(topology))
    listed = runner.invoke(app, ["keys", "show", "--json"])
    assert listed.exit_code == 0, listed.output
    [entry] = json.loads(listed.output)
    assert (entry["key_id"], entry["principal"], entry["status"]) == (
        ADAPTER.key_id,
        "adapter-dukcapil",
        "expired",
    )

    monkeypatch.delenv("SIMPUL_KEYRING_FILE")
    nothing = runner.invoke(app, ["keys", "show"])
    assert nothing.exit_code == 2
    assert "which key?" in nothing.output
    again = runner.invoke(app, ["keys", "generate", "--id", ADAPTER.key_id, "--out", str(tmp_path)])
    assert again.exit_code == 2
    assert "exists: not overwriting" in again.output


def test_the_topologys_signing_keys_feed_a_keyring_as_the_file_loader_reads_them(
    tmp_path: Path,
) -> None:
    """bus.access.topology validates the file; its signing_keys() and load_keyring_file agree."""
    from bus.access.topology import load_topology  # noqa: PLC0415 - only this test needs it

    deployed = Path(__file__).resolve().parents[2] / "deploy" / "topology.yaml"
    document = yaml.safe_load(deployed.read_text())
    [producer] = [p for p in document["producers"] if p["principal"] == "adapter-dukcapil"]
    producer["keys"] = [
        {
            "id": ADAPTER.key_id,
            "public_key": base64.b64encode(ADAPTER.public_key).decode(),
            "not_before": "2026-01-01T00:00:00+07:00",
            "not_after": "2099-01-01T00:00:00+07:00",
        }
    ]
    path = tmp_path / "topology.yaml"
    path.write_text(yaml.safe_dump(document))

    from_topology = KeyRing(load_topology(path).signing_keys())
    from_file = KeyRing.from_file(path)
    names = ("key_id", "principal", "department", "public_key", "types", "not_before", "not_after")
    assert [tuple(getattr(k, n) for n in names) for k in from_topology] == [
        tuple(getattr(k, n) for n in names) for k in from_file
    ]
    assert len(from_file) == len(load_topology(deployed).signing_keys())  # one replaced
    assert ADAPTER.key_id in from_file
    plain = Publisher(None, source=SOURCE, signer=None)  # type: ignore[arg-type]
    envelope = ADAPTER.sign(plain.envelope(died()))
    assert from_topology.check(envelope, envelope.to_fields()) is None
    forged = OTHER.sign(plain.envelope(died()))
    rejected = from_topology.check(forged, forged.to_fields())
    assert rejected is not None and rejected.reason is Reason.UNKNOWN_SIGNER


def test_both_key_file_shapes_are_validated_by_the_topologys_key_model(tmp_path: Path) -> None:
    """A keyring entry and a topology's keys[] entry fail alike (bus.signing.KeySpec's rules)."""
    key = base64.b64encode(ADAPTER.public_key).decode()
    short = base64.b64encode(b"x" * 31).decode()
    who = "principal: p\n    department: d\n"
    for body, problem in [
        (f"  - key_id: k\n    {who}    public_key: {short}\n", "must decode to 32 bytes"),
        (
            f"  - key_id: k\n    {who}    public_key: {key}\n    not_before: 2026-01-01T00:00:00\n",
            "needs a UTC offset",
        ),
        (
            f"  - key_id: k\n    {who}    public_key: {key}\n    colour: blue\n",
            "unknown field colour",
        ),
    ]:
        flat = tmp_path / "keyring.yaml"
        flat.write_text("signing_keys:\n" + body)
        with pytest.raises(ConfigurationError, match=problem):
            load_keyring_file(flat)
    topology = tmp_path / "topology.yaml"
    topology.write_text(
        f"producers:\n  - {who}    keys:\n      - id: k\n        public_key: {short}\n"
    )
    with pytest.raises(ConfigurationError, match=r"producers\[0\]: keys.0.public_key: must decode"):
        load_keyring_file(topology)
