#!/usr/bin/env bash
# Install every test dependency on a fresh machine and run the whole suite.
# Python 3.11 and Node 20 must be on the PATH; everything else is installed here.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages for the servers and tools the tests start themselves (tests/support/services.py):
# Redis (backplane), PostgreSQL (shared store), NATS (event bus), espeak-ng and sox (voice),
# Chromium (browser tests), and mmdebstrap, podman and runc (the container is built and run:
# tests/ops/test_container.py). apt-get runs only when one is missing, so a second run is fast.
# The packages' own services are never started: tests run throwaway instances on free ports.
APT_PACKAGES=(redis-server postgresql nats-server espeak-ng libespeak-ng1 sox chromium
              mmdebstrap podman runc uidmap)

install_debian_packages() {
    local missing=() pkg
    if ! command -v dpkg-query >/dev/null; then
        echo "test.sh: not a Debian system; install yourself: ${APT_PACKAGES[*]}" >&2
        return 0
    fi
    for pkg in "${APT_PACKAGES[@]}"; do
        [[ "$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null)" == installed ]] \
            || missing+=("$pkg")
    done
    ((${#missing[@]})) || return 0
    local as_root=()
    if ((EUID != 0)); then
        if ! command -v sudo >/dev/null; then
            echo "test.sh: missing Debian packages (no sudo to install them): ${missing[*]}" >&2
            return 0
        fi
        as_root=(sudo)
        [[ -t 0 ]] || as_root+=(-n)
    fi
    echo "test.sh: installing ${missing[*]}" >&2
    # invoke-rc.d asks policy-rc.d before a postinst starts a service; 101 means "don't".
    local policy=/usr/sbin/policy-rc.d placed=""
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' | "${as_root[@]}" tee "$policy" >/dev/null \
            && "${as_root[@]}" chmod 755 "$policy" && placed=1
    fi
    local status=0 log
    log="$(mktemp)"
    { "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq \
        && "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            --no-install-recommends -o Dpkg::Use-Pty=0 "${missing[@]}"; } >"$log" 2>&1 \
        || status=$?
    [[ -z $placed ]] || "${as_root[@]}" rm -f "$policy"
    if ((status)); then
        tail -n 30 "$log" >&2
        echo "test.sh: apt-get failed ($status) installing ${missing[*]}" >&2
    fi
    rm -f "$log"
    [[ $status == 0 || -z ${CI:-} ]] || return "$status"
}

install_debian_packages

python3 -m venv .venv
.venv/bin/pip install --quiet --upgrade pip
.venv/bin/pip install --quiet -e '.[test]'
# The official SignalR clients, pinned by tests/conformance/js/package-lock.json.
npm ci --prefix tests/conformance/js --no-audit --no-fund --loglevel=error

exec .venv/bin/python -m pytest "$@"
