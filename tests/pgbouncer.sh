#!/usr/bin/env bash
# Runs a command with a PgBouncer (Debian's, transaction pooling mode, four server
# connections per database) in front of the PostgreSQL server of URL, then stops it.
# The command sees TESSERA_TEST_PGBOUNCER_URL=postgres://postgres@127.0.0.1:<port>.
#
#   tests/pgbouncer.sh postgres://postgres@127.0.0.1:5432/db cargo test -p tessera --test e2e -- rotation::
set -euo pipefail
url="$1"
shift
hostport="$(printf '%s' "$url" | sed -E 's#^[a-z]+://([^@/]*@)?([^/?]*).*#\2#')"
host="${hostport%%:*}"
port_up="5432"
[ "$hostport" != "$host" ] && port_up="${hostport##*:}"
dir="$(mktemp -d)"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
printf '"postgres" ""\n' >"$dir/users.txt"
{
  echo "[databases]"
  echo "* = host=${host} port=${port_up}"
  echo "[pgbouncer]"
  echo "listen_addr = 127.0.0.1"
  echo "listen_port = ${port}"
  echo "unix_socket_dir ="
  echo "auth_type = trust"
  echo "auth_file = ${dir}/users.txt"
  echo "pool_mode = transaction"
  echo "default_pool_size = 4"
  echo "max_client_conn = 1000"
  # sqlx sends extra_float_digits at connect; PgBouncer 1.18 refuses unknown ones.
  echo "ignore_startup_parameters = extra_float_digits"
  echo "logfile = ${dir}/pgbouncer.log"
  echo "pidfile = ${dir}/pgbouncer.pid"
} >"$dir/pgbouncer.ini"
if [ "$(id -u)" -eq 0 ]; then
  # PgBouncer will not run as root.
  chown -R postgres:postgres "$dir"
  runuser -u postgres -- /usr/sbin/pgbouncer -d "$dir/pgbouncer.ini"
else
  /usr/sbin/pgbouncer -d "$dir/pgbouncer.ini"
fi
stop() {
  kill "$(cat "$dir/pgbouncer.pid")" 2>/dev/null || true
  rm -rf "$dir"
}
trap stop EXIT
for _ in $(seq 50); do
  [ -s "$dir/pgbouncer.pid" ] && break
  sleep 0.1
done
TESSERA_TEST_PGBOUNCER_URL="postgres://postgres@127.0.0.1:${port}" "$@"
