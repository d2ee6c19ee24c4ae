#!/usr/bin/env bash
# Browser tests: installs the pinned npm dependencies, builds latchkey if needed, and drives the
# pages in Debian's headless Chromium. The last line printed is "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")"
repo="$(cd ../.. && pwd)"

if [ ! -x "${CHROMIUM:-/usr/bin/chromium}" ]; then
  echo "Chromium is missing: apt-get install -y chromium" >&2
  echo "0 passed, 1 failed"
  exit 1
fi
if ! npm ci --no-audit --no-fund --loglevel=error >/dev/null; then
  echo "npm ci failed" >&2
  echo "0 passed, 1 failed"
  exit 1
fi
if [ -z "${LATCHKEY_BIN:-}" ]; then
  (cd "$repo" && cargo build --quiet --bin latchkey) || { echo "0 passed, 1 failed"; exit 1; }
  export LATCHKEY_BIN="${CARGO_TARGET_DIR:-$repo/target}/debug/latchkey"
fi
node run.mjs "$@"
