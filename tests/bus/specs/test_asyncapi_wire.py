"""docs/asyncapi.json against what the bus puts on the wire: an outside developer validates real
entries with it (AsyncAPI's default schema format is JSON Schema draft-07), finds every key in
it, and must refuse nothing the bus accepts nor accept less than the contracts' own schemas.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft7Validator, Draft202012Validator, FormatChecker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from bus import keys
from bus.access.topology import load_topology
from bus.cli.contracts import docs_files, load
from bus.envelope import Envelope
from bus.errors import DecodeError
from bus.projection import disclosures, forward
from bus.publisher import Publisher
from bus.signing import Signer
from bus.specs import asyncapi
from bus.specs.catalogue import find_services
from tests.bus.specs.test_asyncapi import DialRead

ROOT = Path(__file__).parents[3]
EXAMPLES = ROOT / "schemas" / "examples"
DOC_URI = "urn:simpul:asyncapi"
ADAPTER = Signer("adapter-test-2026", bytes(range(1, 33)))
ROUTER = Signer("router-test-2026", bytes(range(9, 41)))
ORIGIN = "1796000000000-0"
MODELS = {m.__contract__.event_type: m for m in load("schemas")}
SHIPPED = disclosures(load_topology(ROOT / "deploy" / "topology.yaml"))
# AsyncAPI 3.0 channel address expressions, read as the official parser reads them.
EXPRESSION = re.compile(r"{(.+?)}")
PARAMETER_NAME = re.compile(r"^[A-Za-z0-9_\-]+$")  # the spec's Parameters Object keys


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    """The document as `simpul contracts docs` writes it, with the shipped topology."""
    document: dict[str, Any] = json.loads(docs_files()["asyncapi.json"])
    return document


def _validator(doc: dict[str, Any], pointer: str) -> Draft7Validator:
    """A draft-07 validator of the schema at ``pointer``, its ``$ref``s resolved in ``doc``;
    with the formats of draft 2020-12 (uuid, date) checked as a careful consumer would."""
    registry = Registry().with_resource(DOC_URI, Resource(contents=doc, specification=DRAFT7))
    return Draft7Validator(
        {"$ref": f"{DOC_URI}#{pointer}"}, registry=registry, format_checker=FormatChecker()
    )


def _errors(validator: Draft7Validator, instance: Any) -> list[str]:
    return [f"{list(e.absolute_path)}: {e.message[:200]}" for e in validator.iter_errors(instance)]


def _valid_payloads() -> list[tuple[str, str]]:
    return [
        (event_type, path.name)
        for event_type in MODELS
        for path in sorted((EXAMPLES / event_type).glob("valid-*.json"))
    ]


def _original(event_type: str, name: str) -> dict[str, str]:
    """The signed entry a producer writes for this example (what the router admits)."""
    model = MODELS[event_type]
    payload = json.loads((EXAMPLES / event_type / name).read_text(encoding="utf-8"))
    publisher = Publisher(None, source="urn:malangkota:test:wire", signer=ADAPTER)  # type: ignore[arg-type]
    subject = "s-1" if model.__contract__.partitions > 1 else None
    return ADAPTER.sign(publisher.envelope(model.parse(payload), subject=subject)).to_fields()


def _split(fields: dict[str, str]) -> tuple[dict[str, str], Any]:
    headers = {name: value for name, value in fields.items() if name != "data"}
    return headers, json.loads(fields["data"])


@pytest.mark.parametrize(("event_type", "name"), _valid_payloads())
def test_every_real_entry_is_valid_against_its_message(
    doc: dict[str, Any], event_type: str, name: str
) -> None:
    headers, payload = _split(_original(event_type, name))
    message = f"/components/messages/{event_type}"
    assert _errors(_validator(doc, f"{message}/headers"), headers) == []
    assert _errors(_validator(doc, f"{message}/payload"), payload) == []


def _inbox_message(doc: dict[str, Any], group: str, event_type: str) -> tuple[str, str]:
    """(channel address with its hashtag, message pointer) of the subscription's receive
    operation, found as an outside developer finds them: operation -> channel -> message."""
    aggregate = keys.aggregate_of(event_type)
    operation = doc["operations"][f"{aggregate}.receive.{group}"]
    channel_name = operation["channel"]["$ref"].removeprefix("#/channels/")
    channel = doc["channels"][channel_name]
    (tag,) = channel["parameters"]["hashtag"]["enum"]
    address = channel["address"].replace("{hashtag}", tag)
    refs = [
        doc["channels"][channel_name]["messages"][ref["$ref"].rsplit("/", 1)[1]]["$ref"]
        for ref in operation["messages"]
    ]
    found = [r for r in refs if r.split("/")[-1] in (event_type, f"inbox.{group}.{event_type}")]
    assert len(found) == 1, (group, event_type, refs)
    return address, found[0].removeprefix("#")


@pytest.mark.parametrize("key", sorted(SHIPPED), ids="/".join)
def test_every_inbox_entry_is_valid_against_its_subscriptions_message(
    doc: dict[str, Any], key: tuple[str, str]
) -> None:
    """A projection lacks the withheld fields (some required by the contract) and carries the
    router's signature and the origin* attributes: its inbox's message says so."""
    group, event_type = key
    address, message = _inbox_message(doc, group, event_type)
    assert address == keys.inbox(keys.stream(keys.aggregate_of(event_type)), group)
    for _, name in [p for p in _valid_payloads() if p[0] == event_type]:
        entry = forward(
            _original(event_type, name), disclosure=SHIPPED[key], signer=ROUTER, origin=ORIGIN
        )
        headers, payload = _split(entry)
        assert _errors(_validator(doc, f"{message}/headers"), headers) == []
        assert _errors(_validator(doc, f"{message}/payload"), payload) == []


def test_a_projection_withholds_in_its_schema_what_its_inbox_lacks(doc: dict[str, Any]) -> None:
    message = doc["components"]["messages"]["inbox.dinkes.dukcapil.citizen.born.v1"]
    assert sorted(message["payload"]["properties"]) == sorted(
        SHIPPED[("dinkes", "dukcapil.citizen.born.v1")].fields or ()
    )
    assert message["x-simpul-withheld-fields"] == ["kk", "nik"]
    assert {"originentry", "originsigner", "origindigest", "signer", "signature"} <= set(
        message["headers"]["required"]
    )


@pytest.mark.parametrize("event_type", sorted(t for t, m in MODELS.items() if m.__contract__.minor))
def test_an_event_of_an_earlier_minor_version_is_valid(
    doc: dict[str, Any], event_type: str
) -> None:
    """The bus decodes and delivers every minor of a major (a producer upgrades later than its
    consumers): the headers must not pin `dataschema` to the current minor."""
    model = MODELS[event_type]
    _, name = next(p for p in _valid_payloads() if p[0] == event_type)
    fields = _original(event_type, name)
    info = model.__contract__
    for minor in range(info.minor + 2):  # earlier, current and a newer one
        older = {**fields, "dataschema": f"simpul:{event_type.rsplit('.v', 1)[0]}:1.{minor}"}
        Envelope.from_fields(older)  # the bus decodes it
        headers, _ = _split(older)
        validator = _validator(doc, f"/components/messages/{event_type}/headers")
        assert _errors(validator, headers) == [], minor
    wrong = {**fields, "dataschema": f"simpul:{event_type.rsplit('.v', 1)[0]}:2.0"}
    with pytest.raises(DecodeError):
        Envelope.from_fields(wrong)
    assert _errors(_validator(doc, f"/components/messages/{event_type}/headers"), _split(wrong)[0])


TIMES = [
    "2026-11-28T13:07:26.123Z",
    "2026-11-28T20:07:26+07:00",
    "2026-11-28T13:07:26.123456789-03:30",
    "2026-11-28t13:07:26Z",  # lower-case t: RFC 3339 allows it, the decoder does not
    "2026-11-28T13:07:26z",
    "2026-11-28 13:07:26Z",
    "2026-11-28T13:07Z",  # no seconds
    "2026-12-31T23:59:60Z",  # a leap second
    "2026-11-28T13:07:26+0700",
    "2026-11-28T13:07:26",
    "2026-13-28T13:07:26Z",
    "20261128T130726Z",
]


@pytest.mark.parametrize("time", TIMES)
def test_the_time_header_accepts_exactly_what_the_decoder_accepts(
    doc: dict[str, Any], time: str
) -> None:
    event_type, name = _valid_payloads()[0]
    fields = {**_original(event_type, name), "time": time}
    try:
        Envelope.from_fields(fields)
    except DecodeError:
        decoded = False
    else:
        decoded = True
    headers, _ = _split(fields)
    schema = _validator(doc, f"/components/messages/{event_type}/headers")
    assert (not _errors(schema, headers)) == decoded, (
        f"decoder {'accepts' if decoded else 'refuses'}"
    )


def _refused_by_json_schema() -> list[tuple[str, str]]:
    """The invalid examples the contract's own JSON Schema (draft 2020-12) refuses; the others
    break rules beyond JSON Schema, which the contract check applies (tests/schemas)."""
    found = []
    for event_type, model in MODELS.items():
        own = Draft202012Validator(model.model_json_schema())
        for path in sorted((EXAMPLES / event_type).glob("invalid-*.json")):
            if not own.is_valid(json.loads(path.read_text(encoding="utf-8"))["payload"]):
                found.append((event_type, path.name))
    assert found
    return found


@pytest.mark.parametrize(("event_type", "name"), _refused_by_json_schema())
def test_the_document_refuses_what_the_contracts_json_schema_refuses(
    doc: dict[str, Any], event_type: str, name: str
) -> None:
    """Read as draft-07, each payload schema is as strict as the contract's own JSON Schema
    (draft 2020-12), e.g. an applicant narrowed to nik or nib beside the Identifier's $ref."""
    payload = json.loads((EXAMPLES / event_type / name).read_text(encoding="utf-8"))["payload"]
    assert _errors(_validator(doc, f"/components/messages/{event_type}/payload"), payload)


