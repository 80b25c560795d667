"""``python -m adapters.bapenda FOLDER``: one pass over Bapenda's drop folder, then exit.

Redis comes from SIMPUL_REDIS_URL. ``simpul adapter run adapters.bapenda:from_env`` does the same
with a progress bar; the crash tests start this module because its arguments are explicit.
"""

from __future__ import annotations

import argparse
import asyncio

from adapters import bapenda
from bus import Settings, connect
from bus import configure_logging as configure


async def _main(folder: str, *, args: argparse.Namespace) -> None:
    url = Settings.load().redis_url
    if not url:
        raise SystemExit("set SIMPUL_REDIS_URL (or start a local server with `simpul redis`)")
    redis = connect(url)
    fallback = None if args.encoding.lower() == "none" else args.encoding
    runner = bapenda.adapter(
        redis,
        folder,
        delimiter=args.delimiter,
        fallback_encoding=fallback,
        settle_seconds=args.settle_seconds,
        batch_size=args.batch_size,
    )
    try:
        await runner.run_once()
    finally:
        await redis.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m adapters.bapenda", description=__doc__)
    parser.add_argument("folder", help="the drop folder (holding incoming/)")
    parser.add_argument("--delimiter", default=";")
    parser.add_argument("--encoding", default="cp1252", help="fallback encoding, or none")
    parser.add_argument("--settle-seconds", type=float, default=2.0)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args()
    configure(level=args.log_level, fmt="json")
    asyncio.run(_main(args.folder, args=args))


if __name__ == "__main__":
    main()
