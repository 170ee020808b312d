"""Open Clip Art as a product catalog with text people wrote: titles and keywords.

Debian's `openclipart-svg` holds 8,121 public-domain clip-art files in 22 top folders (very
unbalanced: 1,962 files under `computer`, 3 under `buttons`), each with a title and
keywords its author wrote in the SVG's metadata; `openclipart-png` has them rasterised.
The builder reads the metadata from the SVG and the picture from the PNG, and writes:

- `images/<category>/<id>.png`: the picture on white, padded to a 128-px square (the whole
  drawing stays in view when a model crops to a square);
- `catalog.jsonl`: id, image, title, category (the top folder), the keywords as the
  description (with the SVG's own description after them when it has one that is not the
  title), and `split`: a seeded 15% is `test` (held out from training; `lookalike eval`
  measures on it), the rest `train`;
- `eval_queries.json`: what `lookalike eval` measures here (title queries beside BM25,
  held-out images against the train gallery).

SVGs are untrusted XML: they are parsed with defusedxml (no external entity, DTD or
network is ever loaded, and files that declare entities are reported and skipped), and
only up to the end of their `<metadata>`. Files that are links to another file, and
different SVGs rendered to the same PNG file, become one item. The builder is idempotent:
images that exist are kept, the manifest is rewritten atomically.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image
from tqdm.auto import tqdm

from lookalike.encode.images import ImageLimits, decode_image
from lookalike.errors import InvalidInput, LookalikeError
from lookalike.files.atomic import atomic_write

DEBIAN_ROOT = Path("/usr/share/openclipart")
PACKAGES = ("openclipart-svg", "openclipart-png")
IMAGE_SIDE = 128
MANIFEST = "catalog.jsonl"
QUERIES = "eval_queries.json"
TEST_FRACTION = 0.15
MAX_SVG_BYTES = 20 << 20
MAX_PNG_BYTES = 20 << 20
# Source PNGs may be tiny icons: any size is accepted here, the catalog image is 128 px.
SOURCE_LIMITS = ImageLimits(max_bytes=MAX_PNG_BYTES, max_pixels=40_000_000, min_side=1)
DC = "{http://purl.org/dc/elements/1.1/}"
RDF = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}"
SVG_METADATA = "metadata"


@dataclass(frozen=True)
class Metadata:
    """What an SVG's author wrote about it (Dublin Core inside `<metadata>`)."""

    title: str
    keywords: tuple[str, ...]
    description: str


@dataclass
class CatalogSummary:
    manifest: Path
    items: dict[str, int]  # split -> count
    written: int  # images written this run (the rest existed)
    source: str
    categories: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> files


def find_source(root: Path | None = None) -> Path | None:
    """The folder holding `svg/` and `png/` (Debian's by default), or None."""
    folder = root or DEBIAN_ROOT
    return folder if (folder / "svg").is_dir() and (folder / "png").is_dir() else None


def read_metadata(path: Path) -> Metadata:
    """Title, keywords and description of an SVG, read without loading anything external.

    Raises InvalidInput (with the reason) for a file too big, not XML, or declaring
    entities (defusedxml refuses them: entity expansion is how XML bombs work).
    """
    from defusedxml import DefusedXmlException
    from defusedxml.ElementTree import ParseError, iterparse

    if path.stat().st_size > MAX_SVG_BYTES:
        raise InvalidInput(f"{path}: larger than {MAX_SVG_BYTES} bytes")
    title, description = "", ""
    keywords: list[str] = []
    try:
        for _, element in iterparse(
            str(path), events=("end",), forbid_dtd=False, forbid_entities=True
        ):
            tag = element.tag
            if tag == DC + "title" and not title:
                title = _clean(element.text)
            elif tag == DC + "description" and not description:
                description = _clean(element.text)
            elif tag == DC + "subject":
                keywords = [_clean(li.text) for li in element.iter(RDF + "li")]
            elif tag.rsplit("}", 1)[-1] == SVG_METADATA:
                break  # the drawing after it holds nothing we read
    except DefusedXmlException as exc:
        raise InvalidInput(f"{path}: refused: {type(exc).__name__}") from exc
    except (ParseError, UnicodeDecodeError, ValueError) as exc:
        raise InvalidInput(f"{path}: not readable XML: {exc}") from exc
    # Agents' names sit in dc:creator/dc:publisher as dc:title too; the work's own title is
    # the first dc:title in document order, which is the cc:Work's.
    unique = tuple(dict.fromkeys(k for k in keywords if k))
    return Metadata(title=title, keywords=unique, description=description)


