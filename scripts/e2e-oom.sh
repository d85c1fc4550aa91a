#!/usr/bin/env bash
# OOM kills end to end on pure cgroup v2 under a real systemd: boot a
# minimal Debian bookworm (debootstrap, its own cloud kernel and initrd) in
# QEMU (KVM where /dev/kvm works, else software emulation), with the
# project's units and binary, and check each death from the collector's
# journal report and from `info --json` read back from the guest's disk:
#
#   slow leak    `blackbox demo --die leak` in a MemoryMax=64M unit (1 MiB
#                every 100 ms): OOM-killed, the ring says "likely an OOM kill"
#   fast leak    the same at 1 MiB every 10 ms, 10 runs in one boot: every
#                ring alone says "likely an OOM kill"
#   SIGKILL      the slow leak killed with `systemctl kill -s KILL` while
#                its cgroup is below half its limit: never an OOM claim
#   demo oom     `blackbox demo --die oom` from a Delegate=yes unit: it makes
#                its own limited cgroup, is OOM-killed, leaves no cgroup
#   death.rs     the real OOM test of tests/death.rs, run in the guest from
#                a Delegate=yes unit: it must run, not skip
#
# Needs root, Linux, QEMU (qemu-system-x86 from bookworm-backports, installed
# if missing and only if that removes no package), debootstrap, and the
# first time Debian's package archive: the guest root is cached in
# $BLACKBOX_E2E_CACHE (default /var/cache/blackbox-e2e, next to
# scripts/e2e-systemd.sh's root). Where it cannot run it prints
# "skipped: why" and exits 0.
#
#   scripts/e2e-oom.sh
#   BLACKBOX_E2E_KEEP=1 scripts/e2e-oom.sh   # keep the guest's results in /tmp
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
start=$(date +%s)

skip() {
    echo "e2e-oom: skipped: $*"
    exit 0
}
fail() {
    echo "e2e-oom: FAILED: $*"
    exit 1
}

[ "$(uname -s)" = Linux ] || skip "needs Linux"
[ "$(uname -m)" = x86_64 ] || skip "needs an x86_64 host (the guest is Debian amd64)"
[ "$(id -u)" -eq 0 ] || skip "needs root (debootstrap, QEMU's guest image)"

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

# --- QEMU: from bookworm-backports, never at the price of a removal ---------
# (bookworm's own qemu-system-x86 would remove a backported qemu-utils.)
install_qemu() {
    command -v apt-get >/dev/null || skip "no qemu-system-x86_64 and no apt-get to install it"
    local url list=/etc/apt/sources.list.d/blackbox-e2e-backports.sources log=/tmp/blackbox-e2e-oom-apt.log
    url=$(mirror)
    reachable "$url" 2>/dev/null || skip "no qemu-system-x86_64, and the Debian archive $url is not reachable"
    grep -q '^VERSION_CODENAME=bookworm' /etc/os-release 2>/dev/null ||
        skip "no qemu-system-x86_64, and this is not Debian bookworm (install QEMU by hand)"
    echo "== installing qemu-system-x86 from bookworm-backports"
    printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
        "$url" >"$list"
    trap 'rm -f '"$list" EXIT
    apt-get update -q >"$log" 2>&1 || skip "apt-get update failed (see $log)"
    local plan
    plan=$(DEBIAN_FRONTEND=noninteractive apt-get -s install -y -t bookworm-backports \
        --no-install-recommends qemu-system-x86 2>>"$log") || skip "qemu-system-x86 cannot be installed (see $log)"
    if grep -q '^Remv' <<<"$plan"; then
        skip "installing qemu-system-x86 would remove: $(grep '^Remv' <<<"$plan" | cut -d' ' -f2 | tr '\n' ' ')"
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q -t bookworm-backports \
        --no-install-recommends qemu-system-x86 >>"$log" 2>&1 || skip "qemu-system-x86 did not install (see $log)"
    rm -f "$list"
    trap - EXIT
}
command -v qemu-system-x86_64 >/dev/null || install_qemu
command -v qemu-system-x86_64 >/dev/null || skip "qemu-system-x86_64 is not available"
for tool in debootstrap mkfs.ext4 debugfs; do
    if ! command -v $tool >/dev/null; then
        command -v apt-get >/dev/null && bash scripts/apt-install.sh debootstrap e2fsprogs >/tmp/blackbox-e2e-oom-apt.log 2>&1 || true
    fi
    command -v $tool >/dev/null || skip "$tool is not available"
