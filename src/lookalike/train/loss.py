"""Symmetric contrastive (CLIP / InfoNCE) loss where identical captions are all positives.

A catalog repeats captions ("a photo of a sneaker" for thousands of items). Plain InfoNCE
would push an image away from its own caption's duplicates in the batch; here every item
whose caption id matches counts as a positive, and the loss is the log of the probability
mass on the positives (for identical text embeddings, exactly softmax over distinct texts).
"""

from __future__ import annotations

import torch


def contrastive_loss(
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    caption_ids: torch.Tensor,
    logit_scale: torch.Tensor,
) -> torch.Tensor:
    """Features L2-normalised (B, D); caption_ids (B,) int; returns the mean of both directions."""
    logits = logit_scale.exp() * image_features @ text_features.t()
    positives = caption_ids[:, None] == caption_ids[None, :]
    masked = logits.masked_fill(~positives, float("-inf"))
    image_to_text = torch.logsumexp(logits, dim=1) - torch.logsumexp(masked, dim=1)
    text_to_image = torch.logsumexp(logits, dim=0) - torch.logsumexp(masked, dim=0)
    return (image_to_text.mean() + text_to_image.mean()) / 2
