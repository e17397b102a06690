#!/usr/bin/env bash
# Load benchmark on loopback with wrk (Debian package `wrk`):
#   GET /healthz, GET /v1/me (access-token verification + session check),
#   and refresh chains (each connection rotating its own sessions in a loop).
# Reports the median requests/s of RUNS runs per scenario.
#
#   benches/run.sh                      # SQLite, one instance
#   DB=postgres://postgres@127.0.0.1:5432/tessera_bench benches/run.sh
#   DB=postgres://... INSTANCES=2 benches/run.sh   # two instances, load split over both
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
CONNS=${CONNS:-32}
RUNS=${RUNS:-3}
INSTANCES=${INSTANCES:-1}
DB=${DB:-}
BIN=target/release/tessera
[ -x "$BIN" ] || cargo build --release --quiet
command -v wrk >/dev/null || { echo "install wrk (apt-get install -y wrk)" >&2; exit 1; }

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

export TESSERA_LOG=warn
export REFRESH_TOKEN_SECRET=benchmark-refresh-secret-0123456789abcdef
export TESSERA_ISSUER=http://bench.tessera
# One client address generates all the load here; per-address limits would measure
# the throttle, not the server.
export TESSERA_LOGIN_LIMIT_IP=off TESSERA_LOGIN_LIMIT_ACCOUNT=off TESSERA_LOGIN_LIMIT_ACCOUNT_IP=off
export TESSERA_REGISTER_LIMIT_IP=off TESSERA_REFRESH_LIMIT_IP=off
if [ -n "$DB" ]; then
  export TESSERA_DATABASE_URL="$DB"
fi
ports=()
for i in $(seq 1 "$INSTANCES"); do
  port=$((18100 + i))
  "$BIN" serve --listen "127.0.0.1:$port" --data-dir "$work/data" >"$work/server$i.log" 2>&1 &
  pids+=($!)
  ports+=("$port")
done
for port in "${ports[@]}"; do
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
done

first="http://127.0.0.1:${ports[0]}"
threads_per_instance=$((2 / INSTANCES > 0 ? 2 / INSTANCES : 1))
conns_per_instance=$((CONNS / INSTANCES))
families=$((CONNS * 2))
python3 benches/setup.py "$first" "$families" "$work"
export BENCH_ACCESS_TOKEN=$(cat "$work/access_token.txt")

# Runs wrk against every instance at once; prints the summed requests/s.
# Refresh failures (which would inflate the rate with cheap 401s) are reported on stderr.
load() {
  local path=$1 script=${2:-} idx=0 outs=()
  for port in "${ports[@]}"; do
    local args=(-t"$threads_per_instance" -c"$conns_per_instance" -d"$DURATION" --latency)
    [ -n "$script" ] && args+=(-s "$script")
    if [ -n "$script" ] && [ "$script" = benches/refresh.lua ]; then
      # Fresh sessions for every run (the previous run's tokens are spent), and each
      # instance's threads get their own slice of them.
      [ "$idx" = 0 ] && python3 benches/setup.py "$first" "$families" "$work" \
        && split -n "l/$INSTANCES" -d "$work/refresh_tokens.txt" "$work/slice_"
      BENCH_TOKENS_FILE="$work/slice_0$idx" BENCH_TOKENS_PER_THREAD=$((families / INSTANCES / threads_per_instance)) \
        wrk "${args[@]}" "http://127.0.0.1:$port$path" >"$work/wrk$idx.txt" &
    else
      wrk "${args[@]}" "http://127.0.0.1:$port$path" >"$work/wrk$idx.txt" &
    fi
    outs+=("$work/wrk$idx.txt")
    idx=$((idx + 1))
  done
  wait $(jobs -p | grep -v -F "$(printf '%s\n' "${pids[@]}")") 2>/dev/null || true
  grep -h -E "Non-2xx|refresh failures: [1-9]" "${outs[@]}" >&2 || true
  awk '/Requests\/sec/ {s += $2} END {printf "%.0f\n", s}' "${outs[@]}"
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

report() {
  local name=$1; shift
  local results=()
  for _ in $(seq 1 "$RUNS"); do results+=("$(load "$@")"); done
  printf '%-28s median %8s req/s   (runs: %s)\n' "$name" "$(printf '%s\n' "${results[@]}" | median)" "${results[*]}"
}

echo "Tessera $(git rev-parse --short HEAD 2>/dev/null || echo dev), ${DB:-SQLite} x $INSTANCES instance(s), $CONNS connections, $DURATION x $RUNS runs, $(nproc) cores"
report "GET /healthz" /healthz
report "GET /v1/me (EdDSA)" /v1/me benches/me.lua
report "POST /v1/auth/refresh chains" /v1/auth/refresh benches/refresh.lua
