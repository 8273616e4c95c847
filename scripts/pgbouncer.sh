#!/usr/bin/env bash
# Starts PgBouncer (Debian's `pgbouncer`) in transaction pooling mode on
# 127.0.0.1:$PORT in front of the PostgreSQL server at 127.0.0.1:5432, with
# two server connections per database (so that clients share them), and
# prints the store URL that reaches database `test` through it. Its files
# live in $DIR; `kill $(cat $DIR/pgbouncer.pid)` stops it.
#
#   usage: scripts/pgbouncer.sh DIR [PORT]
set -euo pipefail
dir=$1
port=${2:-6432}
mkdir -p "$dir"
cat >"$dir/pgbouncer.ini" <<INI
[databases]
* = host=127.0.0.1 port=5432

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = trust
auth_file = $dir/users.txt
pool_mode = transaction
default_pool_size = 2
max_client_conn = 2000
pidfile = $dir/pgbouncer.pid
logfile = $dir/pgbouncer.log
INI
echo '"postgres" ""' >"$dir/users.txt"
# PgBouncer will not run as root: as root, it runs as postgres.
as=()
if [ "$(id -u)" = 0 ]; then
    chown -R postgres "$dir"
    as=(-u postgres)
fi
pgbouncer -d "${as[@]}" "$dir/pgbouncer.ini"
for _ in $(seq 50); do
    psql -q "postgres://postgres@127.0.0.1:$port/test" -Atc 'SELECT 1' >/dev/null 2>&1 && break
    sleep 0.1
done
psql -q "postgres://postgres@127.0.0.1:$port/test" -Atc 'SELECT 1' >/dev/null
echo "postgres://postgres@127.0.0.1:$port/test?pgbouncer=true"
