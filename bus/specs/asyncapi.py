"""The AsyncAPI 3.0.0 description of the whole bus (docs/asyncapi.json).

One channel per stream, one message per contract, a ``send`` operation per producing department
and channel, a ``receive`` operation per consuming service and channel. Messages follow wire
format v1 (docs/wire-format.md): the CloudEvents attributes are stream fields, described as the
message ``headers``; the ``data`` field is the ``payload``. FastStream's generator describes its
own format (one ``__data__`` field), so the document is built here. Sorted, no timestamps.

With the topology's approvals (routed delivery, decisions 0011 and 0012) a service receives from
its inboxes, not from the department streams: one channel per inbox, whose messages carry the
subscription's projection (only the approved fields, re-signed by the router, naming the
original); with its producers, each publishing principal sends to its own intake channel.

The schemas are read as AsyncAPI's default schema format, a superset of JSON Schema draft-07,
in which a ``$ref``'s sibling keywords are ignored: pydantic writes draft 2020-12, where they
apply, so a ``$ref`` with siblings is moved into an ``allOf``. A Redis key's braces (its Cluster
hash tag) would read as a channel address expression, so each channel's tag is a parameter.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from importlib import metadata
from typing import Any

from pydantic.json_schema import models_json_schema

from bus import keys
from bus.contracts import Contract, ContractInfo
from bus.projection import FORWARDING_FIELDS, ORIGIN_DIGEST, ORIGIN_ENTRY, ORIGIN_SIGNER
from bus.service import Service
from bus.signing import KEY_ID, SIGNATURE, SIGNED_AT
from bus.specs.catalogue import Approvals, handled

VERSION = "3.0.0"
CONTENT_TYPE = "application/json"
SERVER = "redis"
SCHEMAS = "#/components/schemas/"
REQUIRED = ("specversion", "id", "source", "type", "time", "datacontenttype", "dataschema")
_TEXT = {"type": "string"}
# The decoder's RFC 3339 (wire format 2.2): upper-case T and Z, seconds, no leap second.
TIME_PATTERN = (
    "^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
    "([.][0-9]+)?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
)
SIGNATURE_PATTERN = "^[A-Za-z0-9+/]{86}==$"  # standard base64 of the 64 signature bytes
_SIGNATURE_FIELDS = {
    SIGNATURE: {
        **_TEXT,
        "pattern": SIGNATURE_PATTERN,
        "description": "Ed25519 signature, standard base64 of 64 bytes, over the canonical bytes "
        "of every other field (wire format, section 10.2); verified before any handler by "
        "services with a keyring.",
    },
    "signer": {
        **_TEXT,
        "pattern": KEY_ID,
        "description": "Key id of the signing key, listed under `keys:` of its principal in "
        "the topology (wire format, section 10.1).",
    },
    SIGNED_AT: {
        **_TEXT,
        "pattern": TIME_PATTERN,
        "description": "Extension attribute: when the key's owner signed, RFC 3339 with an "
        "offset (wire format, section 10.1).",
    },
}
_FORWARDING = {
    ORIGIN_ENTRY: {
        **_TEXT,
        "pattern": "^[0-9]+-[0-9]+$",
        "description": "The original's entry id on its department stream.",
    },
    ORIGIN_SIGNER: {
        **_TEXT,
        "description": "The original's `signer`: the producer's key id (empty if unsigned).",
    },
    ORIGIN_DIGEST: {
        **_TEXT,
        "pattern": "^[0-9a-f]{64}$",
        "description": "Lower-case hex SHA-256 of the original's signed bytes (section 10.2).",
    },
}
_OPTIONAL = {
    "subject": "The aggregate key, pseudonymous: never a raw NIK or KK number.",
    "correlationid": "Id of the first event of a chain of events across departments.",
    "causationid": "Id of the event that directly caused this one.",
    "traceparent": "W3C Trace Context traceparent.",
}
# Principal -> the event types it may publish (the topology's producers and publishing services).
Intakes = Mapping[str, Sequence[str]]


def document(
    models: Sequence[type[Contract]],
    services: Iterable[Service],
    approvals: Approvals | None = None,
    intakes: Intakes | None = None,
) -> dict[str, Any]:
    """The AsyncAPI document of these contracts and of the services consuming them.

    ``approvals`` (event type -> (group, approved fields or None), from the topology) adds
    ``x-simpul-approved-fields`` to each receive operation. ``intakes`` (routed delivery:
    principal -> the types it may publish) adds each principal's intake and moves each approved
    subscription's receive operation to its inbox, whose messages are the projections. Without
    it, services read the department streams (direct delivery).
    """
    models = sorted(models, key=lambda m: m.__contract__.event_type)
    payloads, schemas = _schemas(models)
    streams: dict[str, list[ContractInfo]] = {}
    for model in models:
        streams.setdefault(model.__contract__.aggregate, []).append(model.__contract__)
    streams = dict(sorted(streams.items()))
    messages = {m.__contract__.event_type: _message(m, payloads[m]) for m in models}
    channels = {aggregate: _channel(infos) for aggregate, infos in streams.items()}
    operations = _operations(streams, handled(services), approvals or {})
    routed = _inboxes(streams, operations, payloads, models) if intakes is not None else ()
    for name, channel, inbox_messages in routed:
        channels[name] = channel
        messages.update(inbox_messages)
    for principal, types in sorted((intakes or {}).items()):
        infos = [i for i in (m.__contract__ for m in models) if i.event_type in types]
        if infos:
            channels[f"intake.{principal}"] = _intake_channel(principal, infos)
            operations[f"intake.{principal}.send"] = _operation(
                "send", f"intake.{principal}", infos, f"{principal} publishes to its intake."
            )
    return {
        "asyncapi": VERSION,
        "info": _info(),
        "defaultContentType": CONTENT_TYPE,
        "servers": {SERVER: _server()},
        "channels": dict(sorted(channels.items())),
        "operations": dict(sorted(operations.items())),
        "components": {
            **({"schemas": schemas} if schemas else {}),
            "messages": dict(sorted(messages.items())),
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
        "plus `data`, the JSON payload: wire format v1, docs/wire-format.md. A channel's "
        "address is a Redis key; its `hashtag` parameter is the key's Redis Cluster hash tag, "
        "braces included, so each value of its `enum` (one per partition of a partitioned "
        "aggregate) completes the key. On the routed bus a producer writes its intake (channel "
        "`intake.<principal>`) and a service reads its inboxes (`inbox.<group>.<aggregate>`), "
        "whose messages are its subscription's projections. Payload schemas "
        "are a producer's: a consumer drops every `additionalProperties: false` (a newer minor "
        "version may add optional fields). Some rules are beyond these schemas (a NIK's birth "
        "date and province, a kelurahan's existence, dates not in the future, rules between "
        "fields, whole rupiah written without a fraction): the contract check applies them, and "
        "schemas/examples/<type>/invalid-*.json are conformance vectors for each.",
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
    defs: dict[str, Any] = draft7(top.get("$defs", {}))
    roots = {m: refs[(m, "validation")]["$ref"].removeprefix(SCHEMAS) for m in models}
    used = set(re.findall(rf'"{re.escape(SCHEMAS)}([^"]+)"', json.dumps(defs)))
    shared = {name: schema for name, schema in sorted(defs.items()) if name in used}
    return {m: defs[name] for m, name in roots.items()}, shared


def draft7(schema: Any) -> Any:
    """``schema`` (JSON Schema 2020-12) with the same meaning in draft-07: a ``$ref`` with
    sibling keywords (pydantic narrows a shared type there, e.g. an ``Identifier`` whose scheme
    may only be nik or nib) becomes an ``allOf`` holding the ``$ref``, beside the siblings."""
    if isinstance(schema, list):
        return [draft7(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {name: draft7(value) for name, value in schema.items()}
    if "$ref" in out and len(out) > 1:
        ref = out.pop("$ref")
        out["allOf"] = [{"$ref": ref}, *out.get("allOf", [])]
    return out


def _hashtag(tags: Sequence[str], about: str) -> dict[str, Any]:
    """The parameter holding a key's hash tag, braces included (a key has no other form)."""
    return {
        "hashtag": {
            "enum": list(tags),
            **({"default": tags[0]} if len(tags) == 1 else {}),
            "description": about,
        }
    }