def _addresses(document: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(name, channel) for name, channel in document["channels"].items()]


def _check_addresses(document: dict[str, Any]) -> list[str]:
    """The official parser's rule (asyncapi3-channel-parameters) and AsyncAPI 3.0's reading of
    an address: each ``{expression}`` is a parameter, defined, with a valid name."""
    problems = []
    for name, channel in _addresses(document):
        used = set(EXPRESSION.findall(channel["address"]))
        defined = set(channel.get("parameters", {}))
        problems += [f"{name}: {p} used, not defined" for p in sorted(used - defined)]
        problems += [f"{name}: {p} defined, not used" for p in sorted(defined - used)]
        problems += [f"{name}: bad name {p}" for p in sorted(used) if not PARAMETER_NAME.match(p)]
    return problems


def test_every_channel_address_is_an_expression_with_its_parameters(doc: dict[str, Any]) -> None:
    assert _check_addresses(doc) == []


def test_a_partitioned_channel_address_is_an_expression_with_its_parameters() -> None:
    document = asyncapi.document([DialRead], [])
    assert _check_addresses(document) == []


def _keys_of(channel: dict[str, Any]) -> list[str]:
    """Every Redis key a channel stands for: its address with each value of its parameter."""
    return [
        channel["address"].replace("{hashtag}", tag)
        for tag in channel["parameters"]["hashtag"]["enum"]
    ]


