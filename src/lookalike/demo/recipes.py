"""The demo models' training recipes, and why (measured: docs/demo.md, "What each lever
moved"; `benchmarks/demo_model.py` reruns the table)."""

from __future__ import annotations

from lookalike.demo.datasets import MULTILINGUAL_TEXT_MODEL, Recipe
from lookalike.encode.text.base import DEFAULT_TEXT_MODEL

# Fashion-MNIST: the README's main job trains this within its ~10-minute budget on 2 cores.
# Its text tower stays MiniLM: multilingual-e5-small measured better on translated queries
# and paraphrases (benchmarks/results/demo_model.jsonl) but has twice MiniLM's layers, and
# its cost per query under load is not measured yet; `lookalike train --text-model
# intfloat/multilingual-e5-small` (or `lookalike demo --dataset openclipart`) uses it.
FASHION = Recipe(
    text_model=DEFAULT_TEXT_MODEL,
    train={"epochs": 2, "tower": "rn-tiny", "image_size": 32},
)

# Open Clip Art: 5,900 training drawings, so more passes fit in the same time.
OPENCLIPART = Recipe(
    text_model=MULTILINGUAL_TEXT_MODEL,
    train={"epochs": 10, "tower": "rn-tiny", "image_size": 64, "augment": True},
)