def _tags(info: ContractInfo) -> list[str]:
    """The hash tags of the aggregate's stream keys: ``{dukcapil.citizen}``, or one per
    partition."""
    return [key.removeprefix(f"{keys.PREFIX}:") for key in info.streams]


def _channel(infos: Sequence[ContractInfo]) -> dict[str, Any]:
    info = infos[0]
    tags = _tags(info)
    if info.partitions > 1:
        about = (
            f"{info.partitions} Redis streams `simpul:{{{info.aggregate}.p<k>}}`, k = CRC-32 of "
            f"the event's subject (UTF-8) modulo {info.partitions} (wire format, section 3)."
        )
        tag_about = "The partition's hash tag, braces included: k = CRC-32 of the subject "
        tag_about += f"(UTF-8) modulo {info.partitions}."
    else:
        about = f"The Redis stream `{info.stream}` (wire format, section 3)."
        tag_about = "The stream's Redis Cluster hash tag, braces included."
    return {
        "address": f"{keys.PREFIX}:{{hashtag}}",
        "parameters": _hashtag(tags, tag_about),
        "title": info.aggregate,
        "description": about + " On the routed bus only the router writes it (section 3.1).",
        "messages": {
            i.event_type: {"$ref": f"#/components/messages/{i.event_type}"} for i in infos
        },
    }


