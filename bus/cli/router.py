"""``simpul router ...``: run the router (decision 0011) and its operator commands.

simpul router run                        # one replica; run several for availability
simpul router ahead                      # streams whose last id is ahead of Redis TIME
simpul router reset-intake <principal>   # a fresh intake for a wedged producer (admin)
simpul router migrate                    # shared groups -> inboxes, once (admin)
simpul router backfill <group> <stream>  # a new subscription's inbox from the stream (admin)
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer
from pydantic import Field
from pydantic_settings import SettingsConfigDict
from redis.asyncio import Redis
from rich.console import Console

from bus import keys
from bus.access.topology import Topology, contracts, load_topology
from bus.cli.common import fail, import_from_cwd, run_with_redis
from bus.connection import connect
from bus.contracts import default_registry
from bus.devmaterial import is_dev_key, refuse_dev_keys
from bus.errors import ConfigurationError, SimpulError
from bus.logging import configure
from bus.router import Router, RouterConfig, ahead_of_time, backfill, migrate, reset_intake
from bus.router.common import MAX_INTAKE_BYTES, MAX_REFUSAL_BYTES, MAX_REFUSALS
from bus.settings import ComponentSettings, Settings
from bus.signing import KeyRing, Signer, SignerSettings


class RouterSettings(ComponentSettings):
    """The router's own knobs (``SIMPUL_ROUTER_*``)."""

    model_config = SettingsConfigDict(env_prefix="SIMPUL_ROUTER_")
    max_refusals: int = Field(
        default=MAX_REFUSALS,
        ge=1,
        description="refusals kept per intake as evidence, newest first (the oldest go)",
    )
    max_refusal_bytes: int = Field(
        default=MAX_REFUSAL_BYTES,
        ge=1,
        description="bytes of refusals kept per intake (Redis's MEMORY USAGE); the oldest go",
    )
    max_intake_bytes: int = Field(
        default=MAX_INTAKE_BYTES,
        ge=1,
        description="bytes an intake may hold (Redis's MEMORY USAGE); beyond it the router "
        "removes its oldest entries, with a dead letter intake_overflow naming them",
    )


router_app = typer.Typer(
    help="The router: admits producers' intakes, delivers one inbox per subscription.",
    no_args_is_help=True,
)
_out = Console(soft_wrap=True)
_err = Console(stderr=True, soft_wrap=True)

TopologyFile = Annotated[
    Path,
    typer.Option("--topology", envvar="SIMPUL_TOPOLOGY", help="the topology YAML", dir_okay=False),
]
DEFAULT_TOPOLOGY = Path("deploy/topology.yaml")


def _topology(path: Path) -> Topology:
    import_from_cwd()
    topology = load_topology(path, registry=contracts())
    if topology.router is None or not topology.routed:
        raise ConfigurationError(
            f"{path} does not say `delivery: router` (with a router: section): its producers "
            "write the department streams directly, and no router is needed"
        )
    return topology


def _keyring(topology: Topology, settings: Settings) -> KeyRing:
    """The keyring the router judges producers' signatures by: the topology's keys. Also what
    `migrate` and `backfill` verify each department-stream entry with, so that they skip what
    the fan-out withholds (an entry written without admission) instead of signing it as the
    router's own."""
    trusted = topology.signing_keys()
    # The router is the bus's trust anchor: never one a stranger can sign for (decision 0013).
    refuse_dev_keys(
        (k.key_id for k in trusted if is_dev_key(k.public_key)), "the topology's signing_keys"
    )
    # Always verified, whatever SIMPUL_SIGNATURES says: the topology is the router's keyring.
    return KeyRing(
        trusted,
        require_signatures=settings.require_signatures,
        max_age=timedelta(seconds=settings.signature_max_age_s),
        max_skew=timedelta(seconds=settings.signature_max_skew_s),
    )


def _config(settings: Settings) -> RouterConfig:
    own = RouterSettings.load()
    return RouterConfig(
        dedupe_ttl_ms=settings.dedupe_ttl_ms,
        max_refusals=own.max_refusals,
        max_refusal_bytes=own.max_refusal_bytes,
        max_intake_bytes=own.max_intake_bytes,
    )


def _router(redis: Redis, topology: Topology, settings: Settings | None = None) -> Router:
    settings = settings or Settings.load()
    return Router(
        redis,
        topology,
        default_registry,
        keyring=_keyring(topology, settings),
        signer=Signer.from_settings(settings),
        config=_config(settings),
        replica=settings.consumer,
    )


@router_app.command("run")
def run(topology: TopologyFile = DEFAULT_TOPOLOGY) -> None:
    """Run one router replica until SIGTERM/SIGINT (SIMPUL_REDIS_URL as the router principal)."""
    try:
        settings = Settings.load()
        configure(settings.log_level, settings.log_format)
        loaded = _topology(topology)
        if settings.redis_url is None:
            raise ConfigurationError("set SIMPUL_REDIS_URL to the router principal's URL")
    except SimpulError as exc:
        raise fail(_err, exc) from None

    async def main() -> None:
        try:  # a development password or key is refused here unless SIMPUL_DEV_MODE=1
            redis = connect(settings.redis_url or "", client_name=f"router:{socket.gethostname()}")
        except SimpulError as exc:
            raise fail(_err, exc) from None
        try:
            router = _router(redis, loaded, settings)
        except SimpulError as exc:
            await redis.aclose()
            raise fail(_err, exc) from None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, router.stop)
        try:
            await router.run()
        except SimpulError as exc:
            raise fail(_err, exc) from None
        finally:
            with contextlib.suppress(Exception):
                await redis.aclose()

    asyncio.run(main())


