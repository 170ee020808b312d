"""Near-duplicate groups written out: JSON, CSV (one row per member) and an HTML contact
sheet (each group a row of thumbnails, embedded as small JPEG data URLs so the page opens
anywhere without a server)."""

from __future__ import annotations

import base64
import csv
import html
import io
import json
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from lookalike.catalog.base import Catalog, Product
from lookalike.files.atomic import write_text_atomic

THUMB = 128
MAX_SHEET_GROUPS = 500


def groups_json(groups: dict[str, list[str]]) -> str:
    return json.dumps(
        {"groups": [{"group": g, "members": m} for g, m in sorted(groups.items())]}, indent=2
    )


def write_json(path: Path, groups: dict[str, list[str]]) -> Path:
    write_text_atomic(path, groups_json(groups))
    return path


def write_csv(path: Path, groups: dict[str, list[str]], catalog: Catalog) -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["group", "product_id", "title", "category", "image_source"])
    for group, members in sorted(groups.items()):
        products = catalog.get_many(members)
        for pid in members:
            p = products.get(pid)
            writer.writerow(
                [group, pid, p.title if p else "", p and p.category, p and p.image_source]
            )
    write_text_atomic(path, buffer.getvalue())
    return path


def write_contact_sheet(
    path: Path,
    groups: dict[str, list[str]],
    catalog: Catalog,
    read_image: Callable[[Product], Image.Image | None],
) -> Path:
    """An HTML page: per group (the largest first, at most MAX_SHEET_GROUPS) its members'
    thumbnails with id and title. `read_image` returns a product's image, or None."""
    ordered = sorted(groups.items(), key=lambda item: (-len(item[1]), item[0]))
    shown = ordered[:MAX_SHEET_GROUPS]
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<title>Near-duplicate groups</title><style>",
        "body{font:14px system-ui,sans-serif;margin:24px;background:#fafafa;color:#222}",
        "section{background:#fff;border:1px solid #ddd;border-radius:8px;padding:12px;"
        "margin:0 0 16px}",
        "h2{font-size:15px;margin:0 0 8px}.grid{display:flex;flex-wrap:wrap;gap:10px}",
        "figure{margin:0;width:140px}figure img{width:128px;height:128px;object-fit:contain;"
        "background:#fff;border:1px solid #eee}",
        "figcaption{font-size:12px;overflow-wrap:anywhere}.missing{width:128px;height:128px;"
        "display:flex;align-items:center;justify-content:center;background:#eee}",
        "</style></head><body>",
        f"<h1>Near-duplicate groups</h1><p>{len(groups)} groups, "
        f"{sum(len(m) for m in groups.values())} products"
        + (f"; the largest {len(shown)} shown" if len(shown) < len(groups) else "")
        + ".</p>",
    ]
    for group, members in shown:
        products = catalog.get_many(members)
        parts.append(
            f"<section data-group='{html.escape(group)}'><h2>{html.escape(group)} "
            f"({len(members)})</h2><div class='grid'>"
        )
        for pid in members:
            product = products.get(pid)
            image = read_image(product) if product is not None else None
            title = html.escape(product.title if product else "")
            picture = (
                f"<img alt='{html.escape(pid)}' src='{_data_url(image)}'>"
                if image is not None
                else "<div class='missing'>no image</div>"
            )
            parts.append(
                f"<figure>{picture}<figcaption><b>{html.escape(pid)}</b><br>{title}"
                "</figcaption></figure>"
            )
        parts.append("</div></section>")
    parts.append("</body></html>")
    write_text_atomic(path, "\n".join(parts))
    return path


def _data_url(image: Image.Image) -> str:
    thumb = image.convert("RGB")
    thumb.thumbnail((THUMB, THUMB))
    buffer = io.BytesIO()
    thumb.save(buffer, "JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()
