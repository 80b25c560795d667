"""``python -m adapters.dpmptsp``: serve the licensing webhook until SIGINT/SIGTERM.

Redis comes from SIMPUL_REDIS_URL, the bearer token from SIMPUL_DPMPTSP_TOKEN. The licensing
application then POSTs each decision to ``http://<host>:<port>/``; ``GET /healthz`` checks Redis.
"""

from __future__ import annotations

import argparse
import asyncio

from adapters import dpmptsp
from bus import Settings, connect
from bus import configure_logging as configure
from bus.adapter import serve_webhook as serve


async def _main(host: str, port: int) -> None:
    url = Settings.load().redis_url
    if not url:
        raise SystemExit("set SIMPUL_REDIS_URL (or start a local server with `simpul redis`)")
    redis = connect(url)
    try:
        await serve(dpmptsp.from_env(redis).app(), host=host, port=port)
    finally:
        await redis.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m adapters.dpmptsp", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to accept other machines")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args()
    configure(level=args.log_level, fmt="json")
    asyncio.run(_main(args.host, args.port))


if __name__ == "__main__":
    main()
