"""Every operator view masks an event by one rule (bus.privacy), on a real Redis.

The events here are the awkward ones: a contract violation (what lands in dead letters), an
identifier embedded in another field, and a subject that is a person's pseudonym. Each view —
``simpul tail``, ``simpul dlq list``/``show``, the dashboard's dead letters — is searched for
the personal values.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from typer.testing import CliRunner

from bus import EventContext, Publisher, Service, Settings, keys
from bus.cli.app import app
from bus.testing import wait_until
from schemas.bapenda import PaymentReceived, TaxpayerRegistered
from schemas.dinkes import ImmunisationScheduled
from schemas.dukcapil import CitizenDied, FamilyCardIssued
from services.monitor.service import Monitor

EXAMPLES = Path(__file__).parent.parent / "schemas" / "examples"
STREET = "Jl. Bandulan Gg. 8 No. 31"
NOP = "357305000300200450"  # the example's tax object, also inside its SPPT number
CHILD_REF = "gkav6eimasog7zxmwar3hyboi4"
runner = CliRunner()


def example(event_type: str, name: str) -> dict[str, Any]:
    return json.loads((EXAMPLES / event_type / name).read_text())  # type: ignore[no-any-return]


async def simpul(*args: str) -> str:
    # In a thread: the commands run their own event loop (asyncio.run).
    result = await asyncio.to_thread(runner.invoke, app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


async def dead_letter_by_a_service(
    redis: Redis, settings: Settings, model: Any, fields: dict[str, str]
) -> str:
    """XADD ``fields`` and let a real service dead-letter it; the dead letter's id."""
    await redis.xadd(fields["stream"], {k: v for k, v in fields.items() if k != "stream"})
    service = Service("masking", settings=settings)
    handled: list[str] = []

    @service.on(model)
    async def handle(event: Any, ctx: EventContext) -> None:
        handled.append(ctx.event_id)

    dlq = keys.dead_letters(fields["stream"], "masking")
    async with service.running():
        await wait_until(lambda: redis.xlen(dlq))
    [(dead, raw)] = await redis.xrange(dlq)
    assert raw[b"dlq.reason"] == b"contract_violation"
    assert fields["id"] not in handled
    return str(dead.decode())


def entry(event_type: str, data: dict[str, Any], **extra: str) -> dict[str, str]:
    aggregate = keys.aggregate_of(event_type)
    name = event_type.rsplit(".v", 1)[0]
    return {
        "stream": keys.stream(aggregate),
        "specversion": "1.0",
        "id": f"masking-{event_type}",
        "source": "urn:malangkota:test:masking",
        "type": event_type,
        "time": "2026-11-28T13:07:26.123Z",
        "datacontenttype": "application/json",
        "dataschema": f"simpul:{name}:1.0",
        "data": json.dumps(data),
        **extra,
    }


