"""Rewrite the README's configuration table from the Settings fields.

    .venv/bin/python scripts/readme_settings.py

tests/test_readme.py fails when the README and the fields disagree.
"""

from __future__ import annotations

import re
from pathlib import Path

from lookalike.config import settings_table

README = Path(__file__).resolve().parents[1] / "README.md"
REGION = re.compile(r"(<!-- settings-table -->\n).*?(<!-- /settings-table -->)", re.S)


def with_current_table(text: str) -> str:
    return REGION.sub(lambda m: f"{m[1]}{settings_table()}\n{m[2]}", text, count=1)


if __name__ == "__main__":
    README.write_text(with_current_table(README.read_text()))
