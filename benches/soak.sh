#!/usr/bin/env bash
# The soak test for as long as you like: a mixed load (logins, refreshes — some
# three at once on one token, some replays of superseded tokens —, /v1/me,
# logouts, password changes) from 12 clients on two `tessera serve` processes over
# a PostgreSQL server the test starts for itself, with one instance SIGKILLed and
# restarted at a third of the time and the database stopped and restarted at two
# thirds. At the end it checks the invariants from the database and the clients'
# records and prints what it saw (tests/e2e/soak.rs).
#
#   SECS=600 benches/soak.sh        # ten minutes (default); the test suite runs 24 s
#
# Needs PostgreSQL's server programs (Debian's postgresql package); as root they run
# as the postgres user.
set -euo pipefail
cd "$(dirname "$0")/.."
TESSERA_SOAK_SECS="${SECS:-600}" cargo test -p tessera --test e2e soak:: -- --nocapture
