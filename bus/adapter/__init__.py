"""The adapter SDK: a legacy source, a mapping function, and a runner that publishes exactly once.

The runner and its protocols are in :mod:`bus.adapter.runner`; the sources (SQL polling, CDC,
webhook, CSV drop folder) in :mod:`bus.adapter.sources`; checkpoints, the quarantine and the
adapter reports beside them.
"""

from bus.adapter.runner import (
    Adapter,
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
    SourceError,
    SourceLag,
    jsonable,
    map_to_envelope,
    record_event_id,
)

__all__ = [
    "Adapter",
    "Change",
    "CheckpointStore",
    "Mapper",
    "Position",
    "Problem",
    "Progress",
    "ProgressHook",
    "Record",
    "Rejected",
    "Source",
    "SourceError",
    "SourceLag",
    "jsonable",
    "map_to_envelope",
    "record_event_id",
]
