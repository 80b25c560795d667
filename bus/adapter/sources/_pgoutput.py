"""Decoding PostgreSQL's ``pgoutput`` logical replication messages (protocol version 1).

Only what the change-data-capture source needs: transaction boundaries and row changes of the
tables in the publication. Column values arrive as PostgreSQL's text output; each one is loaded
by its column's type (from the Relation message) with psycopg's own loaders, so a change carries
the same Python values (dates, decimals, arrays, JSON) as a ``SELECT`` of the row would.
See https://www.postgresql.org/docs/15/protocol-logicalrep-message-formats.html
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from psycopg import pq
from psycopg.abc import Transformer

__all__ = ["Begin", "Commit", "Decoder", "RowChange", "lsn_int", "lsn_text"]

_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)  # PostgreSQL's timestamps count from here


def lsn_text(lsn: int) -> str:
    """An LSN in PostgreSQL's notation, e.g. ``0/16B3748``."""
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def lsn_int(text: str) -> int:
    high, low = text.split("/")
    return (int(high, 16) << 32) | int(low, 16)


@dataclass(frozen=True, slots=True)
class Begin:
    final_lsn: int  # the commit record's LSN
    time: datetime  # the commit time


@dataclass(frozen=True, slots=True)
class Commit:
    end_lsn: int  # just past the commit record: where a reader resumes after this transaction
    time: datetime


@dataclass(frozen=True, slots=True)
class RowChange:
    relation: int  # the table's OID
    change: Literal["insert", "update", "delete"]
    row: dict[str, Any]  # the new row; a delete's old row (only its replica identity, or FULL)
    unchanged: frozenset[str]  # TOASTed columns an update left alone: absent from ``row``


@dataclass(frozen=True, slots=True)
class _Relation:
    columns: tuple[tuple[str, int], ...]  # (name, type OID)


Message = Begin | Commit | RowChange | None


class Decoder:
    """Stateful: Relation messages describe the tables whose rows follow."""

    def __init__(self, transformer: Transformer) -> None:
        self._types = transformer
        self._relations: dict[int, _Relation] = {}

    def decode(self, data: bytes) -> Message:
        kind = data[:1]
        if kind == b"B":
            final_lsn, stamp, _xid = struct.unpack_from("!QqI", data, 1)
            return Begin(final_lsn, _time(stamp))
        if kind == b"C":
            _flags, _commit_lsn, end_lsn, stamp = struct.unpack_from("!BQQq", data, 1)
            return Commit(end_lsn, _time(stamp))
        if kind == b"R":
            self._relation(data)
            return None
        if kind in (b"I", b"U", b"D"):
            return self._change(kind, data)
        return None  # Type, Origin, Truncate, Message: nothing a row source publishes

    def _relation(self, data: bytes) -> None:
        (relid,) = struct.unpack_from("!I", data, 1)
        offset = 5
        _namespace, offset = _string(data, offset)
        _name, offset = _string(data, offset)
        _identity, count = struct.unpack_from("!bH", data, offset)
        offset += 3
        columns = []
        for _ in range(count):
            offset += 1  # flags: part of the key
            name, offset = _string(data, offset)
            type_oid, _typmod = struct.unpack_from("!Ii", data, offset)
            offset += 8
            columns.append((name, type_oid))
        self._relations[relid] = _Relation(tuple(columns))

    def _change(self, kind: bytes, data: bytes) -> RowChange:
        (relid,) = struct.unpack_from("!I", data, 1)
        relation = self._relations[relid]  # pgoutput sends a Relation before its first row
        offset = 5
        old: dict[str, Any] = {}
        if data[offset : offset + 1] in (b"K", b"O"):
            old, _, offset = self._tuple(relation, data, offset + 1)
        if kind == b"D":
            return RowChange(relid, "delete", old, frozenset())
        new, unchanged, _ = self._tuple(relation, data, offset + 1)  # skip the "N"
        return RowChange(relid, "insert" if kind == b"I" else "update", new, unchanged)

    def _tuple(
        self, relation: _Relation, data: bytes, offset: int
    ) -> tuple[dict[str, Any], frozenset[str], int]:
        (count,) = struct.unpack_from("!H", data, offset)
        offset += 2
        row: dict[str, Any] = {}
        unchanged = set()
        for name, type_oid in relation.columns[:count]:
            marker = data[offset : offset + 1]
            offset += 1
            if marker == b"n":
                row[name] = None
            elif marker == b"u":
                unchanged.add(name)
            else:  # b"t": text
                (length,) = struct.unpack_from("!I", data, offset)
                offset += 4
                text = data[offset : offset + length]
                offset += length
                row[name] = self._types.get_loader(type_oid, pq.Format.TEXT).load(text)
        return row, frozenset(unchanged), offset


def _string(data: bytes, offset: int) -> tuple[str, int]:
    end = data.index(b"\0", offset)
    return data[offset:end].decode(), end + 1


def _time(microseconds: int) -> datetime:
    return _EPOCH + timedelta(microseconds=microseconds)
