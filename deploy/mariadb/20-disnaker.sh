#!/bin/sh
# The job-seeker registry's table (adapters/disnaker/schema.py; tests/test_compose.py keeps
# pencaker.ddl equal to it) and the adapter's own MySQL user: SELECT on the table, and the two
# grants a binlog reader needs. Run by the mariadb image's entrypoint on first start. In a real
# deployment SIMPUL_DISNAKER_DB points at the labour office's own server (docs/adapters/disnaker.md).
set -e
mariadb --user=root --password="$MARIADB_ROOT_PASSWORD" disnaker \
  < /docker-entrypoint-initdb.d/pencaker.ddl
mariadb --user=root --password="$MARIADB_ROOT_PASSWORD" <<SQL
CREATE USER 'simpul_disnaker'@'%' IDENTIFIED BY '${SIMPUL_MARIADB_PASSWORD_DISNAKER}';
GRANT SELECT ON disnaker.pencaker TO 'simpul_disnaker'@'%';
GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO 'simpul_disnaker'@'%';
SQL
