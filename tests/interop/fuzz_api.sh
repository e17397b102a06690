#!/usr/bin/env bash
# Property-based API fuzzing: schemathesis generates requests from /openapi.json
# and sends them to a real `tessera serve`, checking every answer against the
# document: no 5xx, no undocumented status, header or content type, and bodies
# that match their schemas.
#
# Usage: tests/interop/fuzz_api.sh TESSERA_BINARY [MAX_EXAMPLES [SCHEMATHESIS_OPTIONS...]]
# (FUZZ_CHECKS replaces the list of checks.) Needs the packages of requirements.txt
# in tests/interop/.venv, as .ci/run installs them.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
examples="${2:-100}"
st="$here/.venv/bin/schemathesis"

work="$(mktemp -d)"
server=""
cleanup() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# Cheap hashing, and throttling off so that 429s do not crowd out the rest (they
# are documented all the same). Everything else is the default configuration.
export TESSERA_DATA_DIR="$work/data"
export TESSERA_ARGON2_MEMORY_KIB=1024 TESSERA_ARGON2_ITERATIONS=1
export TESSERA_LOGIN_LIMIT_ACCOUNT_IP=off TESSERA_LOGIN_LIMIT_ACCOUNT=off TESSERA_LOGIN_LIMIT_IP=off
export TESSERA_REGISTER_LIMIT_IP=off TESSERA_REFRESH_LIMIT_IP=off
export TESSERA_LOG=warn

# Port 0: the kernel picks a free port; the banner's first line names it.
"$bin" serve --listen 127.0.0.1:0 >"$work/server.log" 2>&1 &
server=$!
base=""
for _ in $(seq 1 100); do
  base="$(sed -nE '1s|.*(http://127\.0\.0\.1:[0-9]+).*|\1|p' "$work/server.log")"
  [ -n "$base" ] && break
  kill -0 "$server" 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
  sleep 0.2
done
[ -n "$base" ] || { echo "the server did not start" >&2; cat "$work/server.log" >&2; exit 1; }

# The user of the document's examples, and a confidential first-party client.
"$here/.venv/bin/python" - "$base" <<'PY'
import sys, requests
r = requests.post(f"{sys.argv[1]}/v1/auth/register", timeout=30, json={
    "email": "ada@example.com", "username": "ada",
    "password": "correct horse battery", "fullname": "Ada Lovelace"})
r.raise_for_status()
PY
secret="$("$bin" client add fuzzer --confidential --first-party --grant refresh_token --grant password \
  | sed -nE 's/^client_secret: *//p')"
[ -n "$secret" ] || { echo "no client secret" >&2; exit 1; }

cd "$work"
FUZZ_BASE_URL="$base" FUZZ_CLIENT_ID=fuzzer FUZZ_CLIENT_SECRET="$secret" \
SCHEMATHESIS_HOOKS="$here/fuzz_hooks.py" \
  "$st" run "$base/openapi.json" \
    --checks "${FUZZ_CHECKS:-not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance}" \
    --max-examples "$examples" --workers 2 --request-timeout 30 --no-shrink \
    "${@:3}"
