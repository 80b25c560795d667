"""``python -m adapters.dukcapil DB``: one backfill pass of the SIAK adapter, then exit.

DB is a ``postgresql://`` or ``mysql://`` URL or a SQLite file. Redis comes from
SIMPUL_REDIS_URL, the pseudonym key from SIMPUL_PSEUDONYM_KEY. ``simpul adapter run
adapters.dukcapil:from_env`` does the same with a progress bar; the crash tests start this
module because its arguments are explicit.
"""

from __future__ import annotations

import argparse
import asyncio

from adapters import dukcapil
from bus import Settings, connect
from bus import configure_logging as configure


async def _main(db: str, *, outbox: bool, batch_size: int) -> None:
    url = Settings.load().redis_url
    if not url:
        raise SystemExit("set SIMPUL_REDIS_URL (or start a local server with `simpul redis`)")
    redis = connect(url)
    key = dukcapil.pseudonym_key_from_env()
    runner = dukcapil.adapter(redis, db, pseudonym_key=key, outbox=outbox, batch_size=batch_size)
    try:
        await runner.run_once()
    finally:
        await redis.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m adapters.dukcapil", description=__doc__)
    parser.add_argument("db", help="postgresql:// or mysql:// URL, or SQLite file of SIAK")
    parser.add_argument("--outbox", action="store_true", help="read peristiwa_outbox")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args()
    configure(level=args.log_level, fmt="json")
    asyncio.run(_main(args.db, outbox=args.outbox, batch_size=args.batch_size))


if __name__ == "__main__":
    main()
