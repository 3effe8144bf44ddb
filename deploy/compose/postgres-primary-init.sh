#!/usr/bin/env bash
# Run once by the postgres image when it initialises the primary's data directory (mounted into
# /docker-entrypoint-initdb.d by docker-compose.cluster.yml): the role the replica takes its base
# backup and streams WAL as, a physical replication slot so that the primary keeps the WAL the
# replica has not received yet (even while it is down), and the pg_hba.conf line that lets it in —
# the image's own line (`host all all all`) does not cover replication connections.
set -euo pipefail
: "${REPLICATION_USER:?set REPLICATION_USER}" "${REPLICATION_PASSWORD:?set REPLICATION_PASSWORD}" "${REPLICATION_SLOT:?set REPLICATION_SLOT}"

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v user="$REPLICATION_USER" -v password="$REPLICATION_PASSWORD" -v slot="$REPLICATION_SLOT" <<'SQL'
CREATE ROLE :"user" WITH REPLICATION LOGIN PASSWORD :'password';
SELECT pg_create_physical_replication_slot(:'slot');
SQL

echo "host replication $REPLICATION_USER all scram-sha-256" >>"$PGDATA/pg_hba.conf"
