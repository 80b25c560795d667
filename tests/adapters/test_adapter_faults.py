"""Faults under the change-data-capture and txid-outbox adapters, judged by a recorder of its own.

The promise (docs/writing-an-adapter.md, docs/adapters/cdc.md, docs/adapters/mysql.md): every
committed row version reaches the department stream, once; nothing rolled back does. The
crash tests (test_crash, test_cdc_crash, test_binlog_crash) kill the adapter or the database and
take the table afterwards as the truth; here writers log each version once its COMMIT returned
(tests/adapters/recorder.py), with rolled-back, long and out-of-order transactions, while
redis-server is SIGKILLed and restarted (AOF, ``appendfsync always``), the server kills the
adapter's connections (its walsender or binlog dump among them), the log is rotated while the
adapter is down (``pg_switch_wal`` and a checkpoint; ``FLUSH BINARY LOGS``) and the adapter is
SIGKILLed mid-batch (just after the stream grew): two rounds in about 12 s of writing, on
private servers.

Duplicates allowed: none on the stream. The adapter may publish an event again after a fault
(a replay from its checkpoint or its slot); the publisher drops it by its event id.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.adapters.recorder import Run, servers

pytestmark = pytest.mark.slow

FAULTS = ["adapter", "redis", "adapter", "conn", "rotate"]  # kills and crashes come mid-batch


@pytest.mark.parametrize("source", ["logical", "binlog", "outbox"])
def test_faults_under_the_adapter_lose_no_committed_row_and_publish_none_twice(
    source: str, tmp_path: Path
) -> None:
    with servers(source, tmp_path) as (redis, db):
        figures = Run(source, tmp_path, redis, db, seed=7).run(FAULTS, rounds=2, seconds=12)
    report = json.dumps(figures, indent=1)
    assert figures["committed versions"] > 200, report
    assert figures["writers"].get("rolled back", 0) > 0, report
    assert figures["connections killed"] > 0, report
    assert figures["lost"] == 0, report
    assert figures["versions not published (states, not history)"] == 0, report
    assert figures["rolled back but published"] == 0, report
    assert figures["never committed but published"] == 0, report
    assert figures["duplicates stored"] == figures["duplicates read"] == 0, report
    assert figures["quarantined"] == 0, report