@router_app.command("ahead")
def ahead(
    topology: TopologyFile = DEFAULT_TOPOLOGY,
    minutes: Annotated[int, typer.Option(help="tolerance ahead of Redis TIME")] = 5,
) -> None:
    """List intakes, department streams and inboxes whose last-generated id is ahead of Redis
    TIME (an explicit far-future or maximum id was added). Exit 1 if any."""
    try:
        loaded = _topology(topology)
    except SimpulError as exc:
        raise fail(_err, exc) from None
    streams = [keys.intake(p.principal) for p in loaded.publishers()]
    streams += loaded.department_streams()

    async def work(redis: Redis) -> int:
        router = Router(redis, loaded, default_registry, keyring=None)
        found = await ahead_of_time(
            redis,
            [*streams, *(i for i, _ in router.inboxes())],
            tolerance=timedelta(minutes=minutes),
        )
        for item in found:
            _out.print(f"{item.stream}\tlast id {item.last_id}\t{item.ahead_s:.0f} s ahead")
        return len(found)

    if run_with_redis(_err, work):
        raise typer.Exit(1)
    _out.print("no stream is ahead of Redis TIME")


@router_app.command("reset-intake")
def reset(
    principal: Annotated[str, typer.Argument(help="the producer's principal")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="say how many entries would move; change nothing")
    ] = False,
) -> None:
    """Give a producer a fresh intake: its unsettled entries move, in order, to a new stream with
    server-generated ids (recovers a far-future or maximum explicit id). As an admin."""

    async def work(redis: Redis) -> None:
        intake = keys.intake(principal)
        if not await redis.exists(intake):  # a mistyped principal, in the middle of an incident
            raise ConfigurationError(
                f"there is no intake {intake}: is {principal!r} the principal of a producer "
                "(deploy/topology.yaml, producers:)? Nothing changed"
            )
        report = await reset_intake(redis, principal, dry_run=dry_run)
        if dry_run:
            _out.print(
                f"{report.intake}: {report.moved} unsettled entries would move to a fresh "
                f"stream (last id is {report.last_id_before}); dry run: nothing changed"
            )
            return
        _out.print(
            f"{report.intake}: {report.moved} unsettled entries moved to a fresh stream "
            f"(last id was {report.last_id_before})"
        )

    run_with_redis(_err, work)


@router_app.command("migrate")
def migrate_(topology: TopologyFile = DEFAULT_TOPOLOGY) -> None:
    """Once, with the services and routers stopped: copy each shared group's unfinished entries
    into its inbox and start the router's groups at the streams' ends (decision 0011)."""
    try:
        loaded = _topology(topology)
        keyring = _keyring(loaded, Settings.load())
    except SimpulError as exc:
        raise fail(_err, exc) from None

    async def work(redis: Redis) -> None:
        router = Router(redis, loaded, default_registry, keyring=keyring, signer=_signer())
        report = await migrate(router)
        for inbox, copied in sorted(report.copied.items()):
            _out.print(f"{inbox}\t{copied} entries")
        _out.print(f"{len(report.positions)} streams; {report.markers} done markers carried")
        _withheld(router)

    run_with_redis(_err, work)


@router_app.command("backfill")
def backfill_(
    group: Annotated[str, typer.Argument(help="the subscribing service's group")],
    stream: Annotated[str, typer.Argument(help="the department stream, e.g. dukcapil.citizen")],
    after: Annotated[str, typer.Option(help="copy entries after this id")] = "0-0",
    topology: TopologyFile = DEFAULT_TOPOLOGY,
) -> None:
    """With the routers stopped: fill a new subscription's inbox from the department stream."""
    try:
        loaded = _topology(topology)
        key = keys.stream_named(stream)
        if key is None:
            raise ConfigurationError(f"{stream!r} is not a stream name (e.g. dukcapil.citizen)")
        keyring = _keyring(loaded, Settings.load())
    except SimpulError as exc:
        raise fail(_err, exc) from None

    async def work(redis: Redis) -> None:
        router = Router(redis, loaded, default_registry, keyring=keyring, signer=_signer())
        try:
            copied = await backfill(router, key, group, after=after)
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None
        _out.print(f"{keys.inbox(key, group)}: {copied} entries")
        _withheld(router)

    run_with_redis(_err, work)


def _withheld(router: Router) -> None:
    """Say what was skipped because its producer's signature did not verify (as the fan-out
    withholds it; each is logged as stream_entry_withheld with its id)."""
    withheld = router.counts.withheld
    if withheld:
        reasons = ", ".join(f"{count} {reason}" for reason, count in sorted(withheld.items()))
        _err.print(
            f"[yellow]withheld:[/yellow] {sum(withheld.values())} department-stream entries whose "
            f"producer signature did not verify ({reasons}); see stream_entry_withheld in the "
            "log. A bus that ran without signatures: SIMPUL_REQUIRE_SIGNATURES=false until its "
            "producers sign"
        )


def _signer() -> Signer | None:
    return Signer.from_settings(Settings.load()) if SignerSettings.load().key_file else None
