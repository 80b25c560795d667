"""Private servers Simpul starts for the demo and the tests: Redis, a Redis Cluster, PostgreSQL
and MariaDB."""
