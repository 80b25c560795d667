"""docs/operations.md during an incident: the commands an operator types, run as processes of
their own exactly as the runbook shows them (`simpul ...` from the checkout, against a real
Redis), with what the runbook says they print, change and exit with.

- `simpul status`: exit 0 healthy, 1 a limit breached, 2 Redis unreachable; the limits it
  applies without options are the documented defaults.
- SimpulDeadLetters: `dlq list`, `dlq show`, `dlq replay` (asked, refused without a keyring,
  dry run, exactly once), `dlq list --json` kept, then `dlq purge`.
- SimpulStreamAheadOfTime / "An intake ahead of time": `router ahead` finds an intake with a
  far-future id, `router reset-intake` prints the line the runbook shows and recovers it, a
  mistyped principal is refused.
- The router section: `router backfill` and `router migrate` write what the fan-out would
  forward and withhold, and say so, what no producer signed.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from redis import Redis

from bus import EventContext, Service, keys
from bus.connection import connect
from bus.local.redis import free_port
from bus.testing import quick_settings, wait_until
from schemas.dukcapil import CitizenDied
from tests.bus.admin.test_deadletters import NIK, dead_letter, died, fields_of
from tests.bus.cli.helpers import CITIZEN, ROOT
from tests.bus.routed import ADMIN, TOPOLOGY, RoutedServer, routed_document, running
from tests.bus.test_router import publisher

SIMPUL = str(Path(sys.executable).parent / "simpul")
DLQ = keys.dead_letters(CITIZEN, "dinsos")
INTAKE = keys.intake("adapter-dukcapil")
DINSOS_INBOX = keys.inbox(CITIZEN, "dinsos")
# The limits `simpul status` applies unless told otherwise, as the daily checks state them.
DOCUMENTED_LIMITS = {
    "max_lag": 1000,
    "max_pending_age_s": 600,
    "max_dead_letters": 0,
    "max_quarantine": 0,
    "max_consumer_idle_s": 300,
    "max_silence_s": None,
    "max_source_behind_s": 300,
    "max_source_behind_bytes": None,
    "max_source_retained_bytes": 1073741824,
    "max_report_age_s": 60,
    "max_intake_backlog": 1000,
    "max_ahead_s": 300,
}


def env_of(redis_url: str, **extra: str) -> dict[str, str]:
    """An operator's shell: SIMPUL_REDIS_URL set, no SIMPUL_STATUS_* limit of anyone's, a wide
    terminal (tables unwrapped)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIMPUL_STATUS_")}
    return {**env, "SIMPUL_REDIS_URL": redis_url, "COLUMNS": "250", **extra}


