"""The router as a Simpul service of its own (decision 0011): its principal is the topology's
``role: router`` operator; replicas share its consumer group ``router`` on every intake and
department stream, one replica reading each source at a time.

Run it with ``simpul router run --topology deploy/topology.yaml`` (or ``python -m
services.router``) and ``SIMPUL_REDIS_URL`` naming the router principal; the engine is
:class:`bus.router.Router`.
"""
