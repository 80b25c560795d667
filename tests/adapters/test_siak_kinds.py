"""The source-kind contract (tests/adapters/contract.py) for every source over the SIAK table:
SQLite and MariaDB polling by the change column, the MariaDB row binlog, the PostgreSQL txid
outbox and PostgreSQL logical decoding, each through the dukcapil adapter on real servers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from adapters import dukcapil
from adapters.dukcapil.fixtures import create_sqlite
from tests.adapters import siak_cdc
from tests.adapters.contract import (
    SiakKind,
    check_kind,
    create_mysql,
    insert_mysql,
    insert_postgres,
    insert_sqlite,
)
from tests.adapters.test_commit_order import outbox
from tests.adapters.test_dukcapil import KEY, load_postgres

KINDS = (
    "sqlite polling",
    "mysql polling",
    "mysql binlog",
    "postgresql txid outbox",
    "postgresql logical decoding",
)


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest, redis: Redis, tmp_path: Path) -> Iterator[SiakKind]:
    name: str = request.param
    if name == "sqlite polling":
        path = tmp_path / "siak.db"
        create_sqlite(path)
        yield SiakKind(
            name,
            redis,
            lambda rows: insert_sqlite(str(path), rows),
            lambda: dukcapil.adapter(redis, path, pseudonym_key=KEY),
            stamp=True,
        )
    elif name.startswith("mysql"):
        url: str = request.getfixturevalue("mysql_url")
        create_mysql(url)
        binlog = name == "mysql binlog"
        yield SiakKind(
            name,
            redis,
            lambda rows: insert_mysql(url, rows),
            lambda: dukcapil.adapter(redis, url, pseudonym_key=KEY, cdc=binlog),
            stamp=True,
        )
    elif name == "postgresql txid outbox":
        pg: str = request.getfixturevalue("postgres_url")
        load_postgres(pg, [])
        yield SiakKind(
            name,
            redis,
            lambda rows: insert_postgres(pg, rows),
            lambda: siak_cdc.over(redis, outbox(pg, txid_column="txid")),
        )
    else:
        pg = request.getfixturevalue("postgres_url")
        load_postgres(pg, [])
        slot = siak_cdc.new_slot()
        yield SiakKind(
            name,
            redis,
            lambda rows: insert_postgres(pg, rows),
            lambda: siak_cdc.adapter(redis, pg, slot),
        )
        siak_cdc.drop_slot(pg, slot)


async def test_every_siak_source_honours_the_source_contract(kind: SiakKind, redis: Redis) -> None:
    await check_kind(kind, redis)
