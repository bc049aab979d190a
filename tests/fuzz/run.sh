#!/usr/bin/env bash
# Runs the libFuzzer harnesses built in BUILD_DIR (cmake -DWL_BUILD_FUZZ=ON, clang), each for
# SECONDS, starting from the committed seeds plus the corpus left by earlier runs in
# BUILD_DIR/fuzz-corpus/NAME. Prints each harness's execution count; exits non-zero on the first
# crash, leak, timeout or sanitizer report (the input is saved as BUILD_DIR/fuzz-artifacts/NAME-*).
#
#   tests/fuzz/run.sh build/fuzz 60                      # every harness, one minute each (CI)
#   tests/fuzz/run.sh build/fuzz 3600 filter layer       # long runs (docs/HARDENING.md)
#   JOBS=2 tests/fuzz/run.sh build/fuzz 3600 container   # libFuzzer -fork=2 (parallel workers)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
build="$(cd "${1:?usage: run.sh BUILD_DIR SECONDS [HARNESS...]}" && pwd)"
seconds="${2:?usage: run.sh BUILD_DIR SECONDS [HARNESS...]}"
shift 2
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(filter container layer exact)

total=0
for name in "${names[@]}"; do
    bin="$build/tests/fuzz/wl_fuzz_$name"
    [ -x "$bin" ] || { echo "run.sh: $bin not found (configure with -DWL_BUILD_FUZZ=ON)" >&2; exit 1; }
    corpus="$build/fuzz-corpus/$name"
    artifacts="$build/fuzz-artifacts"
    mkdir -p "$corpus" "$artifacts"
    args=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=1024 -max_len=8192
          -print_final_stats=1 -artifact_prefix="$artifacts/$name-")
    if [ -f "$here/$name.dict" ]; then args+=(-dict="$here/$name.dict"); fi
    if [ -n "${JOBS:-}" ]; then args+=(-fork="$JOBS" -ignore_crashes=0); fi
    log="$build/fuzz-$name.log"
    echo "fuzz $name: ${seconds}s ..."
    if ! "$bin" "${args[@]}" "$corpus" "$here/seeds/$name" > "$log" 2>&1; then
        tail -40 "$log" >&2
        echo "run.sh: fuzz $name FAILED (log: $log)" >&2
        exit 1
    fi
    runs=$(grep -E '^stat::number_of_executed_units' "$log" | awk '{s += $2} END {print s + 0}')
    if [ "$runs" = 0 ]; then  # -fork mode reports the count in its last status line
        runs=$(grep -oE '^#[0-9]+' "$log" | tail -1 | tr -d '#')
    fi
    total=$((total + ${runs:-0}))
    echo "fuzz $name: ${runs:-?} executions, corpus $(ls "$corpus" | wc -l) inputs, no crash"
done
echo "fuzz total: $total executions"
