"""The README's links lead somewhere, and its architecture sketch matches the source folders.

The docs site's own links are checked by `mkdocs build --strict` (scripts/test.sh); the
README lives outside the site, so these tests check it.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
PACKAGE = ROOT / "src" / "lookalike"
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
SKETCH_ENTRY = re.compile(r"^  (\S+)\s")


def relative_links(markdown: str) -> list[str]:
    """Link and image targets that point into the repository (no scheme, no bare anchor)."""
    targets = (m[1] for m in LINK.finditer(markdown))
    return [t for t in targets if not re.match(r"[a-z]+:", t) and not t.startswith("#")]


def sketch_entries(markdown: str, heading: str) -> list[str]:
    """The `name` of each `  name   what it owns` line in the first code block under heading."""
    section = markdown.split(f"\n{heading}\n", 1)[1]
    block = section.split("```", 2)[1]
    return [m[1] for line in block.splitlines() if (m := SKETCH_ENTRY.match(line))]


def source_packages() -> set[str]:
    return {f"{p.parent.name}/" for p in PACKAGE.glob("*/__init__.py")}


def test_readme_links_point_at_files_that_exist():
    links = relative_links(README.read_text())
    assert links, "the README links to its docs pages"
    missing = [t for t in links if not (ROOT / t.split("#", 1)[0]).exists()]
    assert not missing


def test_readme_links_to_docs_pages_the_site_builds():
    """Every page the README names is in mkdocs.yml's nav, so the site has it too."""
    nav = (ROOT / "mkdocs.yml").read_text()
    pages = {t.split("#", 1)[0] for t in relative_links(README.read_text())}
    pages = {p.removeprefix("docs/") for p in pages if p.startswith("docs/") and p.endswith(".md")}
    assert pages
    assert not [p for p in pages if f": {p}" not in nav]


def test_architecture_sketches_name_every_package_and_only_real_ones():
    packages = source_packages()
    assert {"encode/", "index/", "catalog/", "search/"} <= packages
    for path, heading in [
        (README, "## Architecture"),
        (ROOT / "docs" / "architecture.md", "## Packages"),
    ]:
        entries = sketch_entries(path.read_text(), heading)
        named_packages = {e for e in entries if e.endswith("/")}
        assert named_packages == packages, path.name
        assert not [e for e in entries if not (PACKAGE / e).exists()], path.name


def test_link_finder_sees_links_and_images_but_not_urls():
    text = "![a](docs/a.png) [b](docs/b.md#x) [c](https://example.com) [d](#top)"
    assert relative_links(text) == ["docs/a.png", "docs/b.md#x"]
