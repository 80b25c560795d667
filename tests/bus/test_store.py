"""A service's store: SQLite (a file in tmp_path) and PostgreSQL (the shared test server)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from bus import store as store_module
from bus.errors import ConfigurationError
from bus.local.redis import free_port
from bus.store import Store, StoreUnavailable, Tx

TABLE = "CREATE TABLE IF NOT EXISTS grant_status (grant_no TEXT PRIMARY KEY, status TEXT NOT NULL)"


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    store = Store(store_url)
    await store.migrate([TABLE])
    yield store
    await store.close()


def insert(grant_no: str, status: str = "active") -> Callable[[Tx], int]:
    def work(tx: Tx) -> int:
        return tx.execute("INSERT INTO grant_status VALUES (?, ?)", (grant_no, status))

    return work


async def statuses(store: Store) -> dict[str, str]:
    rows = await store.run(lambda tx: tx.all("SELECT grant_no, status FROM grant_status"))
    return {row["grant_no"]: row["status"] for row in rows}


async def test_migrate_can_run_again(store: Store) -> None:
    await store.run(insert("G-1"))
    await store.migrate([TABLE])  # again: nothing to create, nothing lost
    await store.migrate([TABLE])
    assert await statuses(store) == {"G-1": "active"}


async def test_run_commits_what_another_connection_then_sees(store: Store, store_url: str) -> None:
    assert await store.run(insert("G-1")) == 1
    other = Store(store_url)
    try:
        assert await statuses(other) == {"G-1": "active"}
    finally:
        await other.close()


async def test_an_exception_inside_work_rolls_everything_back(store: Store) -> None:
    def half_done(tx: Tx) -> None:
        tx.execute("INSERT INTO grant_status VALUES (?, ?)", ("G-1", "active"))
        raise ValueError("payment system said no")

    with pytest.raises(ValueError, match="payment system said no"):
        await store.run(half_done)
    assert await statuses(store) == {}
    await store.run(insert("G-2"))  # the store still works afterwards
    assert await statuses(store) == {"G-2": "active"}


async def test_once_runs_the_work_once_per_key(store: Store) -> None:
    calls: list[str] = []

    def suspend(tx: Tx) -> str:
        calls.append("suspend")
        tx.execute("INSERT INTO grant_status VALUES (?, ?)", ("G-1", "suspended"))
        return "suspended"

    assert await store.once("event-1", suspend) == "suspended"
    assert await store.once("event-1", suspend) is None  # a redelivery: nothing happens
    assert calls == ["suspend"]
    assert await store.once("event-2", insert("G-2")) == 1  # another key runs
    assert await statuses(store) == {"G-1": "suspended", "G-2": "active"}


async def test_once_whose_work_fails_records_nothing_so_a_retry_runs(store: Store) -> None:
    attempts: list[int] = []

    def flaky(tx: Tx) -> str:
        attempts.append(len(attempts) + 1)
        tx.execute("INSERT INTO grant_status VALUES (?, ?)", ("G-1", "suspended"))
        if len(attempts) == 1:
            raise ConnectionError("notification service down")
        return "done"

    with pytest.raises(ConnectionError):
        await store.once("event-1", flaky)
    assert await store.run(lambda tx: tx.all("SELECT key FROM simpul_inbox")) == []
    assert await statuses(store) == {}
    assert await store.once("event-1", flaky) == "done"
    assert attempts == [1, 2]
    assert await store.run(lambda tx: tx.value("SELECT COUNT(*) FROM simpul_inbox")) == 1


async def test_question_mark_placeholders_and_literal_percent_signs(store: Store) -> None:
    await store.run(insert("G-1"))
    await store.run(insert("H-1", "suspended"))

    def query(tx: Tx) -> tuple[object, ...]:
        return (
            tx.value("SELECT status FROM grant_status WHERE grant_no = ?", ("H-1",)),
            tx.all("SELECT grant_no FROM grant_status WHERE grant_no LIKE 'G%'"),
            tx.all("SELECT grant_no FROM grant_status WHERE grant_no LIKE ?", ("H%",)),
            tx.value(
                "SELECT COUNT(*) FROM grant_status WHERE status = ? AND grant_no <> ?",
                ("active", "none"),
            ),
        )

    assert await store.run(query) == (
        "suspended",
        [{"grant_no": "G-1"}],
        [{"grant_no": "H-1"}],
        1,
    )


async def test_rows_are_dicts_keyed_by_column(store: Store) -> None:
    await store.run(
        lambda tx: tx.executemany(
            "INSERT INTO grant_status VALUES (?, ?)", [("G-1", "active"), ("G-2", "suspended")]
        )
    )

    def read(tx: Tx) -> tuple[object, ...]:
        return (
            tx.all("SELECT grant_no AS no, status FROM grant_status ORDER BY grant_no"),
            tx.one("SELECT status FROM grant_status WHERE grant_no = ?", ("G-2",)),
            tx.one("SELECT status FROM grant_status WHERE grant_no = ?", ("nope",)),
            tx.value("SELECT status FROM grant_status WHERE grant_no = ?", ("nope",)),
        )

    assert await store.run(read) == (
        [{"no": "G-1", "status": "active"}, {"no": "G-2", "status": "suspended"}],
        {"status": "suspended"},
        None,
        None,
    )


def test_two_stores_on_one_sqlite_file_from_two_threads_never_lock(tmp_path: Path) -> None:
    """Two replicas (or a service and its CLI) share one file: writes queue, none fails."""
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    errors: list[BaseException] = []
    ready = threading.Barrier(2)

    async def replica(name: str) -> None:
        store = Store(url)
        try:
            await store.migrate([TABLE])
            ready.wait(timeout=30)  # both start writing together
            for i in range(150):
                await store.run(insert(f"{name}-{i}"))
                await store.once(f"shared-{i}", insert(f"shared-{i}"))  # both try every one
        finally:
            await store.close()

    def thread(name: str) -> None:
        try:
            asyncio.run(replica(name))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=thread, args=(name,)) for name in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert errors == []

    async def count() -> tuple[int, int]:
        store = Store(url)
        try:
            rows = await store.run(lambda tx: tx.value("SELECT COUNT(*) FROM grant_status"))
            keys = await store.run(lambda tx: tx.value("SELECT COUNT(*) FROM simpul_inbox"))
            return rows, keys
        finally:
            await store.close()

    assert asyncio.run(count()) == (450, 150)  # 2 x 150 own rows + 150 shared ones, once each


async def test_unreachable_postgresql_is_unavailable_without_the_password() -> None:
    store = Store(f"postgresql://dinsos:Sup3rSecretPw@127.0.0.1:{free_port()}/dinsos")
    try:
        with pytest.raises(StoreUnavailable) as caught:
            await store.run(lambda tx: tx.value("SELECT 1"))
    finally:
        await store.close()
    message = str(caught.value)
    assert "Store(postgresql:127.0.0.1/dinsos)" in message
    assert "Sup3rSecretPw" not in message
    assert "Sup3rSecretPw" not in repr(caught.value.__cause__ or "")


async def test_unopenable_sqlite_file_is_unavailable(tmp_path: Path) -> None:
    (tmp_path / "a-folder.db").mkdir()
    store = Store(f"sqlite:///{tmp_path / 'a-folder.db'}")
    try:
        with pytest.raises(StoreUnavailable, match="unable to open"):
            await store.run(lambda tx: tx.value("SELECT 1"))
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("mysql://root:Sup3rSecretPw@db/dinsos", "not mysql://"),
        ("sqlite://relative.db", "sqlite:///relative/path.db"),
        ("host=db user=dinsos password=Sup3rSecretPw", "not a string without a scheme"),
        ("postgresql://dinsos:Sup3rSecretPw@db:fivefourthree/dinsos", "port 'fivefourthree'"),
        ("postgresql://dinsos:Sup3rSecretPw@db/dinsos?colour=blue", 'parameter: "colour"'),
        ("postgresql://dinsos:Sup3rSecretPw%zz@db/dinsos", "invalid percent-encoded token"),
        ("postgresql://dinsos:Sup3rSecretPw@[::1/dinsos", "IPv6 host address"),
    ],
)
def test_bad_urls_are_configuration_errors_naming_the_problem(url: str, problem: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Store(url)
    assert problem in str(caught.value)
    assert "Sup3rSecretPw" not in str(caught.value)


def test_repr_hides_the_password(tmp_path: Path) -> None:
    store = Store("postgresql://dinsos:Sup3rSecretPw@db.malangkota.go.id:5432/dinsos")
    assert repr(store) == "Store(postgresql:db.malangkota.go.id/dinsos)"
    assert "Sup3rSecretPw" not in repr(store) + str(store)
    assert repr(Store(f"sqlite:///{tmp_path}/x.db")) == f"Store(sqlite:{tmp_path}/x.db)"


async def test_for_service_reads_its_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, postgres_url: str
) -> None:
    monkeypatch.setenv("SIMPUL_DINSOS_BANSOS_DB", postgres_url)
    store = Store.for_service("dinsos-bansos")
    try:
        assert store.dialect == "postgresql"
        await store.migrate([TABLE])
        await store.run(insert("G-1"))
        assert await statuses(store) == {"G-1": "active"}
    finally:
        await store.close()

    monkeypatch.setenv("SIMPUL_AUDIT_DB", f"sqlite:///{tmp_path / 'elsewhere' / 'audit.db'}")
    store = Store.for_service("audit")
    try:
        await store.migrate([TABLE])
    finally:
        await store.close()
    assert (tmp_path / "elsewhere" / "audit.db").is_file()


async def test_for_service_defaults_to_sqlite_in_the_data_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("SIMPUL_PROFILE_DB", raising=False)
    monkeypatch.setenv("SIMPUL_DATA_DIR", str(tmp_path / "data"))
    store = Store.for_service("profile")
    try:
        assert store.dialect == "sqlite"
        await store.migrate([TABLE])
        await store.run(insert("G-1"))
    finally:
        await store.close()
    assert (tmp_path / "data" / "profile.db").is_file()

    monkeypatch.delenv("SIMPUL_DATA_DIR")
    monkeypatch.chdir(tmp_path)
    assert repr(Store.for_service("profile")) == "Store(sqlite:.simpul/profile.db)"
    explicit = Store.for_service("profile", data_dir=str(tmp_path / "given"))
    assert repr(explicit) == f"Store(sqlite:{tmp_path}/given/profile.db)"


async def test_close_twice_is_fine_and_using_a_closed_store_says_so(store: Store) -> None:
    await store.close()
    await store.close()
    with pytest.raises(StoreUnavailable, match=r"Store\(.*\) is closed"):
        await store.run(lambda tx: tx.value("SELECT 1"))
    with pytest.raises(StoreUnavailable, match="is closed"):
        await store.once("event-1", insert("G-1"))


async def test_scoped_stores_share_a_database_without_sharing_once_keys(store_url: str) -> None:
    """Two services on one database: the same once key (an event id + purpose) is each
    service's own, so one handling a death never makes the other skip it."""
    dinsos, bapenda = Store(store_url, scope="dinsos"), Store(store_url, scope="bapenda")
    try:
        await dinsos.migrate(["CREATE TABLE IF NOT EXISTS effects (who TEXT)"])
        await bapenda.migrate([])
        ran = [
            await s.once(
                "event-1:death",
                lambda tx, s=s: tx.execute("INSERT INTO effects (who) VALUES (?)", (s.scope,)),
            )
            for s in (dinsos, bapenda, dinsos)
        ]
        assert ran == [1, 1, None]
        rows = await dinsos.run(lambda tx: tx.all("SELECT who FROM effects ORDER BY who"))
        assert [r["who"] for r in rows] == ["bapenda", "dinsos"]
        assert Store.for_service("dinsos").scope == "dinsos"
    finally:
        await dinsos.close()
        await bapenda.close()


def test_replicas_opening_a_new_sqlite_file_together_never_see_it_locked(tmp_path: Path) -> None:
    """Switching a new file to WAL takes it whole and SQLite does not wait for that: two stores
    opening a new file at once failed with "database is locked" about one time in three."""
    errors: list[BaseException] = []
    for round_ in range(20):
        path = tmp_path / f"new-{round_}.db"
        start = threading.Barrier(2)

        def open_file(path: Path = path, start: threading.Barrier = start) -> None:
            conn = sqlite3.connect(path, timeout=30.0, isolation_level=None)
            try:
                start.wait(timeout=30)
                store_module._wal(conn)  # what Store does with each new connection
            except BaseException as exc:
                errors.append(exc)
            finally:
                conn.close()

        threads = [threading.Thread(target=open_file) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    assert errors == []
