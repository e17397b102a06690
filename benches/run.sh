#!/usr/bin/env bash
# Tessera's benchmarks in one command; writes BENCHMARKS.md at the repository root.
#
#   benches/run.sh                                   # SQLite scenarios, release build
#   DB=postgres://postgres@127.0.0.1:5432/tessera_bench benches/run.sh   # plus PostgreSQL
#   QUICK=1 benches/run.sh                           # a few seconds per scenario (CI)
#
# Knobs (environment):
#   DURATION  seconds per wrk run (10s; QUICK: 2s)      RUNS  runs per scenario, medians reported (3; QUICK: 1)
#   DB        a PostgreSQL URL: adds the PostgreSQL scenarios; the harness works in a
#             schema of its own (created and dropped), nothing else in that database is touched
#   QUICK=1   tiny configuration: 20,000 instead of 1,000,000 sessions, short criterion
#             runs, the debug binary target/debug/tessera (no release build; figures are
#             only a check that the harness works), report to target/BENCHMARKS-quick.md
#   CONNS     connections for /healthz and /v1/me (32)  LOGIN_CONNS  login-flood connections (64)
#   LARGE_SESSIONS, SMALL_SESSIONS  sessions in the big and small database (1000000, 1000)
#   BIN       the tessera binary to measure             OUT  the report (BENCHMARKS.md)
#   CRITERION_PROFILE  cargo profile of the criterion benchmark (release; QUICK: dev)
#   CRITERION_ROUNDS   rounds of the criterion benchmark, medians reported (7; QUICK: 1)
#
# Needs: wrk, python3 (standard library only), psql when DB is set, a Rust toolchain.
# Servers run on 127.0.0.1:18181 and up with throttling off (all load comes from one address).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v wrk >/dev/null || missing+=("wrk (Debian: apt-get install -y wrk)")
command -v python3 >/dev/null || missing+=("python3 (Debian: apt-get install -y python3)")
if [ -n "${DB:-}" ]; then
  command -v psql >/dev/null || missing+=("psql (Debian: apt-get install -y postgresql-client)")
fi
if [ "${#missing[@]}" -gt 0 ]; then
  printf 'benches/run.sh needs:\n' >&2
  printf '  %s\n' "${missing[@]}" >&2
  exit 1
fi

if [ -n "${QUICK:-}" ] && [ "${QUICK}" != 0 ]; then
  # The test run has built the debug binary; a release build takes minutes on small machines.
  export BIN=${BIN:-target/debug/tessera}
  export OUT=${OUT:-target/BENCHMARKS-quick.md}
  export CRITERION_PROFILE=${CRITERION_PROFILE:-dev}
  [ "$BIN" = target/debug/tessera ] && cargo build --quiet -p tessera
else
  export BIN=${BIN:-target/release/tessera}
  export OUT=${OUT:-BENCHMARKS.md}
  # Always build: a stale binary would measure another commit.
  [ "$BIN" = target/release/tessera ] && cargo build --quiet --release -p tessera
fi
[ -x "$BIN" ] || { echo "no tessera binary at $BIN" >&2; exit 1; }

exec python3 benches/harness.py
