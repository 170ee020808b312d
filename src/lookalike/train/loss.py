"""Symmetric contrastive (CLIP / InfoNCE) loss with several positives per row.

A catalog repeats captions: "a photo of a sneaker" fits thousands of items. Plain InfoNCE
would push a sneaker's image away from that caption whenever it was drawn for another
sneaker in the batch. Here caption j is a positive for image i whenever it is one of
item i's own caption variants (so identical and generic captions are never negatives),
and the loss is the log of the probability mass on the positives.

With categories, a caption of another item of the same category ("Kestrel sneaker" for a
Northwind sneaker) may be left out of the contrast altogether (`ignored`): it is no
positive, but neither is it a negative that would push two sneakers apart for a brand
their pictures cannot show.
"""

from __future__ import annotations

import torch


def positives_matrix(variants: torch.Tensor, caption_ids: torch.Tensor) -> torch.Tensor:
    """(B, B) bool: entry (i, j) when caption `caption_ids[j]` is a variant of item i.

    `variants` (B, V) holds each item's caption ids (padded with repeats of its own ids).
    """
    return (variants[:, :, None] == caption_ids[None, None, :]).any(dim=1)


def same_category_pairs(categories: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """(B, B) bool: pairs of items of one known category (code >= 0) that are no positive."""
    same = (categories[:, None] == categories[None, :]) & (categories[:, None] >= 0)
    return same & ~positives


def contrastive_loss(
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    positives: torch.Tensor,
    logit_scale: torch.Tensor,
    ignored: torch.Tensor | None = None,
) -> torch.Tensor:
    """Features L2-normalised (B, D); positives (B, B) bool with a true diagonal; `ignored`
    (B, B) bool pairs count neither way. Returns the mean of the image->text and
    text->image losses."""
    logits = logit_scale.exp() * image_features @ text_features.t()
    if ignored is not None:
        logits = logits.masked_fill(ignored & ~positives, float("-inf"))
    masked = logits.masked_fill(~positives, float("-inf"))
    image_to_text = torch.logsumexp(logits, dim=1) - torch.logsumexp(masked, dim=1)
    text_to_image = torch.logsumexp(logits, dim=0) - torch.logsumexp(masked, dim=0)
    return (image_to_text.mean() + text_to_image.mean()) / 2