done

# --- the guest root (cached) --------------------------------------------------
cache=${BLACKBOX_E2E_CACHE:-/var/cache/blackbox-e2e}
root=$cache/bookworm-qemu
if [ ! -e "$root/.blackbox-e2e-ready" ]; then
    url=$(mirror)
    reachable "$url" 2>/dev/null || skip "the Debian archive $url is not reachable (and no cached root in $root)"
    echo "== debootstrap bookworm with its cloud kernel from $url into $root (once; cached)"
    mkdir -p "$cache"
    rm -rf "$root.tmp"
    if ! debootstrap --variant=minbase \
        --include=systemd,systemd-sysv,dbus,procps,udev,kmod,initramfs-tools,linux-image-cloud-amd64 \
        bookworm "$root.tmp" "$url" >"$cache/debootstrap-qemu.log" 2>&1; then
        tail -n 20 "$cache/debootstrap-qemu.log"
        fail "debootstrap (log: $cache/debootstrap-qemu.log)"
    fi
    ls "$root.tmp"/boot/vmlinuz-* "$root.tmp"/boot/initrd.img-* >/dev/null 2>&1 ||
        fail "the guest root has no kernel and initrd in /boot (log: $cache/debootstrap-qemu.log)"
    echo 'blackbox-e2e' >"$root.tmp/etc/hostname"
    # No login prompt on the console, no network wait.
    ln -sf /dev/null "$root.tmp/etc/systemd/system/serial-getty@ttyS0.service"
    ln -sf /dev/null "$root.tmp/etc/systemd/system/getty@tty1.service"
    rm -rf "$root"
    mv "$root.tmp" "$root"
    touch "$root/.blackbox-e2e-ready"
fi
[ -z "${BLACKBOX_E2E_PREPARE_ONLY:-}" ] || {
    echo "e2e-oom: prepared in $(($(date +%s) - start)) s"
    exit 0
}

# --- the binaries -----------------------------------------------------------
echo "== release build of blackbox, and tests/death.rs (debug, as cargo test runs it)"
cargo build --release --quiet -p blackbox
target_dir=${CARGO_TARGET_DIR:-$repo/target}
bin=$target_dir/release/blackbox
[ -x "$bin" ] || fail "no binary at $bin"
death_test=$(cargo test --quiet -p blackbox --test death --no-run --message-format=json 2>/dev/null |
    grep -o '"executable":"[^"]*death-[^"]*"' | tail -n 1 | cut -d'"' -f4)
[ -n "$death_test" ] && [ -x "$death_test" ] || fail "cargo did not build tests/death.rs"
# The test runs the debug binary at the path cargo compiled into it.
debug_bin=$target_dir/debug/blackbox
[ -x "$debug_bin" ] || fail "no debug binary at $debug_bin"

# --- the guest: binaries, units, the scenario ---------------------------------
etc=$root/etc/systemd/system
install -m 0755 "$bin" "$root/usr/local/bin/blackbox"
mkdir -p "$root$(dirname "$death_test")" "$root$(dirname "$debug_bin")"
install -m 0755 "$death_test" "$root$death_test"
install -m 0755 "$debug_bin" "$root$debug_bin"
# A checkout under /tmp puts these binaries there: keep systemd-tmpfiles
# from emptying the guest's /tmp at boot (Debian's tmp.conf says D).
mkdir -p "$root/etc/tmpfiles.d"
echo 'd /tmp 1777 root root -' >"$root/etc/tmpfiles.d/tmp.conf"
install -m 0644 systemd/blackbox-collect@.service "$etc/"
# "Existing" units that know nothing of blackbox; the shipped drop-in wires
# each to the collector. 64 MiB without swap, as in the issue's run.
leak_unit() { # NAME DESCRIPTION EXTRA-[Service]-LINES EXECSTART-ARGS
    mkdir -p "$etc/$1.service.d"
    install -m 0644 systemd/drop-in/blackbox.conf "$etc/$1.service.d/blackbox.conf"
    cat >"$etc/$1.service" <<UNIT
[Unit]
Description=$2
[Service]
Type=exec
$3
ExecStart=/usr/local/bin/blackbox demo --capacity 256KiB --records 200 $4
UNIT
}
leak_unit e2e-leak-slow "leaks 1 MiB every 100 ms under MemoryMax=64M" \
    "MemoryMax=64M
MemorySwapMax=0" "--die leak --leak-every-ms 100"
leak_unit e2e-leak-fast "leaks 1 MiB every 10 ms under MemoryMax=64M" \
    "MemoryMax=64M
