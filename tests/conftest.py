"""Shared fixtures: a tiny real-architecture model, settings in a temp dir, image sets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lookalike import Engine, Settings
from tests.tests_support import write_images
from tests.tiny_models import build_tiny_openclip

# Fixtures of real servers the tests start (each skips when its server is not installed).
pytest_plugins = ["tests.redis_server"]

# Tests never touch a model hub: an accidental download fails at once instead of hanging.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_openclip(tmp_path_factory.mktemp("models") / "tiny-clip")


@pytest.fixture
def settings(tmp_path: Path, tiny_model_dir: Path) -> Settings:
    return Settings(
        _env_file=None,
        data_dir=tmp_path / "data",
        model_checkpoint=str(tiny_model_dir),
        device="cpu",
        encode_batch_size=8,
        ingest_workers=2,
    )


@pytest.fixture
def engine(settings: Settings):
    with Engine(settings) as eng:
        yield eng


@pytest.fixture
def photo_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    write_images(folder, 24)
    return folder
