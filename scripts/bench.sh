#!/usr/bin/env bash
# End-to-end benchmark of the real daemon (benches/e2e.rs): one `bench <name> <value> <unit>`
# line per figure. Usage: scripts/bench.sh [--quick] [FIGURE...]   e.g. scripts/bench.sh append_1conn
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/xs-target}"
exec cargo bench -p xs-cli --bench e2e -- "$@"
