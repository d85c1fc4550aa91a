#!/usr/bin/env bash
# The main job in one command: a demo writer records into a ring, is killed
# with SIGKILL (no flush, no handler, no goodbye), and a separate reader
# process recovers its last window from the file it left behind.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --quiet -p blackbox
bb=target/release/blackbox

dir=${BLACKBOX_DEMO_DIR:-/dev/shm}
[ -d "$dir" ] && [ -w "$dir" ] || dir=${TMPDIR:-/tmp}
ring="$dir/blackbox-demo.ring"

echo "== writer: 4 threads x 2500 records (5000 per second each) into a 64 KiB ring, then SIGKILL to itself"
set +e
"$bb" demo --ring "$ring" --capacity 64KiB --threads 4 --records 2500 --rate 5000 --die kill
status=$?
set -e
echo "   writer exit status: $status (137 = killed by SIGKILL)"
echo
echo "== reader (another process): blackbox info $ring"
"$bb" info "$ring"
echo
echo "== the last 8 records: blackbox read $ring --last 8"
"$bb" read "$ring" --last 8
echo
echo "== blackbox verify $ring"
"$bb" verify "$ring"
rm -f "$ring"
