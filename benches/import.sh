#!/usr/bin/env bash
# Import benchmark: N users (default 100000) as `mongoexport` writes them for the
# users collection of the common Express tutorials, imported into a fresh database
# with `tessera user import`, then imported again (every user already present),
# then one of them logs in with its original password through a running server.
#
#   benches/import.sh                                   # SQLite, release build
#   N=20000 BIN=target/debug/tessera benches/import.sh
#   DB=postgres://postgres@127.0.0.1:5432/tessera_bench benches/import.sh
#
# Hashing 100000 passwords with bcrypt would take longer than the import, so the
# records share four real bcrypt hashes (cost 10, made by bcryptjs, the library the
# tutorials use) of "bench password 0" .. "bench password 3".
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-100000}
DB=${DB:-}
BIN=${BIN:-target/release/tessera}
[ -x "$BIN" ] || cargo build --release --quiet --bin tessera

work=$(mktemp -d)
server=""
cleanup() { [ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

export TESSERA_LOG=warn
export REFRESH_TOKEN_SECRET=benchmark-refresh-secret-0123456789abcdef
export TESSERA_DATA_DIR="$work/data"
if [ -n "$DB" ]; then
  export TESSERA_DATABASE_URL="$DB"
fi

python3 - "$N" "$work/users.json" <<'PY'
import json, sys
n, path = int(sys.argv[1]), sys.argv[2]
hashes = [
    "$2a$10$RPlHnmtlVjAN0HhY27IoaerlIyhiXbjtMo9llc1BWX18r7XKdI4QC",
    "$2a$10$18WVYzhgEkdusMBL5t4R6erdTO0M9zUNWOXDstUS7q.rxcb.L2WYS",
    "$2a$10$rnV8JDXsAMtedxTWtLit7.ARBxKGjTNWlb5rocTc9fC46roo3dP1i",
    "$2a$10$SJbNcAXWr1W8e02HKd71purnlfSOVSaA2wRCK9M3UqDyouaNarq6G",
]
with open(path, "w") as f:
    for i in range(n):
        oid = "65a1f0c2%016x" % i
        ms = 1700000000000 + i * 1000
        doc = {
            "_id": {"$oid": oid},
            "username": "user%d" % i,
            # Emails were not lower-cased by the tutorial's schema.
            "email": ("User%d@Example.com" if i % 10 == 0 else "user%d@example.com") % i,
            "fullName": "User Number %d" % i,
            "avatar": "http://res.cloudinary.com/demo/image/upload/v1/avatar%d.png" % i,
            "coverImage": "",
            "watchHistory": [{"$oid": "65a1f0c2e4b0a1b2c3d4e600"}],
            "password": hashes[i % 4],
            "refreshToken": "",
            "createdAt": {"$date": {"$numberLong": str(ms)}} if i % 2 else
                         {"$date": "2023-11-14T22:13:%02d.000Z" % (i % 60)},
            "updatedAt": {"$date": "2024-01-01T00:00:00.000Z"},
            "__v": 0,
        }
        f.write(json.dumps(doc, separators=(",", ":")) + "\n")
PY
echo "generated $N records ($(du -h "$work/users.json" | cut -f1)) in $work/users.json"
"$BIN" migrate >/dev/null

# Wall clock and CPU time of the whole command (reading, checking, writing).
run() {
  local TIMEFORMAT="$1: %R s wall clock, %U s user + %S s system CPU"
  time "$BIN" user import "$work/users.json"
}
run "first import"
run "second import (all present)"

# One of them logs in with its original password: the bcrypt hash verifies and is
# replaced by Argon2id.
port=18199
"$BIN" serve --listen "127.0.0.1:$port" >"$work/server.log" 2>&1 &
server=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$port/v1/auth/login" \
  -H 'content-type: application/json' \
  -d '{"login":"user10@example.com","password":"bench password 2","delivery":"body"}')
echo "login of an imported user with its original password: HTTP $code"
[ "$code" = 200 ]
