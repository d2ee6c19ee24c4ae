#!/usr/bin/env bash
# Checks the dependency tree with cargo-deny (deny.toml): every licence on the allow-list, crates only
# from crates.io, no wildcard versions, no yanked crates, and no crate with a RustSec advisory.
#
# The advisory database is fetched from GitHub. Where that is unreachable the advisories are NOT
# checked and the script says so; set REQUIRE_ADVISORIES=1 to make that an error.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo deny --version >/dev/null 2>&1; then
  echo "== installing cargo-deny from crates.io (takes a while, once)"
  cargo install --locked cargo-deny
fi

echo "== cargo deny: licences, bans, sources"
cargo deny --locked check licenses bans sources

echo "== cargo deny: advisories"
if cargo deny --locked fetch db >/dev/null 2>&1; then
  cargo deny --locked check advisories
elif [ "${REQUIRE_ADVISORIES:-}" = "1" ]; then
  echo "the RustSec advisory database could not be fetched" >&2
  exit 1
else
  echo "WARNING: the RustSec advisory database could not be fetched (no access to GitHub?):"
  echo "         advisories were NOT checked. Run with network access, or REQUIRE_ADVISORIES=1 to fail."
fi
