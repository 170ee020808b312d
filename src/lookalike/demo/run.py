"""`lookalike demo`: a data set's catalog -> model -> index -> example searches -> serve.

Works on a fresh machine with no network: the model is trained here (LiT: a small
open_clip image tower against the packaged, frozen multilingual-e5-small text tower, so
queries work in any language) unless a pretrained CLIP can be loaded and was asked for. A
finished model in the demo folder is reused when it was trained with the same recipe.
The data sets (Fashion-MNIST by default, Open Clip Art) are in `demo/datasets.py`.
"""

from __future__ import annotations

import itertools
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from lookalike.config import Settings
from lookalike.demo.datasets import DemoDataset, get_dataset
from lookalike.demo.shoppers import ShopperOptions, simulate_shoppers
from lookalike.encode.sources import LIT_CONFIG
from lookalike.errors import ModelError

ModelChoice = Literal["offline", "pretrained", "auto"]
Echo = Callable[[str], None]

PRETRAINED_CPU_LIMIT = 5_000  # ViT-B-32 encodes 5-9 images/s on 2 CPU cores (benchmarks/README.md)


@dataclass
class DemoOptions:
    directory: Path = Path("demo-data")
    model: ModelChoice = "auto"
    limit: int | None = None  # items to index; None = all (pretrained on CPU: a subset)
    serve: bool = True
    retrain: bool = False
    epochs: int | None = None  # None: the data set's recipe
    source_dir: Path | None = None  # the data set's source files (IDX files, openclipart/)
    dataset: str = "fashion-mnist"
    # Simulated shoppers teach a ranker afterwards (demo/shoppers.py); None = not run.
    shoppers: ShopperOptions | None = None


@dataclass
class DemoResult:
    model_kind: Literal["offline", "pretrained"]
    settings: Settings
    indexed: int
    searches: dict[str, list[str]] = field(default_factory=dict)  # query -> top categories


def run_demo(settings: Settings, options: DemoOptions, echo: Echo = print) -> DemoResult:
    started = time.monotonic()
    dataset = get_dataset(options.dataset)
    directory = options.directory
    catalog_dir = directory / dataset.folder
    echo(f"== demo catalog: {dataset.title} -> {catalog_dir}")
    catalog = dataset.build(catalog_dir, options.source_dir)
    counts = ", ".join(f"{n} {split}" for split, n in catalog.items.items())
    echo(f"   {counts} items from {catalog.source} ({catalog.written} images written)")
    for note in catalog.notes:
        echo(f"   {note}")

    kind, engine_settings = _choose_model(settings, options, dataset, catalog.manifest, echo)
    limit = options.limit
    if limit is None and kind == "pretrained" and _device(settings) == "cpu":
        limit = PRETRAINED_CPU_LIMIT
        echo(f"   pretrained CLIP on CPU: indexing the first {limit} items (--limit to change)")

    from lookalike.engine import Engine
    from lookalike.files.fetch import ingest_roots
    from lookalike.ingest.sources import open_source

    manifest = catalog.manifest
    total = sum(catalog.items.values())
    echo(f"== index: {limit or total} items into {engine_settings.data_dir}")
    with Engine(engine_settings, progress=True) as engine:
        items = open_source(manifest)
        report = engine.index_items(
            itertools.islice(items, limit) if limit else items,
            total=min(limit or total, total),
            fetcher=engine.fetcher.with_local_roots(ingest_roots(manifest, engine_settings)),
        )
        echo(f"   {report.summary()}")
        from lookalike.search.calibration import format_calibration

        echo("== relevance floor (lookalike calibrate)")
        for line in format_calibration(engine.calibrate()).splitlines():
            echo(f"   {line}")
        searches = _example_searches(engine, dataset, echo)
        indexed = engine.catalog.stats().searchable
    _print_shell_usage(engine_settings, manifest, echo)
    echo(f"== demo finished in {time.monotonic() - started:.0f}s")
    if options.shoppers is not None:
        simulate_shoppers(engine_settings, manifest, options.shoppers, echo)
        echo("   serve the learned ranker: LOOKALIKE_RANKER=learned lookalike serve")
        return DemoResult(kind, engine_settings, indexed, searches)
    if options.serve:
        _serve(engine_settings, echo)
    return DemoResult(kind, engine_settings, indexed, searches)


def _device(settings: Settings) -> str:
    from lookalike.encode.torch_runtime import resolve_device

    return resolve_device(settings.device)


def _choose_model(
    settings: Settings, options: DemoOptions, dataset: DemoDataset, manifest: Path, echo: Echo
) -> tuple[Literal["offline", "pretrained"], Settings]:
    if options.model in ("pretrained", "auto"):
        reason = _pretrained_unavailable(settings) if options.model == "auto" else None
        if reason is None:
            try:
                from lookalike.encode import create_encoder

                encoder = create_encoder(settings)
                info = encoder.info  # loads (and on first use downloads) the weights
            except ModelError as exc:
                if options.model == "pretrained":
                    raise
                reason = str(exc)
            else:
                echo(f"== model: pretrained CLIP {info.name} (zero-shot, no training)")
                data_dir = options.directory / f"{dataset.data_folder}-clip"
                return "pretrained", settings.model_copy(update={"data_dir": data_dir})
        echo(f"   pretrained CLIP not available ({reason}): using the offline model")
    model_dir = options.directory / dataset.model_folder
    # The recipe's text tower: captions at training and queries at search time go through
    # it (a trained model records it, and queries load it from there).
    trained = settings.model_copy(update={"text_model": dataset.recipe.text_model})
    _ensure_offline_model(trained, options, dataset, manifest, model_dir, echo)
    update = {
        "data_dir": options.directory / dataset.data_folder,
        "model_checkpoint": str(model_dir),
        # The small model encodes thousands of images a second: bigger batches mean fewer
        # catalog transactions per image.
        "encode_batch_size": max(settings.encode_batch_size, 256),
    }
    return "offline", settings.model_copy(update=update)


