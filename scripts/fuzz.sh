#!/usr/bin/env bash
# Fuzz the reader's recovery with cargo-fuzz (libFuzzer), one target after
# the other (fuzz/fuzz_targets: recover_bytes, mutate_ring, postmortem,
# span_timeline).
#
#   scripts/fuzz.sh                 # CI: 30 s per target, AddressSanitizer
#   scripts/fuzz.sh 600             # 10 minutes per target
#   FUZZ_RUNS=5000000 scripts/fuzz.sh   # a number of executions per target instead
#   FUZZ_SANITIZER=none scripts/fuzz.sh 600   # several times the executions, no ASan
#   FUZZ_TARGETS=mutate_ring scripts/fuzz.sh
#
# The targets check the reader against a model of the spec written in
# fuzz/fuzz_targets/check.rs (the header checks of shm-layout.md section 3,
# the walk of section 11): a disagreement is a crash too. span_timeline
# feeds hostile span records (section 6b) to the span decoder and the
# timeline export, and checks the export is valid JSON whose slices nest.
#
# Needs the nightly toolchain and cargo-fuzz; installs cargo-fuzz from the
# crate registry if it is missing. Where either cannot be had, it prints
# "skipped: why" and exits 0. A crash, a timeout (10 s for one input) or a
# memory limit hit exits non-zero; the input is under fuzz/artifacts/.
#
# Memory is bounded twice: -rss_limit_mb for the whole process, and (with a
# sanitizer, which provides libFuzzer's malloc hooks) -malloc_limit_mb for
# any one allocation: the reader must never allocate what a header claims.
#
# New corpus entries go to target/fuzz-corpus/TARGET (not in the
# repository); the checked-in seeds in fuzz/seeds/TARGET are only read.
# Fresh rings written by `blackbox demo` (dead in several ways) are added to
# the scratch corpus of recover_bytes on every run.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-30}
runs=${FUZZ_RUNS:-}
sanitizer=${FUZZ_SANITIZER:-address}
targets=${FUZZ_TARGETS:-recover_bytes mutate_ring postmortem span_timeline}
corpus_root=${FUZZ_CORPUS_DIR:-target/fuzz-corpus}

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "skipped: fuzzing needs the nightly toolchain (rustup toolchain install nightly)"
    exit 0
fi
mkdir -p target
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz from the crate registry"
    if ! cargo install cargo-fuzz --locked >target/cargo-fuzz-install.log 2>&1; then
        echo "skipped: cargo-fuzz is not installed and cannot be installed" \
            "($(tail -n 1 target/cargo-fuzz-install.log))"
        exit 0
    fi
fi

# Seeds from the real writer (version 2 rings of 16 KiB, the smallest:
# 16 chunks of 1 KiB), dying in several ways.
cargo build -q -p blackbox
blackbox=${CARGO_TARGET_DIR:-target}/debug/blackbox
seeds=$(mktemp -d)
trap 'rm -rf "$seeds"' EXIT
for die in kill panic exit; do
    # In a shell of its own, so its death by SIGKILL is not announced here.
    bash -c '"$@"; true' _ "$blackbox" demo --ring "$seeds/$die.ring" \
        --capacity 16KiB --threads 4 --records 300 --die "$die" >/dev/null 2>&1
done
mkdir -p "$corpus_root/recover_bytes"
cp "$seeds"/*.ring "$corpus_root/recover_bytes/" 2>/dev/null || true

# ASan's quarantine holds freed memory back; keep it small, so the RSS
# limit measures the reader rather than the sanitizer.
export ASAN_OPTIONS=${ASAN_OPTIONS:-quarantine_size_mb=32:detect_leaks=0}
limits=(-rss_limit_mb=512 -timeout=10 -print_final_stats=1)
if [ "$sanitizer" != none ]; then
    limits+=(-malloc_limit_mb=64)
fi
if [ -n "$runs" ]; then
    budget=(-runs="$runs")
else
    budget=(-max_total_time="$seconds")
fi

total=0
for target in $targets; do
    mkdir -p "$corpus_root/$target"
    log="target/fuzz-$target.log"
    # Whole files up to 32 KiB: 16 KiB rings (24 KiB files) and a little
    # more.
    max_len=()
    [ "$target" = recover_bytes ] && max_len=(-max_len=32768)
    # The postmortem target: a header and a small postmortem area.
    [ "$target" = postmortem ] && max_len=(-max_len=16384)
    echo "fuzz: $target (sanitizer $sanitizer, ${runs:-${seconds} s})"
    if ! cargo +nightly fuzz run -s "$sanitizer" "$target" \
        "$corpus_root/$target" "fuzz/seeds/$target" -- \
        "${limits[@]}" "${budget[@]}" "${max_len[@]}" >"$log" 2>&1; then
        tail -n 40 "$log"
        echo "fuzz: $target FAILED (log: $log; input under fuzz/artifacts/$target/)"
        exit 1
    fi
    n=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    peak=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log" | tail -n 1)
    echo "fuzz: $target: ${n:-?} executions, no crash, peak RSS ${peak:-?} MiB"
    total=$((total + ${n:-0}))
done
echo "fuzz: $total executions in all, no crash"
