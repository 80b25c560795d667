"""Dead letters under routed delivery (decision 0011), on a real Redis with the routed ACL.

A service's dead letters are its inbox's: ``simpul dlq`` lists them with the reason, and the
dashboard's user (``monitor``) replays them to that group only, verified against the router's
signature (decision 0012): the original inbox entry while it is there, a new inbox entry once
the router trimmed it; either way the service handles the event once. A dead letter altered
after the fact is refused. What the router refused from a producer is listed, read-only.
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import pytest
from redis.asyncio import Redis
from typer.testing import CliRunner, Result

from bus import EventContext, Publisher, Service, keys
from bus.admin.deadletter_types import DeadLetterRef, Outcome, Target
from bus.admin.deadletters import DeadLetters, source_key
from bus.admin.streams import UnknownGroup, UnknownStream
from bus.cli.app import app
from bus.errors import ConfigurationError
from bus.signing import KeyRing
from bus.testing import quick_settings, wait_until
from schemas.dukcapil import CitizenDied
from tests.bus.routed import ADMIN, ROOT, TOPOLOGY, RoutedServer, keyring, running, signer

CITIZEN = keys.stream("dukcapil.citizen")
INBOX = keys.inbox(CITIZEN, "dinsos")
DEAD = keys.dead_letters(INBOX, "dinsos")
INTAKE_DEAD = keys.intake_dead_letters("adapter-dukcapil")
TOPOLOGY_FILE = ROOT / "deploy/topology.yaml"  # the keyring: producers' and the router's keys
NIK = "3573014506900001"
runner = CliRunner()


def died() -> CitizenDied:
    return CitizenDied.model_validate(
        {"nik": NIK, "date_of_death": "2024-03-01", "kecamatan": "35.73.01"}
    )


class Flaky:
    """dinsos on its inbox, with the topology's keyring: fails while ``broken``."""

    def __init__(self) -> None:
        self.broken = True
        self.handled: list[str] = []

    def service(self, routed: RoutedServer) -> Service:
        settings = quick_settings(
            routed.url("svc-dinsos"), inboxes=True, consumer="dinsos-1", max_deliveries=2
        )
        service = Service("dinsos", settings=settings, keyring=keyring())

        @service.on(CitizenDied, once=True)
        async def handle(event: CitizenDied, ctx: EventContext) -> None:
            assert ctx.stream == INBOX
            if self.broken and not ctx.event_id.startswith("ok-"):
                raise ValueError(f"cannot reach the database for {event.nik}")
            self.handled.append(ctx.event_id)

        return service


def publisher(routed: RoutedServer) -> Publisher:
    return Publisher(
        routed.connect("adapter-dukcapil"),
        source="urn:malangkota:test:adapter-dukcapil",
        signer=signer("adapter-dukcapil"),
        intake="adapter-dukcapil",
    )


async def cli(routed: RoutedServer, principal: str, *args: str) -> Result:
    """``simpul <args>`` as ``principal``, verifying against the topology (off the event loop:
    the command runs its own)."""
    env = {
        "SIMPUL_REDIS_URL": routed.url(principal),
        "SIMPUL_KEYRING_FILE": str(TOPOLOGY_FILE),
        "SIMPUL_SIGNATURES": "on",
        "COLUMNS": "250",
    }
    return await asyncio.to_thread(runner.invoke, app, list(args), env=env)


async def _one_dead(letters: DeadLetters) -> bool:
    return len(await letters.entries()) == 1


def test_names_of_inboxes_and_intakes() -> None:
    assert source_key("dinsos/dukcapil.citizen") == INBOX
    assert source_key(INBOX) == INBOX
    assert source_key("dinsos/dukcapil.citizen.p2") == keys.inbox(
        keys.partition_stream("dukcapil.citizen", 2), "dinsos"
    )
    assert source_key(keys.intake("adapter-dukcapil")) == keys.intake("adapter-dukcapil")
    assert source_key("dukcapil.citizen") == CITIZEN
    with pytest.raises(ConfigurationError, match="an inbox"):
        source_key("dinsos/nothing")
    ref = DeadLetterRef.from_dict(
        {"stream": "dinsos/dukcapil.citizen", "group": "dinsos", "id": "1"}
    )
    assert (ref.key, ref.kind, ref.entry_id) == (DEAD, "inbox", "1-0")
    intake = DeadLetterRef(keys.intake("adapter-dukcapil"), keys.ROUTER_GROUP, "1-0")
    assert (intake.key, intake.kind) == (INTAKE_DEAD, "intake")


