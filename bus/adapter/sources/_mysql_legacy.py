"""Column values of legacy PHP/MySQL applications, read as the application meant them.

Shared by the polling source (:mod:`bus.adapter.sources.mysql`) and the binlog source
(:mod:`bus.adapter.sources.binlog`), so a row reads the same whichever way it arrives:

* **latin1 columns holding UTF-8 bytes.** Old PHP apps talk to MySQL over a latin1 connection
  and send UTF-8 bytes, which the server stores unchanged in latin1 columns: "Désa" is stored
  as ``44 C3 A9 73 61`` and read back through a UTF-8 connection as "DÃ©sa". The bytes are
  recovered exactly (MySQL's latin1 is cp1252 with five C1 controls, :data:`_TO_BYTE` inverts
  it) and decoded as UTF-8 when they are valid UTF-8 and not plain ASCII; otherwise the value
  is genuine latin1 text and kept as the server decoded it.
* **Zero dates** (``0000-00-00``, ``0000-00-00 00:00:00``, or a zero month/day) are no dates:
  they read as None, so a mapper whose contract requires the field quarantines the record with
  the field named, and one whose field is optional publishes it without.
* **ZEROFILL integers** are identifiers with their leading zeros (``00042``): text, padded to
  the column's width.
* **TINYINT(1)** is how MySQL spells a boolean: True or False.

MySQL's JSON columns are parsed (the binlog hands them over parsed; MariaDB's JSON is text with
a check, and stays text both ways).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

__all__ = ["Column", "LegacyColumns", "legacy_text"]

_DATES = frozenset({"date", "datetime", "timestamp"})
_WIDTH = re.compile(r"^\w+\((\d+)\)")
_DEFAULT_WIDTH = {"tinyint": 3, "smallint": 5, "mediumint": 8, "int": 10, "bigint": 20}


def _mysql_latin1() -> tuple[str, dict[str, int]]:
    """MySQL's latin1 (cp1252, with the five bytes cp1252 leaves undefined as C1 controls) as
    a decoding table, and its inverse. The inverse also takes ISO-8859-1 decodings (each byte
    as the code point of its value), which is how the binlog reader hands such text over."""
    chars = []
    for byte in range(256):
        try:
            chars.append(bytes([byte]).decode("cp1252"))
        except UnicodeDecodeError:
            chars.append(chr(byte))
    inverse = {chr(byte): byte for byte in range(256)}
    inverse.update({char: byte for byte, char in enumerate(chars)})
    return "".join(chars), inverse


_TO_CHAR, _TO_BYTE = _mysql_latin1()


def legacy_text(value: str) -> str:
    """A latin1 column's text: the UTF-8 the application stored when its bytes are UTF-8,
    else the latin1 text it is."""
    try:
        raw = bytes(_TO_BYTE[char] for char in value)
    except KeyError:  # a character latin1 cannot hold: the server decoded it otherwise
        return value
    if raw.isascii():
        return value
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return "".join(_TO_CHAR[byte] for byte in raw)


@dataclass(frozen=True, slots=True)
class Column:
    """What information_schema.COLUMNS says about one column."""

    name: str
    data_type: str  # "int", "varchar", "date", ...
    column_type: str  # "int(6) unsigned zerofill", "tinyint(1)", ...
    charset: str | None  # "latin1", "utf8mb4", None for non-text columns
    primary: bool = False  # part of the primary key

    def decoder(self) -> Callable[[Any], Any] | None:
        """How to read this column's values, or None when the driver's value is right."""
        if self.data_type in _DATES:
            return _date_or_none
        if self.data_type == "json":  # MySQL's JSON: text from a query, parsed from the binlog
            return lambda value: json.loads(value) if isinstance(value, str | bytes) else value
        if "zerofill" in self.column_type:
            width = _width(self.column_type, self.data_type)
            return lambda value: f"{value:0{width}d}" if isinstance(value, int) else value
        if self.column_type.startswith("tinyint(1)"):
            return lambda value: bool(value) if isinstance(value, int) else value
        if self.charset == "latin1":
            return lambda value: legacy_text(value) if isinstance(value, str) else value
        return None


class LegacyColumns:
    """The decoders of one table's columns, applied to each row read from it."""

    def __init__(self, columns: list[Column]) -> None:
        self.columns = columns
        self._decoders = {c.name: d for c in columns if (d := c.decoder()) is not None}

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def primary_key(self) -> list[str]:
        return [c.name for c in self.columns if c.primary]

    def decode(self, row: Mapping[str, Any]) -> dict[str, Any]:
        decoded = dict(row)
        for name, decoder in self._decoders.items():
            value = decoded.get(name)
            if value is not None:
                decoded[name] = decoder(value)
        return decoded


COLUMNS_SQL = (
    "SELECT COLUMN_NAME AS name, DATA_TYPE AS data_type, COLUMN_TYPE AS column_type, "
    "CHARACTER_SET_NAME AS charset, COLUMN_KEY AS column_key FROM information_schema.COLUMNS "
    "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION"
)


def columns_from(rows: Sequence[Mapping[str, Any]]) -> LegacyColumns:
    """The table's columns from :data:`COLUMNS_SQL`'s rows (any driver: text or bytes)."""
    return LegacyColumns(
        [
            Column(
                _str(r["name"]),
                _str(r["data_type"]).lower(),
                _str(r["column_type"]).lower(),
                _str(r["charset"]).lower() if r["charset"] is not None else None,
                _str(r["column_key"]) == "PRI",
            )
            for r in rows
        ]
    )


def _str(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _date_or_none(value: Any) -> Any:
    """A date column's value that is no date (the driver's text for 0000-00-00) is None."""
    return value if isinstance(value, date) else None


def _width(column_type: str, data_type: str) -> int:
    match = _WIDTH.match(column_type)
    return int(match.group(1)) if match else _DEFAULT_WIDTH.get(data_type, 1)
