"""The demo models' training recipes, and why (measured: docs/demo.md, "What each lever
moved"; `benchmarks/demo_model.py` reruns the table)."""

from __future__ import annotations

from lookalike.demo.datasets import MULTILINGUAL_TEXT_MODEL, Recipe

# Fashion-MNIST: the README's main job trains this within its ~10-minute budget on 2 cores.
FASHION = Recipe(
    text_model=MULTILINGUAL_TEXT_MODEL,
    train={"epochs": 2, "tower": "rn-tiny", "image_size": 32},
)

# Open Clip Art: 5,900 training drawings, so more passes fit in the same time.
OPENCLIPART = Recipe(
    text_model=MULTILINGUAL_TEXT_MODEL,
    train={"epochs": 10, "tower": "rn-tiny", "image_size": 64, "augment": True},
)
