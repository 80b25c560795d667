"""Services: consumers of cross-department events (each one consumer group)."""
