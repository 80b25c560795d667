"""One contract test for the SQL source, run against PostgreSQL and SQLite, by change column
and by outbox: a total order that survives ties and batch edges, resumable from any position."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast

import psycopg
import pytest
from structlog.testing import capture_logs

from bus.adapter import Record
from bus.adapter.sources import sql
from bus.adapter.sources.sql import PostgresDatabase, SqliteDatabase, SqlSource
from bus.errors import ConfigurationError

T0 = datetime(2026, 11, 1, 7, 0)

_TABLES = """
CREATE TABLE legacy (no {serial} PRIMARY KEY, kunci TEXT, versi INTEGER, isi TEXT,
                     diubah TIMESTAMP);
CREATE TABLE legacy_outbox (no_outbox {serial} PRIMARY KEY, {txid} kunci TEXT, versi INTEGER,
                            isi TEXT, diubah TIMESTAMP);
"""
# The writing transaction, so the outbox is read only once it finished (bus.adapter.sources.sql).
_PG_TXID = "txid BIGINT NOT NULL DEFAULT pg_current_xact_id()::text::bigint,"
_PG_TRIGGER = """
CREATE FUNCTION ke_outbox() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
  INSERT INTO legacy_outbox (kunci, versi, isi, diubah)
  VALUES (NEW.kunci, NEW.versi, NEW.isi, NEW.diubah); RETURN NEW; END $$;
