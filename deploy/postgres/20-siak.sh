#!/bin/sh
# The SIAK-like legacy tables (adapters/dukcapil/schema.py; tests/test_compose.py keeps
# siak.ddl equal to it). Run by the postgres image's entrypoint on first start.
set -e
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname siak \
  -f /docker-entrypoint-initdb.d/siak.ddl
