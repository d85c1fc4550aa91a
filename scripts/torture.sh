#!/usr/bin/env bash
# Kill torture: SIGKILL a multi-threaded writer at random instants, 1,000
# times, on rings from 4 KiB (one page) to 4 MiB, with raw records from
# 1 byte to the ring's limit (64 KiB - 32 from 256 KiB rings up), and check
# every ring from other processes: no false record, `blackbox verify`
# passes, per-thread counters contiguous except where the reader reports
# a lapped writer's damage (shm-layout.md 7.3), every append that returned
# is in the window. The harness is tests/torture_sizes.rs (its short run,
# ~25 s, is part of `cargo test`); this runs it long, in release mode.
#
#   scripts/torture.sh            # 1000 iterations
#   scripts/torture.sh 5000       # more
#   BLACKBOX_SIZES_SEED=N scripts/torture.sh   # replay a failure
#
# The full log is in target/torture.log; a failing ring is copied to
# $TMPDIR/bbx-sizes-fail-SEED-ITERATION.ring.
set -euo pipefail
cd "$(dirname "$0")/.."

iterations=${1:-1000}
if [ "$(uname -s)" != Linux ]; then
    echo "skipped: the torture harness needs Linux (OFD locks, /proc)"
    exit 0
fi

# Build first, so the time below is the torture's.
cargo test --release -q -p blackbox --test torture_sizes --no-run 2>/dev/null
start=$(date +%s)
status=0
BLACKBOX_SIZES_ITERS=$iterations BLACKBOX_SIZES_BUDGET_S=0 BLACKBOX_SIZES_MAX_KIB=4096 \
    cargo test --release -q -p blackbox --test torture_sizes -- --nocapture \
    random_sigkill_with_records_of_every_size >target/torture.log 2>&1 || status=$?
elapsed=$(($(date +%s) - start))
grep -E '^torture_sizes: (seed|[0-9]+ iterations|FAILED)' target/torture.log || true
if [ "$status" -ne 0 ]; then
    tail -n 30 target/torture.log
    echo "torture: FAILED after ${elapsed} s (log: target/torture.log)"
    exit 1
fi
echo "torture: $iterations kills in ${elapsed} s, all rings consistent"
