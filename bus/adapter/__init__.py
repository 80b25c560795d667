"""The adapter SDK: a legacy source, a mapping function, and a runner that publishes exactly once.

The runner is :mod:`bus.adapter.runner`, the records and protocols it exchanges with its parts
:mod:`bus.adapter.records`; the sources (SQL polling, CDC, webhook, CSV drop folder) in
:mod:`bus.adapter.sources`; checkpoints, the quarantine and the adapter reports beside them.
Adapters import from here only (decision 0009); a name is imported when first used, so an adapter
polling PostgreSQL never loads the MySQL driver.
"""

from typing import TYPE_CHECKING

from bus._lazy import exports

if TYPE_CHECKING:
    from bus.adapter.checkpoint import RedisCheckpoints
    from bus.adapter.quarantine import Quarantine
    from bus.adapter.records import (
        Change,
        CheckpointStore,
        Mapper,
        Position,
        Problem,
        Progress,
        ProgressHook,
        Record,
        Rejected,
        Source,
        SourceLag,
        jsonable,
        map_to_envelope,
        record_event_id,
    )
    from bus.adapter.runner import Adapter, SourceError
    from bus.adapter.sources.binlog import BinlogSource
    from bus.adapter.sources.csvdrop import CsvDropSource, drop_adapter
    from bus.adapter.sources.logical import LogicalSource
    from bus.adapter.sources.mysql import MySqlDatabase, MySqlSource, is_mysql_url
    from bus.adapter.sources.mysql import connection_settings as mysql_connection_settings
    from bus.adapter.sources.sql import Database, PostgresDatabase, SqliteDatabase, SqlSource
    from bus.adapter.sources.webhook import MAX_BODY as WEBHOOK_MAX_BODY
    from bus.adapter.sources.webhook import Webhook
    from bus.adapter.sources.webhook import running as webhook_running
    from bus.adapter.sources.webhook import serve as serve_webhook

_EXPORTS = {
    "Adapter": ("bus.adapter.runner", "Adapter"),
    "BinlogSource": ("bus.adapter.sources.binlog", "BinlogSource"),
    "Change": ("bus.adapter.records", "Change"),
    "CheckpointStore": ("bus.adapter.records", "CheckpointStore"),
    "CsvDropSource": ("bus.adapter.sources.csvdrop", "CsvDropSource"),
    "Database": ("bus.adapter.sources.sql", "Database"),
    "LogicalSource": ("bus.adapter.sources.logical", "LogicalSource"),
    "Mapper": ("bus.adapter.records", "Mapper"),
    "MySqlDatabase": ("bus.adapter.sources.mysql", "MySqlDatabase"),
    "MySqlSource": ("bus.adapter.sources.mysql", "MySqlSource"),
    "Position": ("bus.adapter.records", "Position"),
    "PostgresDatabase": ("bus.adapter.sources.sql", "PostgresDatabase"),
    "Problem": ("bus.adapter.records", "Problem"),
    "Progress": ("bus.adapter.records", "Progress"),
    "ProgressHook": ("bus.adapter.records", "ProgressHook"),
    "Quarantine": ("bus.adapter.quarantine", "Quarantine"),
    "Record": ("bus.adapter.records", "Record"),
    "RedisCheckpoints": ("bus.adapter.checkpoint", "RedisCheckpoints"),
    "Rejected": ("bus.adapter.records", "Rejected"),
    "Source": ("bus.adapter.records", "Source"),
    "SourceError": ("bus.adapter.runner", "SourceError"),
    "SourceLag": ("bus.adapter.records", "SourceLag"),
    "SqlSource": ("bus.adapter.sources.sql", "SqlSource"),
    "SqliteDatabase": ("bus.adapter.sources.sql", "SqliteDatabase"),
    "WEBHOOK_MAX_BODY": ("bus.adapter.sources.webhook", "MAX_BODY"),
    "Webhook": ("bus.adapter.sources.webhook", "Webhook"),
    "drop_adapter": ("bus.adapter.sources.csvdrop", "drop_adapter"),
    "is_mysql_url": ("bus.adapter.sources.mysql", "is_mysql_url"),
    "jsonable": ("bus.adapter.records", "jsonable"),
    "map_to_envelope": ("bus.adapter.records", "map_to_envelope"),
    "mysql_connection_settings": ("bus.adapter.sources.mysql", "connection_settings"),
    "record_event_id": ("bus.adapter.records", "record_event_id"),
    "serve_webhook": ("bus.adapter.sources.webhook", "serve"),
    "webhook_running": ("bus.adapter.sources.webhook", "running"),
}

__all__ = [
    "WEBHOOK_MAX_BODY",
    "Adapter",
    "BinlogSource",
    "Change",
    "CheckpointStore",
    "CsvDropSource",
    "Database",
    "LogicalSource",
    "Mapper",
    "MySqlDatabase",
    "MySqlSource",
    "Position",
    "PostgresDatabase",
    "Problem",
    "Progress",
    "ProgressHook",
    "Quarantine",
    "Record",
    "RedisCheckpoints",
    "Rejected",
    "Source",
    "SourceError",
    "SourceLag",
    "SqlSource",
    "SqliteDatabase",
    "Webhook",
    "drop_adapter",
    "is_mysql_url",
    "jsonable",
    "map_to_envelope",
    "mysql_connection_settings",
    "record_event_id",
    "serve_webhook",
    "webhook_running",
]

__getattr__, __dir__ = exports(globals(), _EXPORTS)
