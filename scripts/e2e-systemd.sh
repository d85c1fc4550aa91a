#!/usr/bin/env bash
# End to end under a real systemd: boot a minimal Debian (debootstrap) in
# systemd-nspawn, let app units die by SIGSEGV, by SIGKILL and by a non-zero
# exit, and check that each time OnFailure= started blackbox-collect@ and
# that its report (in the guest's journal) names the cause and holds the
# last records. The units are the ones in systemd/, unchanged:
#
#   SIGKILL      blackbox-demo.service as shipped (`blackbox demo --die kill`)
#   SIGSEGV      an "existing" unit running `blackbox demo --die segv`, wired
#                by the drop-in systemd/drop-in/blackbox.conf
#   exit 3       an "existing" unit (same drop-in) whose program closes its
#                ring cleanly and then exits with status 3
#
# The collector also ships each window (BLACKBOX_TO in
# /etc/blackbox/collect.env) to a file the host checks
# (BLACKBOX_E2E_SHIP=0: report only).
#
# Needs root, Linux, systemd-nspawn and debootstrap (installed with apt-get
# if missing) and, the first time, Debian's package archive: the root is
# cached in $BLACKBOX_E2E_CACHE (default /var/cache/blackbox-e2e), so reruns
# do not download. Where it cannot run it prints "skipped: why" and exits 0.
#
#   scripts/e2e-systemd.sh
#   BLACKBOX_E2E_MIRROR=http://deb.debian.org/debian scripts/e2e-systemd.sh
#   BLACKBOX_E2E_KEEP=1 scripts/e2e-systemd.sh   # keep the reports and logs in /tmp
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
start=$(date +%s)

skip() {
    echo "e2e-systemd: skipped: $*"
    exit 0
}

[ "$(uname -s)" = Linux ] || skip "needs Linux"
[ "$(id -u)" -eq 0 ] || skip "needs root (debootstrap and systemd-nspawn)"

if ! command -v systemd-nspawn >/dev/null || ! command -v debootstrap >/dev/null; then
    if command -v apt-get >/dev/null; then
        echo "== installing systemd-container and debootstrap"
        bash scripts/apt-install.sh systemd-container debootstrap \
            >/tmp/blackbox-e2e-apt.log 2>&1 ||
            skip "cannot install systemd-container and debootstrap (see /tmp/blackbox-e2e-apt.log)"
    fi
fi
command -v systemd-nspawn >/dev/null || skip "systemd-nspawn is not available"
command -v debootstrap >/dev/null || skip "debootstrap is not available"

# The Debian archive this host installs from, else deb.debian.org.
mirror() {
    if [ -n "${BLACKBOX_E2E_MIRROR:-}" ]; then
        echo "$BLACKBOX_E2E_MIRROR"
        return
    fi
    local url
    url=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
        grep -oE '(URIs:|^deb)[[:space:]]+(\[[^]]*\][[:space:]]+)?https?://[^[:space:]]+' |
        grep -oE 'https?://[^[:space:]]+' | grep -v -- '-security' | head -n 1 || true)
    echo "${url:-http://deb.debian.org/debian}"
}

reachable() {
    local url=$1/dists/bookworm/Release
    if command -v curl >/dev/null; then
        curl -fsS --max-time 20 -o /dev/null "$url"
    elif command -v wget >/dev/null; then
        wget -q -T 20 -O /dev/null "$url"
    else
        python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=20)' "$url"
    fi
}

cache=${BLACKBOX_E2E_CACHE:-/var/cache/blackbox-e2e}
root=$cache/bookworm
if [ ! -e "$root/.blackbox-e2e-ready" ]; then
    url=$(mirror)
    reachable "$url" 2>/dev/null || skip "the Debian archive $url is not reachable (and no cached root in $root)"
    echo "== debootstrap bookworm from $url into $root (once; cached)"
    mkdir -p "$cache"
    rm -rf "$root.tmp"
    if ! debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,procps \
        bookworm "$root.tmp" "$url" >"$cache/debootstrap.log" 2>&1; then
        tail -n 20 "$cache/debootstrap.log"
        echo "e2e-systemd: FAILED: debootstrap (log: $cache/debootstrap.log)"
        exit 1
    fi
    rm -rf "$root"
    mv "$root.tmp" "$root"
    touch "$root/.blackbox-e2e-ready"
fi

echo "== release build of blackbox"
cargo build --release --quiet -p blackbox
target_dir=${CARGO_TARGET_DIR:-$repo/target}
bin=$target_dir/release/blackbox
[ -x "$bin" ] || {
    echo "e2e-systemd: FAILED: no binary at $bin"
    exit 1
}

# --- the guest: binary, units, the scenario ---------------------------------
etc=$root/etc/systemd/system
install -m 0755 "$bin" "$root/usr/local/bin/blackbox"
install -m 0644 systemd/blackbox-collect@.service systemd/blackbox-demo.service "$etc/"
for unit in e2e-segv e2e-exit; do
    mkdir -p "$etc/$unit.service.d"
    install -m 0644 systemd/drop-in/blackbox.conf "$etc/$unit.service.d/blackbox.conf"
done
# Two "existing" units that know nothing of blackbox; the drop-in wires them.
cat >"$etc/e2e-segv.service" <<'EOF'
[Unit]
Description=an existing service that segfaults
[Service]
ExecStart=/usr/local/bin/blackbox demo --capacity 128KiB --records 3000 --rate 3000 --die segv
EOF
cat >"$etc/e2e-exit.service" <<'EOF'
[Unit]
Description=an existing service that closes its ring and exits 3
[Service]
ExecStart=/bin/sh -c '/usr/local/bin/blackbox demo --capacity 128KiB --records 2000 --die exit; exit 3'
EOF
ship=${BLACKBOX_E2E_SHIP:-1}
mkdir -p "$root/etc/blackbox"
if [ "$ship" = 1 ]; then
    echo "BLACKBOX_TO=/e2e-out/shipped.ndjson" >"$root/etc/blackbox/collect.env"
