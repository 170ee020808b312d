"""Rewrite the configuration page's table from the Settings fields.

    .venv/bin/python scripts/docs_settings.py

tests/docs/test_configuration_page.py fails when the page and the fields disagree.
"""

from __future__ import annotations

import re
from pathlib import Path

from lookalike.config import settings_table

PAGE = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"
REGION = re.compile(r"(<!-- settings-table -->\n).*?(<!-- /settings-table -->)", re.S)


def with_current_table(text: str) -> str:
    """The page's text with the table between the markers regenerated from the fields."""
    return REGION.sub(lambda m: f"{m[1]}{settings_table()}\n{m[2]}", text, count=1)


if __name__ == "__main__":
    PAGE.write_text(with_current_table(PAGE.read_text()))
