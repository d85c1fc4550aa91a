#!/usr/bin/env bash
# apt-get install PACKAGE...: what the tests and CI scripts install for
# themselves. On a fresh machine the package lists may be missing or stale,
# so a failed install refreshes them (apt-get update) and tries once more.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q "$@" || { apt-get update -q && apt-get install -y -q "$@"; }
