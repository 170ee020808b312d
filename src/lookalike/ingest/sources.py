"""Where items come from: a folder of images, or a CSV / JSONL manifest."""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lookalike.catalog.fields import check_price, check_product_fields
from lookalike.errors import InvalidInput, ManifestError
from lookalike.files.fetch import is_url

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}
IMAGE_KEYS = ("image", "image_url", "image_path", "url", "path")
CORE_KEYS = {"id", "title", "category", "brand", "price", "attributes", *IMAGE_KEYS}


@dataclass
class ItemSpec:
    """One catalog item as a source describes it, before its image is read."""

    id: str
    image: str | None  # local path or http(s)/file URL
    title: str = ""
    category: str | None = None
    brand: str | None = None
    price: float | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    # The product's version after this change (queue events); None: the catalog's next one.
    version: int | None = None


@dataclass
class BadRow:
    """A manifest row we could not turn into an item (reported, never fatal)."""

    id: str
    source: str
    reason: str


def count_items(location: str | Path) -> int | None:
    """A cheap count for the progress bar's ETA (files in a folder, lines in a manifest)."""
    path = Path(location)
    if path.is_dir():
        return sum(
            1
            for p in path.rglob("*")
            if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
        )
    if path.is_file():
        with open(path, "rb") as handle:
            lines = sum(1 for line in handle if line.strip())
        return max(lines - (1 if path.suffix.lower() == ".csv" else 0), 0)
    return None


def open_source(location: str | Path) -> Iterator[ItemSpec | BadRow]:
    """A folder (recursive) or a .csv/.jsonl manifest; anything else is an error."""
    path = Path(location)
    if path.is_dir():
        return iter_folder(path)
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".csv":
            return iter_csv(path)
        if suffix in (".jsonl", ".ndjson"):
            return iter_jsonl(path)
        raise ManifestError(f"{path}: manifests must be .csv or .jsonl (or give a folder)")
    raise ManifestError(f"{path}: no such folder or manifest")


def iter_folder(root: Path) -> Iterator[ItemSpec | BadRow]:
    """Every image file under `root`. Id = path relative to root; category = first folder."""
    root = root.resolve()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith(".") or Path(name).suffix.lower() not in IMAGE_SUFFIXES:
                continue
            path = Path(dirpath) / name
            relative = path.relative_to(root)
            item = ItemSpec(
                id=relative.as_posix(),
                image=str(path),
                title=relative.stem.replace("_", " ").replace("-", " ").strip(),
                category=relative.parts[0] if len(relative.parts) > 1 else None,
            )
            yield checked_item(item, relative.as_posix())


def iter_csv(path: Path) -> Iterator[ItemSpec | BadRow]:
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames:
            raise ManifestError(f"{path}: empty CSV (expected a header row)")
        _check_columns(path, reader.fieldnames)
        for line, row in enumerate(reader, start=2):
            yield _item_or_bad(row, path, f"{path.name}:{line}")


def iter_jsonl(path: Path) -> Iterator[ItemSpec | BadRow]:
    with open(path, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path.name}:{line_no}"
            try:
                row = json.loads(line)
            except (ValueError, RecursionError) as exc:  # bad JSON, 5000-digit numbers, nesting
                yield BadRow(where, where, f"invalid JSON: {getattr(exc, 'msg', exc)}")
                continue
            if not isinstance(row, dict):
                yield BadRow(where, where, "a JSONL line must be an object")
                continue
            yield _item_or_bad(row, path, where)


def _check_columns(path: Path, columns: list[str]) -> None:
    if not any(key in columns for key in IMAGE_KEYS):
        raise ManifestError(f"{path}: no image column (one of {', '.join(IMAGE_KEYS)})")


def _item_or_bad(row: dict[str, Any], manifest: Path, where: str) -> ItemSpec | BadRow:
    try:
        return item_from_record(row, base_dir=manifest.parent)
    except InvalidInput as exc:
        return BadRow(str(row.get("id") or where)[:200], where, str(exc))


def checked_item(item: ItemSpec, where: str) -> ItemSpec | BadRow:
    """The item, or a BadRow saying which field it may not hold (caps, NaN)."""
    try:
        check_item(item)
    except InvalidInput as exc:
        return BadRow(item.id[:200], where, str(exc))
    return item


def check_item(item: ItemSpec) -> None:
    """InvalidInput for a field a product may not hold (`catalog/fields.py`)."""
    check_product_fields(
        product_id=item.id,
        title=item.title,
        category=item.category,
        brand=item.brand,
        price=item.price,
        attributes=item.attributes,
        image=item.image,
    )


def item_from_record(row: dict[str, Any], *, base_dir: Path | None = None) -> ItemSpec:
    """A manifest row / event -> ItemSpec, checked (`check_item`); relative image paths
    resolve against base_dir."""
    image = next((str(row[k]) for k in IMAGE_KEYS if row.get(k) not in (None, "")), None)
    if image and not is_url(image) and base_dir is not None and not Path(image).is_absolute():
        image = str((base_dir / image).resolve())
    item_id = row.get("id")
    if item_id in (None, ""):
        if not image:
            raise InvalidInput("row has neither an id nor an image")
        item_id = image
    given = row.get("attributes") or {}
    if not isinstance(given, dict):
        raise InvalidInput("attributes must be an object")
    attributes = dict(given)
    for key, value in row.items():
        if key not in CORE_KEYS and value not in (None, ""):
            attributes[key] = _parse_scalar(value)
    item = ItemSpec(
        id=str(item_id),
        image=image,
        title=str(row.get("title") or ""),
        category=_text_or_none(row.get("category")),
        brand=_text_or_none(row.get("brand")),
        price=_parse_price(row.get("price")),
        attributes=attributes,
    )
    check_item(item)
    return item


def _text_or_none(value: Any) -> str | None:
    return None if value in (None, "") else str(value)


def _parse_price(value: Any) -> float | None:
    if value in (None, ""):
        return None
    try:
        price = float(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidInput(f"price {str(value)[:40]!r} is not a number") from exc
    check_price(price)
    return price


def _parse_scalar(value: Any) -> Any:
    """CSV cells are strings: numbers become numbers so filters and re-ranking can use them."""
    if not isinstance(value, str):
        return value
    for cast in (int, float):
        try:
            number = cast(value)
        except ValueError:
            continue
        return number if math.isfinite(number) else value
    return value
