#!/usr/bin/env bash
# Checks OTLP/HTTP JSON bodies strictly against the official protobuf
# definitions: Python's opentelemetry-proto package (PyPI) and
# google.protobuf.json_format.Parse, which rejects unknown or misspelled
# fields and values of the wrong type. Installed into a virtualenv under
# target/ the first time (python3-venv comes from apt-get if missing).
#
#   scripts/check-otlp.sh BODY.json...
#
# For each file prints "otlp: FILE: ok, R resourceLogs, N logRecords" and
# exits 0; exits 1 with the parser's message on the first invalid body.
# Prints "otlp: skipped: why" and exits 0 where the checker cannot be had.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)

skip() {
    echo "otlp: skipped: $*"
    exit 0
}

[ $# -gt 0 ] || { echo "usage: scripts/check-otlp.sh BODY.json..." >&2; exit 2; }

target=${CARGO_TARGET_DIR:-$root/target}
venv=${BLACKBOX_OTLP_VENV:-$target/otlp-venv}
python=$venv/bin/python

if ! [ -x "$python" ] || ! "$python" -c 'import opentelemetry.proto.collector.logs.v1.logs_service_pb2' 2>/dev/null; then
    command -v python3 >/dev/null || skip "python3 is not installed"
    if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
        if command -v apt-get >/dev/null && [ "$(id -u)" -eq 0 ]; then
            bash "$here/apt-install.sh" python3-venv >/dev/null 2>&1 ||
                skip "cannot install python3-venv"
        else
            skip "python3's venv module is missing (apt-get install python3-venv)"
        fi
    fi
    # Two tests may get here at once: one installs, the other waits.
    mkdir -p "$(dirname "$venv")"
    exec 9>"$venv.lock"
    flock 9
    if ! [ -x "$python" ] || ! "$python" -c 'import opentelemetry.proto.collector.logs.v1.logs_service_pb2' 2>/dev/null; then
        rm -rf "$venv"
        python3 -m venv "$venv" >/dev/null || skip "cannot create a virtualenv in $venv"
        if ! "$venv/bin/pip" install -q --disable-pip-version-check opentelemetry-proto \
            >"$venv.log" 2>&1; then
            rm -rf "$venv"
            skip "cannot install opentelemetry-proto from PyPI (no network?) (log: $venv.log)"
        fi
    fi
    flock -u 9
fi

exec "$python" "$here/check_otlp.py" "$@"
