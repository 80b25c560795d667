"""The AsyncAPI 3.0.0 description of the whole bus (docs/asyncapi.json).

One channel per stream, one message per contract, a ``send`` operation per producing department
and channel, a ``receive`` operation per consuming service and channel. Messages follow wire
format v1 (docs/wire-format.md): the CloudEvents attributes are stream fields, described as the
message ``headers``; the ``data`` field is the ``payload``. FastStream's generator describes its
own format (one ``__data__`` field), so the document is built here. Sorted, no timestamps.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from importlib import metadata
from typing import Any

from pydantic.json_schema import models_json_schema

from bus.contracts import Contract, ContractInfo
from bus.service import Service
from bus.specs.catalogue import Approvals, handled

VERSION = "3.0.0"
CONTENT_TYPE = "application/json"
SERVER = "redis"
SCHEMAS = "#/components/schemas/"
REQUIRED = ("specversion", "id", "source", "type", "time", "datacontenttype", "dataschema")
_TEXT = {"type": "string"}
_OPTIONAL = {
    "subject": "The aggregate key, pseudonymous: never a raw NIK or KK number.",
    "correlationid": "Id of the first event of a chain of events across departments.",
    "causationid": "Id of the event that directly caused this one.",
    "traceparent": "W3C Trace Context traceparent.",
    "signature": "Ed25519 signature (base64) over the canonical bytes of every other field "
    "(wire-format section 10); verified before any handler by services with a keyring.",
    "signer": "Key id of the producer's signing key, listed in the topology's public keys.",
}


def document(
    models: Sequence[type[Contract]],
    services: Iterable[Service],
    approvals: Approvals | None = None,
) -> dict[str, Any]:
    """The AsyncAPI document of these contracts and of the services consuming them;
    ``approvals`` (event type -> (group, approved fields or None), from the topology) adds
    ``x-simpul-approved-fields`` to each receive operation: what its inbox carries."""
    models = sorted(models, key=lambda m: m.__contract__.event_type)
    payloads, schemas = _schemas(models)
    streams: dict[str, list[ContractInfo]] = {}
    for model in models:
        streams.setdefault(model.__contract__.aggregate, []).append(model.__contract__)
    streams = dict(sorted(streams.items()))
    return {
        "asyncapi": VERSION,
        "info": _info(),
        "defaultContentType": CONTENT_TYPE,
        "servers": {SERVER: _server()},
        "channels": {aggregate: _channel(infos) for aggregate, infos in streams.items()},
        "operations": _operations(streams, handled(services), approvals or {}),
        "components": {
            **({"schemas": schemas} if schemas else {}),
            "messages": {m.__contract__.event_type: _message(m, payloads[m]) for m in models},
        },
    }


def render(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def _info() -> dict[str, Any]:
    try:
        version = metadata.version("simpul")
    except metadata.PackageNotFoundError:
        version = "1"
    return {
        "title": "Simpul",
        "version": version,
        "description": "The event bus of Kota Malang's departments on Redis Streams. Each stream "
        "entry is one CloudEvents 1.0 event, one field per attribute (the message headers) "
        "plus `data`, the JSON payload: wire format v1, docs/wire-format.md.",
    }


def _server() -> dict[str, Any]:
    return {
        "host": "localhost:6379",
        "protocol": "redis",
        "title": "Redis",
        "description": "Placeholder for the deployment's Redis (6.2 or later; SIMPUL_REDIS_URL).",
    }


def _schemas(models: Sequence[type[Contract]]) -> tuple[dict[Any, Any], dict[str, Any]]:
    """Each contract's JSON Schema, and the schemas they share, refs into components.schemas.

    Names that clash (two ``Address`` models of different modules) are made unique by pydantic.
    A contract's own schema is its message's payload, and in components only if referenced.
    """
    refs, top = models_json_schema(
        [(m, "validation") for m in models], ref_template=SCHEMAS + "{model}"
    )
    defs: dict[str, Any] = top.get("$defs", {})
    roots = {m: refs[(m, "validation")]["$ref"].removeprefix(SCHEMAS) for m in models}
    used = set(re.findall(rf'"{re.escape(SCHEMAS)}([^"]+)"', json.dumps(defs)))
    shared = {name: schema for name, schema in sorted(defs.items()) if name in used}
    return {m: defs[name] for m, name in roots.items()}, shared


def _channel(infos: Sequence[ContractInfo]) -> dict[str, Any]:
    info = infos[0]
    if info.partitions > 1:  # one channel for the aggregate; its partition is a parameter
        address = f"simpul:{{{info.aggregate}.p{{partition}}}}"
        about = (
            f"{info.partitions} Redis streams `simpul:{{{info.aggregate}.p<k>}}`, k = CRC-32 of "
            f"the event's subject modulo {info.partitions} (wire format, section 3; the braces "
            "are each partition's Redis Cluster hash tag, part of the key)."
        )
    else:
        address = info.stream
        about = (
            f"The Redis stream `{info.stream}` (the braces are its Redis Cluster hash tag, part "
            "of the key, not a parameter)."
        )
    parameters = (
        {
            "parameters": {
                "partition": {
                    "enum": [str(k) for k in range(info.partitions)],
                    "description": "The partition: CRC-32 of the subject (UTF-8) modulo "
                    f"{info.partitions}.",
                }
            }
        }
        if info.partitions > 1
        else {}
    )
    return {
        "address": address,
        **parameters,
        "title": info.aggregate,
        "description": about,
        "messages": {
            i.event_type: {"$ref": f"#/components/messages/{i.event_type}"} for i in infos
        },
    }


def _operations(
    streams: dict[str, list[ContractInfo]],
    handlers: dict[str, set[str]],
    approvals: Approvals,
) -> dict[str, Any]:
    operations: dict[str, Any] = {}
    for aggregate, infos in streams.items():
        for owner in sorted({i.owner for i in infos}):
            sent = [i for i in infos if i.owner == owner]
            summary = f"{owner} publishes to {aggregate}."
            operations[f"{aggregate}.send.{owner}"] = _operation("send", aggregate, sent, summary)
        for service, types in handlers.items():
            if received := [i for i in infos if i.event_type in types]:
                summary = f"{service} consumes {aggregate} (consumer group {service})."
                op = _operation("receive", aggregate, received, summary)
                op["x-simpul-group"] = service
                if fields := _approved_fields(service, received, approvals):
                    op["x-simpul-approved-fields"] = fields
                operations[f"{aggregate}.receive.{service}"] = op
    return operations


def _approved_fields(
    group: str,
    infos: Sequence[ContractInfo],
    approvals: Approvals,
) -> dict[str, Any]:
    """Event type -> the data fields the group's subscription carries (``"all"``: every one)."""
    found: dict[str, Any] = {}
    for info in infos:
        for who, fields in approvals.get(info.event_type, ()):
            if who == group:
                found[info.event_type] = "all" if fields is None else sorted(fields)
    return found


