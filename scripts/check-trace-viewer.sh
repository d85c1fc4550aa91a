#!/usr/bin/env bash
# A viewer nobody here wrote reads blackbox's timeline export.
#
#   scripts/check-trace-viewer.sh             # CI
#   TRACE_VIEWER_PNG=docs/lock-gap-timeline.png scripts/check-trace-viewer.sh
#                                             # also keep the screenshot there
#
# 1. `blackbox demo --scenario lock-gap` dies by SIGKILL; `blackbox export
#    --format trace-event` writes its window as Trace Event Format JSON.
# 2. speedscope (the npm package, pinned) opens it in headless Chromium
#    (Debian's, installed with scripts/apt-install.sh), from the page its
#    own CLI opens. The page's DOM (sandwich view) must hold a profile per
#    thread track, whose total is the time that track's slices cover, and
#    the spans by name with their durations (scripts/check_trace_viewer.js).
# 3. A screenshot of the rendered timeline must not be blank.
#
# Where Node, npm, the package or Chromium cannot be had, it prints
# "skipped: why" and exits 0. A check that fails exits 1.
set -euo pipefail
cd "$(dirname "$0")/.."

SPEEDSCOPE_VERSION=1.25.0

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "skipped: the trace viewer check needs Node and npm"
    exit 0
fi

work=target/trace-viewer
mkdir -p "$work"
cargo build -q -p blackbox
blackbox=${CARGO_TARGET_DIR:-target}/debug/blackbox

ring="$work/lock-gap.ring"
export_json="$work/lock-gap.json"
rm -f "$ring"
# Dies by SIGKILL, as the scenario says: in a shell of its own, so the
# death is not announced here.
bash -c '"$@"; true' _ "$blackbox" demo --ring "$ring" --scenario lock-gap >/dev/null 2>&1
"$blackbox" export "$ring" --format trace-event -o "$export_json"
echo "check-trace-viewer: exported $(wc -c <"$export_json") bytes of trace-event JSON"

app="$work/node_modules/speedscope/dist/release/index.html"
if [ ! -f "$app" ]; then
    if ! npm install --prefix "$work" --no-audit --no-fund --no-save \
        "speedscope@$SPEEDSCOPE_VERSION" >"$work/npm.log" 2>&1; then
        echo "skipped: speedscope@$SPEEDSCOPE_VERSION cannot be installed from npm ($(tail -n 1 "$work/npm.log"))"
        exit 0
    fi
fi
[ -f "$app" ] || { echo "skipped: the speedscope package has no dist/release/index.html"; exit 0; }

chromium=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$chromium" ]; then
    if ! scripts/apt-install.sh chromium >"$work/apt.log" 2>&1; then
        echo "skipped: Chromium cannot be installed ($(tail -n 1 "$work/apt.log"))"
        exit 0
    fi
    chromium=$(command -v chromium || true)
    [ -n "$chromium" ] || { echo "skipped: no chromium after installing it"; exit 0; }
fi

node scripts/check_trace_viewer.js profile "$export_json" "$work/profile.js"
page="file://$(pwd)/$app#localProfilePath=$(pwd)/$work/profile.js"
browse() {
    local profile_dir
    profile_dir=$(mktemp -d)
    # The page loads the profile as a script from a file: URL. Speedscope
    # draws with WebGL; without a GPU, Chromium no longer falls back to its
    # software renderer (SwiftShader) unless asked: Debian's Chromium 148
    # drew the page's header and an empty canvas without the flag.
    timeout 180 "$chromium" --headless --no-sandbox --disable-gpu --disable-quic \
        --no-first-run --disable-background-networking --disable-component-update \
        --disable-sync --user-data-dir="$profile_dir" --allow-file-access-from-files \
        --hide-scrollbars --enable-unsafe-swiftshader --virtual-time-budget=20000 "$@" 2>>"$work/chromium.log"
    local status=$?
    rm -rf "$profile_dir"
    return $status
}
: >"$work/chromium.log"
if ! browse --dump-dom "$page&view=sandwich" >"$work/dom.html"; then
    echo "check-trace-viewer: FAILED: headless Chromium did not render the page (log: $work/chromium.log)"
    exit 1
fi
node scripts/check_trace_viewer.js dom "$export_json" "$work/dom.html"

shot="$work/lock-gap-timeline.png"
rm -f "$shot"
browse --window-size=1000,560 --screenshot="$(pwd)/$shot" "$page&view=time-ordered" >/dev/null || true
[ -f "$shot" ] || { echo "check-trace-viewer: FAILED: no screenshot (log: $work/chromium.log)"; exit 1; }
node scripts/check_trace_viewer.js png "$shot"
if [ -n "${TRACE_VIEWER_PNG:-}" ]; then
    cp "$shot" "$TRACE_VIEWER_PNG"
    echo "check-trace-viewer: screenshot kept as $TRACE_VIEWER_PNG"
fi
echo "check-trace-viewer: speedscope $SPEEDSCOPE_VERSION in $("$chromium" --version 2>/dev/null | sed -n 1p) reads the export"
