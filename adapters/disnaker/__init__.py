"""Job-seeker registry (AK/I card) adapter: the labour office's PHP application on MySQL ->
``disnaker.jobseeker.*`` events.

The mapping (:mod:`adapters.disnaker.mapping`) is the whole adapter: a ``pencaker`` row in, a
registration, a placement or nothing out. The table is described in
:mod:`adapters.disnaker.schema`. The record key is the row's ``id_pencaker`` and its version the
application's ``tgl_update``: a corrected, renewed or placed registration is a new event, a row
read again is not.
"""

from __future__ import annotations

from datetime import timedelta, timezone
from typing import Literal

from redis.asyncio import Redis

from adapters.disnaker.mapping import map_pencaker
from adapters.disnaker.schema import TABLE
from bus import Publisher
from bus.adapter import Adapter, ProgressHook, Source
from bus.checkpoint import RedisCheckpoints
from bus.quarantine import Quarantine
from bus.signing import Signer
from bus.sources.sql import Database, SqlSource

__all__ = ["NAME", "SOURCE", "TABLE", "WIB", "adapter", "map_pencaker", "polling_source"]

NAME = "disnaker-pencaker"  # the adapter's name: its checkpoint and its quarantine
SOURCE = "urn:malangkota:disnaker:pencaker"
WIB = timezone(timedelta(hours=7), "WIB")  # the application writes local time
KEY, VERSION, CHANGE_COLUMN = "id_pencaker", "tgl_update", "tgl_update"


def polling_source(db: Database) -> SqlSource:
    """The table polled by ``tgl_update`` (``ON UPDATE CURRENT_TIMESTAMP``): sees inserts and
    updates, not deletes, and two changes of a row within one second as one."""
    return SqlSource.by_change_column(db, table=TABLE, change_column=CHANGE_COLUMN,
                                      primary_key=KEY, version=VERSION, time_column=CHANGE_COLUMN,
                                      naive_timezone=WIB)  # fmt: skip


def adapter(
    redis: Redis,
    source: Source,
    *,
    batch_size: int = 500,
    on_progress: ProgressHook | None = None,
    signer: Signer | Literal["environment"] | None = "environment",
) -> Adapter:
    """The registry adapter, wired: the given source, the mapper, publisher, checkpoints and
    quarantine."""
    return Adapter(
        NAME,
        source=source,
        mapper=map_pencaker,
        publisher=Publisher(redis, source=SOURCE, signer=signer),
        checkpoints=RedisCheckpoints(redis),
        quarantine=Quarantine(redis, NAME),
        batch_size=batch_size,
        on_progress=on_progress,
    )
