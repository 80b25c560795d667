"""``simpul publish TYPE --data JSON``: validated, signed when configured, idempotent by id."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from redis import Redis
from typer.testing import CliRunner

from bus import keys
from bus.cli.app import app
from bus.signing import Signer, verify_fields
from bus.specs import catalogue
from schemas.dukcapil import CitizenDied

TYPE = "dukcapil.citizen.died.v1"
STREAM = keys.stream_of(TYPE)
runner = CliRunner()


@pytest.fixture
def died() -> dict[str, Any]:
    example = catalogue.example_of(CitizenDied)
    assert example is not None
    return example


@pytest.fixture(autouse=True)
def _bus(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIMPUL_REDIS_URL", redis_url)
    monkeypatch.delenv("SIMPUL_SIGNING_KEY_FILE", raising=False)
    monkeypatch.delenv("SIMPUL_SIGNER", raising=False)


def _publish(*args: str) -> Any:
    return runner.invoke(app, ["publish", *args])


def test_publishes_a_valid_event_once_per_id(redis_url: str, died: dict[str, Any]) -> None:
    args = [TYPE, "--data", json.dumps(died), "--id", "manual-1", "--json"]
    first, again = _publish(*args), _publish(*args)
    assert first.exit_code == again.exit_code == 0, first.output
    shown = json.loads(first.stdout)
    assert (shown["event_id"], shown["stream"], shown["duplicate"]) == ("manual-1", STREAM, False)
    assert shown["source"] == "urn:malangkota:dukcapil:simpul-cli" and shown["signer"] is None
    assert json.loads(again.stdout)["duplicate"] is True
    with Redis.from_url(redis_url) as client:
        [(_, fields)] = client.xrange(STREAM)
    assert fields[b"type"] == TYPE.encode() and json.loads(fields[b"data"]) == died

    people = _publish(TYPE, "--data", json.dumps(died), "--id", "manual-2")
    assert people.exit_code == 0
    assert f"published {TYPE} manual-2 to {STREAM}" in people.output
    assert "not signed" in people.output


def test_signs_with_the_configured_key(
    redis_url: str, died: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    signer = Signer.generate("dukcapil-siak-2026")
    signer.write(tmp_path / "dukcapil-siak-2026.key")
    monkeypatch.setenv("SIMPUL_SIGNING_KEY_FILE", str(tmp_path / "dukcapil-siak-2026.key"))
    result = _publish(TYPE, "--data", json.dumps(died), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["signer"] == "dukcapil-siak-2026"
    with Redis.from_url(redis_url) as client:
        [(_, fields)] = client.xrange(STREAM)
    assert fields[b"signer"] == b"dukcapil-siak-2026"
    assert verify_fields(signer.public_key, fields)


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"nik": "3573-0145-0690-0001"}, "nik"),  # a NIK typed with dashes
        ({"date_of_death": "01/11/2026"}, "date_of_death"),
        ({"kecamatan": None}, "kecamatan"),
        ({"cause": "heart failure"}, "cause"),  # not a field of the contract
    ],
)
def test_invalid_data_names_the_field_never_the_value(
    redis_url: str, died: dict[str, Any], change: dict[str, Any], named: str
) -> None:
    payload = {**died, **change}
    result = _publish(TYPE, "--data", json.dumps(payload))
    assert result.exit_code == 2
    [line] = result.output.strip().splitlines()
    assert line.startswith(f"error: payload of {TYPE} violates its contract: {named}")
    for value in (*change.values(), died["nik"]):
        assert value is None or str(value) not in result.output
    with Redis.from_url(redis_url) as client:
        assert client.exists(STREAM) == 0


def test_bad_json_and_unknown_types_are_one_line(died: dict[str, Any]) -> None:
    nik = died["nik"]
    not_json = _publish(TYPE, "--data", f"{{nik: {nik}}}")
    assert not_json.exit_code == 2 and "--data is not JSON" in not_json.output
    assert nik not in not_json.output
    unknown = _publish("dukcapil.citizen.vanished.v1", "--data", "{}")
    assert unknown.exit_code == 2
    assert "no contract is registered" in unknown.output and "contracts list" in unknown.output
