"""A CSV drop folder: legacy export files land in ``incoming/``, leave by ``done/`` or ``failed/``.

Layout under the folder: ``incoming/`` (the export writes here), ``done/`` (each file with a
``<file>.report.json``: rows, published, duplicates, quarantined and the quarantine entry ids)
and ``failed/`` (files that cannot be read at all, each with a report naming the problem).

*Which files.* A file is picked up once it is complete: names starting with ``.`` or ending in
``.tmp``, ``.part``, ``.partial`` or ``~`` are ignored, and so is a file modified less than
``settle_seconds`` ago (a copy still growing). The export should write ``x.csv.part`` and rename
it into place; the settle time is the safety net for exports that cannot.

*Order and positions.* The file the checkpoint points into comes first, then the others by name
(then mtime). Rows are streamed, never a whole file. A position is ``[file name, digest, row,
byte offset]``: the digest (SHA-256 of the content) tells a replaced file with the same name
from the old one; the offset resumes mid-file without re-reading it.

*Crash safety.* The runner publishes a batch, then saves its checkpoint, then asks for the next
batch; only then, and only if the checkpoint store holds the file's last position, is the file
moved — report first, then the file, so a crash in between just writes the report again. A file
in ``incoming/`` whose checkpoint says it is finished is moved without reading it; a file in
``done/`` is never read again, whatever the checkpoint says.

*Bad input never stops a file.* Rows are UTF-8 (a BOM is dropped) or, if configured, a fallback
encoding (``cp1252`` for old Windows exports); a row neither can decode, a row with the wrong
number of fields and a row the csv module rejects become *problem records* that
:func:`checked` (wrapped around the mapper) sends to the quarantine with the reason. A file
without its header columns, empty, binary or UTF-16 goes to ``failed/``.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bus.adapter.records import CheckpointStore, Mapper, Position, Progress, ProgressHook, Record
from bus.adapter.runner import Adapter
from bus.adapter.sources._csvfile import (
    FIELDS,
    LOCATION,
    PROBLEM,
    Row,
    RowValue,
    _column_value,
    _columns_of,
    _count_lines,
    _digest,
    _Drop,
    _Format,
    _Reader,
    _Unreadable,
)
from bus.contracts import Contract
from bus.errors import ConfigurationError, SourceError
from bus.logging import get_logger

if TYPE_CHECKING:
    from bus.adapter.quarantine import Quarantine
    from bus.publisher import Publisher

__all__ = ["FIELDS", "LOCATION", "PROBLEM", "CsvDropSource", "RowValue", "checked", "drop_adapter"]

_IGNORED_SUFFIXES = (".tmp", ".part", ".partial", "~")
_log = get_logger("bus.adapter.sources.csvdrop")


def checked(mapper: Mapper) -> Mapper:
    """The mapper for a CSV source: a problem record (undecodable, wrong field count) raises
    its reason, so the runner quarantines it; every other record goes to ``mapper``."""

    def map_row(record: Record) -> Contract | None:
        problem = record.data.get(PROBLEM)
        if problem is not None:
            raise ValueError(problem)
        return mapper(record)

    return map_row


def _write_json(path: Path, report: Mapping[str, Any]) -> None:
    part = path.with_name(f".{path.name}.part")
    part.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(part, path)


def _free_name(folder: Path, drop: _Drop) -> Path:
    """``folder/<name>``, or ``<stem>.<digest><suffix>`` if a file of that name is there."""
    target = folder / drop.name
    if target.exists():
        target = folder / f"{drop.path.stem}.{drop.digest}{drop.path.suffix}"
    return target


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class CsvDropSource:
    """A :class:`bus.adapter.Source` over the CSV files dropped into ``<folder>/incoming``.

    Attach it to its runner (:meth:`attach`, done by :func:`drop_adapter`) before a pass: files
    move only once the runner's checkpoint holds their last row, and the reports count what the
    runner published.
    """

    def __init__(
        self,
        folder: str | Path,
        *,
        name: str,
        key: RowValue,
        version: RowValue,
        columns: Sequence[str] = (),
        delimiter: str = ",",
        fallback_encoding: str | None = None,
        time: Callable[[Row], datetime | None] | None = None,
        settle_seconds: float = 2.0,
    ) -> None:
        if len(delimiter) != 1:
            raise ConfigurationError(f"a CSV delimiter is one character, got {delimiter!r}")
        encodings = ("utf-8",) if fallback_encoding is None else ("utf-8", fallback_encoding)
        for encoding in encodings:
            _check_encoding(encoding)
        self.folder = Path(folder)
        self._name = name
        required = [c.lower() for c in (*columns, *_columns_of(key), *_columns_of(version))]
        self._format = _Format(
            delimiter,
            encodings,
            tuple(dict.fromkeys(required)),
            _column_value(key, "key"),
            _column_value(version, "version"),
            time,
        )
        self.settle_seconds = settle_seconds
        self._adapter: Adapter | None = None

    @property
    def name(self) -> str:
        return self._name

    @property
    def incoming(self) -> Path:
        return self.folder / "incoming"

    def attach(self, adapter: Adapter) -> None:
        """Read ``adapter``'s checkpoints (to move finished files), quarantine and progress (for
        the reports). :func:`bus.adapter.sources.csvdrop.drop_adapter` does it for you."""
        self._adapter = adapter

    async def batches(self, after: Position, *, size: int) -> AsyncIterator[Sequence[Record]]:
        adapter = self._attached()
        resume = _resume_of(after)
        for path in await asyncio.to_thread(self._pending, resume):
            drop = _Drop(path, await asyncio.to_thread(_digest, path))
            start = resume if resume and resume[:2] == [drop.name, drop.digest] else None
            finished = False
            async for batch in self._file(drop, start, size, adapter):
                if batch is None:
                    finished = True
                else:
                    yield batch
            if not finished:
                return  # the checkpoint does not cover the file: stop, the next pass resumes

    async def remaining(self, after: Position) -> int | None:
        """Lines left in the complete files (a progress bar's estimate: a quoted value may
        span lines)."""
        resume = _resume_of(after)

        def count() -> int:
            paths = self._pending(resume)
            total = sum(max(_count_lines(p) - 1, 0) for p in paths)
            done = int(resume[2]) if resume and paths and paths[0].name == resume[0] else 0
            return max(total - done, 0)

        return await asyncio.to_thread(count)

    async def _file(
        self, drop: _Drop, start: list[Any] | None, size: int, adapter: Adapter
    ) -> AsyncIterator[Sequence[Record] | None]:
        """The batches of one file, then None once it is moved out of incoming/."""
        try:
            reader = await asyncio.to_thread(_Reader, drop, self._format, start)
        except _Unreadable as exc:
            await asyncio.to_thread(self._fail, drop, str(exc))
            yield None
            return
        except OSError as exc:
            raise SourceError(f"drop file {drop.path} unreadable: {exc}") from exc
        last: Position = start
        counted = adapter.progress
        try:
            while batch := await asyncio.to_thread(reader.read, size):
                yield batch
                last = batch[-1].position
        finally:
            reader.close()
        if last is None or await adapter.checkpoints.load(adapter.name) == last:
            await self._finish(drop, last, counted, adapter)
            yield None
        else:
            _log.warning("csv_file_not_checkpointed", source=self.name, file=drop.name)

    async def _finish(
        self, drop: _Drop, last: Position, counted: Progress, adapter: Adapter
    ) -> None:
        rows = int(last[2]) if last is not None else 0
        entries = await self._quarantined(drop, adapter)
        now = adapter.progress
        duplicates = now.duplicates - counted.duplicates
        report = {
            "file": drop.name,
            "digest": drop.digest,
            "status": "done",
            "rows": rows,
            "published": max(rows - len(entries) - duplicates, 0),
            "duplicates": duplicates,
            "quarantined": len(entries),
            "quarantine_entries": entries,
            "adapter": adapter.name,
            "finished_at": _now(),
        }
        await asyncio.to_thread(self._move, drop, "done", report)
        _log.info(
            "csv_file_done",
            source=self.name,
            file=drop.name,
            rows=rows,
            quarantined=len(entries),
            duplicates=duplicates,
        )

    def _fail(self, drop: _Drop, problem: str) -> None:
        report = {
            "file": drop.name,
            "digest": drop.digest,
            "status": "failed",
            "problem": problem,
            "failed_at": _now(),
        }
        self._move(drop, "failed", report)
        _log.warning("csv_file_failed", source=self.name, file=drop.name, problem=problem)

    def _move(self, drop: _Drop, outcome: str, report: Mapping[str, Any]) -> None:
        folder = self.folder / outcome
        folder.mkdir(exist_ok=True)
        target = _free_name(folder, drop)
        _write_json(target.with_name(f"{target.name}.report.json"), report)
        os.replace(drop.path, target)  # the report first: a crash here only rewrites it

    async def _quarantined(self, drop: _Drop, adapter: Adapter) -> list[str]:
        """The quarantine entries of this file's rows (the quarantine is a short work queue)."""
        ids: list[str] = []
        after = "-"
        while page := await adapter.quarantine.entries(after=after, limit=500):
            for entry in page:
                if _located(entry.raw, drop):
                    ids.append(entry.entry_id)
            after = page[-1].entry_id
        return ids

    def _pending(self, resume: list[Any] | None) -> list[Path]:
        try:
            paths = [p for p in self.incoming.iterdir() if self._complete(p)]
        except FileNotFoundError:
            raise SourceError(
                f"drop folder {self.incoming} does not exist: create it, or configure the "
                "folder the legacy export writes to"
            ) from None
        paths.sort(key=lambda p: (p.name, p.stat().st_mtime_ns))
        # The file the checkpoint points into first, or the next file's rows would overwrite it.
        paths.sort(key=lambda p: not (resume and p.name == resume[0]))
        return paths

    def _complete(self, path: Path) -> bool:
        if path.name.startswith(".") or path.name.endswith(_IGNORED_SUFFIXES):
            return False
        try:
            stat = path.stat()
        except FileNotFoundError:
            return False  # renamed away while listing
        return path.is_file() and time.time() - stat.st_mtime >= self.settle_seconds

    def _attached(self) -> Adapter:
        if self._adapter is None:
            raise ConfigurationError(
                f"CSV source {self.name!r} is not attached to its Adapter: build the adapter "
                "with bus.adapter.sources.csvdrop.drop_adapter, or call source.attach(adapter)"
            )
        return self._adapter