def test_every_channel_is_the_redis_key_the_bus_uses(doc: dict[str, Any]) -> None:
    topology = load_topology(ROOT / "deploy" / "topology.yaml")
    expected = {keys.stream(keys.aggregate_of(t)) for t in MODELS}
    expected |= {keys.intake(who.principal) for who in topology.publishers()}
    expected |= {keys.inbox(keys.stream(keys.aggregate_of(t)), group) for group, t in SHIPPED}
    found = [key for _, channel in _addresses(doc) for key in _keys_of(channel)]
    assert sorted(found) == sorted(expected)
    partitioned = asyncapi.document([DialRead], [])["channels"]["test.dial"]
    assert _keys_of(partitioned) == keys.streams("test.dial")


def test_each_intake_channel_carries_exactly_what_its_principal_may_publish(
    doc: dict[str, Any],
) -> None:
    topology = load_topology(ROOT / "deploy" / "topology.yaml")
    for who in topology.publishers():
        channel = doc["channels"][f"intake.{who.principal}"]
        assert sorted(channel["messages"]) == sorted(who.publishes)
        assert _keys_of(channel) == [keys.intake(who.principal)]
        assert doc["operations"][f"intake.{who.principal}.send"]["action"] == "send"


def test_the_signature_fields_are_described(doc: dict[str, Any]) -> None:
    for message in doc["components"]["messages"].values():
        properties = message["headers"]["properties"]
        assert {"signature", "signer", "signedat"} <= set(properties)
    signer = ADAPTER.sign(Envelope.from_fields(_original(*_valid_payloads()[0])))
    headers = {k: v for k, v in signer.to_fields().items() if k != "data"}
    properties = doc["components"]["messages"][_valid_payloads()[0][0]]["headers"]["properties"]
    for name in ("signature", "signer", "signedat"):
        assert re.search(properties[name]["pattern"], headers[name]), name
        assert not re.search(properties[name]["pattern"], headers[name] + "!"), name


