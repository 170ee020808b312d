"""Is one image a crop of another? A search of scale x offset on their stored thumbnails.

A crop keeping a fraction `sw` of the original's width and `sh` of its height has the
aspect ratio `sw / sh` times the original's, so the scale of one side fixes the other's:
the search runs over one scale and two offsets. Coarse pass: the crop's grey thumbnail,
shrunk to each scale (steps of SCALE_STEP from MIN_KEEP to whole), slid over the
original's at half resolution with normalised cross-correlation (NCC: insensitive to
brightness and contrast, so re-compression does not matter). Fine pass: around the best
place, the original's region is resampled at sub-pixel offsets to the crop's size, so both
sides are shrunk alike, and two scores are kept: the NCC of the colour pixels and the NCC
of the grey gradient magnitudes (edges: a sibling with the same silhouette but other
details, or the same drawing in other colours, fails one of the two).

Why not the embeddings: a model trained on a catalog's classes puts a 20% crop of an item
no closer to it than a look-alike sibling of its class (docs/quality.md); the pixels at
32x32 line up for a crop and not for most siblings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image

MIN_KEEP = 0.76  # crops up to 20% per side, with room for a few pixels of rounding
SCALE_STEP = 0.03
FLAT = 2.0  # grey-level std below which an image is too flat for a correlation to mean much
# The coarse pass (whole pixels at 32x32) underestimates the fine one; below this it is not
# refined (the benchmark's confirmed crops all score at least 0.77 there): most candidates
# stop here, at a third of the cost.
COARSE_FLOOR = 0.7


@dataclass(frozen=True)
class CropScore:
    colour: float  # NCC of the RGB pixels at the best place (-1.0: nowhere fits)
    edges: float  # NCC of the grey gradient magnitudes there


NO_MATCH = CropScore(-1.0, -1.0)


def thumbnail_image(data: bytes) -> Image.Image | None:
    """A stored square RGB thumbnail as an image (None when there is none)."""
    side = math.isqrt(len(data) // 3)
    if not data or 3 * side * side != len(data):
        return None
    return Image.frombytes("RGB", (side, side), bytes(data))


def crop_match(
    crop: Image.Image, crop_aspect: float, whole: Image.Image, whole_aspect: float
) -> CropScore:
    """How well `crop` matches the best region of `whole` that keeps between MIN_KEEP and
    all of each side (NO_MATCH where no such region fits, `crop` is flat or the coarse
    pass finds no region close enough to refine)."""
    side = whole.width
    half = side // 2
    grey_crop, grey_whole = crop.convert("L"), whole.convert("L")
    small = np.asarray(grey_crop.resize((half, half), Image.BOX), np.float32)
    if small.std() < FLAT:
        return NO_MATCH
    coarse = np.asarray(grey_whole.resize((half, half), Image.BOX), np.float32)
    best = (-2.0, 0, 0, 1.0)
    for keep_w in np.arange(MIN_KEEP, 1.0 + 1e-6, SCALE_STEP):
        keep_h = keep_w * whole_aspect / crop_aspect
        if not MIN_KEEP - SCALE_STEP <= keep_h <= 1.0 + 1e-6:
            continue
        tw, th = max(4, round(keep_w * half)), max(4, round(keep_h * half))
        template = np.asarray(grey_crop.resize((tw, th), Image.BOX), np.float32)
        score, x, y = _slide(template, coarse)
        if score > best[0]:
            best = (score, x, y, float(keep_w))
    if best[0] < COARSE_FLOOR:
        return NO_MATCH
    _, x, y, keep_w = best
    colour_crop = np.asarray(crop.resize((half, half), Image.BOX), np.float32)
    edges_crop = _edges(small)
    scale = side / half
    colour = edges = -1.0
    for dw in (-SCALE_STEP / 2, 0.0, SCALE_STEP / 2):
        w = min(1.0, keep_w + dw)
        h = min(1.0, w * whole_aspect / crop_aspect)
        for dx in (-0.5, 0.0, 0.5):
            for dy in (-0.5, 0.0, 0.5):
                x0 = min(max((x + dx) * scale, 0.0), side * (1 - w))
                y0 = min(max((y + dy) * scale, 0.0), side * (1 - h))
                box = (x0, y0, x0 + w * side, y0 + h * side)
                region = np.asarray(whole.resize((half, half), Image.BOX, box=box), np.float32)
                colour = max(colour, _ncc(region, colour_crop))
                grey = np.asarray(grey_whole.resize((half, half), Image.BOX, box=box), np.float32)
                edges = max(edges, _ncc(_edges(grey), edges_crop))
    return CropScore(colour, edges)


def _slide(template: np.ndarray, image: np.ndarray) -> tuple[float, int, int]:
    """(best NCC, x, y) of the template at every offset inside the image."""
    th, tw = template.shape
    if th > image.shape[0] or tw > image.shape[1]:
        return -2.0, 0, 0
    template = template - template.mean()
    norm = float(np.linalg.norm(template))
    if norm < 1e-3:
        return -2.0, 0, 0
    windows = sliding_window_view(image, (th, tw))
    dot = np.einsum("yxij,ij->yx", windows, template)
    sums = windows.sum(axis=(2, 3))
    squares = np.einsum("yxij,yxij->yx", windows, windows)
    spread = np.sqrt(np.maximum(squares - sums * sums / (tw * th), 0.0))
    # A flat window correlates with nothing: its score is 0, not a division blown up.
    scores = np.where(spread > FLAT * np.sqrt(tw * th), dot / (spread * norm + 1e-9), 0.0)
    y, x = np.unravel_index(int(scores.argmax()), scores.shape)
    return float(scores[y, x]), int(x), int(y)


def _edges(grey: np.ndarray) -> np.ndarray:
    dy, dx = np.gradient(grey)
    return np.hypot(dx, dy)


def _ncc(a: np.ndarray, b: np.ndarray) -> float:
    """NCC, each channel centred on its own mean."""
    a = a - a.mean(axis=(0, 1))
    b = b - b.mean(axis=(0, 1))
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float((a * b).sum() / norm) if norm > 1e-3 else -1.0
