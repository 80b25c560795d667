"""`simpul tail` and `simpul pending` (bus/cli/entries.py): read-only, personal fields masked unless
revealed, clear errors for bad input."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import threading
import time
from typing import TextIO

import pytest
from redis import Redis

from bus.logging import os_user
from bus.testing import capture_logs

# -- status ------------------------------------------------------------------------------------
from tests.bus.cli.helpers import (
    CITIZEN,
    NIKS,
    cli_env,
    consume,
    publish,
    simpul,
    simpul_process,
)
from tests.bus.delivery.helpers import died, fields_of

# -- tail --------------------------------------------------------------------------------------


def test_tail_masks_personal_fields_unless_revealed_and_logs_the_reveal(client: Redis) -> None:
    publish(client, 2)
    unknown = fields_of(
        died(NIKS[2]),
        f"odd-{NIKS[3]}",  # an id built from a NIK
        type="dukcapil.citizen.vanished.v1",
        dataschema="simpul:dukcapil.citizen.vanished:1.0",
    )
    unknown["data"] = json.dumps({"nik": NIKS[2], "email": "warga@example.id"})
    client.xadd(CITIZEN, unknown)  # type: ignore[arg-type]
    client.xadd(CITIZEN, {"junk": NIKS[3]})

    with capture_logs() as logs:
        masked = simpul("tail", "dukcapil.citizen")
        as_json = simpul("tail", CITIZEN, "--json", "--count", "2")
    assert masked.exit_code == 0 and as_json.exit_code == 0, masked.output
    for result in (masked, as_json):
        assert not any(nik in result.output for nik in NIKS[:4])
        assert "warga@example.id" not in result.output
    assert "dukcapil.citizen.died.v1" in masked.stdout and "***" in masked.stdout
    assert "not wire format v1" in masked.stdout
    lines = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert [line.get("type") for line in lines] == ["dukcapil.citizen.vanished.v1", None]
    assert lines[0]["data"] == {"nik": "<16 digits>", "email": "<text, 16 characters>"}
    assert lines[0]["known_type"] is False and lines[0]["id"] == "odd-***"
    assert not [e for e in logs if e["event"] == "tail_revealed"]

    with capture_logs() as logs:
        revealed = simpul("tail", "dukcapil.citizen.died.v1", "--reveal", "--json", "--count", "4")
    assert revealed.exit_code == 0
    assert NIKS[0] in revealed.stdout and NIKS[1] in revealed.stdout
    [entry] = [e for e in logs if e["event"] == "tail_revealed"]
    assert entry["stream"] == CITIZEN and entry["log_level"] == "warning"
    assert entry["by"] == os_user()  # who asked: the reveal is for an audit to find


def test_tail_of_a_group_shows_what_it_has_not_been_delivered_and_changes_nothing(
    client: Redis,
) -> None:
    ids = publish(client, 3)
    consume(client, "dinsos", 2, ack=False)
    before = (client.xinfo_groups(CITIZEN), client.xpending(CITIZEN, "dinsos"))
    result = simpul("tail", "dukcapil.citizen", "--group", "dinsos", "--json")
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["entry_id"] for line in result.stdout.splitlines()] == ids[2:]
    everything = simpul("tail", "dukcapil.citizen", "--json", "--count", "10")
    assert [json.loads(line)["entry_id"] for line in everything.stdout.splitlines()] == ids
    after = (client.xinfo_groups(CITIZEN), client.xpending(CITIZEN, "dinsos"))
    assert [g["name"] for g in after[0]] == [b"dinsos"]  # tail made no group of its own
    assert before[1] == after[1]  # nor acked or claimed anything
    assert before[0][0]["last-delivered-id"] == after[0][0]["last-delivered-id"]

    missing = simpul("tail", "dukcapil.citizen", "--group", "nobody")
    assert missing.exit_code == 2 and "no consumer group 'nobody'" in missing.output
    assert "groups: dinsos" in missing.output


def test_tail_bad_input(client: Redis) -> None:
    publish(client, 1)
    unknown = simpul("tail", "nothing.here")
    assert unknown.exit_code == 2
    assert "no stream simpul:{nothing.here}" in unknown.output
    assert "streams: dukcapil.citizen" in unknown.output
    bad = simpul("tail", "not a stream")
    assert bad.exit_code == 2 and "is not a stream" in bad.output
    empty = simpul("tail", "dpmptsp.permit")  # declared by a contract, nothing published yet
    assert empty.exit_code == 0 and "no events yet" in empty.output


@pytest.mark.slow
def test_tail_follow_shows_a_new_event_and_exits_0_on_ctrl_c(redis_url: str) -> None:
    with Redis.from_url(redis_url) as sync:
        publish(sync, 1)
        proc = simpul_process(
            *("tail", "dukcapil.citizen", "--follow", "--json", "--count", "0"),
            env=cli_env(redis_url),
        )
        try:
            out, err = lines_of(proc.stdout), lines_of(proc.stderr)
            wait_for_line(err, "following", proc)
            [new] = publish(sync, 1, start=1)
            event = json.loads(wait_for_line(out, new, proc))
            assert event["entry_id"] == new and event["data"]["nik"] == "***"
            assert NIKS[1] not in json.dumps(event)
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=10) == 0
            assert sync.xinfo_groups(CITIZEN) == []  # followed without a consumer group
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def lines_of(stream: TextIO | None) -> queue.Queue[str]:
    """The lines a child process writes, read on a thread (readline would block the test)."""
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in iter(stream.readline, "") if stream else ():
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def wait_for_line(
    lines: queue.Queue[str], needle: str, proc: subprocess.Popen[str], timeout: float = 20
) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.1)
        except queue.Empty:
            assert proc.poll() is None, f"exited with {proc.returncode}"
            continue
        if needle in line:
            return line
    raise AssertionError(f"no line with {needle!r} within {timeout} s")


# -- pending -----------------------------------------------------------------------------------


def test_pending_shows_entries_trimmed_while_pending_as_gone(client: Redis) -> None:
    ids = publish(client, 3)
    consume(client, "dinsos", 3, ack=False)
    client.xack(CITIZEN, "dinsos", ids[1])
    # Retention by age (MINID) removes the oldest entries, pending or not.
    client.xtrim(CITIZEN, minid=ids[1], approximate=False)
    result = simpul("pending", "dukcapil.citizen", "dinsos", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["stream"], report["group"], report["total"]) == (CITIZEN, "dinsos", 2)
    assert [
        (e["entry_id"], e["exists"], e["type"], e["consumer"], e["deliveries"])
        for e in report["entries"]
    ] == [
        (ids[0], False, None, "dinsos-1", 1),
        (ids[2], True, "dukcapil.citizen.died.v1", "dinsos-1", 1),
    ]
    human = simpul("pending", CITIZEN, "dinsos")
    assert human.exit_code == 0
    [gone] = [line for line in human.stdout.splitlines() if ids[0] in line]
    assert "gone" in gone
    assert "1 pending entry no longer exists: trimmed or deleted while pending" in human.stdout
    assert not any(nik in human.stdout for nik in NIKS)


def test_pending_bad_input(client: Redis) -> None:
    publish(client, 1)
    consume(client, "dinsos", 1)
    no_group = simpul("pending", "dukcapil.citizen", "nobody")
    assert no_group.exit_code == 2 and "no consumer group 'nobody'" in no_group.output
    no_stream = simpul("pending", "nothing.here", "dinsos")
    assert no_stream.exit_code == 2 and "no stream simpul:{nothing.here}" in no_stream.output
    none = simpul("pending", "dukcapil.citizen", "dinsos", "--json")
    assert none.exit_code == 0 and json.loads(none.stdout)["entries"] == []
