#!/usr/bin/env bash
# Set up Lookalike on a fresh Debian/Ubuntu machine: system packages, a virtualenv in .venv,
# and the package with the extras a mode needs.
#   scripts/setup.sh run    what the demo needs (offline training, ONNX Runtime for queries, the demo data set)
#   scripts/setup.sh run openclipart   ... and the Open Clip Art data set (`--dataset openclipart`)
#   scripts/setup.sh test   everything the test suite starts (Redis, PostgreSQL, Chromium, ...)
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-run}"
dataset="${2:-}"

apt_packages=(dataset-fashion-mnist)
extras="train,onnx"
if [ "$mode" = "test" ]; then
  # openclipart-svg: the tests read real SVG metadata from it (the rest use a stand-in).
  apt_packages+=(redis-server postgresql chromium openclipart-svg)
  extras="all,dev"
fi
if [ "$dataset" = "openclipart" ]; then
  apt_packages+=(openclipart-svg openclipart-png)
fi

missing=()
for package in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
    || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "== installing system packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv"
  python3 -m venv .venv
fi
echo "== installing lookalike[$extras] (pinned by constraints.txt)"
.venv/bin/python -m pip install -q -c constraints.txt -e ".[$extras]"
