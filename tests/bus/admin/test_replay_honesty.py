"""Replays stay honest: nothing is put back that does not verify (docs/security.md).

Against a real Redis, with a keyring and signatures on: a genuine signed dead letter replays
(to its group and to the stream); a dead letter whose fields differ from its original entry is
refused as tampered; one whose original is gone is refused with the keyring's reason when it is
altered, unsigned or signed by an unknown key; without a keyring a replay is refused unless
SIMPUL_SIGNATURES=off. The CLI says why.
"""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from redis.asyncio import Redis
from typer.testing import CliRunner

from bus import keys
from bus.admin.deadletter_types import DeadLetterRef, Outcome, Target
from bus.admin.deadletters import DeadLetters
from bus.cli.app import app
from bus.connection import connect
from bus.envelope import Envelope, format_time
from bus.signing import KeyRing, PublicSigningKey, Signer
from schemas.dukcapil import CitizenDied
from tests.bus.admin.test_deadletters import dead_letter

SOURCE = "urn:malangkota:dukcapil:siak"
STREAM = CitizenDied.__contract__.stream
GROUP = "dinsos"
ADAPTER = Signer("dukcapil-siak-honest", bytes(range(11, 43)))
STRANGER = Signer("dukcapil-siak-stranger", bytes(range(12, 44)))
KEY = PublicSigningKey(
    key_id=ADAPTER.key_id,
    principal="adapter-dukcapil",
    department="dukcapil",
    public_key=ADAPTER.public_key,
    types=frozenset({"dukcapil.citizen.died.v1"}),
)
runner = CliRunner()


def signed(event_id: str, signer: Signer = ADAPTER) -> dict[str, str]:
    event = CitizenDied(
        nik="3573014506900001", date_of_death=date(2026, 11, 1), kecamatan="35.73.01"
    )
    info = CitizenDied.__contract__
    envelope = Envelope(
        id=event_id,
        source=SOURCE,
        type=info.event_type,
        time=format_time(datetime.now(UTC)),
        dataschema=info.dataschema,
        data=event.model_dump_json(),
    )
    return signer.sign(envelope).to_fields()


def letters(
    redis: Redis, *, keyring: KeyRing | None = None, signatures: bool = True
) -> DeadLetters:
    return DeadLetters(redis, keyring=keyring, signatures=signatures)


async def _forge(redis: Redis, original: str, fields: dict[str, str]) -> DeadLetterRef:
    """What a service holding its own password can do: XADD to its group's dead letters."""
    dlq = keys.dead_letters(STREAM, GROUP)
    dead = await redis.xadd(
        dlq,
        {
            **fields,
            "dlq.reason": "handler_failed",
            "dlq.error": "x",
            "dlq.attempts": "5",
            "dlq.stream": STREAM,
            "dlq.entry": original,
            "dlq.group": GROUP,
            "dlq.consumer": f"{GROUP}-1",
            "dlq.time": format_time(datetime.now(UTC)),
        },
    )
    return DeadLetterRef(STREAM, GROUP, dead.decode())


@pytest.mark.parametrize("to", list(Target), ids=str)
async def test_a_genuine_signed_dead_letter_replays(redis: Redis, to: Target) -> None:
    _, dead = await dead_letter(redis, GROUP, signed("genuine"))
    report = await letters(redis, keyring=KeyRing([KEY])).replay(
        [DeadLetterRef(STREAM, GROUP, dead)], to=to
    )
    assert [r.outcome for r in report.results] == [Outcome.REPLAYED], report.results[0].detail


async def test_a_dead_letter_unlike_its_original_entry_is_refused_as_tampered(
    redis: Redis,
) -> None:
    original, _ = await dead_letter(redis, GROUP, signed("e-1"))
    fields = signed("e-1")
    fields["data"] = fields["data"].replace("35.73.01", "35.73.05")
    forged = await _forge(redis, original, fields)
    for to in Target:
        report = await letters(redis, keyring=KeyRing([KEY])).replay([forged], to=to, dry_run=True)
        [result] = report.results
        assert result.outcome is Outcome.REFUSED
        assert result.detail.startswith("tampered: the dead letter's event fields differ")
    assert await redis.xlen(STREAM) == 1  # nothing put back
    assert "3573014506900001" not in result.detail


@pytest.mark.parametrize(
    ("alter", "reason"),
    [
        (lambda f: {**f, "data": f["data"].replace("35.73.01", "35.73.05")}, "bad_signature"),
        (
            lambda f: {k: v for k, v in f.items() if k not in ("signature", "signer", "signedat")},
            "unsigned",
        ),
        (lambda f: signed(f["id"], STRANGER), "unknown_signer"),
    ],
    ids=["altered", "unsigned", "unknown-key"],
)
async def test_a_dead_letter_whose_original_is_gone_must_verify(
    redis: Redis, alter: object, reason: str
) -> None:
    original, _ = await dead_letter(redis, GROUP, signed("e-2"))
    await redis.xdel(STREAM, original)  # trimmed: only the signature speaks for it now
    forged = await _forge(redis, original, alter(signed("e-2")))  # type: ignore[operator]
    report = await letters(redis, keyring=KeyRing([KEY])).replay([forged], to=Target.STREAM)
    [result] = report.results
    assert result.outcome is Outcome.REFUSED
    assert result.detail.startswith(f"{reason}: "), result.detail
    assert await redis.xlen(STREAM) == 0
    assert await redis.xlen(keys.dead_letters(STREAM, GROUP)) == 2  # kept, for an operator


