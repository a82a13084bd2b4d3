#!/usr/bin/env bash
# Runs the fuzz targets one after another, each as a single libFuzzer process, for SECONDS each.
#
#   fuzz/run.sh [SECONDS] [TARGET...]        (default: 600 s; tokens dpop keys policy audit jsonrpc)
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`); RUSTC_BOOTSTRAP=1 lets the stable toolchain
# take the nightly-only flags cargo-fuzz passes (-Zsanitizer=address, the sancov passes).
# The build is cargo-fuzz's default: optimised, with debug assertions and overflow checks (so an
# arithmetic overflow is a crash too), and AddressSanitizer.
# Build output goes to $CARGO_TARGET_DIR (default /work/fuzz-target), the grown corpus to
# $FUZZ_CORPUS/<target> (default /work/fuzz-corpus) and logs to $FUZZ_LOGS (default
# /work/fuzz-logs), all outside the repository; the committed seeds in fuzz/corpus/<target> are
# read but never written. Crashes land in fuzz/artifacts/<target>/ (git-ignored).
set -euo pipefail
fuzz_dir=$(cd "$(dirname "$0")" && pwd)
secs=${1:-600}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(tokens dpop keys policy audit jsonrpc)
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/fuzz-target}
corpus=${FUZZ_CORPUS:-/work/fuzz-corpus}
logs=${FUZZ_LOGS:-/work/fuzz-logs}
mkdir -p "$logs"
cd "$logs" # libFuzzer writes the -jobs log (fuzz-0.log) to the working directory
cargo fuzz build --fuzz-dir "$fuzz_dir"
for t in "${targets[@]}"; do
    mkdir -p "$corpus/$t"
    rc=0
    # -jobs=1 -workers=1: a single fuzzing process, logged to ./fuzz-0.log.
    cargo fuzz run --fuzz-dir "$fuzz_dir" "$t" "$corpus/$t" "$fuzz_dir/corpus/$t" -- \
        -max_total_time="$secs" -jobs=1 -workers=1 -timeout=10 \
        -dict="$fuzz_dir/dict/$t.dict" -print_final_stats=1 >"$t.driver.log" 2>&1 || rc=$?
    mv -f fuzz-0.log "$t.log"
    tail -n 12 "$t.log"
    echo "== $t: exit $rc; corpus $(ls "$corpus/$t" | wc -l) files; artifacts: $(ls "$fuzz_dir/artifacts/$t" 2>/dev/null | wc -l)"
done