def _intake_channel(principal: str, infos: Sequence[ContractInfo]) -> dict[str, Any]:
    key = keys.intake(principal)
    return {
        "address": f"{keys.INTAKES}{{hashtag}}",
        "parameters": _hashtag(
            [key.removeprefix(keys.INTAKES)], "The intake's hash tag, braces included."
        ),
        "title": f"intake {principal}",
        "description": f"The Redis stream `{key}`: what principal {principal} publishes, signed "
        f"by one of its keys; the router admits each event onto its department stream or "
        f"refuses it into `{keys.intake_dead_letters(principal)}` with the reason (wire "
        "format, section 3.1).",
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


def _inboxes(
    streams: dict[str, list[ContractInfo]],
    operations: dict[str, Any],
    payloads: dict[Any, Any],
    models: Sequence[type[Contract]],
) -> Iterable[tuple[str, dict[str, Any], dict[str, Any]]]:
    """Each approved subscription's inbox: (channel name, channel, its projected messages).

    Moves the subscription's receive operation onto the inbox channel: on the routed bus that
    is what the service reads; each type's message there is the original when the subscription
    sees every field, else the projection (:func:`_projected`)."""
    by_type = {m.__contract__.event_type: m for m in models}
    for aggregate, infos in streams.items():
        for op in operations.values():
            approved = op.get("x-simpul-approved-fields")
            if op["action"] != "receive" or op["channel"]["$ref"] != f"#/channels/{aggregate}":
                continue
            if not approved:
                continue
            group, info = op["x-simpul-group"], infos[0]
            name = f"inbox.{group}.{aggregate}"
            refs, messages = {}, {}
            for event_type, fields in sorted(approved.items()):
                if fields == "all":
                    refs[event_type] = {"$ref": f"#/components/messages/{event_type}"}
                    continue
                model = by_type[event_type]
                projected = f"inbox.{group}.{event_type}"
                messages[projected] = _projected(model, payloads[model], group, set(fields))
                refs[projected] = {"$ref": f"#/components/messages/{projected}"}
            inboxes = [keys.inbox(stream, group) for stream in info.streams]
            channel = {
                "address": f"{keys.INBOXES}{{hashtag}}",
                "parameters": _hashtag(
                    [k.removeprefix(keys.INBOXES) for k in inboxes],
                    "The inbox's hash tag, braces included: `{<group>/<stream's tag inside "
                    "its braces>}`.",
                ),
                "title": f"inbox {group}/{aggregate}",
                "description": f"The Redis stream{'s' if len(inboxes) > 1 else ''} "
                + ", ".join(f"`{k}`" for k in inboxes)
                + f": subscription {group}'s events of `{aggregate}`, written by the router "
                "alone (wire format, sections 3.1 and 11). The consumer group is "
                f"`{group}`; its dead letters are `<inbox>:dlq:{group}`.",
                "messages": refs,
            }
            op["channel"] = {"$ref": f"#/channels/{name}"}
            op["messages"] = [{"$ref": f"#/channels/{name}/messages/{m}"} for m in refs]
            yield name, channel, messages


def _projected(
    model: type[Contract], payload: dict[str, Any], group: str, fields: set[str]
) -> dict[str, Any]:
    """The message of ``model`` as subscription ``group`` receives it: only the approved
    top-level fields (a withheld field is absent, so not required), re-signed by the router
    and naming the original (wire format, section 11.2)."""
    info = model.__contract__
    message = _message(model, payload)
    properties = {k: v for k, v in payload["properties"].items() if k in fields}
    message["name"] = f"inbox.{group}.{info.event_type}"
    message["title"] = f"{model.__name__} as {group} receives it"
    withheld = set(payload["properties"]) - fields
    message["payload"] = {
        **payload,
        "properties": properties,
        "required": [name for name in payload.get("required", ()) if name in fields],
    }
    rules = [rule for rule in payload.get("allOf", ()) if not _mentions(rule, withheld)]
    message["payload"].pop("allOf", None)
    message["payload"].update({"allOf": rules} if rules else {})
    message["headers"] = headers(info, forwarded=True)
    message["x-simpul-withheld-fields"] = sorted(withheld)
    message["x-simpul-personal-fields"] = sorted(
        p for p in info.personal_fields if p.split(".", 1)[0] in fields
    )
    return message


def _mentions(rule: Any, names: set[str]) -> bool:
    """Whether a rule between fields (``if``/``then`` ...) names one of ``names``: a projection
    without that field drops the rule, which it could neither meet nor test."""
    if isinstance(rule, list):
        return any(_mentions(item, names) for item in rule)
    if not isinstance(rule, dict):
        return False
    named = set(rule.get("properties", ())) | set(rule.get("required", ()))
    return bool(named & names) or any(_mentions(value, names) for value in rule.values())


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
    action: str, channel: str, infos: Sequence[ContractInfo], summary: str
) -> dict[str, Any]:
    return {
        "action": action,
        "channel": {"$ref": f"#/channels/{channel}"},
        "summary": summary,
        "messages": [{"$ref": f"#/channels/{channel}/messages/{i.event_type}"} for i in infos],
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


def headers(info: ContractInfo, *, forwarded: bool = False) -> dict[str, Any]:
    """The CloudEvents attributes of wire format v1, as stream fields of this event type;
    ``forwarded``: of an inbox entry the router projected and signed (section 11.2)."""
    name, major = info.event_type.rsplit(".v", 1)
    properties: dict[str, Any] = {
        "specversion": {**_TEXT, "const": "1.0"},
        "id": {**_TEXT, "minLength": 1, "maxLength": 256, "description": "Unique in the stream."},
        "source": {**_TEXT, "minLength": 1, "description": "URN of the producing system."},
        "type": {**_TEXT, "const": info.event_type},
        "time": {
            **_TEXT,
            "format": "date-time",
            "pattern": TIME_PATTERN,
            "description": "When the source recorded the fact: RFC 3339 with an offset, upper-case "
            "T and Z, seconds, no leap second (wire format, section 2.2).",
        },
        "datacontenttype": {**_TEXT, "const": CONTENT_TYPE},
        "dataschema": {
            **_TEXT,
            "pattern": f"^simpul:{name.replace('.', '[.]')}:{major}[.][0-9]+$",
            "examples": [info.dataschema],
            "description": f"The contract version the producer wrote, `{info.dataschema}` here: "
            f"every minor version of major {major} is readable (wire format, section 2.3).",
        },
        **{name: {**_TEXT, "description": text} for name, text in _OPTIONAL.items()},
        **_SIGNATURE_FIELDS,
        **(_FORWARDING if forwarded else {}),
    }
    required = [
        *REQUIRED,
        *(("subject",) if info.partitions > 1 else ()),  # it picks the partition (section 3)
        *(_SIGNATURE_FIELDS if forwarded else ()),
        *(FORWARDING_FIELDS if forwarded else ()),
    ]
    return {
        "type": "object",
        "required": required,
        "properties": properties,
        "patternProperties": {"^[a-z0-9]{1,20}$": {**_TEXT, "description": "Extension."}},
        "additionalProperties": False,
    }
