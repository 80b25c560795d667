"""Reading one CSV export file: encodings, header, rows as records, positions (for csvdrop.py).

Private to :mod:`bus.adapter.sources.csvdrop`, which decides which files to read and where they go.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from bus.adapter.records import Record
from bus.errors import ConfigurationError

LOCATION = "(csv)"  # added to every record's data: {"file", "digest", "row"}
PROBLEM = "(problem)"  # in a problem record's data: why the row could not be read
FIELDS = "(fields)"  # in a problem record's data: the row's fields as far as they could be read
_UTF8_BOM = b"\xef\xbb\xbf"

Row = Mapping[str, str]
RowValue = str | Sequence[str] | Callable[[Row], str]
"""A key or version: a column, several columns (joined by ``/``) or a function of the row."""


class _Unreadable(Exception):
    """The file cannot be read at all: it goes to failed/ with this reason."""


@dataclass(frozen=True, slots=True)
class _Drop:
    path: Path
    digest: str

    @property
    def name(self) -> str:
        return self.path.name


@dataclass(frozen=True, slots=True)
class _Format:
    delimiter: str
    encodings: tuple[str, ...]
    columns: tuple[str, ...]
    key: Callable[[Row], str]
    version: Callable[[Row], str]
    time: Callable[[Row], datetime | None] | None


class _Lines:
    """Decoded lines of a binary file from its current offset; remembers undecodable bytes."""

    def __init__(self, raw: IO[bytes], encodings: tuple[str, ...], *, first: bool) -> None:
        self.raw, self.encodings, self.first = raw, encodings, first
        self.offset = raw.tell()
        self.problem: str | None = None  # of the record being read

    def __iter__(self) -> Iterator[str]:
        for line in self.raw:
            self.offset += len(line)
            first, self.first = self.first, False
            yield self._decode(line.removeprefix(_UTF8_BOM) if first else line)

    def _decode(self, line: bytes) -> str:
        error: UnicodeDecodeError | None = None
        for encoding in self.encodings:
            try:
                return line.decode(encoding)
            except UnicodeDecodeError as exc:
                error = exc
        assert error is not None
        byte = line[error.start : error.start + 1].hex()
        tried = " nor ".join(self.encodings)
        self.problem = (
            f"byte 0x{byte} at offset {error.start} of the line is not {tried}: re-export the "
            "file as UTF-8, or configure the export's encoding as the fallback"
        )
        return line.decode("utf-8", "backslashreplace")  # shows the bytes, never guesses


class _Reader:
    """One drop file, read a batch of records at a time from a position."""

    def __init__(self, drop: _Drop, fmt: _Format, start: list[Any] | None) -> None:
        self.drop, self.fmt = drop, fmt
        self.name = drop.name  # once: a Path's name is worked out anew on each access
        self.raw = drop.path.open("rb")
        try:
            _sniff(self.raw.read(4))
            self.raw.seek(0)
            self.lines = _Lines(self.raw, fmt.encodings, first=True)
            self.rows = csv.reader(iter(self.lines), delimiter=fmt.delimiter, strict=True)
            self.header = self._header()
            self.row = 0
            if start is not None:
                self._seek(row=int(start[2]), offset=int(start[3]))
        except BaseException:
            self.raw.close()
            raise

    def close(self) -> None:
        self.raw.close()

    def read(self, size: int) -> list[Record]:
        records: list[Record] = []
        while len(records) < size and (record := self._next()) is not None:
            records.append(record)
        return records

    def _seek(self, *, row: int, offset: int) -> None:
        self.raw.seek(offset)
        self.lines = _Lines(self.raw, self.fmt.encodings, first=False)
        self.rows = csv.reader(iter(self.lines), delimiter=self.fmt.delimiter, strict=True)
        self.row = row

    def _header(self) -> list[str]:
        try:
            names = next(self.rows)
        except StopIteration:
            raise _Unreadable("the file is empty: it has no header row") from None
        except csv.Error as exc:
            raise _Unreadable(f"the header row is not CSV ({exc})") from None
        if self.lines.problem:
            raise _Unreadable(f"the header row cannot be decoded: {self.lines.problem}")
        header = [name.strip().lower() for name in names]
        missing = [c for c in self.fmt.columns if c not in header]
        if missing:
            raise _Unreadable(
                f"the header lacks column(s) {', '.join(missing)} (it has {len(header)} "
                f"column(s) split by {self.fmt.delimiter!r}): check the delimiter and the "
                "export's column names"
            )
        if len(set(header)) != len(header):
            raise _Unreadable("the header names a column twice")
        return header

    def _next(self) -> Record | None:
        while True:
            self.lines.problem = None
            try:
                fields = next(self.rows)
            except StopIteration:
                return None
            except csv.Error as exc:
                return self._problem([], f"the row is not valid CSV ({exc})")
            if fields:  # a blank line is no row
                return self._record(fields)

    def _record(self, fields: list[str]) -> Record:
        if self.lines.problem:
            return self._problem(fields, self.lines.problem)
        if len(fields) != len(self.header):
            return self._problem(
                fields,
                f"the row has {len(fields)} field(s), the header {len(self.header)} (split by "
                f"{self.fmt.delimiter!r}): a value with an unquoted delimiter, or a cut line?",
            )
        row: dict[str, Any] = dict(zip(self.header, fields, strict=True))
        position = self._advance()
        fmt = self.fmt
        key, version = fmt.key(row), fmt.version(row)
        time = fmt.time(row) if fmt.time else None
        row[LOCATION] = self._location(position)  # after the key, version and time: not theirs
        return Record(key=key, version=version, position=position, data=row, time=time)

    def _problem(self, fields: list[str], problem: str) -> Record:
        position = self._advance()
        data = {
            LOCATION: self._location(position),
            PROBLEM: f"row {position[2]}: {problem}",
            FIELDS: fields,
        }
        # The location is the key: the fields may be garbled, so they cannot name the record.
        return Record(f"{self.drop.name}#{position[2]}", self.drop.digest, position, data)

    def _advance(self) -> list[Any]:
        self.row += 1
        return [self.name, self.drop.digest, self.row, self.lines.offset]

    def _location(self, position: list[Any]) -> dict[str, Any]:
        return {"file": position[0], "digest": position[1], "row": position[2]}


def _sniff(start: bytes) -> None:
    if start.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise _Unreadable("the file is UTF-16 (Excel 'Unicode text'): export as CSV UTF-8")
    if start.startswith(b"PK\x03\x04"):
        raise _Unreadable("the file is a ZIP or an Excel workbook (.xlsx), not CSV: save as CSV")
    if b"\x00" in start:
        raise _Unreadable("the file holds NUL bytes: it is binary, not CSV")


def _column_value(spec: RowValue, what: str) -> Callable[[Row], str]:
    if callable(spec):
        return spec
    columns = (spec,) if isinstance(spec, str) else tuple(spec)
    if not columns:
        raise ConfigurationError(f"a CSV source needs at least one {what} column")
    if len(columns) == 1:
        [column] = columns
        return lambda row: row[column].strip()
    return lambda row: "/".join(row[c].strip() for c in columns)


def _columns_of(spec: RowValue) -> tuple[str, ...]:
    if callable(spec):
        return ()
    return (spec,) if isinstance(spec, str) else tuple(spec)


def _digest(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as raw:
        while chunk := raw.read(1 << 20):
            sha.update(chunk)
    return sha.hexdigest()[:16]


def _count_lines(path: Path) -> int:
    with path.open("rb") as raw:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: raw.read(1 << 20), b""))
