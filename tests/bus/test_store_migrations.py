"""Versioned migrations of a service's store, and ``?`` placeholders that leave literals alone:
on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from bus.store import Store, StoreError, Tx

V1 = "CREATE TABLE taxpayer (nop TEXT PRIMARY KEY, name TEXT NOT NULL)"  # no IF NOT EXISTS
V2 = [
    "ALTER TABLE taxpayer ADD COLUMN kecamatan TEXT",
    "CREATE INDEX taxpayer_kecamatan ON taxpayer (kecamatan)",
]
V3 = "UPDATE taxpayer SET kecamatan = '35.73.01' WHERE kecamatan IS NULL"


async def _versions(store: Store) -> list[tuple[str, int]]:
    rows = await store.run(
        lambda tx: tx.all("SELECT scope, version FROM simpul_schema ORDER BY scope, version")
    )
    return [(r["scope"], r["version"]) for r in rows]


async def test_each_version_is_applied_once_in_order(store_url: str) -> None:
    store = Store(store_url, scope="bapenda")
    try:
        assert await store.schema_version() == 0
        assert await store.migrate([V1]) == [1]
        await store.run(lambda tx: tx.execute("INSERT INTO taxpayer VALUES (?, ?)", ("N1", "A")))
        # Starting again: version 1 (a plain CREATE TABLE) is not run a second time.
        assert await store.migrate([V1]) == []
        assert await store.migrate([V1, V2, V3]) == [2, 3]
        assert await store.migrate([V1, V2, V3]) == []
        assert await store.schema_version() == 3
        row = await store.run(lambda tx: tx.one("SELECT nop, kecamatan FROM taxpayer"))
        assert row == {"nop": "N1", "kecamatan": "35.73.01"}  # V3 ran after V2 added the column
        assert await _versions(store) == [("bapenda", 1), ("bapenda", 2), ("bapenda", 3)]
    finally:
        await store.close()


async def test_a_failing_version_leaves_the_earlier_ones_and_runs_again_once_fixed(
    store_url: str,
) -> None:
    store = Store(store_url, scope="dinsos")
    try:
        broken = [
            "ALTER TABLE taxpayer ADD COLUMN kecamatan TEXT",
            "CREATE INDEX oops ON nowhere (x)",
        ]
        with pytest.raises((sqlite3.OperationalError, StoreError), match="nowhere"):
            await store.migrate([V1, broken])
        assert await store.schema_version() == 1
        # Version 2 rolled back as a whole: its first statement left no column behind.
        assert await store.migrate([V1, V2]) == [2]
        assert await store.schema_version() == 2
    finally:
        await store.close()


async def test_owners_sharing_a_database_have_their_own_versions(store_url: str) -> None:
    dinsos, bapenda = Store(store_url, scope="dinsos"), Store(store_url, scope="bapenda")
    try:
        assert await dinsos.migrate(["CREATE TABLE dinsos_grant (no TEXT)"]) == [1]
        assert await bapenda.migrate([V1, V2]) == [1, 2]
        assert await dinsos.schema_version() == 1
        assert await _versions(dinsos) == [
            ("bapenda", 1),
            ("bapenda", 2),
            ("dinsos", 1),
        ]
    finally:
        await dinsos.close()
        await bapenda.close()


async def test_replicas_starting_together_apply_each_version_once(store_url: str) -> None:
    """Four replicas migrate one fresh database at once: statements without IF NOT EXISTS
    would fail on a second run, so each must run exactly once."""
    replicas = [Store(store_url, scope="profile") for _ in range(4)]
    try:
        applied = await asyncio.gather(*(r.migrate([V1, V2, V3]) for r in replicas))
        assert sorted(v for versions in applied for v in versions) == [1, 2, 3]
        assert await _versions(replicas[0]) == [("profile", 1), ("profile", 2), ("profile", 3)]
    finally:
        for replica in replicas:
            await replica.close()


async def test_a_database_newer_than_the_code_is_left_alone(store_url: str) -> None:
    store = Store(store_url, scope="notifier")
    try:
        await store.migrate([V1, V2])
        assert await store.migrate([V1]) == []  # an older replica during a rolling update
        assert await store.schema_version() == 2
    finally:
        await store.close()


async def test_a_question_mark_inside_a_literal_is_not_a_placeholder(store_url: str) -> None:
    store = Store(store_url)
    try:
        await store.migrate(['CREATE TABLE note (id TEXT, body TEXT, "why?" TEXT)'])

        def write(tx: Tx) -> int:
            return tx.execute(
                "INSERT INTO note (id, body, \"why?\") VALUES (?, 'is it 100% paid? ''yes?''', ?)"
                " -- a comment? with ?",
                ("N-1", "because"),
            )

        assert await store.run(write) == 1
        row = await store.run(
            lambda tx: tx.one(
                "SELECT id, body, \"why?\" AS why FROM note WHERE body LIKE '%paid?%' AND id = ?",
                ("N-1",),
            )
        )
        assert row == {"id": "N-1", "body": "is it 100% paid? 'yes?'", "why": "because"}
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT ? , '?'", "SELECT %s , '?'"),
        ("SELECT 'a''?', ?", "SELECT 'a''?', %s"),
        ("SELECT E'it\\'s ?', ?", "SELECT E'it\\'s ?', %s"),
        ("SELECT $$ ? $$, $tag$ ? $tag$, ?", "SELECT $$ ? $$, $tag$ ? $tag$, %s"),
        ("SELECT ? /* ? */ -- ?\n, ?", "SELECT %s /* ? */ -- ?\n, %s"),
        (
            "SELECT \"a?\" FROM t WHERE b LIKE 'x%' AND c = ?",
            "SELECT \"a?\" FROM t WHERE b LIKE 'x%%' AND c = %s",
        ),
        ("SELECT 5 % 2, ?", "SELECT 5 %% 2, %s"),
        ("SELECT x$1, ?", "SELECT x$1, %s"),
    ],
)
def test_placeholders_for_psycopg(sql: str, expected: str) -> None:
    assert Tx(None, "postgresql")._sql(sql) == expected
    assert Tx(None, "sqlite")._sql(sql) == sql
