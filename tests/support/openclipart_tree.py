"""A small stand-in for Debian's openclipart-svg + openclipart-png, with the same layout:
`svg/<category>/[<sub>/]<name>.svg` with Dublin Core metadata, `png/...` renderings beside
them, links between files, and the awkward files the real packages hold (entities, broken
XML, a missing rendering, two drawings sharing one PNG, transparency, tiny icons)."""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image, ImageDraw

SECRET = "s3cret-from-a-local-file"
# category -> (subfolder, colour, shape); titles and keywords follow the shape's theme.
CATEGORIES = {
    "animals": ("mammals", (200, 40, 40), "ellipse"),
    "transportation": ("cars", (40, 40, 200), "rectangle"),
    "food": ("fruit", (40, 160, 40), "triangle"),
}
THINGS = {
    "animals": ["red cat", "sleepy dog", "brown horse", "small mouse", "old lion", "grey wolf"],
    "transportation": ["blue car", "fast train", "city bus", "red truck", "sail boat", "jet"],
    "food": ["green apple", "ripe pear", "lime slice", "cabbage", "kiwi", "green grapes"],
}


def svg_text(title: str, keywords: list[str], description: str = "", doctype: str = "") -> str:
    items = "".join(f"<rdf:li>{k}</rdf:li>" for k in keywords)
    return (
        '<?xml version="1.0" encoding="UTF-8" standalone="no"?>\n'
        f"{doctype}"
        '<svg xmlns="http://www.w3.org/2000/svg" xmlns:dc="http://purl.org/dc/elements/1.1/" '
        'xmlns:cc="http://web.resource.org/cc/" '
        'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" width="100" height="100">'
        '<metadata><rdf:RDF><cc:Work rdf:about="">'
        f"<dc:title>{title}</dc:title><dc:description>{description}</dc:description>"
        f"<dc:subject><rdf:Bag>{items}</rdf:Bag></dc:subject>"
        "<dc:creator><cc:Agent><dc:title>Some Artist</dc:title></cc:Agent></dc:creator>"
        "</cc:Work></rdf:RDF></metadata>"
        '<rect width="100" height="100" fill="#fff"/></svg>'
    )


def draw(path: Path, colour: tuple[int, int, int], shape: str, variant: int) -> None:
    """A transparent drawing of the category's shape, placed and sized by `variant`."""
    image = Image.new("RGBA", (200, 160), (0, 0, 0, 0))
    pen = ImageDraw.Draw(image)
    left, top = 10 + 7 * variant, 10 + 5 * variant
    box = (left, top, left + 90 + 4 * variant, top + 80)
    if shape == "ellipse":
        pen.ellipse(box, fill=(*colour, 255))
    elif shape == "rectangle":
        pen.rectangle(box, fill=(*colour, 255))
    else:
        pen.polygon(
            [(box[0], box[3]), (box[2], box[3]), ((box[0] + box[2]) // 2, box[1])],
            fill=(*colour, 255),
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def write_tree(root: Path) -> Path:
    """Write the stand-in under `root`; returns `root` (holding svg/ and png/)."""
    svg, png = root / "svg", root / "png"
    for category, (sub, colour, shape) in CATEGORIES.items():
        for variant, thing in enumerate(THINGS[category]):
            name = thing.replace(" ", "_") + "_01"
            relative = Path(category) / sub / name
            keywords = [thing.split()[-1], category, "clipart", ""]
            (svg / relative).parent.mkdir(parents=True, exist_ok=True)
            (svg / relative).with_suffix(".svg").write_text(
                svg_text(thing.title(), keywords, description=f"A drawing of a {thing}.")
            )
            draw((png / relative).with_suffix(".png"), colour, shape, variant)
    # A link in another folder to a file listed already: one item.
    (svg / "food" / "also_a_cat.svg").symlink_to(svg / "animals" / "mammals" / "red_cat_01.svg")
    (png / "food" / "also_a_cat.png").symlink_to(png / "animals" / "mammals" / "red_cat_01.png")
    # Two drawings rendered to one PNG file (the package links identical renderings).
    (svg / "food" / "twin_apple_01.svg").write_text(svg_text("Twin Apple", ["apple"]))
    os.symlink(png / "food" / "fruit" / "green_apple_01.png", png / "food" / "twin_apple_01.png")
    # Entities: an internal one (how XML bombs start) and an external one reading a file.
    secret = root / "secret.txt"
    secret.write_text(SECRET)
    bomb = '<!DOCTYPE svg [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;">]>\n'
    (svg / "food" / "bomb.svg").write_text(svg_text("&b;", ["bomb"], doctype=bomb))
    leak = f'<!DOCTYPE svg [<!ENTITY s SYSTEM "file://{secret}">]>\n'
    (svg / "food" / "leak.svg").write_text(svg_text("&s;", ["leak"], doctype=leak))
    for name in ("bomb", "leak"):
        draw(png / "food" / f"{name}.png", (0, 0, 0), "ellipse", 0)
    # Broken XML, and a drawing nobody rendered.
    (svg / "animals" / "broken.svg").write_text("<svg><metadata><dc:title>half")
    draw(png / "animals" / "broken.png", (0, 0, 0), "ellipse", 0)
    (svg / "animals" / "unrendered.svg").write_text(svg_text("Unrendered", ["ghost"]))
    # A tiny icon (grows to the catalog's side) with its title also as its description.
    (svg / "transportation" / "tiny_bike.svg").write_text(
        svg_text("Tiny Bike", ["bike"], description="Tiny Bike")
    )
    Image.new("RGB", (16, 12), (40, 40, 200)).save(png / "transportation" / "tiny_bike.png")
    return root
