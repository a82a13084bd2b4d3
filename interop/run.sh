#!/usr/bin/env bash
# Runs the Mandate interop suite: tweetnacl (Node) and PyJWT + cryptography (Python) against the
# built `mandate` binary. Extra arguments go to pytest (e.g. `interop/run.sh -k delegation`).
#
#   MANDATE_BIN   path to the built binary (default: <repo>/target/release/mandate)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"

if [[ -z "${MANDATE_BIN:-}" ]]; then
  MANDATE_BIN="$root/target/release/mandate"
elif [[ "$MANDATE_BIN" != /* ]]; then
  MANDATE_BIN="$PWD/$MANDATE_BIN"
fi
if [[ ! -x "$MANDATE_BIN" ]]; then
  echo "interop: no mandate binary at $MANDATE_BIN (build it with 'cargo build --release' or set MANDATE_BIN)" >&2
  exit 1
fi
export MANDATE_BIN

for tool in node npm python3; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "interop: '$tool' is not installed" >&2
    exit 1
  fi
done

echo "interop: installing Node dependencies (tweetnacl)"
(
  cd "$here/node"
  if [[ -f package-lock.json ]]; then
    npm ci --no-audit --no-fund --loglevel=error
  else
    npm install --no-audit --no-fund --loglevel=error
  fi
)

echo "interop: installing Python dependencies (PyJWT, cryptography, requests, pytest)"
python3 -m pip install -q --disable-pip-version-check -r "$here/python/requirements.txt"

echo "interop: running pytest against $MANDATE_BIN"
cd "$root"
python3 -m pytest "$here/python" -v -p no:cacheprovider "$@"
