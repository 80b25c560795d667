"""docs/asyncapi.json against a running routed bus: every principal publishes every valid example
of its types into its intake, the router admits and forwards them, and every entry on every
intake, department stream and inbox is valid against the message its channel lists."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jsonschema import Draft7Validator, FormatChecker
from redis.asyncio import Redis
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from bus import Publisher, keys
from bus.cli.contracts import docs_files
from bus.contracts import default_registry
from bus.testing import wait_until
from tests.bus.routed import ADMIN, ROOT, TOPOLOGY, RoutedServer, running, signer

EXAMPLES = ROOT / "schemas" / "examples"
DOC: dict[str, Any] = json.loads(docs_files()["asyncapi.json"])
DOC_URI = "urn:simpul:asyncapi"
REGISTRY = Registry().with_resource(DOC_URI, Resource(contents=DOC, specification=DRAFT7))


def _examples(event_type: str) -> list[Path]:
    return sorted((EXAMPLES / event_type).glob("valid-*.json"))


def _channels_by_key() -> dict[str, dict[str, Any]]:
    """Redis key -> its channel: the address with each value of its ``hashtag`` parameter
    (an address without parameters is the key itself)."""
    found = {}
    for channel in DOC["channels"].values():
        tags = channel.get("parameters", {}).get("hashtag", {}).get("enum", ["{hashtag}"])
        found.update({channel["address"].replace("{hashtag}", tag): channel for tag in tags})
    return found


def _problems(channels: dict[str, dict[str, Any]], key: str, fields: dict[str, str]) -> list[str]:
    """What the message of the entry's type, among those of its key's channel, finds wrong
    with it."""
    assert key in channels, f"{key} is no channel of docs/asyncapi.json"
    channel = channels[key]
    refs = [ref["$ref"].removeprefix("#") for ref in channel["messages"].values()]
    event_type = fields["type"]
    (pointer,) = [r for r in refs if r.rsplit("/", 1)[1].endswith(event_type)]
    headers = {name: value for name, value in fields.items() if name != "data"}
    problems = []
    for part, instance in (("headers", headers), ("payload", json.loads(fields["data"]))):
        validator = Draft7Validator(
            {"$ref": f"{DOC_URI}#{pointer}/{part}"},
            registry=REGISTRY,
            format_checker=FormatChecker(),
        )
        problems += [
            f"{part} {list(e.absolute_path)}: {e.message[:160]}"
            for e in validator.iter_errors(instance)
        ]
    return problems


async def _entries(admin: Redis, key: str) -> list[dict[str, str]]:
    return [
        {name.decode(): value.decode() for name, value in fields.items()}
        for _, fields in await admin.xrange(key)
    ]


async def _publish_every_example(routed: RoutedServer) -> dict[str, int]:
    """Each principal publishes each valid example of each type it may publish; type -> count."""
    published: dict[str, int] = {}
    for who in TOPOLOGY.publishers():
        redis = routed.connect(who.principal)
        publisher = Publisher(
            redis,
            source=f"urn:malangkota:test:{who.principal}",
            signer=signer(who.principal),
            intake=who.principal,
        )
        for event_type in who.publishes:
            model = default_registry.resolve(event_type)
            for path in _examples(event_type):
                event = model.parse(json.loads(path.read_text(encoding="utf-8")))
                subject = "s-1" if model.__contract__.partitions > 1 else None
                await publisher.publish(event, subject=subject)
                published[event_type] = published.get(event_type, 0) + 1
        await redis.aclose()
    return published


async def test_every_entry_of_the_routed_bus_is_valid_against_its_channels_message(
    routed: RoutedServer,
) -> None:
    admin = routed.connect(ADMIN)
    channels = _channels_by_key()
    published = await _publish_every_example(routed)
    intakes = [keys.intake(who.principal) for who in TOPOLOGY.publishers()]
    checked = 0
    for intake in intakes:  # before the router settles (and removes) them
        for fields in await _entries(admin, intake):
            assert _problems(channels, intake, fields) == [], (intake, fields["type"])
            checked += 1
    assert checked == sum(published.values())

    inboxes: dict[str, int] = {}
    for service in TOPOLOGY.services:
        for sub in service.subscriptions:
            key = keys.inbox(keys.stream(keys.aggregate_of(sub.type)), service.group)
            if sub.type in published:  # some types no principal of the topology publishes
                inboxes[key] = inboxes.get(key, 0) + published[sub.type]
    streams = {keys.stream(keys.aggregate_of(t)) for t in published}

    async def settled() -> bool:
        lengths = [await admin.xlen(key) for key in inboxes]
        return lengths == list(inboxes.values()) and all([not await admin.xlen(i) for i in intakes])

    async with running(routed.router()):
        await wait_until(settled, timeout=30)
    for key in sorted(streams | set(inboxes)):
        entries = await _entries(admin, key)
        assert entries, key
        for fields in entries:
            assert _problems(channels, key, fields) == [], (key, fields["type"])
            checked += 1
    assert not [
        i
        for i in intakes
        if await admin.exists(keys.intake_dead_letters(i.removeprefix(keys.INTAKES)[1:-1]))
    ]
    assert checked > sum(published.values()) * 2
    await admin.aclose()
