"""What logical decoding needs of a PostgreSQL server and of a table, checked up front, and the
one-line errors that name the setting to change (docs/adapters/cdc.md)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql

from bus.errors import ConfigurationError

__all__ = ["check_server", "check_table", "slot_lost", "slot_missing", "table_sql"]

Row = dict[str, Any]


async def check_server(conn: psycopg.AsyncConnection[Row]) -> None:
    cursor = await conn.execute(
        "SELECT current_setting('wal_level') AS wal_level, "
        "(SELECT rolsuper OR rolreplication FROM pg_roles WHERE rolname = current_user) AS ok"
    )
    found = await cursor.fetchone()
    assert found is not None
    if found["wal_level"] != "logical":
        raise ConfigurationError(
            f"PostgreSQL wal_level is {found['wal_level']!r}; change-data-capture needs "
            "wal_level=logical: set it in postgresql.conf and restart the server "
            "(docs/adapters/cdc.md)"
        )
    if not found["ok"]:
        raise ConfigurationError(
            "the database user has no REPLICATION attribute, needed to read a replication "
            "slot: ALTER ROLE <user> REPLICATION (docs/adapters/cdc.md)"
        )


async def check_table(
    conn: psycopg.AsyncConnection[Row], table: str, key: Sequence[str], changes: frozenset[str]
) -> int:
    """The table's OID, once it is sure its changes can be decoded (and published)."""
    cursor = await conn.execute(
        "SELECT c.oid, c.relreplident AS identity, ARRAY(SELECT a.attname::text FROM pg_index i "
        "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
        "WHERE i.indrelid = c.oid AND i.indisprimary) AS primary_key "
        "FROM pg_class c WHERE c.oid = to_regclass(%s)",
        [table],
    )
    found = await cursor.fetchone()
    if found is None:
        raise ConfigurationError(f"table {table!r} not found (check the name and search_path)")
    identity, primary_key = found["identity"], found["primary_key"]
    if identity == "n" or (identity == "d" and not primary_key):
        # A publication of updates on such a table makes the application's UPDATEs fail.
        raise ConfigurationError(
            f"table {table} has no primary key and no replica identity, so PostgreSQL cannot "
            f"publish its updates: add a primary key, or ALTER TABLE {table} REPLICA IDENTITY "
            "FULL"
        )
    if "delete" in changes and identity != "f" and not set(key) <= set(primary_key):
        raise ConfigurationError(
            f"a delete in {table} carries only its replica identity ({', '.join(primary_key)}), "
            f"not the key {', '.join(key)}: ALTER TABLE {table} REPLICA IDENTITY FULL"
        )
    return int(found["oid"])


def table_sql(table: str) -> sql.Composable:
    return sql.SQL(".").join(sql.Identifier(part) for part in table.split("."))


def slot_missing(slot: str, table: str) -> ConfigurationError:
    return ConfigurationError(
        f"replication slot {slot!r} for {table} does not exist (dropped, or the database failed "
        "over to a standby, which has no slots): changes since the checkpoint may be lost; "
        "delete the adapter's checkpoint to take a new snapshot (docs/adapters/cdc.md)"
    )


def slot_lost(slot: str, table: str) -> ConfigurationError:
    return ConfigurationError(
        f"replication slot {slot!r} for {table} was invalidated: its WAL passed "
        "max_slot_wal_keep_size and was removed, so changes may have been lost; drop the slot "
        f"(SELECT pg_drop_replication_slot('{slot}')) and delete the adapter's checkpoint to "
        "take a new snapshot (docs/adapters/cdc.md)"
    )
