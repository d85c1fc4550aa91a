#!/usr/bin/env bash
# Builds blackbox (release) and installs it with its systemd units:
#
#   scripts/install.sh                        # /usr/local/bin/blackbox + units in /etc/systemd/system
#   scripts/install.sh --drop-in myapp.service   # also wire an existing unit to blackbox
#   PREFIX=/opt/blackbox DESTDIR=/tmp/pkg scripts/install.sh   # staged (packaging)
#
# Installs blackbox-collect@.service (the OnFailure collector),
# blackbox-demo.service (an example app that dies) and blackbox-watch@.service
# (a standing collector per app unit, not enabled), rewriting their /usr/local/bin path to
# PREFIX/bin. /etc/blackbox/collect.env is created commented out, never
# overwritten. With --drop-in UNIT, UNIT.d/blackbox.conf gives UNIT a ring
# directory that survives its stop and OnFailure=blackbox-collect@.
# systemd is told to reload when it runs.
set -euo pipefail
cd "$(dirname "$0")/.."

prefix=${PREFIX:-/usr/local}
destdir=${DESTDIR:-}
unitdir=${UNITDIR:-/etc/systemd/system}
drop_ins=()
while [ $# -gt 0 ]; do
    case $1 in
    --drop-in)
        [ $# -ge 2 ] || {
            echo "install.sh: --drop-in needs a unit name (myapp.service)" >&2
            exit 2
        }
        case $2 in
        *.service) drop_ins+=("$2") ;;
        *) drop_ins+=("$2.service") ;;
        esac
        shift 2
        ;;
    -h | --help)
        sed -n '2,14p' "$0"
        exit 0
        ;;
    *)
        echo "install.sh: unknown argument: $1 (see --help)" >&2
        exit 2
        ;;
    esac
done

cargo build --release --quiet -p blackbox
bin=${CARGO_TARGET_DIR:-target}/release/blackbox

install -D -m 0755 "$bin" "$destdir$prefix/bin/blackbox"
echo "installed $destdir$prefix/bin/blackbox"
for unit in systemd/*.service; do
    target=$destdir$unitdir/$(basename "$unit")
    install -D -m 0644 /dev/null "$target"
    sed "s#/usr/local/bin/blackbox#$prefix/bin/blackbox#g" "$unit" >"$target"
    echo "installed $target"
done
for app in "${drop_ins[@]}"; do
    target=$destdir$unitdir/$app.d/blackbox.conf
    install -D -m 0644 systemd/drop-in/blackbox.conf "$target"
    echo "installed $target"
done
env_file=$destdir/etc/blackbox/collect.env
if [ ! -e "$env_file" ]; then
    install -D -m 0644 /dev/null "$env_file"
    cat >"$env_file" <<'ENV'
# Where blackbox-collect@ (and blackbox-watch) ship a dead writer's window:
# -, a file, or an http(s):// URL (OTLP: the collector's base URL).
#BLACKBOX_TO=http://otel-collector:4318
#BLACKBOX_FORMAT=otlp
ENV
    echo "installed $env_file"
fi
if [ -z "$destdir" ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    echo "systemd reloaded; try: systemctl start blackbox-demo.service; journalctl -u blackbox-collect@blackbox-demo.service.service"
fi
