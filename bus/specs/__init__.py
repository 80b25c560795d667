"""Descriptions of the bus generated from the code: the event catalogue, the AsyncAPI document,
and the gate that keeps every contract compatible with its JSON Schema snapshots."""
