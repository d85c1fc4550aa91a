#!/usr/bin/env bash
# Validates every manifest in kubernetes/ against the Kubernetes schema,
# offline and strictly (unknown or misspelled fields are errors), with
# kubernetes-validate from PyPI, installed into a virtualenv under
# target/ the first time (python3-venv comes from apt-get if missing).
# Prints "skipped: why" and exits 0 where the validator cannot be had.
#
#   scripts/check-kubernetes.sh               # against the validator's newest version
#   BLACKBOX_K8S_VERSION=1.29.0 scripts/check-kubernetes.sh
set -euo pipefail
cd "$(dirname "$0")/.."

skip() {
    echo "kubernetes: skipped: $*"
    exit 0
}

# Native sidecars (init containers with restartPolicy: Always) are on by
# default from 1.29 (the 1.28 schema has the field too, behind a gate).
versions=${BLACKBOX_K8S_VERSION:-"1.29.0 1.37.0"}
venv=${BLACKBOX_K8S_VENV:-${CARGO_TARGET_DIR:-target}/kubernetes-validate-venv}
validate=$venv/bin/kubernetes-validate

if [ ! -x "$validate" ]; then
    command -v python3 >/dev/null || skip "python3 is not installed"
    if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
        if command -v apt-get >/dev/null && [ "$(id -u)" -eq 0 ]; then
            bash scripts/apt-install.sh python3-venv >/dev/null 2>&1 ||
                skip "cannot install python3-venv"
        else
            skip "python3's venv module is missing (apt-get install python3-venv)"
        fi
    fi
    rm -rf "$venv"
    mkdir -p "$(dirname "$venv")"
    python3 -m venv "$venv" >/dev/null || skip "cannot create a virtualenv in $venv"
    if ! "$venv/bin/pip" install -q --disable-pip-version-check 'kubernetes-validate>=1.29' \
        >"$venv.log" 2>&1; then
        rm -rf "$venv"
        skip "cannot install kubernetes-validate from PyPI (no network?) (log: $venv.log)"
    fi
fi

mapfile -t manifests < <(find kubernetes -maxdepth 1 -name '*.yaml' | sort)
[ "${#manifests[@]}" -gt 0 ] || {
    echo "kubernetes: FAILED: no manifests in kubernetes/"
    exit 1
}
for version in $versions; do
    if ! out=$("$validate" --strict --kubernetes-version "$version" "${manifests[@]}" 2>&1); then
        echo "$out"
        echo "kubernetes: FAILED against $version"
        exit 1
    fi
    # Warnings (deprecated fields, for example) count as failures too.
    if grep -qvE '^INFO .* passed ' <<<"$out"; then
        echo "$out"
        echo "kubernetes: FAILED against $version (warnings)"
        exit 1
    fi
done
echo "kubernetes: ${#manifests[@]} manifests valid (strict) against Kubernetes $versions"
