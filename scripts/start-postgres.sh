#!/usr/bin/env bash
# Start Debian's PostgreSQL cluster on 127.0.0.1 and create a role that may create test databases.
# Prints the DATABASE_URL to use on its last line.
set -euo pipefail
version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
if ! pg_lsclusters -h | grep -q "^$version main"; then
  pg_createcluster "$version" main >/dev/null
fi
pg_ctlcluster "$version" main start 2>/dev/null || pg_ctlcluster "$version" main status >/dev/null
for _ in $(seq 1 30); do
  pg_isready -h 127.0.0.1 -q && break
  sleep 0.5
done
su postgres -c "psql -q -tc \"SELECT 1 FROM pg_roles WHERE rolname='portal'\" | grep -q 1 || psql -q -c \"CREATE ROLE portal LOGIN CREATEDB PASSWORD 'portal'\""
su postgres -c "psql -q -tc \"SELECT 1 FROM pg_database WHERE datname='portal'\" | grep -q 1 || createdb -O portal portal"
echo "postgres://portal:portal@127.0.0.1:5432/portal"
