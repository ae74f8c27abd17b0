#!/usr/bin/env bash
# Install every test dependency on a fresh machine and run the whole suite.
# Python 3.11 and Node 20 must be on the PATH; everything else is installed here.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m venv .venv
.venv/bin/pip install --quiet --upgrade pip
.venv/bin/pip install --quiet -e '.[test]'
# The official SignalR clients, pinned by tests/conformance/js/package-lock.json.
npm ci --prefix tests/conformance/js --no-audit --no-fund --loglevel=error

exec .venv/bin/python -m pytest "$@"
