"""Symmetric contrastive (CLIP / InfoNCE) loss with several positives per row.

A catalog repeats captions: "a photo of a sneaker" fits thousands of items. Plain InfoNCE
would push a sneaker's image away from that caption whenever it was drawn for another
sneaker in the batch. Here caption j is a positive for image i whenever it is one of
item i's own caption variants (so identical and generic captions are never negatives),
and the loss is the log of the probability mass on the positives.
"""

from __future__ import annotations

import torch


def positives_matrix(variants: torch.Tensor, caption_ids: torch.Tensor) -> torch.Tensor:
    """(B, B) bool: entry (i, j) when caption `caption_ids[j]` is a variant of item i.

    `variants` (B, V) holds each item's caption ids (padded with repeats of its own ids).
    """
    return (variants[:, :, None] == caption_ids[None, None, :]).any(dim=1)


def contrastive_loss(
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    positives: torch.Tensor,
    logit_scale: torch.Tensor,
) -> torch.Tensor:
    """Features L2-normalised (B, D); positives (B, B) bool with a true diagonal; returns
    the mean of the image->text and text->image losses."""
    logits = logit_scale.exp() * image_features @ text_features.t()
    masked = logits.masked_fill(~positives, float("-inf"))
    image_to_text = torch.logsumexp(logits, dim=1) - torch.logsumexp(masked, dim=1)
    text_to_image = torch.logsumexp(logits, dim=0) - torch.logsumexp(masked, dim=0)
    return (image_to_text.mean() + text_to_image.mean()) / 2
