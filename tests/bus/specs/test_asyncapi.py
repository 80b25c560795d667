"""The AsyncAPI document: valid AsyncAPI 3.0.0, complete, refs resolvable, committed fresh."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft7Validator, validators
from pydantic import BaseModel, create_model

from bus import Classification, Contract, Service
from bus.cli.contracts import docs_files, load
from bus.specs import asyncapi, catalogue
from bus.specs.catalogue import find_services

ROOT = Path(__file__).parents[3]
SPEC = ROOT / "tests" / "data" / "asyncapi-3.0.0.schema.json"
COMMITTED = ROOT / "docs" / "asyncapi.json"
WIRE_REQUIRED = {"specversion", "id", "source", "type", "time", "datacontenttype", "dataschema"}
WIRE_OPTIONAL = {"subject", "correlationid", "causationid", "traceparent", "signature", "signer"}
SIGNED_AT = {"signedat"}  # the extension attribute of a signed event, described by name


@pytest.fixture(scope="module")
def validator() -> Draft7Validator:
    """The official schema, as the dialect it declares; ``$ref``s resolve within the file."""
    spec = json.loads(SPEC.read_text())
    cls = validators.validator_for(spec)
    assert cls is Draft7Validator  # "$schema": draft-07
    cls.check_schema(spec)
    return cls(spec, format_checker=cls.FORMAT_CHECKER)


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return asyncapi.document(load("schemas"), find_services("services"))


def _errors(validator: Draft7Validator, document: dict[str, Any]) -> list[str]:
    return [f"{list(e.absolute_path)}: {e.message[:300]}" for e in validator.iter_errors(document)]


def test_document_is_valid_asyncapi_3(validator: Draft7Validator, doc: dict[str, Any]) -> None:
    assert doc["asyncapi"] == "3.0.0"
    assert _errors(validator, doc) == []


def _no_info(d: dict[str, Any]) -> None:
    del d["info"]


def _info_without_version(d: dict[str, Any]) -> None:  # only reachable through a $ref
    del d["info"]["version"]


def _address_not_a_string(d: dict[str, Any]) -> None:  # channels -> channel: two $refs deep
    next(iter(d["channels"].values()))["address"] = 42


def _action_of_asyncapi_2(d: dict[str, Any]) -> None:
    next(iter(d["operations"].values()))["action"] = "publish"


def _headers_not_a_schema(d: dict[str, Any]) -> None:
    next(iter(d["components"]["messages"].values()))["headers"]["type"] = 5


@pytest.mark.parametrize(
    "breakage",
    [
        _no_info,
        _info_without_version,
        _address_not_a_string,
        _action_of_asyncapi_2,
        _headers_not_a_schema,
    ],
)
def test_the_validator_rejects_a_broken_document(
    validator: Draft7Validator, doc: dict[str, Any], breakage: Callable[[dict[str, Any]], None]
) -> None:
    broken = copy.deepcopy(doc)
    breakage(broken)
    assert _errors(validator, broken), f"{breakage.__name__} was not detected"


def test_every_contract_is_a_message_on_the_channel_of_its_stream(doc: dict[str, Any]) -> None:
    models = load("schemas")
    assert models, "no contracts registered"
    messages = doc["components"]["messages"]
    assert set(messages) == {m.__contract__.event_type for m in models}
    addresses = {name: _key(channel) for name, channel in doc["channels"].items()}
    assert sorted(addresses.values()) == sorted({m.__contract__.stream for m in models})
    for model in models:
        info = model.__contract__
        message = messages[info.event_type]
        assert addresses[info.aggregate] == info.stream
        assert doc["channels"][info.aggregate]["messages"][info.event_type] == {
            "$ref": f"#/components/messages/{info.event_type}"
        }
        assert message["x-simpul-owner"] == info.owner
        assert message["x-simpul-classification"] == info.classification.value
        assert message["contentType"] == "application/json"
        assert set(message["payload"]["properties"]) == set(model.model_json_schema()["properties"])


def _key(channel: dict[str, Any]) -> str:
    """The Redis key of a channel: its address with its hash tag (the braces are part of it)."""
    (tag,) = channel["parameters"]["hashtag"]["enum"]
    return str(channel["address"]).replace("{hashtag}", tag)


def test_headers_describe_the_cloudevents_fields_of_wire_format_v1(doc: dict[str, Any]) -> None:
    for event_type, message in doc["components"]["messages"].items():
        headers = message["headers"]
        assert set(headers["required"]) == WIRE_REQUIRED
        assert set(headers["properties"]) == WIRE_REQUIRED | WIRE_OPTIONAL | SIGNED_AT
        assert headers["properties"]["type"]["const"] == event_type
        assert headers["properties"]["specversion"]["const"] == "1.0"
        (dataschema,) = headers["properties"]["dataschema"]["examples"]
        assert dataschema.startswith(f"simpul:{event_type.rsplit('.v', 1)[0]}:")
        assert "data" not in headers["properties"]  # the payload


def test_each_producing_department_sends_and_each_service_receives(doc: dict[str, Any]) -> None:
    operations = doc["operations"]
    for model in load("schemas"):
        info = model.__contract__
        send = operations[f"{info.aggregate}.send.{info.owner}"]
        assert send["action"] == "send"
        assert _message_ref(info.aggregate, info.event_type) in send["messages"]
    received = {
        (op["x-simpul-group"], ref["$ref"].rsplit("/", 1)[1])
        for op in operations.values()
        if op["action"] == "receive"
        for ref in op["messages"]
    }
    handled = catalogue.handled(find_services("services"))
    assert received == {(name, t) for name, types in handled.items() for t in types}
    assert ("dinsos", "dukcapil.citizen.died.v1") in received
    assert ("audit", "diskominfo.complaint.received.v1") in received  # on_every: every type


def _message_ref(aggregate: str, event_type: str) -> dict[str, str]:
    return {"$ref": f"#/channels/{aggregate}/messages/{event_type}"}


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _assert_refs_resolve(doc: dict[str, Any]) -> None:
    assert "$defs" not in json.dumps(doc)
    for ref in _refs(doc):
        _resolve(doc, ref)  # KeyError if dangling


def test_every_ref_resolves_within_the_document(doc: dict[str, Any]) -> None:
    _assert_refs_resolve(doc)


class Item(BaseModel):
    sku: str


class Parcel(BaseModel):
    street: str


# Another department's model of the same name.
OtherParcel = create_model("Parcel", __module__="tests.elsewhere", area_m2=(int, ...))


class ItemSold(Contract, event_type="toko.item.sold.v1", register=False):
    """An item was sold."""

    item: Item
    parcel: Parcel


class ItemReturned(
    Contract,
    event_type="toko.item.returned.v2",
    minor=3,
    owner="pasar",
    classification=Classification.PUBLIC,
    register=False,
):
    item: Item
    parcel: OtherParcel


class LandSold(Contract, event_type="bpn.land.sold.v1", register=False):
    parcel: Parcel


def test_any_set_of_contracts_and_services(validator: Draft7Validator) -> None:
    """Shared and clashing nested models, two owners on one stream, a model without a doc."""
    shop = Service("shop")
    audit = Service("audit")

    @shop.on(ItemSold)
    @audit.on(ItemReturned)
    @audit.on(LandSold)
    async def handle(event: Contract) -> None: ...

    doc = asyncapi.document([LandSold, ItemSold, ItemReturned], [shop, audit])
    assert _errors(validator, doc) == []
    _assert_refs_resolve(doc)
    assert list(doc["channels"]) == ["bpn.land", "toko.item"]
    assert sorted(doc["operations"]) == [
        "bpn.land.receive.audit",
        "bpn.land.send.bpn",
        "toko.item.receive.audit",
        "toko.item.receive.shop",
        "toko.item.send.pasar",
        "toko.item.send.toko",
    ]
    schemas = doc["components"]["schemas"]
    assert len([s for s in schemas.values() if s["title"] == "Parcel"]) == 2
    assert "Item" in schemas
    assert not {"ItemSold", "ItemReturned", "LandSold"} & set(schemas)  # inlined as payloads
    returned = doc["components"]["messages"]["toko.item.returned.v2"]
    assert returned["headers"]["properties"]["dataschema"]["examples"] == [
        "simpul:toko.item.returned:2.3"
    ]
    assert returned["x-simpul-owner"] == "pasar"
    assert "summary" not in returned
    assert asyncapi.render(doc) == asyncapi.render(
        asyncapi.document([ItemReturned, ItemSold, LandSold], [audit, shop])
    )


class DialRead(Contract, event_type="test.dial.read.v1", partitions=4, register=False):
    dial: str


def test_a_partitioned_aggregate_is_one_channel_with_its_partition_as_a_parameter(
    validator: Draft7Validator,
) -> None:
    doc = asyncapi.document([DialRead], [])
    assert _errors(validator, doc) == []
    channel = doc["channels"]["test.dial"]
    assert channel["address"] == "simpul:{hashtag}"
    assert channel["parameters"]["hashtag"]["enum"] == [
        "{test.dial.p0}",
        "{test.dial.p1}",
        "{test.dial.p2}",
        "{test.dial.p3}",
    ]
    assert "CRC-32" in channel["description"]


def test_committed_document_is_fresh() -> None:
    assert COMMITTED.exists(), "docs/asyncapi.json is missing: run `simpul contracts docs`"
    assert COMMITTED.read_text() == docs_files()["asyncapi.json"], (
        "docs/asyncapi.json is stale: run `simpul contracts docs` and commit the result"
    )