def build_catalog(
    out_dir: Path,
    root: Path | None = None,
    *,
    seed: int = 0,
    test_fraction: float = TEST_FRACTION,
    progress: bool = True,
    workers: int = 4,
) -> CatalogSummary:
    """Write the catalog of the clip art under `root` (`svg/` and `png/` side by side)."""
    source = find_source(root)
    if source is None:
        where = root or DEBIAN_ROOT
        raise InvalidInput(
            f"Open Clip Art not found in {where}: install the Debian packages "
            f"{' and '.join(PACKAGES)} (`apt-get install {' '.join(PACKAGES)}`)"
        )
    entries, skipped = _entries(source)
    out_dir.mkdir(parents=True, exist_ok=True)
    with (
        ThreadPoolExecutor(workers) as pool,
        tqdm(total=len(entries), desc="openclipart", unit="file", disable=not progress) as bar,
    ):

        def one(entry: _Entry) -> tuple[_Entry, dict | str, bool]:
            try:
                row, wrote = _item(entry, out_dir, seed, test_fraction)
                return entry, row, wrote
            except (LookalikeError, OSError) as exc:
                return entry, _reason(exc), False

        results = []
        for result in pool.map(one, entries):
            results.append(result)
            bar.update(1)
    rows: list[dict] = []
    written = 0
    for _, outcome, wrote in results:
        if isinstance(outcome, str):
            skipped[outcome] += 1
        else:
            rows.append(outcome)
            written += wrote
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    manifest = out_dir / MANIFEST
    atomic_write(manifest, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    queries = json.dumps(eval_queries(), indent=2)
    atomic_write(out_dir / QUERIES, lambda tmp: Path(tmp).write_text(queries, encoding="utf-8"))
    return CatalogSummary(
        manifest=manifest,
        items=dict(Counter(row["split"] for row in rows)),
        written=written,
        source=str(source),
        categories=dict(sorted(Counter(row["category"] for row in rows).items())),
        skipped=dict(skipped),
    )


def eval_queries() -> dict[str, object]:
    """`lookalike eval` here: each held-out item's title finds it (beside BM25 over the
    keywords and descriptions), held-out images against the train gallery by category."""
    return {"split": "test", "gallery_split": "train", "titles": True}


def category_name(folder: str) -> str:
    return folder.replace("_", " ")


@dataclass(frozen=True)
class _Entry:
    svg: Path  # the real file (links resolved)
    png: Path  # its rendering (links resolved)
    relative: Path  # the real SVG's path under svg/


def _entries(source: Path) -> tuple[list[_Entry], Counter]:
    """One entry per distinct SVG file and PNG rendering, in path order."""
    svg_root, png_root = (source / "svg").resolve(), (source / "png").resolve()
    skipped: Counter = Counter()
    seen_svg: set[Path] = set()
    seen_png: set[Path] = set()
    entries: list[_Entry] = []
    for path in sorted(svg_root.rglob("*.svg")):
        real = path.resolve()
        if real in seen_svg:
            continue  # a link to a file already listed
        seen_svg.add(real)
        if not real.is_relative_to(svg_root) or not real.is_file():
            skipped["outside the svg folder or not a file"] += 1
            continue
        relative = real.relative_to(svg_root)
        # The rendering lies where the link does or where the file does.
        listed = path.relative_to(svg_root)
        pngs = [(png_root / name).with_suffix(".png") for name in (relative, listed)]
        png = next((p for p in pngs if p.is_file()), None)
        if png is None:
            skipped["no PNG rendering"] += 1
            continue
        real_png = png.resolve()
        if real_png in seen_png or not real_png.is_relative_to(png_root):
            skipped["the same PNG as another file"] += 1
            continue
        seen_png.add(real_png)
        entries.append(_Entry(real, real_png, relative))
    return entries, skipped


def _item(entry: _Entry, out_dir: Path, seed: int, test_fraction: float) -> tuple[dict, bool]:
    metadata = read_metadata(entry.svg)
    category = entry.relative.parts[0] if len(entry.relative.parts) > 1 else "unsorted"
    item_id = "oca-" + _slug("-".join(entry.relative.with_name(entry.relative.stem).parts))
    relative_image = Path("images") / category / f"{item_id}.png"
    target = out_dir / relative_image
    wrote = False
    if not target.exists():
        _write_image(entry.png, target)
        wrote = True
    digest = hashlib.sha256(f"{seed}:{item_id}".encode()).digest()
    split = "test" if int.from_bytes(digest[:8], "big") / 2**64 < test_fraction else "train"
    notes = metadata.description
    if notes.casefold() == metadata.title.casefold():
        notes = ""  # a copy of the title is not a description (and the title is the query)
    description = "; ".join(part for part in (", ".join(metadata.keywords), notes) if part)
    row = {
        "id": item_id,
        "image": relative_image.as_posix(),
        "title": metadata.title,
        "category": category_name(category),
        "description": description,
        "split": split,
        "source": (Path("svg") / entry.relative).as_posix(),
    }
    return row, wrote


def _write_image(png: Path, target: Path) -> None:
    if png.stat().st_size > MAX_PNG_BYTES:
        raise InvalidInput(f"{png}: larger than {MAX_PNG_BYTES} bytes")
    image = decode_image(png.read_bytes(), SOURCE_LIMITS, source=str(png))  # on white
    image.thumbnail((IMAGE_SIDE, IMAGE_SIDE), Image.Resampling.LANCZOS)
    if max(image.size) < IMAGE_SIDE:  # small icons grow to the side, sharp edges kept
        scale = IMAGE_SIDE / max(image.size)
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.NEAREST)
    square = Image.new("RGB", (IMAGE_SIDE, IMAGE_SIDE), (255, 255, 255))
    square.paste(image, ((IMAGE_SIDE - image.width) // 2, (IMAGE_SIDE - image.height) // 2))
    buffer = io.BytesIO()
    square.save(buffer, format="PNG")
    target.parent.mkdir(parents=True, exist_ok=True)
    # Temp file + rename, no fsync: regenerated from the packages on demand.
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_bytes(buffer.getvalue())
    os.replace(tmp, target)


def _reason(exc: BaseException) -> str:
    text = str(getattr(exc, "reason", "") or exc)
    if "refused" in text:
        return "metadata refused (declares XML entities)"
    if "not readable XML" in text:
        return "metadata not readable XML"
    if "larger than" in text:
        return "file too large"
    return f"image not readable ({type(exc).__name__})"


def _clean(value: object) -> str:
    return " ".join(str(value or "").split())


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