def _located(raw: str, drop: _Drop) -> bool:
    where = json.loads(raw).get(LOCATION)
    return isinstance(where, dict) and [where.get("file"), where.get("digest")] == [
        drop.name,
        drop.digest,
    ]


def drop_adapter(
    name: str,
    *,
    source: CsvDropSource,
    mapper: Mapper,
    publisher: Publisher,
    checkpoints: CheckpointStore,
    quarantine: Quarantine,
    batch_size: int = 500,
    on_progress: ProgressHook | None = None,
) -> Adapter:
    """The :class:`Adapter` of a CSV drop source: the mapper :func:`checked`, the source
    attached."""
    adapter = Adapter(
        name,
        source=source,
        mapper=checked(mapper),
        publisher=publisher,
        checkpoints=checkpoints,
        quarantine=quarantine,
        batch_size=batch_size,
        on_progress=on_progress,
    )
    source.attach(adapter)
    return adapter


def _resume_of(after: Position) -> list[Any] | None:
    if after is None:
        return None
    if not (isinstance(after, list) and len(after) == 4):
        raise ConfigurationError(
            f"position {after!r} is not a CSV drop position [file, digest, row, offset]: was "
            "the checkpoint written by another source?"
        )
    return after


def _check_encoding(encoding: str) -> None:
    try:
        b"".decode(encoding)
    except LookupError:
        raise ConfigurationError(f"unknown encoding {encoding!r} (e.g. cp1252, latin-1)") from None
