#!/usr/bin/env bash
# Kill -9 torture: ROUNDS rounds (default 20) of 32 concurrent writers, SIGKILL of the daemon
# at a random moment, offline check, restart and verification (tests/torture/main.rs).
# Usage: scripts/torture.sh [ROUNDS]    (TORTURE_SEED=N replays a run's kill timings)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/xs-target}"
export TORTURE_ROUNDS="${1:-20}"
cargo test --locked -p xs-cli --test torture -- --ignored --nocapture kill9_torture
