"""Civil registry (SIAK) adapter: legacy death and move records -> dukcapil events.

The mapping is the whole adapter: a legacy row in, a validated contract and a deterministic
event id out. Column names are SIAK's (Indonesian).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bus import Contract, event_id
from schemas.dukcapil import CitizenDied, CitizenMoved

SOURCE = "urn:malangkota:dukcapil:siak"


def map_record(row: Mapping[str, Any]) -> tuple[Contract, str]:
    """One SIAK row -> (event, event id). Raises ContractViolation for a row that won't map."""
    kind = row["jenis_peristiwa"]
    if kind == "KEMATIAN":
        event: Contract = CitizenDied.parse(
            {
                "nik": row["nik"],
                "date_of_death": row["tgl_peristiwa"],
                "kecamatan": row["kode_kecamatan"],
            }
        )
    elif kind == "PINDAH":
        event = CitizenMoved.parse(
            {
                "nik": row["nik"],
                "address": row["alamat"],
                "kecamatan": row["kode_kecamatan"],
                "moved_on": row["tgl_peristiwa"],
            }
        )
    else:
        raise ValueError(f"unknown jenis_peristiwa {kind!r} (expected KEMATIAN or PINDAH)")
    # Same row, same version -> same id: re-running the adapter publishes nothing twice.
    return event, event_id(SOURCE, "peristiwa", row["id_peristiwa"], row["versi"])
