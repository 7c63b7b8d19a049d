#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit tests, the model-based store tests, the
# end-to-end tests that start the real daemon on temp stores, then the short forms of the long
# runs: 3 rounds of kill -9 torture and FUZZ_SECONDS (default 30) of each fuzz target.
# Usage: scripts/test.sh [extra nextest/cargo-test args]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/xs-target}"

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast "$@"
else
  cargo test --workspace --locked --no-fail-fast "$@"
fi

scripts/torture.sh 3
scripts/fuzz.sh "${FUZZ_SECONDS:-30}"
