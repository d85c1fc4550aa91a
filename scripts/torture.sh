#!/usr/bin/env bash
# Kill torture: SIGKILL multi-threaded writers at random instants, 1,000
# times, on rings from 16 KiB to 8 MiB, with 1, 2, 4 and 8 writer threads
# (more threads than this machine's cores), raw records from 1 byte to the
# ring's limit (more than a page from 1 MiB rings up), and check every ring
# from other processes: no false record, `blackbox verify` passes, each
# thread's records one run without a hole that ends at its last append
# reported as returned, and records lost only as drops the writer was told
# of and the ring counts. No loss is tolerated. The harness is
# tests/torture_sizes.rs (its short run, ~25 s, is part of `cargo test`);
# then tests/torture.rs kills `blackbox demo` the same way, whose records
# carry the thread's drop count, 300 times. Both run long here, in release
# mode.
#
#   scripts/torture.sh            # 1000 + 300 iterations
#   scripts/torture.sh 5000       # more
#   BLACKBOX_SIZES_SEED=N scripts/torture.sh   # replay a failure
#
# The full logs are in target/torture*.log; a failing ring is copied to
# $TMPDIR/bbx-sizes-fail-SEED-ITERATION.ring (or bbx-torture-fail-...).
set -euo pipefail
cd "$(dirname "$0")/.."

iterations=${1:-1000}
if [ "$(uname -s)" != Linux ]; then
    echo "skipped: the torture harness needs Linux (OFD locks, /proc)"
    exit 0
fi

# Build first, so the time below is the torture's.
cargo test --release -q -p blackbox --test torture_sizes --test torture --no-run 2>/dev/null
start=$(date +%s)
status=0
BLACKBOX_SIZES_ITERS=$iterations BLACKBOX_SIZES_BUDGET_S=0 BLACKBOX_SIZES_MAX_KIB=8192 \
    cargo test --release -q -p blackbox --test torture_sizes -- --nocapture \
    random_sigkill_with_records_of_every_size >target/torture.log 2>&1 || status=$?
grep -E '^torture_sizes: (seed|[0-9]+ iterations|FAILED)' target/torture.log || true
if [ "$status" -eq 0 ]; then
    BLACKBOX_TORTURE_ITERS=$((iterations * 3 / 10)) BLACKBOX_TORTURE_BUDGET_S=0 BLACKBOX_TORTURE_MAX_KIB=8192 \
        cargo test --release -q -p blackbox --test torture -- --nocapture \
        >target/torture-demo.log 2>&1 || status=$?
    grep -E '^torture: (seed|[0-9]+ iterations|FAILED)' target/torture-demo.log || true
fi
elapsed=$(($(date +%s) - start))
if [ "$status" -ne 0 ]; then
    tail -n 30 target/torture.log target/torture-demo.log 2>/dev/null
    echo "torture: FAILED after ${elapsed} s (logs: target/torture*.log)"
    exit 1
fi
echo "torture: $iterations + $((iterations * 3 / 10)) kills in ${elapsed} s, all rings consistent, nothing committed lost"