def simpul(
    command: str, env: dict[str, str], *, answer: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``command`` as typed in the runbook (a shell line starting with ``simpul``)."""
    assert command.startswith("simpul ")
    return subprocess.run(
        [SIMPUL, *_words(command)],
        cwd=ROOT,
        env=env,
        input=answer if answer is not None else "",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _words(command: str) -> list[str]:
    return shlex.split(command)[1:]  # as a shell splits the line


def test_status_exits_0_1_or_2_and_applies_the_documented_limits(redis_url: str) -> None:
    env = env_of(redis_url)
    healthy = simpul("simpul status", env)
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert "healthy: no threshold breached" in healthy.stdout
    shown = simpul("simpul status --json", env)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["thresholds"] == DOCUMENTED_LIMITS

    with Redis.from_url(redis_url) as client:  # a group with 1000 entries not yet delivered
        client.xgroup_create(CITIZEN, "dinsos", id="$", mkstream=True)
        with client.pipeline(transaction=False) as pipe:
            for n in range(1000):
                pipe.xadd(CITIZEN, fields_of(died(), f"lag-{n}"))  # type: ignore[arg-type]
            pipe.execute()
        at_limit = json.loads(simpul("simpul status --json", env).stdout)
        assert "lag" not in {b["kind"] for b in at_limit["breaches"]}, at_limit["breaches"]
        client.xadd(CITIZEN, fields_of(died(), "lag-1000"))  # type: ignore[arg-type]
    over = simpul("simpul status", env)
    assert over.returncode == 1, over.stdout + over.stderr
    assert "dinsos" in over.stdout and "1001" in over.stdout
    relaxed = simpul("simpul status --max-lag 5000 --json", env)
    assert "lag" not in {b["kind"] for b in json.loads(relaxed.stdout)["breaches"]}

    down = simpul("simpul status", env_of(f"redis://127.0.0.1:{free_port()}/0"))
    assert down.returncode == 2, down.stdout + down.stderr
    assert "unreachable" in down.stderr and "Traceback" not in down.stderr


def _dead_letters(redis_url: str, count: int) -> list[str]:
    """``count`` deaths dead-lettered by group dinsos as its consumer does (handler_failed)."""

    async def make() -> list[str]:
        client = connect(redis_url)
        try:
            made = []
            for n in range(count):
                _, dead = await dead_letter(client, "dinsos", fields_of(died(), f"death-{n}"))
                made.append(dead)
            return made
        finally:
            await client.aclose()

    return asyncio.run(make())


def _handled_by_dinsos(redis_url: str) -> list[tuple[str, int]]:
    """Run a replica of dinsos until it handled one event: (event id, ctx.delivery) of each."""
    handled: list[tuple[str, int]] = []
    service = Service("dinsos", settings=quick_settings(redis_url, consumer="dinsos-2"))

    @service.on(CitizenDied)
    async def handle(event: CitizenDied, ctx: EventContext) -> None:
        handled.append((ctx.event_id, ctx.delivery))

    async def run() -> None:
        async with service.running():
            await wait_until(lambda: bool(handled), timeout=30)
            await asyncio.sleep(0.3)  # its ack, and anything else it would (wrongly) get

    asyncio.run(run())
    return handled


def test_the_dead_letter_runbook_as_an_operator_types_it(redis_url: str) -> None:
    """SimpulDeadLetters, "Confirm" then "Fix": list, show, replay one and watch it, the rest by
    dry run first, a copy kept, the junk purged. Nothing personal is printed on the way."""
    first, *rest = _dead_letters(redis_url, 3)
    env = env_of(redis_url)
    client = Redis.from_url(redis_url)

    listed = simpul("simpul dlq list dukcapil.citizen --group dinsos", env)
    assert listed.returncode == 0, listed.stderr
    for dead in (first, *rest):
        assert dead in listed.stdout
    assert "handler_failed" in listed.stdout and "the database was down" in listed.stdout
    everything = simpul("simpul dlq list", env)
    assert everything.returncode == 0 and first in everything.stdout
    shown = simpul(f"simpul dlq show {first}", env)
    assert shown.returncode == 0, shown.stderr
    assert "handler_failed" in shown.stdout and "(personal fields masked)" in shown.stdout
    for output in (listed, everything, shown):
        assert NIK not in output.stdout + output.stderr

    # "replay one first and watch it succeed": asked before acting, "n" changes nothing.
    one = f"simpul dlq replay dukcapil.citizen --group dinsos --id {first}"
    declined = simpul(one, env, answer="n\n")
    assert declined.returncode == 1, declined.stdout + declined.stderr
    assert "cancelled: nothing changed" in declined.stderr
    assert client.xlen(DLQ) == 3
    # Without a keyring a replay is refused unless SIMPUL_SIGNATURES=off (development only).
    unverified = simpul(one + " --yes", {**env, "SIMPUL_SIGNATURES": "on"})
    assert unverified.returncode == 1, unverified.stdout + unverified.stderr
    assert "SIMPUL_SIGNATURES=off" in unverified.stdout + unverified.stderr
    assert client.xlen(DLQ) == 3
    replayed = simpul(one, {**env, "SIMPUL_SIGNATURES": "off"}, answer="y\n")
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert client.xlen(DLQ) == 2
    again = simpul(one + " --yes", {**env, "SIMPUL_SIGNATURES": "off"})
    assert again.returncode == 2, again.stdout + again.stderr  # replayed once, never twice
    assert f"no dead letter {first} of simpul:{{dukcapil.citizen}} in group dinsos" in again.stderr
    assert client.xlen(DLQ) == 2 and client.xpending(CITIZEN, "dinsos")["pending"] == 1
    # "its consumers retry it at once (delivery count 1)": watch it succeed.
    assert _handled_by_dinsos(redis_url) == [("death-0", 1)]
    assert client.xpending(CITIZEN, "dinsos")["pending"] == 0

    # The rest: a dry run first says what would happen and changes nothing.
    dry = simpul(
        "simpul dlq replay dukcapil.citizen --group dinsos --dry-run",
        {**env, "SIMPUL_SIGNATURES": "off"},
    )
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "dry run: nothing changed" in dry.stdout and all(d in dry.stdout for d in rest)
    assert client.xlen(DLQ) == 2 and client.xpending(CITIZEN, "dinsos")["pending"] == 0

    # "Keep a `simpul dlq list --json` copy before purging", then purge with --dry-run first.
    copy = json.loads(simpul("simpul dlq list --json", env).stdout)
    assert copy["total"] == 2
    assert {d["id"] for d in copy["dead_letters"]} == set(rest)
    assert NIK not in json.dumps(copy)
    young = simpul(
        "simpul dlq purge dukcapil.citizen --group dinsos --older-than 30d --dry-run", env
    )
    assert young.returncode == 0 and "no dead letters to purge" in young.stderr, young.stderr
    planned = simpul("simpul dlq purge dukcapil.citizen --group dinsos --all --dry-run", env)
    assert planned.returncode == 0, planned.stderr
    assert "2 dead letter(s) would be deleted; nothing changed" in planned.stderr
    assert client.xlen(DLQ) == 2
    by_id = simpul(
        f"simpul dlq purge dukcapil.citizen --group dinsos --id {rest[0]}", env, answer="y\n"
    )
    assert by_id.returncode == 0 and "1 dead letter(s) deleted" in by_id.stderr, by_id.stderr
    purged = simpul("simpul dlq purge dukcapil.citizen --group dinsos --all --yes", env)
    assert purged.returncode == 0 and "1 dead letter(s) deleted" in purged.stderr, purged.stderr
    assert client.xlen(DLQ) == 0
    assert client.xlen(CITIZEN) == 3  # the events themselves: untouched
    client.close()


def test_an_intake_ahead_of_time_is_found_and_reset_as_the_runbook_shows(redis_url: str) -> None:
    """ "An intake ahead of time": an explicit far-future id drags every later `*` id along;
    `simpul router ahead --topology deploy/topology.yaml` lists it (exit 1), `simpul router
    reset-intake adapter-dukcapil` moves what the router had not settled, in order, to a fresh
    intake with server ids and prints the line the runbook shows."""
    env = env_of(redis_url)
    client = Redis.from_url(redis_url)
    settled = client.xadd(INTAKE, {"type": "settled"})
    client.xgroup_create(INTAKE, keys.ROUTER_GROUP, id="0")
    client.xreadgroup(keys.ROUTER_GROUP, "router-1", {INTAKE: ">"})
    client.xack(INTAKE, keys.ROUTER_GROUP, settled)  # admitted by the router: not moved
    future_ms = (int(time.time()) + 10 * 86400) * 1000
    client.xadd(INTAKE, {"type": "far-future"}, id=f"{future_ms}-0")
    dragged = client.xadd(INTAKE, {"type": "after it"}).decode()  # type: ignore[union-attr]
    assert dragged == f"{future_ms}-1"  # every later `*` id lies there too

    found = simpul("simpul router ahead --topology deploy/topology.yaml", env)
    assert found.returncode == 1, found.stdout + found.stderr
    assert "simpul:intake:{adapter-dukcapil}" in found.stdout and dragged in found.stdout

    typo = simpul("simpul router reset-intake adapter-dukcpil", env)
    assert typo.returncode == 2, typo.stdout + typo.stderr
    assert "there is no intake simpul:intake:{adapter-dukcpil}" in typo.stderr
    assert not client.keys("*adapter-dukcpil*")

    before = client.xrange(INTAKE)
    preview = simpul("simpul router reset-intake adapter-dukcapil --dry-run", env)
    assert preview.returncode == 0, preview.stdout + preview.stderr
    assert preview.stdout.strip() == (
        f"simpul:intake:{{adapter-dukcapil}}: 2 unsettled entries would move to a fresh stream "
        f"(last id is {dragged}); dry run: nothing changed"
    )
    assert client.xrange(INTAKE) == before  # nothing moved

    reset = simpul("simpul router reset-intake adapter-dukcapil", env)
    assert reset.returncode == 0, reset.stdout + reset.stderr
    shown = re.fullmatch(
        r"simpul:intake:\{adapter-dukcapil\}: (\d+) unsettled entries moved to a fresh stream "
        r"\(last id was (\S+)\)",
        reset.stdout.strip(),
    )
    assert shown is not None, reset.stdout
    assert shown.groups() == ("2", dragged)
    entries = client.xrange(INTAKE)
    assert [fields[b"type"] for _, fields in entries] == [b"far-future", b"after it"]
    (now_s, _), latest = client.time(), client.xadd(INTAKE, {"type": "new"}).decode()  # type: ignore[union-attr]
    assert int(latest.split("-")[0]) <= (now_s + 60) * 1000  # server ids are back in the present
    again = simpul("simpul router ahead --topology deploy/topology.yaml", env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "no stream is ahead of Redis TIME" in again.stdout
    client.close()


def test_a_backfill_as_the_runbook_runs_it_writes_history_once_and_nothing_forged(
    routed: RoutedServer, tmp_path: Path
) -> None:
    """ "A new subscription that needs history": `simpul router backfill <group> <stream>` as the
    admin with the router's key writes the group's inbox what the router admitted, says how
    many, writes none when run again, and skips what no producer signed ("Entries whose
    producer signature does not verify are skipped, as the fan-out withholds them")."""

    async def history() -> None:
        router_password = routed.connect("router")  # writes the stream without admission
        forged = publisher(routed, "adapter-dukcapil").envelope(died(), id="forged")
        await router_password.xadd(CITIZEN, forged.to_fields())  # type: ignore[arg-type]
        await router_password.aclose()
        dukcapil = publisher(routed, "adapter-dukcapil")
        for n in range(3):
            await dukcapil.publish(died(), id=f"death-{n}")
        await dukcapil.redis.aclose()
        admin = routed.connect(ADMIN)
        async with running(routed.router()):
            await wait_until(lambda: _length(admin, DINSOS_INBOX, 3), timeout=30)
        await admin.aclose()

    asyncio.run(history())
    with routed.admin() as admin:  # dinsos subscribes anew: an empty inbox, no mark
        admin.delete(DINSOS_INBOX, keys.routed_mark(DINSOS_INBOX))
    topology, env = _as_the_router_admin(routed, tmp_path)
    command = f"simpul router backfill dinsos dukcapil.citizen --topology {topology}"
    first = simpul(command, env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert first.stdout.strip() == f"{DINSOS_INBOX}: 3 entries"
    said = " ".join(first.stderr.split())
    assert "withheld: 1 department-stream entries whose producer signature did not verify" in said
    assert "(1 unsigned)" in said and "stream_entry_withheld" in first.stderr
    with routed.admin() as admin:
        written = [fields[b"id"] for _, fields in admin.xrange(DINSOS_INBOX)]
    assert written == [b"death-0", b"death-1", b"death-2"]
    again = simpul(command, env)
    assert again.returncode == 0 and again.stdout.strip() == f"{DINSOS_INBOX}: 0 entries"


def _as_the_router_admin(routed: RoutedServer, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """The routed bus's topology file, and the environment of an admin running the router's
    commands with its signing key."""
    topology = tmp_path / "topology.yaml"
    topology.write_text(yaml.safe_dump(routed_document(), sort_keys=False))
    assert TOPOLOGY.router is not None
    key = TOPOLOGY.router.keys[0].id
    env = env_of(
        routed.url(ADMIN),
        SIMPUL_SIGNING_KEY_FILE=str(ROOT / "deploy" / "keys" / f"{key}.key"),
        SIMPUL_SIGNER=key,
    )
    return topology, env


async def _length(redis: Any, key: str, count: int) -> bool:
    return bool(await redis.xlen(key) == count)


def test_a_migration_as_the_runbook_runs_it_copies_the_groups_work_and_nothing_forged(
    routed: RoutedServer, tmp_path: Path
) -> None:
    """ "Migrating a running bus from shared groups", step 2: `simpul router migrate --topology
    ...` as the admin copies a service group's unread entries into its inbox — each whose
    producer signature verifies, as the fan-out would forward it; an entry no producer signed
    is withheld, and the command says so."""

    async def shared_bus() -> None:
        admin = routed.connect(ADMIN)
        direct = publisher(routed, "adapter-dukcapil", admin)
        direct.intake = None  # before the migration producers wrote the department streams
        for n in range(3):
            await direct.publish(died(), id=f"before-{n}")
        forged = direct.envelope(died(), id="forged").to_fields()
        await admin.xadd(CITIZEN, forged)  # type: ignore[arg-type]
        await admin.xgroup_create(CITIZEN, "dinsos", id="0")  # dinsos has read nothing yet
        await admin.aclose()

    asyncio.run(shared_bus())
    topology, env = _as_the_router_admin(routed, tmp_path)
    done = simpul(f"simpul router migrate --topology {topology}", env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{DINSOS_INBOX} 3 entries" in " ".join(done.stdout.split())
    said = " ".join(done.stderr.split())
    assert "withheld: 1 department-stream entries" in said and "(1 unsigned)" in said
    with routed.admin() as admin:
        copied = [fields[b"id"] for _, fields in admin.xrange(DINSOS_INBOX)]
    assert copied == [b"before-0", b"before-1", b"before-2"]