@pytest.fixture
def env(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("SIMPUL_REDIS_URL", redis_url)
    monkeypatch.setenv("COLUMNS", "200")
    return redis_url


async def test_an_address_sent_as_a_string_is_masked_in_every_view(
    redis: Redis, settings: Settings, env: str
) -> None:
    # The contract has an object with a personal street; a producer sent the street as text.
    card = example("dukcapil.family.card-issued.v1", "valid-family-of-three-after-birth.json")
    card["address"] = STREET
    fields = entry("dukcapil.family.card-issued.v1", card)
    dead = await dead_letter_by_a_service(redis, settings, FamilyCardIssued, fields)

    views = {
        "dlq show": await simpul("dlq", "show", dead),
        "dlq show --json": await simpul("dlq", "show", dead, "--json"),
        "dlq list --json": await simpul("dlq", "list", "--json"),
        "tail": await simpul("tail", "dukcapil.family"),
        "tail --json": await simpul("tail", "dukcapil.family", "--json"),
    }
    for view, output in views.items():
        assert STREET not in output, view
        assert not any(nik in output for nik in card["members"]), view
    shown = json.loads(views["dlq show --json"])
    assert shown["data"]["address"] == "***"
    assert json.loads(views["tail --json"])["data"]["address"] == "***"


async def test_a_nop_inside_the_assessment_number_is_masked(redis: Redis, env: str) -> None:
    payment = example("bapenda.payment.received.v1", "valid-pbb-by-qris.json")
    assert NOP in payment["assessment_no"]
    await Publisher(redis, source="urn:malangkota:bapenda:test").publish(
        PaymentReceived.parse(payment)
    )

    for output in (
        await simpul("tail", "bapenda.payment"),
        await simpul("tail", "bapenda.payment", "--json"),
    ):
        assert NOP not in output
        assert NOP[:10] not in output  # not a part of it either
    data = json.loads(await simpul("tail", "bapenda.payment", "--json"))["data"]
    assert data["assessment_no"] == "***" and data["nop"] == "***"
    assert data["channel"] == "qris"  # what is not personal still shows


async def test_a_childs_pseudonym_as_subject_is_masked(
    redis: Redis, settings: Settings, env: str
) -> None:
    schedule = example("dinkes.immunisation.scheduled.v1", "valid-mr-at-nine-months.json")
    await Publisher(redis, source="urn:malangkota:dinkes:test").publish(
        ImmunisationScheduled.parse(schedule), subject=CHILD_REF
    )
    broken = {**schedule, "schedule": [{"vaccine": "mr", "dose": 0, "due_on": "2027-08-03"}]}
    fields = entry("dinkes.immunisation.scheduled.v1", broken, subject=CHILD_REF)
    fields["id"] = "masking-broken-schedule"
    dead = await dead_letter_by_a_service(redis, settings, ImmunisationScheduled, fields)

    views = {
        "tail": await simpul("tail", "dinkes.immunisation"),
        "tail --json": await simpul("tail", "dinkes.immunisation", "--json"),
        "dlq show": await simpul("dlq", "show", dead),
        "dlq show --json": await simpul("dlq", "show", dead, "--json"),
        "dlq list --json": await simpul("dlq", "list", "--json"),
    }
    for view, output in views.items():
        assert CHILD_REF not in output, view
    [first, *_] = [json.loads(line) for line in views["tail --json"].splitlines()]
    assert first["subject"] == "***"
    assert json.loads(views["dlq show --json"])["attributes"]["subject"] == "***"


async def test_the_dashboard_masks_dead_letters_by_the_same_rule(
    redis: Redis, settings: Settings
) -> None:
    card = example("dukcapil.family.card-issued.v1", "valid-family-of-three-after-birth.json")
    card["address"] = STREET
    fields = entry("dukcapil.family.card-issued.v1", card)
    await dead_letter_by_a_service(redis, settings, FamilyCardIssued, fields)
    # A handler's error could quote the street: the dashboard masks it where it is quoted.
    await redis.execute_command(
        "XADD",
        keys.dead_letters(fields["stream"], "masking"),
        "*",
        *[part for name, value in fields.items() if name != "stream" for part in (name, value)],
        "dlq.reason",
        "handler_failed",
        "dlq.error",
        f"no household at {STREET}",
    )

    monitor = Monitor(redis, handled=None)
    text = json.dumps(await monitor.dead_letters(limit=10), default=str)
    assert STREET not in text
    assert "no household at ***" in text


async def test_a_persons_npwpd_is_masked_as_a_field_and_as_the_subject(
    redis: Redis, env: str
) -> None:
    registered = example("bapenda.taxpayer.registered.v1", "valid-parking-by-a-person.json")
    npwpd = registered["npwpd"]
    await Publisher(redis, source="urn:malangkota:bapenda:test").publish(
        TaxpayerRegistered.parse(registered), subject=npwpd
    )

    for output in (
        await simpul("tail", "bapenda.taxpayer"),
        await simpul("tail", "bapenda.taxpayer", "--json"),
    ):
        assert npwpd not in output
    shown = json.loads(await simpul("tail", "bapenda.taxpayer", "--json"))
    assert shown["subject"] == "***" and shown["data"]["npwpd"] == "***"


async def test_an_extension_attribute_a_producer_added_shows_only_its_shape(
    redis: Redis, settings: Settings, env: str
) -> None:
    """The wire format forbids personal data outside ``data``; a client adding ``nama`` does it
    anyway, and no contract says what an extension holds. The bus's own (``signedat``) show."""
    died = {"nik": "3573014506900001", "date_of_death": "02-11-2026", "kecamatan": "35.73.02"}
    fields = entry("dukcapil.citizen.died.v1", died, nama="Sri Wahyuningsih", alamat=STREET)
    fields["signedat"] = "2026-11-28T13:07:26.500Z"
    dead = await dead_letter_by_a_service(redis, settings, CitizenDied, fields)

    views = {
        "dlq show": await simpul("dlq", "show", dead),
        "dlq show --json": await simpul("dlq", "show", dead, "--json"),
        "tail": await simpul("tail", "dukcapil.citizen"),
        "tail --json": await simpul("tail", "dukcapil.citizen", "--json"),
    }
    for view, output in views.items():
        assert "Wahyuningsih" not in output and "Bandulan" not in output, view
    shown = json.loads(views["dlq show --json"])["attributes"]
    assert shown["nama"] == "<text, 16 characters>" and shown["alamat"] == "<text, 25 characters>"
    assert shown["signedat"] == "2026-11-28T13:07:26.500Z"
    extensions = json.loads(views["tail --json"])["extensions"]
    assert extensions == {
        **{k: shown[k] for k in ("nama", "alamat")},
        "signedat": shown["signedat"],
    }
