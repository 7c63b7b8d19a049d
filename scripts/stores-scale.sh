#!/usr/bin/env bash
# Mounts N stores (default 100) in one daemon; prints the time until all answer `active`, the
# daemon's RSS, the time a restart takes to mount them all again, and the SIGTERM stop time.
# Usage: scripts/stores-scale.sh [N] [XS binary]   (build it first: cargo build --release)
set -euo pipefail
N=${1:-100}
XS=${2:-target/release/xs}
dir=$(mktemp -d); trap 'kill $pid 2>/dev/null || true; rm -rf "$dir"' EXIT
now() { date +%s.%N; }
rss() { awk '/VmRSS/ {print $2/1024 " MiB"}' /proc/$1/status; }
serve() { "$XS" serve "$dir/ctl" 2>"$dir/log" & pid=$!; until [ -S "$dir/ctl/sock" ]; do sleep 0.01; done; }
active() { "$XS" stores "$dir/ctl" | grep -c '"state":"active"' || true; }
serve
echo "idle daemon: $(rss $pid)"
t0=$(now)
for i in $(seq 1 "$N"); do
  printf '{"path":"%s/s%d"}' "$dir" "$i" | "$XS" append "$dir/ctl" "xs.store.s$i.create" >/dev/null
done
until [ "$(active)" -ge "$N" ]; do sleep 0.05; done
echo "$N stores added and active in $(echo "$(now) - $t0" | bc) s; RSS $(rss $pid)"
for i in $(seq 1 "$N"); do echo x | "$XS" append "$dir/s$i" note >/dev/null; done
echo "after one append each: RSS $(rss $pid)"
t0=$(now); kill -TERM $pid; wait $pid || true
echo "SIGTERM stop: $(echo "$(now) - $t0" | bc) s"
t0=$(now); serve
until [ "$(active)" -ge "$N" ]; do sleep 0.05; done
echo "restart with $N stores: all active in $(echo "$(now) - $t0" | bc) s; RSS $(rss $pid)"
kill -TERM $pid; wait $pid || true