async def test_a_failed_inbox_entry_is_listed_replayed_by_the_monitor_and_handled_once(
    routed: RoutedServer,
) -> None:
    """The router trims what the group acked, so the original is gone by the time of the
    replay: the event goes back as a new inbox entry, which only dinsos reads."""
    admin = routed.connect(ADMIN)
    monitor = routed.connect("monitor")
    letters = DeadLetters(monitor, keyring=keyring(), signatures=True)
    dinsos = Flaky()
    async with running(routed.router()), dinsos.service(routed).running():
        await publisher(routed).publish(died(), id="died-1")
        await wait_until(lambda: _one_dead(letters), timeout=30)

        listed = await cli(routed, "monitor", "dlq", "list", "--json")
        assert listed.exit_code == 0, listed.output
        report = json.loads(listed.stdout)
        [letter] = report["dead_letters"]
        assert (letter["stream"], letter["group"], letter["kind"]) == (INBOX, "dinsos", "inbox")
        assert letter["reason"] == "handler_failed" and letter["event_id"] == "died-1"
        assert "cannot reach the database" in letter["error"] and NIK not in letter["error"]
        assert report["queues"][0]["key"] == DEAD
        table = await cli(routed, "monitor", "dlq", "list", "dukcapil.citizen", "-g", "dinsos")
        assert table.exit_code == 0, table.output
        assert "dinsos/dukcapil.citizen" in table.output and "handler_failed" in table.output
        shown = await cli(routed, "monitor", "dlq", "show", letter["id"])
        assert shown.exit_code == 0 and "died-1" in shown.output and NIK not in shown.output

        original = letter["original_entry"]
        # The router trims below the group's last-delivered entry: once dinsos read past it.
        await publisher(routed).publish(died(), id="ok-1")

        async def trimmed() -> bool:
            return not await admin.xrange(INBOX, min=original, max=original)

        await wait_until(trimmed, timeout=30)
        dinsos.broken = False  # the fix is deployed
        args = ["dlq", "replay", "dinsos/dukcapil.citizen", "--group", "dinsos", "--yes"]
        replayed = await cli(routed, "monitor", *args, "--json")
        assert replayed.exit_code == 0, replayed.output
        [result] = json.loads(replayed.stdout)["results"]
        assert result["outcome"] == "replayed", result
        assert "only group dinsos reads" in result["detail"]
        await wait_until(lambda: dinsos.handled == ["ok-1", "died-1"], timeout=30)
        await publisher(routed).publish(died(), id="ok-2")
        await wait_until(lambda: "ok-2" in dinsos.handled, timeout=30)
        assert not await letters.entries()
    assert dinsos.handled == ["ok-1", "died-1", "ok-2"]  # once
    [group] = await admin.xinfo_groups(INBOX)
    assert group["pending"] == 0
    # Nobody else got it again: audit's inbox holds the three events the router forwarded.
    assert await admin.xlen(keys.inbox(CITIZEN, "audit")) == 3
    for redis in (admin, monitor):
        await redis.aclose()


async def _dead_lettered_with_router_stopped(routed: RoutedServer, dinsos: Flaky) -> str:
    """died-1 forwarded to dinsos' inbox, then dead-lettered by dinsos with no router running
    (nothing trims the inbox): the dead letter's id."""
    admin = routed.connect(ADMIN)
    async with running(routed.router()):
        await publisher(routed).publish(died(), id="died-1")

        async def forwarded() -> bool:
            return bool(await admin.xlen(INBOX) == 1)

        await wait_until(forwarded, timeout=30)
    letters = DeadLetters(admin, keyring=keyring(), signatures=True)
    async with dinsos.service(routed).running():
        await wait_until(lambda: _one_dead(letters), timeout=30)
    [letter] = await letters.entries()
    await admin.aclose()
    return letter.ref.entry_id


async def test_the_monitor_hands_the_original_inbox_entry_back_to_its_group(
    routed: RoutedServer,
) -> None:
    dinsos = Flaky()
    dead_id = await _dead_lettered_with_router_stopped(routed, dinsos)
    monitor = routed.connect("monitor")
    letters = DeadLetters(monitor, keyring=keyring(), signatures=True)
    ref = DeadLetterRef(INBOX, "dinsos", dead_id)
    [found] = await letters.select("dinsos/dukcapil.citizen", "dinsos")
    assert found == ref == await letters.find(dead_id)
    detail = await letters.show(ref)
    assert detail.original_in_stream and NIK not in json.dumps(detail.data)
    dry = await letters.replay([ref], dry_run=True)
    assert dry.results[0].outcome is Outcome.WOULD_REPLAY
    report = await letters.replay([ref])
    assert report.results[0].outcome is Outcome.REPLAYED, report.as_dict()
    assert "handed back to group dinsos" in report.results[0].detail
    dinsos.broken = False
    async with dinsos.service(routed).running():
        await wait_until(lambda: dinsos.handled == ["died-1"], timeout=30)
    admin = routed.connect(ADMIN)
    assert await admin.xlen(INBOX) == 1  # the original, handed back: no new entry
    assert not await admin.exists(DEAD)
    for redis in (admin, monitor):
        await redis.aclose()


