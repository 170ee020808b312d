#!/usr/bin/env bash
# Set up everything the tests need on a fresh machine, then lint and run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test
echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== pytest"
.venv/bin/python -m pytest "$@"
