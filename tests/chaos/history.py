"""The recorder of the fault tests: an append-only JSON-lines history per process.

Every process of a scenario (producer, consumer replicas, the test itself) writes what it
*did* to its own file, Jepsen-style, and the checker (tests/chaos/checker.py) judges the
union of the files afterwards. One line per operation:

* ``{"op": "publish", "phase": "invoke", "id", "subject", "seq"}`` before a publish attempt,
  then one of ``phase`` ``ok`` (with the stream ``entry``), ``fail`` (certainly not written:
  the connection was refused) or ``unknown`` (a timeout or a dropped connection: it may or may
  not have landed). A retry of the same event id is a new invoke with the same id and seq.
* ``{"op": "handle", "id", "subject", "entry", "delivery", "consumer"}`` each time a handler
  is invoked, before its effect: redeliveries are counted from these.
* ``{"op": "inject", "entry", "reasons"}`` a bad entry written with a raw XADD, and the
  dead-letter reasons it may rightly get.

The effects themselves are not here: they are rows of the consumer's SQLite store
(tests/chaos/effects.py), committed with the event id in one transaction, because a line
written after a commit can be lost to a SIGKILL and a line written before it can lie.

Each line goes out in one ``write(2)`` on an ``O_APPEND`` descriptor: a process killed between
two system calls never leaves half a line, and no buffer holds lines back from the file.
Lines carry no payload, only ids, subjects (pseudonymous) and sequence numbers.
"""

from __future__ import annotations

import errno
import json
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Final, Literal

from redis.exceptions import ConnectionError as RedisConnectionError

__all__ = [
    "FAIL",
    "HANDLE",
    "INJECT",
    "INVOKE",
    "OK",
    "PUBLISH",
    "UNKNOWN",
    "History",
    "Outcome",
    "classify",
    "read",
]

PUBLISH: Final = "publish"
HANDLE: Final = "handle"
INJECT: Final = "inject"
INVOKE: Final = "invoke"
OK: Final = "ok"
FAIL: Final = "fail"
UNKNOWN: Final = "unknown"
Outcome = Literal["ok", "fail", "unknown"]
Record = dict[str, Any]
_REFUSED = f"Error {errno.ECONNREFUSED} connecting to"


class History:
    """One process's history file, opened for appending (several runs of one consumer name
    append to the same file)."""

    def __init__(self, path: str | os.PathLike[str], *, process: str) -> None:
        self.path = Path(path)
        self.process = process
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def invoke(self, event_id: str, *, subject: str | None, seq: int | None) -> None:
        self._write(
            {"op": PUBLISH, "phase": INVOKE, "id": event_id, "subject": subject, "seq": seq}
        )

    def outcome(
        self, event_id: str, outcome: Outcome, *, entry: str | None = None, error: str = ""
    ) -> None:
        """``error``: the exception's type name only (a message may quote data)."""
        self._write(
            {"op": PUBLISH, "phase": outcome, "id": event_id, "entry": entry, "error": error}
        )

    def handled(
        self, event_id: str, *, subject: str | None, entry: str, delivery: int, consumer: str
    ) -> None:
        self._write(
            {
                "op": HANDLE,
                "id": event_id,
                "subject": subject,
                "entry": entry,
                "delivery": delivery,
                "consumer": consumer,
            }
        )

    def injected(self, entry: str, reasons: Sequence[str]) -> None:
        self._write({"op": INJECT, "entry": entry, "reasons": sorted(reasons)})

    def close(self) -> None:
        os.close(self._fd)

    def __enter__(self) -> History:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _write(self, record: Record) -> None:
        record.update(process=self.process, t=round(time.time(), 6))
        line = json.dumps(record, separators=(",", ":")) + "\n"
        os.write(self._fd, line.encode())


def classify(exc: BaseException) -> Outcome:
    """``fail`` only when the command certainly never reached Redis (the connection was
    refused); everything else (timeouts, resets, a reply lost with the server) is ``unknown``."""
    current: BaseException | None = exc
    while current is not None:
        if isinstance(current, ConnectionRefusedError):
            return FAIL
        if isinstance(current, OSError) and current.errno == errno.ECONNREFUSED:
            return FAIL
        # redis-py wraps the refusal of a new connection into its own error ("Error 111
        # connecting to ..."), chaining the OSError or only keeping its text.
        if isinstance(current, RedisConnectionError) and _REFUSED in str(current):
            return FAIL
        current = current.__cause__ or current.__context__
    return UNKNOWN


def read(paths: Iterable[str | os.PathLike[str]]) -> list[Record]:
    """Every record of every file, file by file. A torn last line (a process killed inside a
    write, which one write per line should prevent) is skipped, never guessed at."""
    records: list[Record] = []
    for path in paths:
        records.extend(_lines(Path(path)))
    return records


def _lines(path: Path) -> Iterator[Record]:
    with path.open(encoding="utf-8") as file:
        lines = file.read().split("\n")
    for number, line in enumerate(lines):
        if not line:
            continue
        try:
            yield json.loads(line)
        except ValueError:
            if number != len(lines) - 1:  # only the very last line may be torn
                raise
