"""Job-seeker registry (AK/I card) adapter: the labour office's PHP application on MySQL ->
``disnaker.jobseeker.*`` events.

The mapping (:mod:`adapters.disnaker.mapping`) is the whole adapter: a ``pencaker`` row in, a
registration, a placement or nothing out. The table is described in
:mod:`adapters.disnaker.schema`. The record key is the row's ``id_pencaker`` and its version the
application's ``tgl_update``: a corrected, renewed or placed registration is a new event, a row
read again is not.

The rows are read from the row binlog (change-data-capture, :class:`bus.adapter.sources.binlog.
BinlogSource`) by default: every committed change, deletes included, in commit order. Where the
DBA cannot enable the binlog, the table is polled by ``tgl_update`` instead (``binlog=False``,
``SIMPUL_DISNAKER_POLL=1``) with a 5 s settle window, which misses deletes, rows of
transactions open longer than the window, and a row's earlier versions saved within a window.
The two keep checkpoints of different shapes: switching needs the checkpoint reset
(``simpul adapter checkpoint reset disnaker-pencaker --yes``); event ids are the same, so
nothing is published twice.
"""

from __future__ import annotations

from datetime import timedelta, timezone
from typing import Any, Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict
from redis.asyncio import Redis

from adapters.disnaker.mapping import map_pencaker
from adapters.disnaker.schema import TABLE
from bus import ComponentSettings, ConfigurationError, Publisher, Signer
from bus.adapter import (
    Adapter,
    BinlogSource,
    MySqlDatabase,
    MySqlSource,
    ProgressHook,
    Quarantine,
    RedisCheckpoints,
    Source,
    is_mysql_url,
)

__all__ = ["NAME", "SOURCE", "TABLE", "WIB", "adapter", "from_env", "map_pencaker", "source"]

NAME = "disnaker-pencaker"  # the adapter's name: its checkpoint and its quarantine
SOURCE = "urn:malangkota:disnaker:pencaker"
WIB = timezone(timedelta(hours=7), "WIB")  # the application writes local time
KEY, VERSION, CHANGE_COLUMN = "id_pencaker", "tgl_update", "tgl_update"


def source(url: str, *, binlog: bool = True) -> Source:
    """The registry's ``pencaker`` table at a ``mysql://`` URL: its row binlog, or (``binlog``
    False) the table polled by ``tgl_update``, which sees no deletes."""
    if not is_mysql_url(url):
        raise ConfigurationError("the job-seeker registry is a mysql:// or mariadb:// URL")
    common: dict[str, Any] = {
        "version": VERSION,
        "time_column": CHANGE_COLUMN,
        "naive_timezone": WIB,
    }
    if binlog:
        # Deletes too: the mapper decides what a deleted registration means (nothing).
        return BinlogSource(
            url, table=TABLE, key=KEY, changes=("insert", "update", "delete"), **common
        )
    return MySqlSource.by_change_column(
        MySqlDatabase(url), table=TABLE, primary_key=KEY, change_column=CHANGE_COLUMN, **common
    )


def adapter(
    redis: Redis,
    url: str,
    *,
    binlog: bool = True,
    batch_size: int = 500,
    on_progress: ProgressHook | None = None,
    signer: Signer | Literal["environment"] | None = "environment",
) -> Adapter:
    """The registry adapter, wired: source, mapper, publisher, checkpoints and quarantine."""
    return Adapter(
        NAME,
        source=source(url, binlog=binlog),
        mapper=map_pencaker,
        publisher=Publisher(redis, source=SOURCE, signer=signer),
        checkpoints=RedisCheckpoints(redis),
        quarantine=Quarantine(redis, NAME),
        batch_size=batch_size,
        on_progress=on_progress,
    )


DB_ENV = "SIMPUL_DISNAKER_DB"


class DisnakerSettings(ComponentSettings):
    """The adapter's knobs, from ``SIMPUL_DISNAKER_*``."""

    model_config = SettingsConfigDict(env_prefix="SIMPUL_DISNAKER_")

    db: str | None = Field(default=None, description="mysql:// URL of the job-seeker registry")
    poll: bool = Field(default=False, description="poll the table instead of the binlog")


def from_env(redis: Redis) -> Adapter:
    """The adapter as ``simpul adapter run adapters.disnaker:from_env`` builds it.

    SIMPUL_DISNAKER_DB: ``mysql://user:password@host:3306/database`` of the registry (the user
    needs SELECT on ``pencaker``, and REPLICATION SLAVE and REPLICATION CLIENT for the binlog);
    SIMPUL_DISNAKER_POLL=1 polls the table instead of reading the binlog.
    """
    settings = DisnakerSettings.load()
    url = settings.db
    if not url:
        raise ConfigurationError(f"set {DB_ENV} to the job-seeker registry (a mysql:// URL)")
    return adapter(redis, url, binlog=not settings.poll)
