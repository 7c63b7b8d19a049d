#!/usr/bin/env bash
# Runs every fuzz target (fuzz/fuzz_targets/) for SECONDS each (default 30) with cargo-fuzz
# and libFuzzer, starting from the committed seeds (fuzz/seeds/<target>/) and the local
# corpus (fuzz/corpus/<target>/, not committed). Prints `fuzz <target> <executions> execs`
# per target; a crash stops the script, its input is in fuzz/artifacts/<target>/.
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/xs-target}"
# cargo-fuzz passes nightly-only flags (-Zsanitizer); the stable toolchain accepts them so.
export RUSTC_BOOTSTRAP=1
secs="${1:-30}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo fuzz list)
fi
sanitizer=(-s address)
if ! cargo fuzz build "${sanitizer[@]}" >/dev/null 2>&1; then
  echo "fuzz: the address sanitizer does not build here; fuzzing without it" >&2
  sanitizer=(-s none)
  cargo fuzz build "${sanitizer[@]}"
fi
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "seeds/$t"
  log=$(mktemp)
  if ! cargo fuzz run "${sanitizer[@]}" "$t" "corpus/$t" "seeds/$t" -- \
      -max_total_time="$secs" -timeout=20 -print_final_stats=1 >"$log" 2>&1; then
    tail -n 60 "$log" >&2
    echo "fuzz: target $t crashed; the input is in fuzz/artifacts/$t/" >&2
    rm -f "$log"
    exit 1
  fi
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  echo "fuzz $t $execs execs ${secs}s"
  rm -f "$log"
done
