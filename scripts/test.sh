#!/usr/bin/env bash
# Set up everything the tests need on a fresh machine, then lint, build the docs site
# strictly (a broken link or anchor fails) and run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test
echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== docs"
site_dir="$(mktemp -d)"
trap 'rm -rf "$site_dir"' EXIT
# No --quiet: it also hides the warnings --strict turns into a failure. NO_MKDOCS_2_WARNING
# silences Material's banner about its end of life (May 2027), printed on every build.
NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict --site-dir "$site_dir"
echo "== pytest"
.venv/bin/python -m pytest "$@"
