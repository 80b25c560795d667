"""The checker judged on hand-made histories: it must fail exactly when it should."""

from __future__ import annotations

import errno
import json
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bus import keys
from bus.store import Store
from tests.chaos import effects, history
from tests.chaos.checker import DeadLetter, Observed, check, observe
from tests.chaos.effects import Effect

Record = dict[str, Any]
CLEAN = Observed(entries={}, pending=0, lag=0)


def published(event_id: str, *outcomes: str, subject: str = "s", seq: int = 1) -> list[Record]:
    """One invoke + outcome per attempt of one event."""
    records: list[Record] = []
    for outcome in outcomes:
        records.append(
            {"op": "publish", "phase": "invoke", "id": event_id, "subject": subject, "seq": seq}
        )
        records.append({"op": "publish", "phase": outcome, "id": event_id})
    return records


def effect(event_id: str, order: int, subject: str | None = "s") -> Effect:
    return Effect(event_id, subject, "c1", order)


def handled(event_id: str, delivery: int = 1) -> Record:
    return {
        "op": "handle",
        "id": event_id,
        "subject": "s",
        "entry": "1-0",
        "delivery": delivery,
        "consumer": "c1",
    }


def on_stream(*event_ids: str) -> Observed:
    return Observed(entries=dict.fromkeys(event_ids, 1), pending=0, lag=0)


def test_a_clean_run_has_no_violations() -> None:
    records = [
        *published("a", "ok", seq=1),
        *published("b", "ok", seq=2),
        handled("a"),
        handled("b"),
    ]
    report = check(records, [effect("a", 1), effect("b", 2)], on_stream("a", "b"))
    assert report.violations(ordered=True) == []
    assert (report.published_ok, report.consumed, report.redeliveries) == (2, 2, 0)
    assert report.order_inversions == {"s": 0}


def test_an_acked_publish_never_consumed_is_lost() -> None:
    records = [*published("a", "ok"), *published("b", "ok", seq=2)]
    report = check(records, [effect("a", 1)], on_stream("a", "b"))
    assert report.lost == 1
    assert report.violations() == ["lost = 1 (e.g. ['b'])"]


def test_a_good_event_in_the_dead_letters_is_lost_too() -> None:
    dead = [DeadLetter("1-0", "a", "max_deliveries_exceeded")]
    observed = Observed({"a": 1}, pending=0, lag=0, dead_letters=dead)
    report = check(published("a", "ok"), [], observed)
    assert (report.lost, report.lost_to_dead_letters) == (1, 1)
    assert report.dead_letters == {"max_deliveries_exceeded": 1}
    assert report.violations() == ["lost = 1 (e.g. ['a'])"]


def test_an_effect_applied_twice_is_a_duplicate_effect() -> None:
    report = check(published("a", "ok"), [effect("a", 1), effect("a", 2)], on_stream("a"))
    assert report.duplicate_effects == 1
    assert report.violations() == ["duplicate_effects = 1 (e.g. ['a'])"]


def test_handler_invocations_beyond_the_first_are_redeliveries_not_violations() -> None:
    records = [*published("a", "ok"), handled("a"), handled("a", 2), handled("a", 3)]
    report = check(records, [effect("a", 1)], on_stream("a"))
    assert (report.handler_invocations, report.redeliveries) == (3, 2)
    assert report.violations() == []


def test_an_event_twice_on_the_stream_is_a_duplicate_entry() -> None:
    observed = Observed(entries={"a": 2}, pending=0, lag=0)
    report = check(published("a", "unknown", "ok"), [effect("a", 1)], observed)
    assert report.duplicate_entries == 1
    assert report.violations() == ["duplicate_entries = 1 (e.g. ['a'])"]


def test_an_effect_after_a_later_one_of_its_subject_is_an_inversion() -> None:
    records = [
        *published("a", "ok", seq=1),
        *published("b", "ok", seq=2),
        *published("c", "ok", seq=3),
        *published("x", "ok", subject="t", seq=1),
    ]
    done = [effect("b", 1), effect("x", 2, "t"), effect("a", 3), effect("c", 4)]
    report = check(records, done, on_stream("a", "b", "c", "x"))
    assert report.order_inversions == {"s": 1, "t": 0}
    assert report.violations() == []  # a plain stream with replicas promises no order
    assert report.violations(ordered=True) == ["order_inversions = 1"]


def test_an_unknown_publish_may_land_or_not_without_a_violation() -> None:
    records = [*published("landed", "unknown"), *published("vanished", "unknown", seq=2)]
    report = check(records, [effect("landed", 1)], on_stream("landed"))
    assert (report.published_unknown, report.unknown_landed) == (2, 1)
    assert (report.lost, report.unexpected) == (0, 0)
    assert report.violations() == []


def test_a_publish_killed_before_its_outcome_counts_as_unknown() -> None:
    records = published("a", "ok")[:1]  # the invoke only: its process died waiting
    report = check(records, [], CLEAN)
    assert (report.published_unknown, report.lost) == (1, 0)


def test_a_refused_publish_retried_by_a_process_then_killed_is_unknown() -> None:
    records = [*published("a", "fail"), published("a", "ok")[0]]  # the retry never returned
    report = check(records, [effect("a", 1)], on_stream("a"))
    assert (report.failed, report.published_unknown, report.unknown_landed) == (0, 1, 1)
    assert report.violations() == []


