"""The configuration page's table is generated from the Settings fields, and stays so."""

from __future__ import annotations

from scripts.docs_settings import PAGE, REGION, with_current_table

from lookalike.config import Settings


def test_configuration_table_matches_the_settings():
    text = PAGE.read_text()
    assert REGION.search(text), "docs/configuration.md lost its <!-- settings-table --> markers"
    assert with_current_table(text) == text, "run: python scripts/docs_settings.py"


def test_every_setting_has_a_row_on_the_page():
    text = PAGE.read_text()
    missing = [n for n in Settings.model_fields if f"`LOOKALIKE_{n.upper()}`" not in text]
    assert not missing


def test_a_stale_table_is_caught():
    """A row that no field has, or a field the page lacks, shows up as a difference."""
    text = PAGE.read_text()
    stale = text.replace(
        "<!-- /settings-table -->", "| `LOOKALIKE_GONE` | `1` | removed |\n<!-- /settings-table -->"
    )
    assert with_current_table(stale) != stale
    first_row = next(line for line in text.splitlines() if line.startswith("| `LOOKALIKE_"))
    assert with_current_table(text.replace(first_row + "\n", "")) != text.replace(
        first_row + "\n", ""
    )
