#!/usr/bin/env bash
# The main job on a fresh machine: set up, build the demo catalog, get a model (offline
# training unless a pretrained CLIP is reachable), index, search, and serve the web page.
set -euo pipefail
cd "$(dirname "$0")/.."
dataset=""
for arg in "$@"; do
  case "$arg" in openclipart | --dataset=openclipart) dataset=openclipart ;; esac
done
scripts/setup.sh run ${dataset:+"$dataset"}
exec .venv/bin/lookalike demo "$@"