def _operation(
    action: str, aggregate: str, infos: Sequence[ContractInfo], summary: str
) -> dict[str, Any]:
    return {
        "action": action,
        "channel": {"$ref": f"#/channels/{aggregate}"},
        "summary": summary,
        "messages": [{"$ref": f"#/channels/{aggregate}/messages/{i.event_type}"} for i in infos],
    }


def _message(model: type[Contract], payload: dict[str, Any]) -> dict[str, Any]:
    info = model.__contract__
    summary = (model.__doc__ or "").strip().split("\n")[0]
    return {
        "name": info.event_type,
        "title": model.__name__,
        **({"summary": summary} if summary else {}),
        "contentType": CONTENT_TYPE,
        "headers": headers(info),
        "payload": payload,
        "correlationId": {"location": "$message.header#/correlationid"},
        "x-simpul-owner": info.owner,
        "x-simpul-classification": info.classification.value,
        "x-simpul-personal-fields": sorted(info.personal_fields),
        "x-simpul-personal-subject": info.personal_subject,
    }


def headers(info: ContractInfo) -> dict[str, Any]:
    """The CloudEvents attributes of wire format v1, as stream fields of this event type."""
    properties: dict[str, Any] = {
        "specversion": {**_TEXT, "const": "1.0"},
        "id": {**_TEXT, "minLength": 1, "maxLength": 256, "description": "Unique in the stream."},
        "source": {**_TEXT, "minLength": 1, "description": "URN of the producing system."},
        "type": {**_TEXT, "const": info.event_type},
        "time": {**_TEXT, "format": "date-time", "description": "RFC 3339, with an offset."},
        "datacontenttype": {**_TEXT, "const": CONTENT_TYPE},
        "dataschema": {**_TEXT, "const": info.dataschema},
        **{name: {**_TEXT, "description": text} for name, text in _OPTIONAL.items()},
    }
    return {
        "type": "object",
        "required": list(REQUIRED),
        "properties": properties,
        "patternProperties": {"^[a-z0-9]{1,20}$": {**_TEXT, "description": "Extension."}},
        "additionalProperties": False,
    }
