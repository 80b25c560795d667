"""Private servers Simpul starts for the demo and the tests: Redis, a Redis Cluster, a Redis
Sentinel group, PostgreSQL and MariaDB."""

from typing import TYPE_CHECKING

from bus._lazy import exports

if TYPE_CHECKING:
    from bus.local.cluster import EmbeddedCluster
    from bus.local.mariadb import find_mariadbd, mariadb_url_or_embedded
    from bus.local.postgres import EmbeddedPostgres
    from bus.local.redis import EmbeddedRedis, free_port, redis_url_or_embedded
    from bus.local.sentinel import EmbeddedSentinelGroup

_EXPORTS = {
    "EmbeddedCluster": ("bus.local.cluster", "EmbeddedCluster"),
    "EmbeddedPostgres": ("bus.local.postgres", "EmbeddedPostgres"),
    "EmbeddedRedis": ("bus.local.redis", "EmbeddedRedis"),
    "EmbeddedSentinelGroup": ("bus.local.sentinel", "EmbeddedSentinelGroup"),
    "find_mariadbd": ("bus.local.mariadb", "find_mariadbd"),
    "free_port": ("bus.local.redis", "free_port"),
    "mariadb_url_or_embedded": ("bus.local.mariadb", "mariadb_url_or_embedded"),
    "redis_url_or_embedded": ("bus.local.redis", "redis_url_or_embedded"),
}

__all__ = [
    "EmbeddedCluster",
    "EmbeddedPostgres",
    "EmbeddedRedis",
    "EmbeddedSentinelGroup",
    "find_mariadbd",
    "free_port",
    "mariadb_url_or_embedded",
    "redis_url_or_embedded",
]

__getattr__, __dir__ = exports(globals(), _EXPORTS)
