"""The demo (``make demo``): an adapter publishes, services consume, a dead letter shows."""
