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

Two optional terms use the categories directly (a shop always has one per item), because
the caption contrast alone underfits the image tower: each image must pick ITS caption
(titles with brands a small grey picture cannot show) among the batch's, many of them of
its own category, so the class signal per step is weak.
- `category_loss`: each image is classified against one prompt per category ("a photo of
  a {category}", through the text tower and projection like any text): a prototype
  classifier in the text space, so text and images stay in one space.
- `category_contrast_loss`: supervised contrast among the batch's images (same-category
  images are positives, Khosla et al. 2020, the L_out form).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


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


def category_loss(
    image_features: torch.Tensor,
    prototypes: torch.Tensor,
    categories: torch.Tensor,
    logit_scale: torch.Tensor,
) -> torch.Tensor:
    """Cross-entropy of each image (B, D) against the category prototypes (C, D), both
    L2-normalised, with the model's own temperature; items of unknown category (-1) are
    left out (zero when none is known)."""
    known = categories >= 0
    if not bool(known.any()):
        return image_features.sum() * 0.0
    logits = logit_scale.exp() * image_features[known] @ prototypes.t()
    return F.cross_entropy(logits, categories[known])


def category_contrast_loss(
    image_features: torch.Tensor, categories: torch.Tensor, logit_scale: torch.Tensor
) -> torch.Tensor:
    """Supervised contrast among the batch's images (B, D), L2-normalised: for each image
    whose category (>= 0) another image of the batch shares, the mean log-probability of
    those images among all the others (zero when no image has such a partner)."""
    count = len(categories)
    logits = logit_scale.exp() * image_features @ image_features.t()
    self_pairs = torch.eye(count, dtype=torch.bool, device=logits.device)
    logits = logits.masked_fill(self_pairs, float("-inf"))
    positives = (categories[:, None] == categories[None, :]) & (categories[:, None] >= 0)
    positives &= ~self_pairs
    anchors = positives.any(dim=1)
    if not bool(anchors.any()):
        return image_features.sum() * 0.0
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    # -inf on the diagonal times 0 would be NaN: take the positives' entries only.
    summed = log_prob.masked_fill(~positives, 0.0).sum(dim=1)
    return -(summed[anchors] / positives.sum(dim=1)[anchors]).mean()
