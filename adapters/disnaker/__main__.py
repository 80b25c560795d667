"""``python -m adapters.disnaker URL``: one pass of the job-seeker registry adapter, then exit.

URL is the registry's ``mysql://`` URL. Redis comes from SIMPUL_REDIS_URL. The binlog is read
unless ``--poll-table``. ``simpul adapter run adapters.disnaker:from_env`` does the same with a
progress bar and keeps running; this module's arguments are explicit, for scripts and tests.
"""

from __future__ import annotations

import argparse
import asyncio

from adapters import disnaker
from bus import Settings, connect
from bus import configure_logging as configure


async def _main(url: str, *, binlog: bool, batch_size: int) -> None:
    redis_url = Settings.load().redis_url
    if not redis_url:
        raise SystemExit("set SIMPUL_REDIS_URL (or start a local server with `simpul redis`)")
    redis = connect(redis_url)
    runner = disnaker.adapter(redis, url, binlog=binlog, batch_size=batch_size)
    try:
        await runner.run_once()
    finally:
        await runner.source.close()  # type: ignore[attr-defined]
        await redis.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m adapters.disnaker", description=__doc__)
    parser.add_argument("url", help="mysql:// URL of the job-seeker registry")
    parser.add_argument("--poll-table", action="store_true", help="poll instead of the binlog")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args()
    configure(level=args.log_level, fmt="json")
    asyncio.run(_main(args.url, binlog=not args.poll_table, batch_size=args.batch_size))


if __name__ == "__main__":
    main()
