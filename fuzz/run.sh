#!/usr/bin/env bash
# Run every cargo-fuzz target for a bounded time on a copy of its checked-in seed corpus.
#
#   bash fuzz/run.sh                 # 30 s per target
#   FUZZ_SECONDS=300 bash fuzz/run.sh query_parser response_parser
#
# Exits non-zero on any crash (and prints the crashing input's path); prints
# "fuzzing SKIPPED: <reason>" and exits 0 when no nightly toolchain is available. Installs
# cargo-fuzz with `cargo install` when it is missing. Never writes into the repository: the
# corpus, new inputs and crash artifacts all live in a temporary directory.
set -euo pipefail

seconds="${FUZZ_SECONDS:-30}"
fuzz_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$fuzz_dir")"

skip() {
    echo "fuzzing SKIPPED: $1"
    exit 0
}

command -v cargo >/dev/null 2>&1 || skip "cargo not found"
command -v rustup >/dev/null 2>&1 || skip "rustup not found (needed for the nightly toolchain)"
rustup run nightly rustc --version >/dev/null 2>&1 \
    || skip "no nightly toolchain (rustup toolchain install nightly)"
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz missing: installing it"
    cargo install cargo-fuzz --locked || skip "cargo install cargo-fuzz failed"
fi

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cd "$repo" && cargo +nightly fuzz list)
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/heimdall-fuzz.XXXXXX")"
echo "fuzz: ${#targets[@]} targets, ${seconds} s each, work dir $work"

build_start=$(date +%s)
(cd "$repo" && cargo +nightly fuzz build) >"$work/build.log" 2>&1 || {
    cat "$work/build.log"
    echo "fuzz: build FAILED"
    exit 1
}
echo "fuzz: build $(( $(date +%s) - build_start )) s"

failed=()
for target in "${targets[@]}"; do
    corpus="$work/corpus/$target"
    artifacts="$work/artifacts/$target"
    mkdir -p "$corpus" "$artifacts"
    if [ -d "$fuzz_dir/corpus/$target" ]; then
        cp -r "$fuzz_dir/corpus/$target"/. "$corpus"/
    fi
    log="$work/$target.log"
    start=$(date +%s)
    status=0
    (cd "$repo" && cargo +nightly fuzz run "$target" "$corpus" -- \
        -max_total_time="$seconds" -timeout=10 -print_final_stats=1 \
        -artifact_prefix="$artifacts/") >"$log" 2>&1 || status=$?
    elapsed=$(( $(date +%s) - start ))
    runs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | tail -n 1 | grep -o '[0-9]*$' || true)
    if [ "$status" -eq 0 ]; then
        echo "fuzz: $target ok: ${elapsed} s, ${runs:-?} executions, corpus $(ls "$corpus" | wc -l) inputs"
    else
        tail -n 40 "$log"
        crash=$(find "$artifacts" -type f | head -n 1)
        echo "fuzz: $target CRASHED after ${elapsed} s (${runs:-?} executions): input ${crash:-<none written, see $log>}"
        failed+=("$target")
    fi
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz: FAILED targets: ${failed[*]} (logs and inputs kept in $work)"
    exit 1
fi
rm -rf "$work"
echo "fuzz: all targets passed"