def _pretrained_unavailable(settings: Settings) -> str | None:
    """Why a pretrained CLIP cannot load here, or None; decided in seconds, not minutes."""
    if settings.model_checkpoint:
        return None  # a local model: loading it is quick and tells the truth
    from lookalike.encode.hub import hub_unreachable

    reason = hub_unreachable()  # honours HF_HUB_OFFLINE, HF_ENDPOINT and proxies
    return f"the model hub is unreachable: {reason}" if reason else None


def _ensure_offline_model(
    settings: Settings,
    options: DemoOptions,
    dataset: DemoDataset,
    manifest: Path,
    model_dir: Path,
    echo: Echo,
) -> None:
    from lookalike.encode.lit import read_config
    from lookalike.train.loop import TrainConfig, train

    fields = dict(dataset.recipe.train)
    if options.epochs is not None:
        fields["epochs"] = options.epochs
    config = TrainConfig(**fields)
    resume = not options.retrain
    if (model_dir / LIT_CONFIG).exists() and not options.retrain:
        try:
            saved = read_config(model_dir)
        except ModelError:
            saved = None
        training = saved.training if saved is not None else {}
        same = (
            saved is not None
            and training.get("run") == config.resume_key()
            and saved.text_model == settings.text_model
        )
        if same and training.get("finished"):
            echo(f"== model: offline-trained LiT, reusing {model_dir} (--retrain to train again)")
            _print_history(training.get("history", []), echo)
            return
        if not same:
            echo(f"   {model_dir} holds a model of another recipe: training the current one")
            resume = False
    echo(
        "== model: offline-trained LiT (small open_clip image tower + frozen "
        f"{settings.text_model} text tower), training {config.epochs} epochs into {model_dir}"
    )
    result = train(manifest, model_dir, settings, config, resume=resume)
    echo(f"   trained {result.step} steps in {result.seconds:.0f}s")


def _print_history(history: list[dict], echo: Echo) -> None:
    if history:
        last = history[-1]
        metrics = ", ".join(f"{k} {v:.3f}" for k, v in last.items() if "@" in k)
        echo(f"   last epoch ({last['epoch']}): validation {metrics}")


def _example_searches(engine, dataset: DemoDataset, echo: Echo) -> dict[str, list[str]]:
    from lookalike.catalog import ProductFilter

    shown: dict[str, list[str]] = {}
    echo("== text searches (top 5 categories)")
    for text in dataset.text_examples:
        hits = engine.search_text(text, limit=5).hits
        shown[text] = [hit.product.category or "" for hit in hits]
        echo(f"   {text!r:24} -> {', '.join(shown[text]) or 'no close matches (floor)'}")
    echo("== image searches (a test-split image as the query; top 6 categories)")
    for category in dataset.image_examples:
        query = _first_test_image(engine, category, ProductFilter)
        if query is None:
            continue
        hits = engine.search_image(query, limit=6).hits
        label = f"image of a {category.lower()}"
        shown[label] = [hit.product.category or "" for hit in hits]
        echo(f"   {label:24} -> {', '.join(shown[label])}")
        echo(f"      query: {query}")
    return shown


def _first_test_image(engine, category: str, product_filter) -> str | None:
    ids = engine.catalog.filter_vector_ids(
        product_filter(categories=(category,), attributes={"split": ("test",)})
    )
    if not len(ids):
        return None
    product = engine.catalog.by_vector_ids([int(ids[0])]).get(int(ids[0]))
    return product.image_source if product else None


def _print_shell_usage(settings: Settings, manifest: Path, echo: Echo) -> None:
    exports = [f"export LOOKALIKE_DATA_DIR={shlex.quote(str(settings.data_dir))}"]
    if settings.model_checkpoint:
        exports.append(
            f"export LOOKALIKE_MODEL_CHECKPOINT={shlex.quote(str(settings.model_checkpoint))}"
        )
    echo("== query it from the shell:")
    for line in [
        *exports,
        'lookalike search --text "running shoes" --limit 5',
        "lookalike search --text handbag --price-max 50",
        f"lookalike eval {shlex.quote(str(manifest))}    # quality vs baselines",
    ]:
        echo(f"   {line}")


def _serve(settings: Settings, echo: Echo) -> None:
    """Serve the API and the search page over the demo catalog until Ctrl-C."""
    import uvicorn

    from lookalike.api import create_app
    from lookalike.api.serving import check_exposure, uvicorn_log_config

    for note in check_exposure(settings):  # refuses a network address without any key
        echo(f"   note: {note}")
    echo(f"== serving on http://{settings.host}:{settings.port}/ (Ctrl-C to stop)")
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        proxy_headers=False,
        log_config=uvicorn_log_config(),
    )
