"""How many committed row versions polling misses, and the binlog source does not.

``python -m bench.polling_hole [--writers 8 --per-writer 150]`` starts a private MariaDB and
Redis. Writer threads commit transactions of an insert (stamped and numbered at the first
statement), think time, an update of one of their earlier rows, think time, commit. The SIAK
adapter polls the table by ``updated_at`` every 50 ms (Redis database 0) while a second copy reads
the binlog (database 1). Afterwards each stream is compared with the versions in the table.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
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
    with EmbeddedMariaDB() as db, EmbeddedRedis(Path(tempfile.mkdtemp())) as server:
        conn = pymysql.connect(host=db.host, port=db.port, user="simpul", autocommit=True,
                               client_flag=pymysql.constants.CLIENT.MULTI_STATEMENTS)  # fmt: skip
        with conn.cursor() as cursor:
            cursor.execute("CREATE DATABASE siak")
            cursor.execute("USE siak")
            cursor.execute(ddl("mysql"))
        with conn.cursor() as cursor:
            cursor.execute("CREATE INDEX peristiwa_id ON peristiwa (id_peristiwa)")
        url = db.url_for("siak")
        redis_url = urlsplit(server.url)
        polled = connect(urlunsplit(redis_url._replace(path="/0")))
        streamed = connect(urlunsplit(redis_url._replace(path="/1")))
        stop = asyncio.Event()
        key = b"k" * 32
        runs = [
            asyncio.create_task(dukcapil.adapter(redis, url, pseudonym_key=key, binlog=binlog)
                                .run(poll_interval=0.05, stop=stop))
            for redis, binlog in ((polled, False), (streamed, True))
        ]  # fmt: skip
        await asyncio.to_thread(write, url, writers, per_writer)
        await asyncio.sleep(3)  # both catch up
        stop.set()
        await asyncio.gather(*runs)
        with conn.cursor() as cursor:
            cursor.execute("SELECT id_peristiwa, versi FROM peristiwa")
            table = cursor.fetchall()
        truth = {event_id(dukcapil.SOURCE, dukcapil.TABLE, k, v)
                 for k, final in table for v in range(1, final + 1)}  # fmt: skip
        # A row's last version stays in the table, so polling missing it is the late-commit
        # hole alone; earlier versions may also have been overwritten between two polls.
        last = {event_id(dukcapil.SOURCE, dukcapil.TABLE, k, final) for k, final in table}
        stream = keys.stream("dukcapil.citizen")
        for label, redis in (("polling", polled), ("binlog", streamed)):
            ids = {f[b"id"].decode() for _, f in await redis.xrange(stream)}
            missed, stuck = len(truth - ids), len(last - ids)
            print(f"{label}: {len(truth)} committed row versions, {missed} never published "
                  f"({missed / len(truth):.1%}); of the {len(last)} rows' current versions, "
                  f"{stuck} never published ({stuck / len(last):.1%})")  # fmt: skip
            await redis.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--per-writer", type=int, default=150)
    args = parser.parse_args()
    asyncio.run(main(args.writers, args.per_writer))
