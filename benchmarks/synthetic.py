"""Seeded CLIP-like synthetic vectors: normalised, clustered, low intrinsic dimension.

Real CLIP image embeddings share a common direction (random pairs have cosine ~0.4-0.5),
form semantic clusters, and vary along far fewer directions than their 512 dimensions.
This generator mimics that: a shared mean direction, clusters in a 64-d latent space with
uneven sizes and spreads, a random linear map up to `dim`, a little isotropic noise, then
L2 normalisation. Queries are fresh draws from the same distribution (not in the database).
Generated in blocks so a million vectors never need more than the result in memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class ClipLike:
    dim: int = 512
    latent: int = 64
    clusters: int = 2000
    seed: int = 0
    common: float = 1.0  # weight of the shared direction (sets the random-pair cosine)
    noise: float = 0.15  # norm of the isotropic noise in the full space

    def _model(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        rng = np.random.default_rng(self.seed)
        mean = rng.standard_normal(self.dim).astype(np.float32)
        mean /= np.linalg.norm(mean)
        lift = rng.standard_normal((self.latent, self.dim)).astype(np.float32)
        lift /= np.sqrt(self.dim)  # rows of norm ~1: the map keeps latent norms
        # Centers of norm ~1; a point's own spread is a fraction of that.
        centers = rng.standard_normal((self.clusters, self.latent)).astype(np.float32)
        centers /= np.sqrt(self.latent)
        spreads = rng.uniform(0.25, 0.6, self.clusters).astype(np.float32)
        # Zipf-like cluster sizes: a few big categories, a long tail.
        weights = 1.0 / np.arange(1, self.clusters + 1) ** 0.7
        return mean, lift, centers, spreads, weights / weights.sum()

    def vectors(self, n: int, *, stream: int = 0, block: int = 100_000) -> np.ndarray:
        """`n` vectors (float32, unit norm); different `stream`s give independent draws."""
        mean, lift, centers, spreads, weights = self._model()
        rng = np.random.default_rng([self.seed, stream + 1])
        out = np.empty((n, self.dim), dtype=np.float32)
        for start in range(0, n, block):
            m = min(block, n - start)
            which = rng.choice(self.clusters, size=m, p=weights)
            offsets = rng.standard_normal((m, self.latent), dtype=np.float32)
            latent = centers[which] + spreads[which, None] * offsets / np.sqrt(self.latent)
            x = latent @ lift + self.common * mean
            noise = rng.standard_normal((m, self.dim), dtype=np.float32)
            x += (self.noise / np.sqrt(self.dim)) * noise
            x /= np.linalg.norm(x, axis=1, keepdims=True)
            out[start : start + m] = x
        return out


def cached(path: Path, make) -> np.ndarray:
    """Load `path` (a .npy, memory-mapped) or make and save it first."""
    if path.exists():
        return np.load(path, mmap_mode="r", allow_pickle=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    array = make()
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, array, allow_pickle=False)
    tmp.replace(path)
    return np.load(path, mmap_mode="r", allow_pickle=False)
