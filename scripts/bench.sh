#!/usr/bin/env bash
# End-to-end benchmark of the real daemon (benches/e2e.rs): one `bench <name> <value> <unit>`
# line per figure. Usage: scripts/bench.sh [--quick] [--nats] [--fsync MODE] [FIGURE...]
#   e.g. scripts/bench.sh append_1conn; scripts/bench.sh --quick --nats;
#   scripts/bench.sh --fsync interval:1000 append (the local daemons run with xs serve --fsync MODE)
# `--nats` (or a `nats_` figure) also measures two daemons on a loopback JetStream cluster,
# with the pinned nats-server that scripts/nats-server.sh installs.
# XS_BENCH_PEER=path/to/xs also measures cross.stream's binary in the same run (`peer_` figures).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/xs-target}"
for arg in "$@"; do
  case "$arg" in
    --nats | nats*)
      if [ -z "${XS_NATS_SERVER:-}" ]; then
        XS_NATS_SERVER="$(scripts/nats-server.sh)"
        export XS_NATS_SERVER
      fi
      ;;
  esac
done
exec cargo bench -p xs-cli --bench e2e -- "$@"
