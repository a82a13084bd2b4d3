#!/usr/bin/env bash
# Runs the Mandate interop suite: tweetnacl (Node) and PyJWT + cryptography (Python) against the
# built `mandate` binary. Extra arguments go to pytest (e.g. `interop/run.sh -k delegation`).
#
# It also runs interop/rego_differential.py: every case in
# crates/policy/tests/differential/cases.json through real OPA (the Go library, via the
# opa-golib-python-bindings wheel); a disagreement or an OPA that cannot be loaded fails the run.
#
#   MANDATE_BIN            path to the built binary (default: <repo>/target/release/mandate)
#   MANDATE_OPA_BINDINGS   directory holding an unpacked opa_bindings package (optional)
#
# The OPA wheel is fetched from PyPI once and unpacked into
# ${XDG_CACHE_HOME:-~/.cache}/mandate-interop/opa-bindings; later runs use that cache and need no
# network. Offline without that cache, point pip at a wheelhouse holding
# opa_golib_python_bindings-0.4.4-*.whl: PIP_NO_INDEX=1 PIP_FIND_LINKS=/path/to/wheels.
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

echo "interop: installing Python dependencies (PyJWT, cryptography, requests, pytest, pymerkle)"
python3 -m pip install -q --disable-pip-version-check -r "$here/python/requirements.txt"

cd "$root"

# Rego differential: regorus's expectations (cases.json) against real OPA. Runs before pytest
# (it takes about a second) but does not stop it; both results decide the exit status.
echo "interop: running the Rego differential cases through OPA"
differential_args=()
if [[ -n "${MANDATE_OPA_BINDINGS:-}" ]]; then
  differential_args+=(--bindings "$MANDATE_OPA_BINDINGS")
fi
differential_rc=0
python3 "$here/rego_differential.py" "${differential_args[@]+"${differential_args[@]}"}" || differential_rc=$?

echo "interop: running pytest against $MANDATE_BIN"
pytest_rc=0
python3 -m pytest "$here/python" -v -p no:cacheprovider "$@" || pytest_rc=$?

if [[ $differential_rc -ne 0 ]]; then
  if [[ $differential_rc -eq 2 ]]; then
    echo "interop: the Rego differential could not load OPA (see above; offline, use the cache or PIP_NO_INDEX=1 PIP_FIND_LINKS=...)" >&2
  else
    echo "interop: OPA disagrees with crates/policy/tests/differential/cases.json (see DISAGREE lines above)" >&2
  fi
fi
if [[ $pytest_rc -ne 0 ]]; then
  exit "$pytest_rc"
fi
exit "$differential_rc"