MemorySwapMax=0" "--die leak --leak-every-ms 10"
leak_unit e2e-leak-kill "leaks slowly under MemoryMax=64M until SIGKILLed" \
    "MemoryMax=64M
MemorySwapMax=0" "--die leak --leak-every-ms 200"
leak_unit e2e-demo-oom "blackbox demo --die oom in a delegated unit" \
    "Delegate=yes" "--die oom"
fast_runs=${BLACKBOX_E2E_FAST_RUNS:-10}
echo "$fast_runs" >"$root/etc/blackbox-e2e-fast-runs"
rm -f "$root/etc/blackbox/collect.env"

cat >"$root/usr/local/bin/blackbox-e2e-scenario" <<EOF_SCENARIO
#!/bin/bash
# Runs in the guest at boot; results go to /e2e-out (on the guest's disk).
set -uo pipefail
death_test=$death_test
EOF_SCENARIO
cat >>"$root/usr/local/bin/blackbox-e2e-scenario" <<'EOF_SCENARIO'
out=/e2e-out
rm -rf "$out"
mkdir -p "$out"
log() { echo "$*" >>"$out/scenario.log"; }
reports() { journalctl -q -o cat -u "blackbox-collect@$1.service.service" | grep -c ' failed: '; }
# Waits for the unit to fail and its collector to finish report number N.
await() { # APP N
    local collector="blackbox-collect@$1.service.service"
    for _ in $(seq 1 240); do
        [ "$(reports "$1")" -ge "$2" ] && break
        sleep 0.25
    done
    for _ in $(seq 1 80); do
        [ "$(systemctl show -P ActiveState "$collector")" = activating ] || break
        sleep 0.25
    done
}
# Keeps what the run left: the unit's verdict, the collector's report, the
# newest ring (rings live on /run, a tmpfs: copied to the disk).
keep() { # APP TAG
    local app=$1 tag=$2
    systemctl show -p Result -p ExecMainCode -p ExecMainStatus "$app.service" >"$out/$tag.unit"
    journalctl -q -o cat -u "blackbox-collect@$app.service.service" >"$out/$tag.report"
    local ring
    ring=$(ls -t /run/blackbox/"$app.service"/*.ring 2>/dev/null | sed -n 1p)
    [ -n "$ring" ] && cp "$ring" "$out/$tag.ring"
    log "$tag: $(tr '\n' ' ' <"$out/$tag.unit") ring ${ring:-none}"
}
log "kernel $(uname -r); $(stat -fc %T /sys/fs/cgroup); controllers $(cat /sys/fs/cgroup/cgroup.controllers)"

log "== slow leak"
systemctl start e2e-leak-slow.service
await e2e-leak-slow 1
keep e2e-leak-slow slow

log "== fast leak x $(cat /etc/blackbox-e2e-fast-runs)"
for i in $(seq 1 "$(cat /etc/blackbox-e2e-fast-runs)"); do
    # Also resets the start limits (5 starts in 10 s) of the unit and its collector.
    systemctl reset-failed e2e-leak-fast.service "blackbox-collect@e2e-leak-fast.service.service" 2>/dev/null
    systemctl start e2e-leak-fast.service
    await e2e-leak-fast "$i"
    keep e2e-leak-fast "fast-$i"
done

log "== SIGKILL at low memory"
systemctl start e2e-leak-kill.service
cg=/sys/fs/cgroup/system.slice/e2e-leak-kill.service
for _ in $(seq 1 100); do
    [ "$(cat $cg/memory.current 2>/dev/null || echo 0)" -ge $((8 << 20)) ] && break
    sleep 0.1
done
sleep 1.2 # at least one heartbeat sample after the climb began
current=$(cat $cg/memory.current)
max=$(cat $cg/memory.max)
echo "$current $max" >"$out/kill.memory"
systemctl kill -s KILL e2e-leak-kill.service
await e2e-leak-kill 1
keep e2e-leak-kill kill

log "== demo --die oom in a Delegate=yes unit"
systemctl start e2e-demo-oom.service
await e2e-demo-oom 1
keep e2e-demo-oom demo-oom
sleep 1
find /sys/fs/cgroup -name 'blackbox-demo-oom-*' >"$out/demo-oom.left" 2>&1

log "== demo --die oom refused in a unit without delegation"
systemd-run --quiet --wait --pipe --unit=e2e-refused -p MemoryMax=256M \
    /usr/local/bin/blackbox demo --ring /tmp/refused.ring --records 10 --die oom \
    >"$out/refused.out" 2>&1
echo "$?" >"$out/refused.status"
find /sys/fs/cgroup -name 'blackbox-demo-oom-*' >"$out/refused.left" 2>&1

log "== demo --die oom beside another process of a Delegate=yes unit (it comes along into the leaf)"
systemd-run --quiet --wait --pipe --unit=e2e-busy -p Delegate=yes \
    /bin/bash -c 'sleep 30 & /usr/local/bin/blackbox demo --ring /tmp/busy.ring --records 10 --die oom; s=$?; kill %1; exit $s' \
    >"$out/busy.out" 2>&1
echo "$?" >"$out/busy.status"
find /sys/fs/cgroup -name 'blackbox-demo-oom-*' >"$out/busy.left" 2>&1

log "== the kernel's count, read where the cgroup outlives the writer"
# The OOM killer takes the leaking writer, not the shell; the shell then
# reads the ring inside the same (still existing) cgroup.
# (OOMPolicy=continue: by default systemd stops a unit whose process the
# OOM killer took.)
systemd-run --quiet --wait --pipe --unit=e2e-kernel-count -p MemoryMax=64M -p MemorySwapMax=0 -p OOMPolicy=continue \
    /bin/bash -c '/usr/local/bin/blackbox demo --ring /tmp/kc.ring --records 10 --die leak --leak-every-ms 10; echo "demo exit $?"; /usr/local/bin/blackbox on-failure --ring /tmp/kc.ring --last 1' \
    >"$out/kernel-count.out" 2>&1

log "== tests/death.rs's real OOM test, from a Delegate=yes unit"
systemd-run --quiet --wait --pipe --unit=e2e-death-test -p Delegate=yes \
    "$death_test" oom_kill_in_a_memory_cgroup --exact --nocapture --test-threads=1 \
    >"$out/death-test.out" 2>&1
echo "$?" >"$out/death-test.status"
find /sys/fs/cgroup -name 'blackbox-demo-oom-*' >"$out/death-test.left" 2>&1

journalctl -q -o short-monotonic -b >"$out/journal.log" 2>&1
sync
touch "$out/done"
systemctl poweroff
EOF_SCENARIO
chmod 0755 "$root/usr/local/bin/blackbox-e2e-scenario"
cat >"$etc/blackbox-e2e.service" <<'UNIT'
[Unit]
Description=blackbox OOM end-to-end scenario
After=multi-user.target systemd-journald.service
[Service]
Type=oneshot
ExecStart=/usr/local/bin/blackbox-e2e-scenario
StandardOutput=journal+console
TimeoutStartSec=20min
[Install]
WantedBy=default.target
UNIT
mkdir -p "$etc/default.target.wants"
ln -sf ../blackbox-e2e.service "$etc/default.target.wants/blackbox-e2e.service"
rm -rf "$root/var/log/journal"/* "$root/run/blackbox" "$root/e2e-out"

# --- boot it ------------------------------------------------------------------
out=$(mktemp -d /tmp/blackbox-e2e-oom.XXXXXX)
img=$out/guest.img
kernel=$(ls "$root"/boot/vmlinuz-* | sort -V | tail -n 1)
initrd=$(ls "$root"/boot/initrd.img-* | sort -V | tail -n 1)
echo "== guest image ($(basename "$kernel"))"
mkfs.ext4 -q -F -L blackbox-e2e -d "$root" "$img" 3G >"$out/mkfs.log" 2>&1 || {
    cat "$out/mkfs.log"
    fail "mkfs.ext4 -d (logs in $out)"
}
# KVM where it works, software emulation where it does not: /dev/kvm can
# exist and still fail (QEMU aborts setting up the vCPU). The probe boots
# the guest kernel without a root file system, which panics and, with
# panic=-1 and -no-reboot, ends QEMU at once.
accel="-accel tcg,thread=multi"
if [ -r /dev/kvm ] && [ -w /dev/kvm ] &&
    { timeout -k 5 60 qemu-system-x86_64 -accel kvm -cpu max -smp 1 -m 256M -nographic -no-reboot \
        -kernel "$kernel" -append "console=ttyS0 panic=-1" -nic none \
        </dev/null >"$out/kvm-probe.log" 2>&1; } 2>/dev/null; then
    accel="-accel kvm"
fi
echo "== booting the guest under QEMU ($accel); results in $out"
# Under software emulation the guest's kernel has been seen to hang before
# it started systemd (its timer interrupts stopped: RCU stall reports, and
# nothing else, for 25 minutes). A boot that has not reached systemd's
# banner in $boot_limit seconds (a normal one takes well under a minute)
# is stopped and started once more; the banner comes before systemd
# mounts or writes anything of the scenario's.
boot_limit=${E2E_OOM_BOOT_LIMIT:-240}
boot_start=$(date +%s)
attempt=1
while :; do
    status=0
    # shellcheck disable=SC2086
    timeout -k 20 1500 qemu-system-x86_64 $accel -cpu max -smp 2 -m 2G -nographic -no-reboot \
        -kernel "$kernel" -initrd "$initrd" \
        -append "root=/dev/vda rw console=ttyS0 systemd.unified_cgroup_hierarchy=1 panic=-1" \
        -drive "file=$img,format=raw,if=virtio" -nic none \
        </dev/null >"$out/console.log" 2>&1 &
    qemu=$!
    waited=0
    while kill -0 "$qemu" 2>/dev/null && [ "$waited" -lt "$boot_limit" ] &&
        ! grep -q "Welcome to" "$out/console.log"; do
        sleep 1
        waited=$((waited + 1))
    done
    if grep -q "Welcome to" "$out/console.log" || ! kill -0 "$qemu" 2>/dev/null; then
        wait "$qemu" || status=$?
        break
    fi
    kill "$qemu" 2>/dev/null || true
    wait "$qemu" 2>/dev/null || true
    mv "$out/console.log" "$out/console-hung-$attempt.log"
    if [ "$attempt" -ge 2 ]; then
        tail -n 20 "$out/console-hung-$attempt.log"
        fail "the guest did not reach systemd in ${boot_limit}s, twice (logs in $out)"
    fi
    echo "== the guest did not reach systemd in ${boot_limit}s (console-hung-$attempt.log); booting it again"
    attempt=$((attempt + 1))
done
guest=$(($(date +%s) - boot_start))
results=$out/results
rm -rf "$results"
debugfs -R "rdump /e2e-out $out" "$img" >"$out/debugfs.log" 2>&1 || true
mv "$out/e2e-out" "$results" 2>/dev/null || true
if [ ! -e "$results/done" ]; then
    tail -n 40 "$out/console.log"
    cat "$results/scenario.log" 2>/dev/null || true
    fail "the guest did not finish its scenario (QEMU status $status; logs in $out)"
fi

# --- checks -------------------------------------------------------------------
failed=0
bad() {
    echo "  FAIL $*"
    failed=1
}
# info --json of a ring read back from the guest's disk, by this host.
cause() { # TAG JSON-POINTER-KEY
    "$bin" info --json "$results/$1.ring" 2>/dev/null |
        python3 -c 'import json,sys; c=json.load(sys.stdin)["cause"] or {}; k=sys.argv[1]; v=c.get(k) if k!="basis" else (c.get("memory") or {}).get("basis"); print(json.dumps(v) if not isinstance(v,str) else v)' "$2"
}
has() { grep -qF -- "$2" "$results/$1.report" 2>/dev/null; }
show() { # TAG
    echo "-- $1: $(tr '\n' ' ' <"$results/$1.unit" 2>/dev/null)"
    echo "   ring:   $(cause "$1" message)"
    grep -F ' failed: ' "$results/$1.report" 2>/dev/null | tail -n 1 | sed 's/^/   report: /'
}

# Slow leak: systemd and the ring agree.
show slow
grep -q '^Result=oom-kill' "$results/slow.unit" || bad "slow leak: systemd's Result is not oom-kill"
has slow "OOM-killed (systemd: result=oom-kill" || bad "slow leak: the report does not say OOM-killed"
[ "$(cause slow likely_oom)" = true ] || bad "slow leak: the ring alone does not say likely_oom"

# Fast leak, every run: the ring alone.
fast_ok=0
for i in $(seq 1 "$fast_runs"); do
    tag=fast-$i
    [ -e "$results/$tag.ring" ] || {
        bad "fast leak run $i: no ring"
        continue
    }
    msg=$(cause "$tag" message)
    echo "   fast $i: $(cause "$tag" basis): ${msg#*; }"
    if [ "$(cause "$tag" likely_oom)" = true ] && grep -qF "likely an OOM kill" <<<"$msg"; then
        fast_ok=$((fast_ok + 1))
    else
        bad "fast leak run $i: the ring alone does not read \"likely an OOM kill\""
    fi
    grep -q '^Result=oom-kill' "$results/$tag.unit" || bad "fast leak run $i: systemd's Result is not oom-kill"
done
echo "   fast leak: $fast_ok of $fast_runs runs read \"likely an OOM kill\" from the ring alone"

# SIGKILL at low memory: never an OOM claim.
show kill
read -r kill_current kill_max <"$results/kill.memory" || true
echo "   killed at $((kill_current * 100 / kill_max))% of memory.max"
grep -q '^Result=signal' "$results/kill.unit" || bad "SIGKILL: systemd's Result is not signal"
[ "$(cause kill likely_oom)" = false ] || bad "SIGKILL: the ring claims likely_oom"
if grep -qF "likely an OOM kill" "$results/kill.report" || grep -qF "OOM-killed" "$results/kill.report"; then
    bad "SIGKILL: the report claims an OOM kill"
fi
has kill "killed by SIGKILL (systemd: result=signal" || bad "SIGKILL: the report does not say killed by SIGKILL"

# demo --die oom in a delegated unit.
show demo-oom
[ "$(cause demo-oom likely_oom)" = true ] || bad "demo --die oom: the ring does not say likely_oom"
# systemd reports `signal` here (the kill was in the demo's own child
# cgroup); the report carries the ring's verdict.
has demo-oom "likely an OOM kill" || bad "demo --die oom: the report does not say likely an OOM kill"
[ ! -s "$results/demo-oom.left" ] || bad "demo --die oom left cgroups behind: $(cat "$results/demo-oom.left")"

# Refusals name the rule and leave nothing behind.
echo "-- refused (no delegation): exit $(cat "$results/refused.status"): $(tail -n 1 "$results/refused.out")"
[ "$(cat "$results/refused.status")" = 2 ] || bad "refusal without delegation: exit status is not 2"
grep -qF "not delegated" "$results/refused.out" || bad "refusal without delegation: the reason is not named"
grep -qF "systemd-run -p Delegate=yes" "$results/refused.out" || bad "refusal without delegation: no 'run instead'"
[ ! -s "$results/refused.left" ] || bad "refusal without delegation left cgroups: $(cat "$results/refused.left")"
echo "-- beside another process (delegated): exit $(cat "$results/busy.status"): $(tail -n 1 "$results/busy.out")"
[ ! -s "$results/busy.left" ] || bad "demo --die oom beside another process left cgroups: $(cat "$results/busy.left")"

# The kernel's count, where the cgroup outlived the writer.
echo "-- the kernel's count (the cgroup outlives the writer):"
grep -E '^(demo exit|blackbox:|kernel )' "$results/kernel-count.out" | cut -c1-300 | sed 's/^/   /'
grep -qF "OOM-killed (the kernel's count)" "$results/kernel-count.out" ||
    bad "the kernel's count: on-failure does not say OOM-killed (the kernel's count)"

# tests/death.rs's real OOM test ran, and passed, in the guest.
echo "-- tests/death.rs oom_kill_in_a_memory_cgroup in the guest: exit $(cat "$results/death-test.status")"
grep -oE '(oom: ended.*|^test result.*|^skipped.*)' "$results/death-test.out" | cut -c1-400 | sed 's/^/   /'
[ "$(cat "$results/death-test.status")" = 0 ] || bad "tests/death.rs's OOM test failed in the guest (see $results/death-test.out)"
grep -q '^skipped' "$results/death-test.out" && bad "tests/death.rs's OOM test skipped in the guest"
grep -q 'oom: ended' "$results/death-test.out" || bad "tests/death.rs's OOM test did not reach its OOM kill"
[ ! -s "$results/death-test.left" ] || bad "tests/death.rs's OOM test left cgroups: $(cat "$results/death-test.left")"

elapsed=$(($(date +%s) - start))
if [ "$failed" -ne 0 ]; then
    echo "e2e-oom: FAILED after ${elapsed} s (logs in $out)"
    exit 1
fi
rm -f "$img"
[ -n "${BLACKBOX_E2E_KEEP:-}" ] || rm -rf "$out"
echo "e2e-oom: OOM kills on cgroup v2 under systemd: slow leak, $fast_runs fast leaks (each \"likely an OOM kill\" from the ring alone), SIGKILL (no OOM claim), demo --die oom delegated and refused, tests/death.rs's OOM test; in ${elapsed} s (the guest's boot, scenarios and poweroff: ${guest} s)"
