"""``simpul dlq list|show|replay|purge``, ``simpul group reset`` and ``simpul trim`` on a real
Redis: output for people and --json for machines, masking, confirmations and exit codes
(0 done, 1 partly done or refused, 2 bad usage / unknown names / Redis down)."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import pytest
from redis import Redis
from typer.testing import CliRunner

from bus import Retention, keys
from bus.cli.app import app
from bus.connection import connect
from bus.local.redis import free_port
from tests.bus.admin.test_deadletters import (
    ADDRESS,
    NIK,
    STREAM,
    dead_letter,
    died,
    fields_of,
    moved,
    ms_ago,
)

runner = CliRunner()
RETENTION = Retention(timedelta(days=1))  # for --retention-from-config
DLQ = keys.dead_letters(STREAM, "dinsos")


@pytest.fixture
def env(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("SIMPUL_REDIS_URL", redis_url)
    monkeypatch.setenv("COLUMNS", "200")  # tables unwrapped, as on a wide terminal
    return redis_url


def invoke(*args: str, input: str | None = None) -> Any:
    return runner.invoke(app, list(args), input=input)


def sync(redis_url: str) -> Redis:
    return Redis.from_url(redis_url)


async def _dead(redis_url: str, *events: tuple[str, Any], error: str | None = None) -> list[str]:
    """Dead-letter each (event id, event) for group dinsos; returns the dead-letter ids."""
    client = connect(redis_url)
    try:
        made = []
        for event_id, event in events:
            extra = {"error": error} if error else {}
            _, dead = await dead_letter(client, "dinsos", fields_of(event, event_id), **extra)
            made.append(dead)
        return made
    finally:
        await client.aclose()


def test_list_and_show_mask_personal_data(env: str) -> None:
    [dead] = asyncio.run(_dead(env, ("m-1", moved()), error=f"no household at {ADDRESS}"))
    listed = invoke("dlq", "list", "--json")
    assert listed.exit_code == 0, listed.output
    body = json.loads(listed.stdout)
    assert body["total"] == 1 and body["queues"][0]["group"] == "dinsos"
    [letter] = body["dead_letters"]
    assert letter["id"] == dead and letter["reason"] == "handler_failed"
    assert letter["error"] == "no household at ***"
    table = invoke("dlq", "list", "dukcapil.citizen", "--group", "dinsos")
    assert table.exit_code == 0 and dead in table.stdout and "handler_failed" in table.stdout
    assert ADDRESS not in table.stdout
    for args in (("--json",), ()):
        shown = invoke("dlq", "show", dead, *args)
        assert shown.exit_code == 0, shown.output
        assert NIK not in shown.stdout and ADDRESS not in shown.stdout
        assert "35.73.02" in shown.stdout  # what is not personal stays readable
    revealed = invoke("dlq", "show", dead, "--reveal", "--json")
    assert revealed.exit_code == 0
    assert json.loads(revealed.stdout)["data"]["nik"] == NIK
    assert "dead_letter_revealed" in revealed.stderr


def test_replay_asks_then_replays_exactly_once(env: str) -> None:
    asyncio.run(_dead(env, ("e-1", died()), ("e-2", died())))
    client = sync(env)
    declined = invoke("dlq", "replay", "dukcapil.citizen", input="n\n")
    assert declined.exit_code == 1 and "cancelled" in declined.output
    assert client.xlen(DLQ) == 2
    # No answer at all (a script, a pipe): the same, with the way round the question.
    unanswered = invoke("dlq", "replay", "dukcapil.citizen", input="")
    assert unanswered.exit_code == 1 and "pass --yes" in unanswered.output, unanswered.output
    assert client.xlen(DLQ) == 2
    dry = invoke("dlq", "replay", "--dry-run", "--json")
    assert dry.exit_code == 0
    assert json.loads(dry.stdout)["counts"] == {"would_replay": 2}
    assert client.xlen(DLQ) == 2 and client.xpending(STREAM, "dinsos")["pending"] == 0
    done = invoke("dlq", "replay", "dukcapil.citizen", "--group", "dinsos", "--yes", "--json")
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    assert report["counts"] == {"replayed": 2} and report["target"] == "group"
    assert client.exists(DLQ) == 0 and client.xpending(STREAM, "dinsos")["pending"] == 2
    again = invoke("dlq", "replay", "--yes")
    assert again.exit_code == 0 and "no dead letters to replay" in again.output


def test_replay_partial_failure_exits_1_and_says_why(env: str) -> None:
    kept, trimmed = asyncio.run(_dead(env, ("e-1", died()), ("e-2", died())))
    client = sync(env)
    original = client.xrange(STREAM)[1][0]
    client.xdel(STREAM, original)  # as retention would
    result = invoke("dlq", "replay", "--id", kept, "--id", trimmed, "--yes")
    assert result.exit_code == 1
    assert "trimmed" in result.stdout and "--to stream" in result.stdout
    assert "1 replayed, 1 refused" in result.stderr
    to_stream = invoke("dlq", "replay", "--id", trimmed, "--to", "stream", "--yes")
    assert to_stream.exit_code == 0 and client.exists(DLQ) == 0


def test_replay_of_a_deleted_stream_needs_the_flag(env: str) -> None:
    [dead] = asyncio.run(_dead(env, ("e-1", died())))
    client = sync(env)
    client.delete(STREAM)
    refused = invoke("dlq", "replay", "--to", "stream", "--yes")
    assert refused.exit_code == 1 and "--recreate-stream" in refused.stdout
    wrong = invoke("dlq", "replay", "--recreate-stream", "--yes")
    assert wrong.exit_code == 2 and "only goes with --to stream" in wrong.output
    done = invoke("dlq", "replay", dead, "--to", "stream", "--recreate-stream", "--yes")
    assert done.exit_code == 2  # an id is not a stream: the argument is STREAM
    done = invoke("dlq", "replay", "--id", dead, "--to", "stream", "--recreate-stream", "--yes")
    assert done.exit_code == 0 and client.xlen(STREAM) == 1


def test_purge_by_age_by_id_and_all(env: str) -> None:
    client = sync(env)
    client.xgroup_create(STREAM, "dinsos", id="0", mkstream=True)
    for days in (3, 2, 0):
        client.xadd(
            DLQ,
            {"id": f"{days}d", "dlq.reason": "undecodable"},
            id=f"{ms_ago(timedelta(days=days, minutes=1))}-0",
        )
    nothing = invoke("dlq", "purge", "--yes")
    assert nothing.exit_code == 2 and "--older-than" in nothing.output
    dry = invoke("dlq", "purge", "--older-than", "1d", "--dry-run")
    assert dry.exit_code == 0 and "2 dead letter(s) would be deleted" in dry.output
    assert client.xlen(DLQ) == 3
    aged = invoke("dlq", "purge", "--older-than", "1d", "--yes", "--json")
    assert aged.exit_code == 0 and json.loads(aged.stdout)["deleted"] == 2
    [(entry, _)] = client.xrange(DLQ)
    missing = invoke("dlq", "purge", "--id", "1-0", "--yes")
    assert missing.exit_code == 2 and "no dead letter 1-0" in missing.output
    by_id = invoke("dlq", "purge", "--id", entry.decode(), input="y\n")
    assert by_id.exit_code == 0 and "1 dead letter(s) deleted" in by_id.output
    assert client.exists(DLQ) == 0
    empty = invoke("dlq", "purge", "--all", "--yes")
    assert empty.exit_code == 0 and "no dead letters to purge" in empty.output
    bad = invoke("dlq", "purge", "--older-than", "soon", "--yes")
    assert bad.exit_code == 2 and "not a duration" in bad.output


def test_clean_errors_for_unknown_names_and_an_empty_redis(env: str) -> None:
    empty = invoke("dlq", "list")
    assert empty.exit_code == 0 and "no dead letters" in empty.output
    unknown = invoke("dlq", "list", "dukcapil.citizen")
    assert unknown.exit_code == 2 and "unknown stream" in unknown.output
    sync(env).xgroup_create(STREAM, "dinsos", id="0", mkstream=True)
    group = invoke("dlq", "list", "dukcapil.citizen", "--group", "dinkes")
    assert group.exit_code == 2 and "unknown group 'dinkes'" in group.output
    assert "groups: dinsos" in group.output
    none = invoke("dlq", "list", "dukcapil.citizen", "--group", "dinsos", "--json")
    assert none.exit_code == 0 and json.loads(none.stdout)["dead_letters"] == []
    show = invoke("dlq", "show", "1-0")
    assert show.exit_code == 2 and "no dead letter 1-0" in show.output
    bad = invoke("dlq", "list", "Dukcapil Citizen")
    assert bad.exit_code == 2 and "not a stream" in bad.output
    for result in (unknown, group, show, bad):
        assert "Traceback" not in result.output


def test_redis_down_is_a_message_and_exit_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIMPUL_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    for args in (
        ("dlq", "list"),
        ("dlq", "replay", "--yes"),
        ("group", "reset", STREAM, "dinsos", "--to", "$"),
        ("trim", "--all", "--older-than", "1d"),
    ):
        result = invoke(*args)
        assert result.exit_code == 2, (args, result.output)
        assert "unreachable" in result.output and "Traceback" not in result.output
    monkeypatch.delenv("SIMPUL_REDIS_URL")
    unset = invoke("dlq", "list")
    assert unset.exit_code == 2 and "SIMPUL_REDIS_URL" in unset.output


def _aged(redis_url: str, *hours: float) -> list[str]:
    client = sync(redis_url)
    return [
        client.xadd(
            STREAM, fields_of(died(), f"h-{n}"), id=f"{ms_ago(timedelta(hours=h))}-0"
        ).decode()
        for n, h in enumerate(hours)
    ]


def test_group_reset_plans_asks_and_moves(env: str) -> None:
    ids = _aged(env, 4, 3, 1)
    client = sync(env)
    client.xgroup_create(STREAM, "dinsos", id="$")
    dry = invoke(
        "group", "reset", "dukcapil.citizen", "dinsos", "--to", "2h ago", "--dry-run", "--json"
    )
    assert dry.exit_code == 0, dry.output
    plan = json.loads(dry.stdout)
    assert (plan["target"], plan["reread"], plan["applied"]) == (ids[1], 1, False)
    people = invoke("group", "reset", "dukcapil.citizen", "dinsos", "--to", "0", input="n\n")
    assert people.exit_code == 1 and "3 entries already delivered" in people.output
    assert client.xinfo_groups(STREAM)[0]["last-delivered-id"].decode() == ids[2]
    done = invoke("group", "reset", STREAM, "dinsos", "--to", "2h ago", "--yes")
    assert done.exit_code == 0 and f"now at {ids[1]}" in done.output
    assert client.xinfo_groups(STREAM)[0]["last-delivered-id"].decode() == ids[1]
    for args, message in (
        (("nobody", "--to", "$"), "unknown group 'nobody'"),
        (("dinsos", "--to", "tomorrow"), "not a position"),
        (("dinsos", "--to", "2026-11-30T08:00"), "no offset"),
    ):
        result = invoke("group", "reset", STREAM, *args, "--yes")
        assert result.exit_code == 2 and message in result.output


def test_trim_refuses_a_lagging_group_unless_forced(env: str) -> None:
    _aged(env, 72, 48, 1)
    client = sync(env)
    client.xgroup_create(STREAM, "lagging", id="0")
    dry = invoke("trim", "dukcapil.citizen", "--older-than", "1d", "--dry-run", "--json")
    body = json.loads(dry.stdout)
    assert dry.exit_code == 1 and body["refused"] == [STREAM]
    assert body["streams"][0]["losses"] == [{"group": "lagging", "unread": 2, "pending": 0}]
    refused = invoke("trim", "--all", "--older-than", "1d", "--yes")
    assert refused.exit_code == 1 and "lagging: 2 unread" in refused.output
    assert client.xlen(STREAM) == 3
    forced = invoke("trim", "--all", "--older-than", "1d", "--force", "--yes")
    assert forced.exit_code == 0 and "2 entries trimmed" in forced.output
    assert client.xlen(STREAM) == 1
    nothing = invoke("trim", "--all", "--older-than", "1d", "--yes")
    assert nothing.exit_code == 0 and "nothing to trim" in nothing.output


def test_trim_by_the_publishers_retention(env: str) -> None:
    _aged(env, 72, 1)
    client = sync(env)
    client.xgroup_create(STREAM, "reader", id="$")  # read everything already
    result = invoke(
        "trim",
        "--all",
        "--retention-from-config",
        "tests.bus.cli.test_deadletters:RETENTION",
        "--yes",
        "--json",
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["trimmed"] == {STREAM: 1}
    assert client.xlen(STREAM) == 1
    for args, message in (
        (("--all",), "--older-than DURATION or --retention-from-config"),
        ((STREAM, "--all", "--older-than", "1d"), "give one STREAM or --all"),
        (
            ("--all", "--retention-from-config", "tests.bus.cli.test_deadletters:DLQ"),
            "not a bus.Retention",
        ),
    ):
        bad = invoke("trim", *args, "--yes")
        assert bad.exit_code == 2 and message in bad.output, bad.output
