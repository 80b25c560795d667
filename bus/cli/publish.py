"""``simpul publish TYPE --data JSON``: one event by hand, as a producer would publish it.

For a developer trying a service, or an operator replaying a fact an application missed. The
payload is validated against the contract (the error names each bad field, never its value:
the data is often personal), the event is signed when the environment configures a key
(``SIMPUL_SIGNING_KEY_FILE``, as for any publisher), and publishing is idempotent by ``--id``.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from redis.asyncio import Redis
from rich.console import Console

from bus.cli.common import fail, run_with_redis
from bus.cli.contracts import load
from bus.contracts import Contract, default_registry
from bus.errors import ConfigurationError, SimpulError, UnknownEventType
from bus.logging import configure, get_logger
from bus.publisher import Publisher
from bus.settings import Settings

_err = Console(stderr=True, soft_wrap=True)
_log = get_logger("bus.cli")


def publish(
    event_type: Annotated[str, typer.Argument(help="e.g. dukcapil.citizen.died.v1")],
    *,
    data: Annotated[str, typer.Option("--data", help="the payload, a JSON object")],
    source: Annotated[
        str | None,
        typer.Option(help="the producer's URN (default: urn:malangkota:<owner>:simpul-cli)"),
    ] = None,
    event_id: Annotated[
        str | None,
        typer.Option("--id", help="event id (default: a new UUID); the same id publishes once"),
    ] = None,
    subject: Annotated[
        str | None, typer.Option(help="subject: the partition key of a partitioned aggregate")
    ] = None,
    package: Annotated[str, typer.Option("--schemas", help="package of the contracts")] = "schemas",
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Publish one event: validated against its contract, signed if a key is configured."""
    settings = Settings.load()
    configure(settings.log_level, "json" if as_json else settings.log_format)
    try:
        model = _contract(event_type, package)
        payload = model.parse(_payload(data))
    except SimpulError as exc:
        raise fail(_err, exc) from None
    urn = source or f"urn:malangkota:{model.__contract__.owner}:simpul-cli"

    async def work(redis: Redis) -> dict[str, Any]:
        publisher = Publisher(redis, source=urn)
        done = await publisher.publish(payload, id=event_id, subject=subject)
        signer = publisher.signer.key_id if publisher.signer else None
        _log.info(
            "event_published_by_hand",
            type=event_type,
            event_id=done.event_id,
            stream=done.stream,
            duplicate=done.duplicate,
            signer=signer,
        )
        return {
            "type": event_type,
            "event_id": done.event_id,
            "stream": done.stream,
            "entry_id": done.entry_id,
            "duplicate": done.duplicate,
            "source": urn,
            "signer": signer,
        }

    result = run_with_redis(_err, work)
    if as_json:
        print(json.dumps(result, indent=2))
        return
    signed = f"signed by {result['signer']}" if result["signer"] else "not signed"
    if result["duplicate"]:
        _err.print(
            f"{event_type} {result['event_id']} was already on {result['stream']}: "
            "nothing published (the same id publishes once)"
        )
    else:
        _err.print(
            f"published {event_type} {result['event_id']} to {result['stream']} "
            f"(entry {result['entry_id']}, {signed})"
        )


def _contract(event_type: str, package: str) -> type[Contract]:
    load(package)
    try:
        return default_registry.resolve(event_type)
    except UnknownEventType as exc:
        raise ConfigurationError(f"{exc}; `simpul contracts list` shows the types") from None


def _payload(data: str) -> dict[str, Any]:
    """The --data JSON. A parse error says where, never what: the text may be personal data."""
    try:
        payload = json.loads(data)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        raise ConfigurationError(f"--data is not JSON ({exc.msg} at {where})") from None
    if not isinstance(payload, dict):
        raise ConfigurationError(f"--data must be a JSON object, got a {type(payload).__name__}")
    return payload
