#!/usr/bin/env bash
# Schemathesis against the server's own OpenAPI document: generated requests to every operation,
# anonymous and signed in, must never get a 5xx and every response must match the documented
# schema. Starts latchkey on a temporary data directory; exits non-zero on any failure.
#
#   scripts/schemathesis.sh            # default budget
#   SCHEMATHESIS_EXAMPLES=200 scripts/schemathesis.sh
set -euo pipefail
cd "$(dirname "$0")/.."

examples="${SCHEMATHESIS_EXAMPLES:-50}"
target_dir="${CARGO_TARGET_DIR:-target}"
venv="target/schemathesis-venv"

if [ ! -x "$venv/bin/schemathesis" ]; then
  echo "== installing schemathesis (PyPI) into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'schemathesis>=4,<5'
fi

echo "== building latchkey"
cargo build --locked --quiet --bin latchkey

work="$(mktemp -d)"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

LATCHKEY_BIND=127.0.0.1:0 \
LATCHKEY_DATA_DIR="$work" \
LATCHKEY_DATABASE_URL="sqlite://$work/latchkey.db" \
LATCHKEY_PASSWORD_HASH="argon2id:m=1024,t=1,p=1" \
LATCHKEY_REQUIRE_2FA=none \
RUST_LOG=warn \
  "$target_dir/debug/latchkey" serve >"$work/stdout" 2>"$work/stderr" &
server_pid=$!
for _ in $(seq 1 100); do
  grep -q "listening on" "$work/stdout" 2>/dev/null && break
  sleep 0.1
done
address="$(sed -n 's/.*listening on \([0-9.:]*\)).*/\1/p' "$work/stdout")"
if [ -z "$address" ]; then
  echo "latchkey did not start:" >&2
  cat "$work/stderr" >&2
  exit 1
fi
base="http://$address"
echo "== latchkey at $base"

# A signed-in user, so operations behind authentication are exercised too.
credentials='{"email":"schemathesis@example.com","password":"correct horse battery staple"}'
curl -fsS "$base/api/v1/signup" -H 'content-type: application/json' -d "$credentials" >/dev/null
token="$(curl -fsS "$base/api/v1/login" -H 'content-type: application/json' -d "$credentials" | jq -r .session_token)"

run() {
  "$venv/bin/schemathesis" run "$base/api/openapi.json" \
    --checks not_a_server_error,response_schema_conformance \
    --phases examples,coverage,fuzzing \
    --max-examples "$examples" \
    --seed 1 \
    --suppress-health-check all \
    --no-color \
    "$@"
}

status=0
echo "== anonymous"
run || status=1
echo "== signed in"
# Logging out would end the session the rest of the run signs in with.
run -H "Authorization: Bearer $token" --exclude-path /api/v1/logout --generation-with-security-parameters false || status=1

if grep -E "panicked|ERROR" "$work/stderr"; then
  echo "the server logged errors (above)" >&2
  status=1
fi
exit "$status"