async def test_the_key_must_have_been_valid_when_the_original_arrived(redis: Redis) -> None:
    _, dead = await dead_letter(redis, GROUP, signed("e-3"))
    revoked = KeyRing([replace(KEY, not_after=datetime.now(UTC) - timedelta(days=1))])
    report = await letters(redis, keyring=revoked).replay([DeadLetterRef(STREAM, GROUP, dead)])
    [result] = report.results
    assert result.outcome is Outcome.REFUSED
    assert result.detail.startswith("signer_expired: ")


async def test_without_a_keyring_a_replay_is_refused_unless_signatures_are_off(
    redis: Redis,
) -> None:
    _, dead = await dead_letter(redis, GROUP, signed("e-4"))
    ref = DeadLetterRef(STREAM, GROUP, dead)
    [refused] = (await letters(redis).replay([ref])).results
    assert refused.outcome is Outcome.REFUSED
    assert "no keyring" in refused.detail and "SIMPUL_SIGNATURES=off" in refused.detail
    [done] = (await letters(redis, signatures=False).replay([ref])).results
    assert done.outcome is Outcome.REPLAYED


def test_simpul_dlq_replay_names_the_refusal(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def setup() -> None:
        redis = connect(redis_url)
        try:
            original, _ = await dead_letter(redis, GROUP, signed("e-5"))
            fields = signed("e-5")
            fields["data"] = fields["data"].replace("35.73.01", "35.73.09")
            await _forge(redis, original, fields)
        finally:
            await redis.aclose()

    asyncio.run(setup())
    ring = tmp_path / "keyring.yaml"
    ring.write_text(
        yaml.safe_dump(
            {
                "signing_keys": [
                    {
                        "key_id": KEY.key_id,
                        "principal": KEY.principal,
                        "department": KEY.department,
                        "public_key": base64.b64encode(KEY.public_key).decode(),
                        "types": sorted(KEY.types),
                    }
                ]
            }
        )
    )
    monkeypatch.setenv("SIMPUL_KEYRING_FILE", str(ring))
    monkeypatch.setenv("SIMPUL_SIGNATURES", "on")
    monkeypatch.setenv("SIMPUL_REDIS_URL", redis_url)
    done = runner.invoke(app, ["dlq", "replay", STREAM, "--group", GROUP, "--yes", "--json"])
    assert done.stdout, done.output
    report = json.loads(done.stdout)
    outcomes = sorted((r["outcome"], r["detail"].split(" ")[0]) for r in report["results"])
    assert outcomes == [("refused", "tampered:"), ("replayed", "entry")], done.output
    assert done.exit_code != 0  # something was refused


def test_simpul_dlq_replay_refuses_development_keys_outside_development_mode(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A replay builds its keyring as a service does (KeyRing.from_settings): a keyring holding
    development keys (deploy/topology.yaml) is refused unless SIMPUL_DEV_MODE=1, before any dead
    letter moves, with an error naming the keys and the setting; in development mode the same
    replay goes through."""
    root = Path(__file__).resolve().parents[3]
    dev = Signer.from_file(
        root / "deploy/keys/adapter-dukcapil-dev-2026.key", "adapter-dukcapil-dev-2026"
    )

    async def setup() -> str:
        redis = connect(redis_url)
        try:
            _, dead = await dead_letter(redis, GROUP, signed("e-dev", dev))
            return dead
        finally:
            await redis.aclose()

    async def still_dead() -> int:
        redis = connect(redis_url)
        try:
            return int(await redis.xlen(keys.dead_letters(STREAM, GROUP)))
        finally:
            await redis.aclose()

    dead = asyncio.run(setup())
    monkeypatch.setenv("SIMPUL_KEYRING_FILE", str(root / "deploy/topology.yaml"))
    monkeypatch.setenv("SIMPUL_SIGNATURES", "on")
    monkeypatch.setenv("SIMPUL_REDIS_URL", redis_url)
    replay = ["dlq", "replay", STREAM, "--group", GROUP, "--id", dead, "--yes", "--json"]

    monkeypatch.setenv("SIMPUL_DEV_MODE", "0")
    refused = runner.invoke(app, replay)
    assert refused.exit_code != 0, refused.output
    assert "development key(s)" in refused.output, refused.output
    assert "adapter-dukcapil-dev-2026" in refused.output and "SIMPUL_DEV_MODE=1" in refused.output
    assert "deploy/topology.yaml" in refused.output, refused.output
    assert asyncio.run(still_dead()) == 1  # nothing moved

    monkeypatch.setenv("SIMPUL_DEV_MODE", "1")
    done = runner.invoke(app, replay)
    assert done.exit_code == 0, done.output
    [result] = json.loads(done.stdout)["results"]
    assert result["outcome"] == "replayed", result
    assert asyncio.run(still_dead()) == 0
