#!/usr/bin/env python3
"""Runs crates/policy/tests/differential/cases.json through real OPA and reports agreement.

The second implementation is the OPA Go library itself (github.com/open-policy-agent/opa/v1/rego,
v1.20.2 in opa-golib-python-bindings 0.4.4), embedded as a c-shared library with ctypes wrappers.
The wheel is published for Python >= 3.14 only, but its code is plain ctypes and runs on 3.10+,
so when `opa_bindings` is not importable this script downloads the wheel from PyPI with
`pip download --python-version 3.14` and unpacks it into a cache directory (no install).

The bridge always evaluates with rego.StrictBuiltinErrors(true). The expectations in cases.json
are what `opa eval` returns by default (non-strict: a builtin runtime error makes the expression
undefined), so cases that exercise a builtin error carry "expected_strict", which is used here.

Usage:
  python3 interop/rego_differential.py [--cases PATH] [--bindings DIR] [-v]
Exit status: 0 when every case agrees, 1 otherwise, 2 when OPA could not be loaded.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CASES = ROOT / "crates" / "policy" / "tests" / "differential" / "cases.json"
WHEEL = "opa-golib-python-bindings==0.4.4"


def load_opa(bindings_dir):
    """Imports opa_bindings, fetching the wheel from PyPI into a cache dir if needed."""
    if bindings_dir:
        sys.path.insert(0, str(bindings_dir))
    try:
        import opa_bindings  # noqa: F401
        return opa_bindings
    except ImportError:
        pass
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mandate-interop" / "opa-bindings"
    if not (cache / "opa_bindings" / "libopabridge.so").exists():
        # pip honours PIP_FIND_LINKS / PIP_NO_INDEX, so a local wheelhouse works offline too.
        cache.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache.parent) as tmp:
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--python-version", "3.14",
                 "--only-binary=:all:", WHEEL, "-d", tmp],
                check=True,
            )
            wheels = list(Path(tmp).glob("*.whl"))
            if not wheels:
                raise RuntimeError("pip download produced no wheel")
            # Unpack next to the cache and rename it into place, so an interrupted run never
            # leaves a half-written libopabridge.so that the check above would take as complete.
            staged = Path(tmp) / "unpacked"
            with zipfile.ZipFile(wheels[0]) as z:
                z.extractall(staged)
            if cache.exists():
                shutil.rmtree(cache)
            os.replace(staged, cache)
    sys.path.insert(0, str(cache))
    import opa_bindings
    return opa_bindings


def canon(v):
    """A canonical, type-strict form: bools stay distinct from numbers, 1 == 1.0."""
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return (type(v).__name__, v)
    if isinstance(v, (int, float)):
        return ("number", float(v) if not float(v).is_integer() else int(v))
    if isinstance(v, list):
        return ("array", tuple(canon(x) for x in v))
    if isinstance(v, dict):
        return ("object", tuple(sorted((k, canon(x)) for k, x in v.items())))
    raise TypeError(f"unexpected JSON value {v!r}")


def same(expected, actual, as_set):
    if as_set:
        if not isinstance(expected, list) or not isinstance(actual, list):
            return False
        return sorted(map(repr, map(canon, expected))) == sorted(map(repr, map(canon, actual)))
    return canon(expected) == canon(actual)


def run_case(ob, case):
    """Returns ("value", v) | ("undefined", None) | ("error", message)."""
    eng = ob.OpaEngine()
    try:
        eng.add_policy("case.rego", case["policy"])
        if "data" in case:
            eng.add_data(case["data"])
        path = case["query"]
        if not path.startswith("data."):
            raise ValueError(f"query must start with data.: {path}")
        try:
            return "value", eng.eval_document(path[len("data."):], case.get("input", {}))
        except ob.OpaUndefinedError:
            return "undefined", None
    except ob.OpaError as e:
        return "error", str(e)
    finally:
        eng.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default=str(DEFAULT_CASES))
    ap.add_argument("--bindings", help="directory containing an unpacked opa_bindings package")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()

    try:
        ob = load_opa(args.bindings)
    except Exception as e:  # noqa: BLE001
        print(f"rego_differential: could not load OPA bindings: {e}", file=sys.stderr)
        return 2

    cases = json.loads(Path(args.cases).read_text())
    agree = disagree = 0
    for case in cases:
        expected = case.get("expected_strict", case["expected"])
        kind, got = run_case(ob, case)
        if isinstance(expected, dict) and expected.get("undefined") is True and len(expected) == 1:
            ok = kind == "undefined"
        elif isinstance(expected, dict) and expected.get("error") is True and len(expected) == 1:
            ok = kind == "error"
        else:
            ok = kind == "value" and same(expected, got, case.get("set", False))
        shown = got if kind == "value" else f"<{kind}{': ' + got if kind == 'error' else ''}>"
        if ok:
            agree += 1
            if args.verbose:
                print(f"AGREE    {case['name']}: {json.dumps(shown) if kind == 'value' else shown}")
        else:
            disagree += 1
            print(f"DISAGREE {case['name']}: expected {json.dumps(expected)}, OPA gave "
                  f"{json.dumps(shown) if kind == 'value' else shown}")
    print(f"OPA (opa-golib-python-bindings, strict builtin errors): {agree} agree, {disagree} disagree, "
          f"{len(cases)} cases")
    print(f"{agree} passed, {disagree} failed")
    return 0 if disagree == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