else
    rm -f "$root/etc/blackbox/collect.env"
fi

cat >"$root/usr/local/bin/blackbox-e2e-scenario" <<'EOF'
#!/bin/bash
# Runs in the guest at boot: each app unit dies, the collector reports.
set -uo pipefail
out=/e2e-out
log() { echo "$*" >>"$out/scenario.log"; }
for app in blackbox-demo e2e-segv e2e-exit; do
    collector="blackbox-collect@$app.service.service"
    log "== $app"
    systemctl start "$app.service" 2>>"$out/scenario.log"
    # Wait for the app to fail and its collector to write the report.
    for _ in $(seq 1 120); do
        if journalctl -q -o cat -u "$collector" | grep 'failed:' >/dev/null; then
            break
        fi
        sleep 0.5
    done
    for _ in $(seq 1 40); do
        [ "$(systemctl show -P ActiveState "$collector")" = activating ] || break
        sleep 0.5
    done
    systemctl show -p Result -p ExecMainCode -p ExecMainStatus -p InvocationID "$app.service" >"$out/$app.unit"
    systemctl show -p Result -p ExecMainStatus "$collector" >"$out/$app.collector"
    journalctl -q -o cat -u "$collector" >"$out/$app.report"
    log "$(cat "$out/$app.unit" "$out/$app.collector" | tr '\n' ' ')"
done
ls -lR /run/blackbox >>"$out/scenario.log" 2>&1
touch "$out/done"
systemctl poweroff
EOF
chmod 0755 "$root/usr/local/bin/blackbox-e2e-scenario"
cat >"$etc/blackbox-e2e.service" <<'EOF'
[Unit]
Description=blackbox end-to-end scenario
After=multi-user.target systemd-journald.service
[Service]
Type=oneshot
ExecStart=/usr/local/bin/blackbox-e2e-scenario
StandardOutput=journal+console
[Install]
WantedBy=default.target
EOF
mkdir -p "$etc/default.target.wants"
ln -sf ../blackbox-e2e.service "$etc/default.target.wants/blackbox-e2e.service"
# A fresh journal and ring directory each run.
rm -rf "$root/var/log/journal"/* "$root/run/blackbox"

out=$(mktemp -d /tmp/blackbox-e2e.XXXXXX)
chmod 0755 "$out"
echo "== booting the guest (systemd-nspawn --boot); results in $out"
boot_log=$out/boot.log
status=0
boot_start=$(date +%s)
timeout -k 20 300 systemd-nspawn -q -D "$root" --register=no --keep-unit --boot \
    --bind="$out:/e2e-out" --console=pipe </dev/null >"$boot_log" 2>&1 || status=$?
guest=$(($(date +%s) - boot_start))
if [ ! -e "$out/done" ]; then
    tail -n 40 "$boot_log"
    cat "$out/scenario.log" 2>/dev/null || true
    echo "e2e-systemd: FAILED: the guest did not finish its scenario (nspawn status $status; logs in $out)"
    exit 1
fi

# --- checks -------------------------------------------------------------------
fail=0
check() { # APP WHAT PATTERN
    if ! grep -qF -- "$3" "$out/$1.report"; then
        echo "  FAIL $1: the report lacks $2: $3"
        fail=1
    fi
}
for app in blackbox-demo e2e-segv e2e-exit; do
    echo "-- $app: $(tr '\n' ' ' <"$out/$app.unit")"
    # sed reads the whole report (head would close the pipe early and,
    # under pipefail, fail the script with SIGPIPE's 141).
    sed -n '1,14s/^/   | /p' "$out/$app.report"
    [ -s "$out/$app.report" ] || {
        echo "  FAIL $app: OnFailure did not run the collector (no report)"
        fail=1
        continue
    }
    check "$app" "the run's own ring" "(its invocation id is"
    grep -q '^Result=success' "$out/$app.collector" || {
        echo "  FAIL $app: the collector unit failed: $(tr '\n' ' ' <"$out/$app.collector")"
        fail=1
    }
done
check blackbox-demo "the cause" "failed: killed by SIGKILL (systemd: result=signal"
check blackbox-demo "the last record" "demo record t=0 n=4999"
check blackbox-demo "the last words" 'demo: about to die how="kill"'
check e2e-segv "the cause" "failed: crashed: SIGSEGV"
check e2e-segv "the last record" "demo record t=0 n=2999"
check e2e-segv "the last words" 'demo: about to die how="segv"'
check e2e-exit "the cause" "failed: exited with status 3 after closing the ring cleanly (systemd: result=exit-code"
check e2e-exit "the last record" "demo record t=0 n=1999"
check e2e-exit "the last words" 'demo: about to die how="exit"'
shipments=$(grep -c 'systemd OnFailure: ' "$out/shipped.ndjson" 2>/dev/null || true)
if [ "$ship" = 1 ] && [ "${shipments:-0}" -lt 3 ]; then
    echo "  FAIL: expected 3 shipments in shipped.ndjson, found ${shipments:-0}"
    fail=1
fi
elapsed=$(($(date +%s) - start))
if [ "$fail" -ne 0 ]; then
    echo "e2e-systemd: FAILED after ${elapsed} s (logs in $out)"
    exit 1
fi
[ -n "${BLACKBOX_E2E_KEEP:-}" ] || rm -rf "$out"
echo "e2e-systemd: 3 failures (SIGKILL, SIGSEGV, exit 3) reported by OnFailure in ${elapsed} s (the guest's boot, scenario and poweroff: ${guest} s)"