CREATE TRIGGER ke_outbox AFTER INSERT OR UPDATE ON legacy FOR EACH ROW EXECUTE FUNCTION ke_outbox();
"""
_COPY = """INSERT INTO legacy_outbox (kunci, versi, isi, diubah)
           VALUES (NEW.kunci, NEW.versi, NEW.isi, NEW.diubah);"""
_SQLITE_TRIGGER = f"""
CREATE TRIGGER ke_outbox_i AFTER INSERT ON legacy BEGIN {_COPY} END;
CREATE TRIGGER ke_outbox_u AFTER UPDATE ON legacy BEGIN {_COPY} END;
"""


class Legacy:
    """A legacy table in one database, written synchronously as the legacy app would."""

    def __init__(self, dialect: str, target: str, outbox: bool) -> None:
        self.dialect, self.target, self.outbox = dialect, target, outbox
        self.mark = "%s" if dialect == "postgresql" else "?"
        if dialect == "postgresql":
            self._run(_TABLES.format(serial="BIGSERIAL", txid=_PG_TXID) + _PG_TRIGGER)
        else:
            self._run(_TABLES.format(serial="INTEGER", txid="") + _SQLITE_TRIGGER)

    def _run(self, script: str, params: list[tuple[Any, ...]] | None = None) -> None:
        if self.dialect == "postgresql":
            with psycopg.connect(self.target, autocommit=True) as conn:
                if params is None:
                    conn.execute(script)  # type: ignore[arg-type]
                else:
                    conn.cursor().executemany(script, params)  # type: ignore[arg-type]
            return
        with sqlite3.connect(self.target) as conn:
            if params is None:
                conn.executescript(script)
            else:
                conn.executemany(script, params)
        conn.close()

    def stamp(self, moment: datetime) -> Any:
        return moment if self.dialect == "postgresql" else f"{moment:%Y-%m-%d %H:%M:%S.%f}"

    def insert(self, rows: list[tuple[str, int, str, datetime]]) -> None:
        m = self.mark
        self._run(
            f"INSERT INTO legacy (kunci, versi, isi, diubah) VALUES ({m}, {m}, {m}, {m})",
            [(k, v, i, self.stamp(t)) for k, v, i, t in rows],
        )

    def update(self, key: str, content: str, moment: datetime) -> None:
        m = self.mark
        self._run(
            f"UPDATE legacy SET isi = {m}, versi = versi + 1, diubah = {m} WHERE kunci = {m}",
            [(content, self.stamp(moment), key)],
        )

    def source(self) -> SqlSource:
        if self.dialect == "postgresql":
            db: Any = PostgresDatabase(self.target)
        else:
            db = SqliteDatabase(self.target)
        if self.outbox:
            return SqlSource.by_outbox(
                db,
                outbox_table="legacy_outbox",
                outbox_id="no_outbox",
                key="kunci",
                version="versi",
                name="legacy",
                time_column="diubah",
            )
        return SqlSource.by_change_column(
            db,
            table="legacy",
            change_column="diubah",
            primary_key="no",
            key="kunci",
            version="versi",
            time_column="diubah",
        )


@pytest.fixture(params=["sqlite-change", "sqlite-outbox", "postgresql-change", "postgresql-outbox"])
def legacy(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Legacy]:
    dialect, mode = request.param.split("-")
    target = (
        request.getfixturevalue("postgres_url")
        if dialect == "postgresql"
        else str(tmp_path / "legacy.db")
    )
    yield Legacy(dialect, target, outbox=mode == "outbox")


@pytest.fixture
async def source(legacy: Legacy) -> AsyncIterator[SqlSource]:
    src = legacy.source()
    yield src
    await src.db.close()


def table(count: int, *, start: int = 0) -> list[tuple[str, int, str, datetime]]:
    """Rows where every third shares the timestamp of the one before (ties for the key)."""
    return [
        (f"K{start + i:05d}", 1, f"isi {start + i}", T0 + timedelta(seconds=(start + i) // 3))
        for i in range(count)
    ]


async def read_all(src: SqlSource, after: Any = None, size: int = 7) -> list[Record]:
    records: list[Record] = []
    async for batch in src.batches(after, size=size):
        assert 0 < len(batch) <= size
        records += batch
    return records


async def test_reads_every_row_once_in_order_across_ties_and_batch_edges(
    legacy: Legacy, source: SqlSource
) -> None:
    legacy.insert(table(50))

    records = await read_all(source)

    assert [r.key for r in records] == [f"K{i:05d}" for i in range(50)]
    assert {r.version for r in records} == {"1"}
    assert records[0].data["isi"] == "isi 0"
    assert records[0].time is not None and records[0].time.tzinfo is not None
    assert await source.remaining(None) == 50
    assert source.name == "legacy"


async def test_resumes_after_any_position_even_through_json(
    legacy: Legacy, source: SqlSource
) -> None:
    legacy.insert(table(30))
    records = await read_all(source)

    for cut in (0, 1, 2, 3, 14, 29):
        position = json.loads(json.dumps(records[cut].position))
        rest = await read_all(source, position, size=4)
        assert [r.key for r in rest] == [r.key for r in records[cut + 1 :]]
        assert await source.remaining(position) == 29 - cut


async def test_new_and_changed_rows_come_after_the_last_position(
    legacy: Legacy, source: SqlSource
) -> None:
    legacy.insert(table(10))
    first = await read_all(source)
    position = first[-1].position
    assert await read_all(source, position) == []

    legacy.update("K00002", "dikoreksi", T0 + timedelta(hours=1))
    legacy.insert(table(2, start=10))
    later = await read_all(source, position)

    # Change column: the corrected row moves to its new place in time; outbox: its copy is
    # appended. Either way the correction is read once, as version 2, after the old position.
    assert sorted((r.key, r.version) for r in later) == [
        ("K00002", "2"),
        ("K00010", "1"),
        ("K00011", "1"),
    ]
    corrected = next(r for r in later if r.key == "K00002")
    assert corrected.data["isi"] == "dikoreksi"


async def test_a_pass_stopped_after_a_batch_leaves_the_source_ready_for_the_next(
    legacy: Legacy, source: SqlSource
) -> None:
    # A runner that stops after a batch (Redis went away) closes the pass; the next pass
    # resumes at the batch's position on the same connection, nothing skipped or read twice.
    legacy.insert(table(30))
    batches = cast(AsyncGenerator[Sequence[Record], None], source.batches(None, size=7))
    first = await anext(batches)
    await batches.aclose()

    rest = await read_all(source, first[-1].position)
    assert [r.key for r in [*first, *rest]] == [f"K{i:05d}" for i in range(30)]


async def test_a_position_of_another_shape_is_refused(source: SqlSource) -> None:
    with pytest.raises(ConfigurationError, match="does not fit"):
        await read_all(source, ["2026-11-01", 1, "extra"])


def test_table_and_column_names_must_be_plain_identifiers(tmp_path: Path) -> None:
    db = SqliteDatabase(tmp_path / "x.db")
    with pytest.raises(ConfigurationError, match="plain SQL identifier"):
        SqlSource(db, table="legacy; DROP TABLE x", key="k", version="v", order_by=["k"])


@pytest.mark.parametrize(
    "url", ["mysql://reader:s3cret@db:3306/app", "postgresql://reader:s3cret@db/app"]
)
def test_a_url_is_refused_as_a_sqlite_file_without_its_password(url: str) -> None:
    """A MySQL URL given to an adapter that knew only SQLite and PostgreSQL was opened as a
    file: "unable to open database file", the password in the message. Now: what to use."""
    with pytest.raises(ConfigurationError, match=r"not a (mysql|postgresql):// URL") as refused:
        SqliteDatabase(url)
    assert "s3cret" not in str(refused.value)


async def test_a_long_pass_remembers_only_the_positions_the_late_row_check_looks_at(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A backfill is one pass over the whole table: remembering every position for the next
    # pass's late-row check made its memory grow with the table (1M rows: +180 MiB).
    monkeypatch.setattr(sql, "_SEEN_PRUNE_AT", 50)
    legacy = Legacy("postgresql", postgres_url, outbox=False)  # a settle window needs timestamps
    legacy.insert([(f"K{i:05d}", 1, "isi", T0 + timedelta(minutes=i)) for i in range(600)])
    src = SqlSource.by_change_column(
        PostgresDatabase(legacy.target),
        table="legacy",
        change_column="diubah",
        primary_key="no",
        key="kunci",
        version="versi",
        settle=1.0,
    )
    records = await read_all(src, size=20)
    assert len(records) == 600
    assert src._seen is not None and len(src._seen) <= 100  # rows a minute apart, 10 s back
    # Resuming where the runner's checkpoint can be (after the last batch, or the one before
    # it if the last one failed to publish) finds nothing late.
    with capture_logs() as logs:
        assert await read_all(src, after=records[-21].position, size=20) == records[-20:]
        assert await read_all(src, after=records[-1].position, size=20) == []
    assert [e for e in logs if e["event"] == "source_row_committed_late"] == []
    await src.db.close()
