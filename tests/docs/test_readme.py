"""The README's configuration table is generated from the Settings fields, and stays so."""

from __future__ import annotations

from scripts.readme_settings import README, REGION, with_current_table


def test_readme_settings_table_matches_the_settings():
    text = README.read_text()
    assert REGION.search(text), "README lost its <!-- settings-table --> markers"
    assert with_current_table(text) == text, "run: python scripts/readme_settings.py"
