"""Benchmarks of Simpul against raw redis-py and FastStream (run ``python -m bench.run``)."""