# ECMA-262 with the u flag (ajv's, a browser's) refuses an escape of a character that is not
# syntax, e.g. Python's re.escape("-") = "\-": allowed escapes only.
_ECMA_ESCAPE = re.compile(r"\\(.)")
_ECMA_ESCAPABLE = set("^$\\.*+?()[]{}|/") | set("dDsSwWbBnrtfv0123456789cxupPk")


def _patterns(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["pattern"]] if isinstance(node.get("pattern"), str) else []
        for key, value in node.items():
            if key == "patternProperties":
                found += list(value)
            found += _patterns(value)
        return found
    if isinstance(node, list):
        return [p for item in node for p in _patterns(item)]
    return []


def test_every_pattern_is_a_valid_ecma_262_unicode_regex(doc: dict[str, Any]) -> None:
    patterns = set(_patterns(doc))
    assert patterns
    bad = sorted(
        p for p in patterns if set(_ECMA_ESCAPE.findall(p.replace("\\\\", ""))) - _ECMA_ESCAPABLE
    )
    assert bad == []


def test_the_catalogue_names_each_subscriptions_inbox_and_exactly_its_approved_fields() -> None:
    catalogue = docs_files()["catalogue.md"]
    for (group, event_type), disclosure in SHIPPED.items():
        section = catalogue.split(f"### {event_type}\n", 1)[1].split("\n### ", 1)[0]
        inbox = keys.inbox(keys.stream(keys.aggregate_of(event_type)), group)
        (row,) = [r for r in section.splitlines() if r.startswith(f"| {group} | `{inbox}` |")]
        shown = row.split(" | ")[2]
        if disclosure.fields is None:
            assert shown == "every field |", (group, event_type)
        else:
            assert set(re.findall(r"`([a-z_]+)`", shown)) == disclosure.fields, (group, event_type)


def test_services_of_a_direct_bus_read_the_department_streams() -> None:
    """Without routed delivery nothing moves to inboxes (decision 0011 is opt-in)."""
    document = asyncapi.document(list(MODELS.values()), find_services("services"))
    assert not [name for name in document["channels"] if name.startswith(("inbox.", "intake."))]
    assert _check_addresses(document) == []


def test_the_catalogue_names_each_publishers_intake() -> None:
    catalogue = docs_files()["catalogue.md"]
    topology = load_topology(ROOT / "deploy" / "topology.yaml")
    for event_type in MODELS:
        section = catalogue.split(f"### {event_type}\n", 1)[1].split("\n### ", 1)[0]
        who = [p.principal for p in topology.publishers() if event_type in p.publishes]
        for principal in who:
            assert f"- {principal}: `{keys.intake(principal)}`" in section, event_type
        if not who:
            assert "Published by no principal of deploy/topology.yaml yet." in section


def test_a_partitioned_type_requires_the_subject_that_picks_its_partition() -> None:
    document = asyncapi.document([DialRead], [])
    headers = document["components"]["messages"]["test.dial.read.v1"]["headers"]
    assert "subject" in headers["required"]
    fields = Publisher(None, source="urn:x", signer=None).envelope(DialRead(dial="7")).to_fields()  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="subject"):
        keys.stream_of(fields["type"], fields.get("subject"))
    registry = Registry().with_resource(DOC_URI, Resource(contents=document, specification=DRAFT7))
    validator = Draft7Validator(
        {"$ref": f"{DOC_URI}#/components/messages/test.dial.read.v1/headers"}, registry=registry
    )
    assert not validator.is_valid({k: v for k, v in fields.items() if k != "data"})
    assert validator.is_valid({**{k: v for k, v in fields.items() if k != "data"}, "subject": "s"})
