"""A private Redis for benchmarks that must own the whole server (scaling, memory).

Unlike :meth:`bench.common.Target.open` it ignores ``SIMPUL_REDIS_URL``: these benchmarks
FLUSHALL, read server-wide INFO figures and start processes against the server, which a shared
Redis would make wrong (and would suffer from).
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator, Sequence

from bench.common import Target
from bus.local.redis import EmbeddedRedis


@contextlib.contextmanager
def private_target(extra_args: Sequence[str] = ()) -> Iterator[Target]:
    """An EmbeddedRedis (AOF, appendfsync everysec, as bench/run.py's) for the block."""
    with tempfile.TemporaryDirectory(prefix="simpul-bench-") as data_dir:
        server = EmbeddedRedis(data_dir, appendfsync="everysec", extra_args=extra_args)
        server.start()
        try:
            yield Target(server.url, server)
        finally:
            server.stop()
