"""How many committed row versions polling misses, and the binlog source does not.

``python -m bench.polling_hole [--writers 8 --per-writer 150]`` starts a private MariaDB and
Redis. Writer threads commit transactions of an insert (stamped and numbered at the first
statement), think time, an update of one of their earlier rows, think time, commit. The SIAK
adapter polls the table by ``updated_at`` every 50 ms twice over: plain polling (``settle=0``,
Redis database 0) and commit-safe polling (the default 5 s settle window, database 1), while a
third copy reads the binlog (``cdc=True``, database 2). Afterwards each stream is compared with
the versions in the table.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pymysql

from adapters import dukcapil
from adapters.dukcapil.schema import ddl
from bus import keys
from bus.connection import connect
from bus.local.mariadb import EmbeddedMariaDB
from bus.local.redis import EmbeddedRedis
from bus.publisher import event_id
from tests.adapters.test_binlog_crash import Writers


def write(url: str, writers: int, per_writer: int) -> None:
    with Writers(url, count=writers, per_writer=per_writer, think=0.02):
        pass  # the writers are joined on leaving


async def main(writers: int, per_writer: int) -> None:
    # The writers stamp updated_at with datetime.now() and the adapter reads it as WIB, as the
    # private MariaDB's NOW() is: this process must be on WIB too, or every row looks 7 h old
    # and the settle window holds nothing back.
    os.environ["TZ"] = "Asia/Jakarta"
    time.tzset()
    with EmbeddedMariaDB() as db, EmbeddedRedis(Path(tempfile.mkdtemp())) as server:
        conn = pymysql.connect(
            host=db.host,
            port=db.port,
            user="simpul",
            autocommit=True,
            client_flag=pymysql.constants.CLIENT.MULTI_STATEMENTS,
        )
        with conn.cursor() as cursor:
            cursor.execute("CREATE DATABASE siak")
            cursor.execute("USE siak")
            cursor.execute(ddl("mysql"))
        with conn.cursor() as cursor:
            cursor.execute("CREATE INDEX peristiwa_id ON peristiwa (id_peristiwa)")
        url = db.url_for("siak")
        redis_url = urlsplit(server.url)
        sides = {
            label: connect(urlunsplit(redis_url._replace(path=f"/{n}")))
            for n, label in enumerate(("polling, settle 0", "polling, settle 5 s", "binlog"))
        }
        stop = asyncio.Event()
        key = b"k" * 32
        runners = [
            dukcapil.adapter(redis, url, pseudonym_key=key, cdc=label == "binlog")
            for label, redis in sides.items()
        ]
        runners[0].source.settle = 0.0  # type: ignore[attr-defined]  # plain polling: the hole
        for r in runners:  # a first pass before the writers: the binlog reader's snapshot is done
            await r.run_once()
        runs = [asyncio.create_task(r.run(poll_interval=0.05, stop=stop)) for r in runners]
        await asyncio.to_thread(write, url, writers, per_writer)
        await asyncio.sleep(8)  # all catch up: past the 5 s window
        stop.set()
        await asyncio.gather(*runs)
        with conn.cursor() as cursor:
            cursor.execute("SELECT id_peristiwa, versi FROM peristiwa")
            table = cursor.fetchall()
        truth = {
            event_id(dukcapil.SOURCE, dukcapil.TABLE, k, v)
            for k, final in table
            for v in range(1, final + 1)
        }
        # A row's last version stays in the table, so polling missing it is the late-commit
        # hole alone; earlier versions may also have been overwritten between two polls.
        last = {event_id(dukcapil.SOURCE, dukcapil.TABLE, k, final) for k, final in table}
        stream = keys.stream("dukcapil.citizen")
        for label, redis in sides.items():
            ids = {f[b"id"].decode() for _, f in await redis.xrange(stream)}
            missed, stuck = len(truth - ids), len(last - ids)
            print(
                f"{label}: {len(truth)} committed row versions, {missed} never published "
                f"({missed / len(truth):.1%}); of the {len(last)} rows' current versions, "
                f"{stuck} never published ({stuck / len(last):.1%})"
            )
            await redis.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--per-writer", type=int, default=150)
    args = parser.parse_args()
    asyncio.run(main(args.writers, args.per_writer))