async def _forge(admin: Redis, fields: dict[bytes, bytes], **changes: bytes) -> str:
    """What someone holding the inbox's dead letters could do: add an altered copy."""
    forged = {**fields, **{k.encode(): v for k, v in changes.items()}}
    return (await admin.xadd(DEAD, forged)).decode()  # type: ignore[arg-type]


async def test_a_tampered_inbox_dead_letter_is_refused(routed: RoutedServer) -> None:
    dinsos = Flaky()
    dead_id = await _dead_lettered_with_router_stopped(routed, dinsos)
    admin = routed.connect(ADMIN)
    [(_, fields)] = await admin.xrange(DEAD, min=dead_id, max=dead_id)
    data = json.loads(fields[b"data"])
    altered = json.dumps({**data, "kecamatan": "35.73.05"}).encode()
    # The original is still in the inbox: the difference is the dead letter's.
    tampered = await _forge(admin, fields, data=altered)
    # An original that is gone (trimmed): the router's signature no longer matches.
    unmatched = await _forge(admin, fields, data=altered, **{"dlq.entry": b"1-0"})
    monitor = routed.connect("monitor")
    letters = DeadLetters(monitor, keyring=keyring(), signatures=True)
    report = await letters.replay(
        [DeadLetterRef(INBOX, "dinsos", tampered), DeadLetterRef(INBOX, "dinsos", unmatched)]
    )
    first, second = report.results
    assert first.outcome is Outcome.REFUSED and first.detail.startswith("tampered"), first
    assert second.outcome is Outcome.REFUSED and second.detail.startswith("bad_signature")
    replayed = await cli(
        routed, "monitor", "dlq", "replay", INBOX, "-g", "dinsos", "--id", unmatched, "--yes"
    )
    assert replayed.exit_code == 1 and "bad_signature" in replayed.output, replayed.output
    assert await admin.xlen(DEAD) == 3  # the genuine one and both forgeries stay
    assert len(await admin.xrange(INBOX)) == 1  # nothing was put back
    for redis in (admin, monitor):
        await redis.aclose()


async def test_intake_refusals_are_listed_but_never_replayed_or_purged(
    routed: RoutedServer,
) -> None:
    admin = routed.connect(ADMIN)
    producer = routed.connect("adapter-dukcapil")
    await producer.xadd(keys.intake("adapter-dukcapil"), {"type": "not an event"})
    async with running(routed.router()):

        async def refused() -> bool:
            return bool(await admin.xlen(INTAKE_DEAD) == 1)

        await wait_until(refused, timeout=30)
    monitor = routed.connect("monitor")
    letters = DeadLetters(monitor, keyring=keyring(), signatures=True)
    [letter] = await letters.entries()
    assert letter.ref.kind == "intake" and letter.ref.group == keys.ROUTER_GROUP
    assert letter.reason == "undecodable"
    [queue] = await letters.queues(keys.intake("adapter-dukcapil"))
    assert queue.as_dict()["key"] == INTAKE_DEAD
    assert await letters.select() == []  # "replay everything" means what can be replayed
    [report] = (await letters.replay([letter.ref], to=Target.STREAM)).results
    assert report.outcome is Outcome.REFUSED and "refused again" in report.detail
    assert (await letters.plan_purge()).total == 0
    with pytest.raises(ConfigurationError, match="read-only"):
        await letters.plan_purge(keys.intake("adapter-dukcapil"))
    with pytest.raises(ConfigurationError, match="read-only"):
        await letters.plan_purge(ids=[letter.ref.entry_id])
    purged = await cli(routed, "monitor", "dlq", "purge", "--id", letter.ref.entry_id, "--yes")
    assert purged.exit_code == 2 and "read-only evidence" in purged.output, purged.output
    result = await cli(routed, "monitor", "dlq", "replay", "--id", letter.ref.entry_id, "--yes")
    assert result.exit_code == 1 and "read-only evidence" in result.output, result.output
    listed = await cli(routed, "monitor", "dlq", "list")
    assert "adapter-dukcapil" in listed.output and "undecodable" in listed.output
    assert await admin.xlen(INTAKE_DEAD) == 1
    for redis in (admin, monitor, producer):
        await redis.aclose()


