"""Fixtures the training tests share: a tiny Fashion-MNIST-shaped catalog and settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from lookalike import Settings
from lookalike.demo.fashion_mnist import build_catalog
from tests.support.fashion_idx import write_idx


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """200 train and 40 test items whose classes a tiny model can learn."""
    root = tmp_path_factory.mktemp("catalog")
    idx = write_idx(root / "idx", {"train": 200, "test": 40})
    return build_catalog(root / "fashion", idx, progress=False).manifest


@pytest.fixture(scope="module")
def train_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(
        _env_file=None,
        data_dir=tmp_path_factory.mktemp("data"),
        device="cpu",
        encode_batch_size=64,
        ingest_workers=2,
    )
