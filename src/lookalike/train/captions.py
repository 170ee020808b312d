"""Captions for contrastive training, made from catalog fields with simple templates.

Each item gets several caption variants (title, category, brand, description in a few
phrasings); training samples one per item per step, which is the text-side augmentation.
Eval prompts use "a photo of a {category}"; paraphrase queries must use words that no
template adds, so they measure generalisation, not memory.
"""

from __future__ import annotations

import re

from lookalike.ingest.sources import ItemSpec

# The class prompt: a caption of every item with a category, the eval's class query, and
# the category prototype `TrainConfig.category_loss` classifies images against.
CATEGORY_PROMPT = "a photo of a {category}"
# Only templates whose fields an item has are used.
TEMPLATES = (
    "{title}",
    CATEGORY_PROMPT,
    "a {category}",
    "{category}",
    "{brand} {category}",
    "a {category} by {brand}",
    "{title}, {category}",
    "{description}",
)
MAX_CAPTION_CHARS = 300


def caption_variants(item: ItemSpec) -> list[str]:
    """Distinct captions for an item, the canonical one first; never empty."""
    fields = {
        "title": _clean(item.title),
        "category": _clean(item.category).lower(),
        "brand": _clean(item.brand),
        "description": _clean(_first_sentence(item.attributes.get("description"))),
    }
    captions: list[str] = []
    for template in TEMPLATES:
        names = re.findall(r"{(\w+)}", template)
        if all(fields[name] for name in names):
            text = template.format(**fields)[:MAX_CAPTION_CHARS]
            if text not in captions:
                captions.append(text)
    if not captions:
        # Nothing but an id: the file name is the only text we have.
        stem = re.sub(r"[_\-.]+", " ", item.id.rsplit("/", 1)[-1]).strip()
        captions.append(stem or item.id)
    return captions


def category_prompt(category: object) -> str:
    """A category's class prompt, spelt as the captions spell it ("a photo of a sneaker")."""
    return CATEGORY_PROMPT.format(category=_clean(category).lower())


def _clean(value: object) -> str:
    if value is None:
        return ""
    return " ".join(str(value).split())


def _first_sentence(value: object) -> str:
    text = _clean(value)
    match = re.match(r"(.+?[.!?])(\s|$)", text)
    return match.group(1) if match else text
