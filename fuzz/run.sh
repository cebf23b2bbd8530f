#!/usr/bin/env bash
# Runs each fuzz target for a bounded time (default 60 s each):
#   fuzz/run.sh [SECONDS]
# Needs a nightly toolchain and cargo-fuzz (installed from crates.io when
# missing); says so and exits 0 when there is no nightly toolchain. New
# corpus entries go to fuzz/target/corpus/<target> (not checked in); the
# checked-in seed corpus in fuzz/corpus/<target> is read, never written.
# The sanitizer is off: the targets are safe Rust on the simulated file
# system (no mmap), and without it they run about 6x faster. Optimized
# (-O) but with debug assertions and overflow checks (-a; overflow checks
# are also set in fuzz/Cargo.toml's release profile): an arithmetic
# overflow or a broken debug_assert! is a finding, not a silent wrap.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-60}"
if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    echo "fuzz: no nightly toolchain installed, skipping the fuzz targets"
    exit 0
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install --locked cargo-fuzz
fi
for target in replay_bytes ops_crash record_roundtrip; do
    work="target/corpus/$target"
    mkdir -p "$work"
    log="target/$target.log"
    echo "== fuzz $target for ${seconds}s"
    status=0
    cargo +nightly fuzz run -O -a -s none "$target" "$work" "corpus/$target" -- \
        -max_total_time="$seconds" -timeout=20 -rss_limit_mb=2048 -malloc_limit_mb=512 -print_final_stats=1 \
        >"$log" 2>&1 || status=$?
    grep -E '^stat::number_of_executed_units|^stat::average_exec_per_sec|^Done' "$log" || true
    if [ "$status" -ne 0 ]; then
        tail -60 "$log"
        echo "fuzz: $target found a failure (crash input in fuzz/artifacts/$target)"
        exit "$status"
    fi
done