def test_a_retried_publish_that_returned_ok_must_be_consumed() -> None:
    records = published("a", "unknown", "fail", "ok")
    report = check(records, [], on_stream())
    assert (report.published_ok, report.lost) == (1, 1)
    assert report.attempts == {"fail": 1, "ok": 1, "unknown": 1}


def test_effects_of_failed_or_unpublished_events_are_unexpected() -> None:
    records = published("refused", "fail", "fail")
    report = check(records, [effect("refused", 1), effect("stranger", 2)], on_stream())
    assert (report.failed, report.unexpected) == (1, 2)
    assert report.violations() == ["unexpected = 2 (e.g. ['refused', 'stranger'])"]


def test_pending_entries_and_lag_at_the_end_are_violations() -> None:
    report = check(published("a", "ok"), [effect("a", 1)], Observed({"a": 1}, pending=2, lag=3))
    assert report.violations() == ["final_pending = 2", "lag = 3"]


def test_injected_poison_must_be_dead_lettered_with_an_expected_reason() -> None:
    records = [
        {"op": "inject", "entry": "1-0", "reasons": ["undecodable"]},
        {"op": "inject", "entry": "2-0", "reasons": ["contract_violation"]},
        {"op": "inject", "entry": "3-0", "reasons": ["unknown_type"]},
    ]
    dead = [DeadLetter("1-0", None, "undecodable"), DeadLetter("2-0", "e2", "undecodable")]
    report = check(records, [], Observed({}, pending=0, lag=0, dead_letters=dead))
    assert report.dead_letters == {"undecodable": 2}
    assert (report.poison_injected, report.poison_missing, report.poison_misfiled) == (3, 1, 1)
    assert report.violations() == [
        "poison_missing = 1 (e.g. ['3-0'])",
        "poison_misfiled = 1 (e.g. ['2-0'])",
    ]


def test_the_report_is_json() -> None:
    report = check(published("a", "ok"), [], CLEAN)
    assert json.loads(json.dumps(report.to_json()))["lost"] == 1


# --- the recorder --------------------------------------------------------------------------


def test_history_lines_round_trip_and_a_torn_last_line_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    with history.History(path, process="p") as recorder:
        recorder.invoke("a", subject="s", seq=1)
        recorder.outcome("a", "ok", entry="1-0")
        recorder.handled("a", subject="s", entry="1-0", delivery=1, consumer="c1")
        recorder.injected("2-0", ["undecodable"])
    with path.open("a") as file:
        file.write('{"op": "publish", "pha')  # a process killed mid-line
    records = history.read([path])
    assert [r["op"] for r in records] == ["publish", "publish", "handle", "inject"]
    assert records[1] | {"t": 0} == {
        "op": "publish",
        "phase": "ok",
        "id": "a",
        "entry": "1-0",
        "error": "",
        "process": "p",
        "t": 0,
    }


def test_a_torn_line_inside_a_history_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text('{"op": "pub\n{"op": "handle", "id": "a"}\n')
    with pytest.raises(ValueError):
        history.read([path])


def refused_by_redis_py() -> Exception:
    try:
        raise RedisConnectionError("cannot connect") from ConnectionRefusedError(errno.ECONNREFUSED)
    except RedisConnectionError as exc:
        return exc


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (ConnectionRefusedError(errno.ECONNREFUSED, "refused"), "fail"),
        (RedisConnectionError("Error 111 connecting to 127.0.0.1:1. Connect call failed."), "fail"),
        (refused_by_redis_py(), "fail"),
        (RedisTimeoutError("Timeout reading from 127.0.0.1:1"), "unknown"),
        (RedisConnectionError("Connection closed by server."), "unknown"),
        (TimeoutError(), "unknown"),
    ],
)
def test_only_a_refused_connection_is_a_certain_failure(error: Exception, outcome: str) -> None:
    assert history.classify(error) == outcome


# --- the effect store and the Redis side -----------------------------------------------------


async def test_effects_through_the_inbox_happen_once_per_event(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'effects.db'}", scope="chaos")
    await store.migrate(effects.TABLES)
    try:
        for event_id in ("a", "b", "a"):
            work = partial(
                effects.record, event_id=event_id, subject="s", consumer="c1", entry_id="1-0"
            )
            await store.once(event_id, work)
    finally:
        await store.close()
    assert [(e.event_id, e.order) for e in effects.read(tmp_path / "effects.db")] == [
        ("a", 1),
        ("b", 2),
    ]
    assert effects.read(tmp_path / "missing.db") == []


async def test_observe_counts_entries_pending_lag_and_dead_letters(redis: Redis) -> None:
    stream = keys.stream("dukcapil.citizen")
    for event_id in ("a", "b", "a", "c"):
        await redis.xadd(stream, {"id": event_id})
    await redis.xgroup_create(stream, "chaos", id="0")
    await redis.xreadgroup("chaos", "c1", {stream: ">"}, count=3)  # 3 read, none acked
    await redis.xadd(
        keys.dead_letters(stream, "chaos"),
        {"id": "b", "dlq.entry": "2-0", "dlq.reason": "undecodable"},
    )
    other = keys.stream("bapenda.payment")  # no group on it: nothing of it was delivered
    await redis.xadd(other, {"id": "d"})

    observed = await observe(redis, [stream, other, keys.stream("dinsos.assistance")], "chaos")

    assert observed.entries == {"a": 2, "b": 1, "c": 1, "d": 1}
    assert (observed.pending, observed.lag) == (3, 2)
    assert observed.dead_letters == [DeadLetter("2-0", "b", "undecodable")]