async def test_unknown_inboxes_and_groups_are_clear_errors(routed: RoutedServer) -> None:
    monitor = routed.connect("monitor")
    letters = DeadLetters(monitor, keyring=keyring(), signatures=True)
    with pytest.raises(UnknownStream, match="unknown inbox"):
        await letters.entries("dinsos/dukcapil.citizen")
    admin = routed.connect(ADMIN)
    await admin.xgroup_create(INBOX, "dinsos", id="0", mkstream=True)
    assert await letters.entries("dinsos/dukcapil.citizen", "dinsos") == []
    with pytest.raises(UnknownGroup, match="groups: dinsos"):
        await letters.entries(INBOX, "dinkes")
    # The department stream's groups include its inboxes' (where its services consume).
    await admin.xgroup_create(CITIZEN, keys.ROUTER_GROUP, id="0", mkstream=True)
    assert await letters.entries("dukcapil.citizen", "dinsos") == []
    for redis in (admin, monitor):
        await redis.aclose()


async def test_the_dashboard_lists_inbox_dead_letters_under_their_subscription(
    routed: RoutedServer,
) -> None:
    from services.monitor import Monitor, MonitorSettings  # noqa: PLC0415 - this test only

    dinsos = Flaky()
    dead_id = await _dead_lettered_with_router_stopped(routed, dinsos)
    redis = routed.connect("monitor")
    settings = MonitorSettings(services="", refresh_s=0.2, token="t" * 16)
    monitor = Monitor(redis, settings=settings)
    monitor.letters = DeadLetters(redis, keyring=keyring(), signatures=True)
    for asked in ({}, {"stream": "dukcapil.citizen", "group": "dinsos"}, {"stream": INBOX}):
        listed = await monitor.dead_letters(**asked)
        [queue] = listed["queues"]
        assert (queue["stream"], queue["aggregate"], queue["group"]) == (
            INBOX,
            "dukcapil.citizen",
            "dinsos",
        ), asked
        assert [d["id"] for d in queue["dead_letters"]] == [dead_id]
    refs, depth = await monitor.group_refs(INBOX, "dinsos")
    assert (refs, depth) == ([DeadLetterRef(INBOX, "dinsos", dead_id)], 1)
    report = await monitor.replay(refs)
    assert report.ok, report.as_dict()
    await redis.aclose()


async def test_a_new_inbox_entry_the_service_would_refuse_as_stale_is_not_added(
    routed: RoutedServer,
) -> None:
    """A new inbox entry arrives when it is added: later than the keyring's max_age after the
    router signed it, the service would dead-letter it again as stale_event. The original,
    handed back, arrived in time."""
    dinsos = Flaky()
    dead_id = await _dead_lettered_with_router_stopped(routed, dinsos)
    monitor = routed.connect("monitor")
    strict = KeyRing(TOPOLOGY.signing_keys(), max_age=timedelta(seconds=1))
    letters = DeadLetters(monitor, keyring=strict, signatures=True)
    ref = DeadLetterRef(INBOX, "dinsos", dead_id)
    await asyncio.sleep(1.5)
    [stale] = (await letters.replay([ref], to=Target.STREAM)).results
    assert stale.outcome is Outcome.REFUSED and stale.detail.startswith("stale_event"), stale
    [handed] = (await letters.replay([ref])).results
    assert handed.outcome is Outcome.REPLAYED, handed
    admin = routed.connect(ADMIN)
    assert await admin.xlen(INBOX) == 1  # no new entry was added
    for redis in (admin, monitor):
        await redis.aclose()


async def test_a_replay_judges_staleness_by_the_services_limit_from_the_environment(
    routed: RoutedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The operator's tool reads SIMPUL_SIGNATURE_MAX_AGE_S as the services do: a dead letter the
    router signed longer ago than the services' limit is refused, not added for the service to
    refuse again (with the 7-day default it would have been added)."""
    dinsos = Flaky()
    dead_id = await _dead_lettered_with_router_stopped(routed, dinsos)
    monkeypatch.setenv("SIMPUL_SIGNATURES", "on")
    monkeypatch.setenv("SIMPUL_KEYRING_FILE", str(ROOT / "deploy/topology.yaml"))
    monkeypatch.setenv("SIMPUL_SIGNATURE_MAX_AGE_S", "1")
    monitor = routed.connect("monitor")
    letters = DeadLetters(monitor)
    assert letters.keyring is not None and letters.keyring.max_age == timedelta(seconds=1)
    await asyncio.sleep(1.5)
    ref = DeadLetterRef(INBOX, "dinsos", dead_id)
    [stale] = (await letters.replay([ref], to=Target.STREAM)).results
    assert stale.outcome is Outcome.REFUSED and stale.detail.startswith("stale_event"), stale
    await monitor.aclose()
