"""Command line: a thin layer over Engine. Errors become exit codes here, nowhere else."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Callable, Iterator
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from lookalike.errors import LookalikeError

if TYPE_CHECKING:  # imported inside the commands: `lookalike --help` stays cheap
    from lookalike.config import Settings

app = typer.Typer(
    name="lookalike",
    help="Image search over your own catalog: by image, by text, or both.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

F = TypeVar("F", bound=Callable[..., Any])

DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        "-d",
        help="Data directory (default: $LOOKALIKE_DATA_DIR or ./lookalike-data).",
    ),
]


def build_settings(data_dir: Path | None = None, **overrides: Any) -> Settings:
    from lookalike.config import Settings

    values = {k: v for k, v in overrides.items() if v is not None}
    if data_dir is not None:
        values["data_dir"] = data_dir
    return Settings(**values)


def handles_errors(command: F) -> F:
    """Typed errors -> one line on stderr and the error's exit code."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except LookalikeError as exc:
            typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
            raise typer.Exit(exc.exit_code) from exc
        except KeyboardInterrupt:
            typer.secho("interrupted: committed work is kept; run again to resume", err=True)
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


@contextlib.contextmanager
def _catalog(settings: Settings) -> Iterator[Any]:
    """The catalog alone (no model, no index), closed afterwards."""
    from lookalike.catalog import open_catalog

    catalog = open_catalog(settings)
    try:
        yield catalog
    finally:
        catalog.close()


def _engine(settings: Settings, progress: bool = True):
    from lookalike.engine import Engine

    return Engine(settings, progress=progress)


@app.command("index")
@handles_errors
def index_command(
    source: Annotated[str, typer.Argument(help="A folder of images, or a .csv/.jsonl manifest.")],
    data_dir: DataDir = None,
    batch_size: Annotated[int | None, typer.Option(help="Images per encoder batch.")] = None,
    workers: Annotated[int | None, typer.Option(help="Reader/decoder threads.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    engine_name: Annotated[
        str,
        typer.Option(
            "--engine", help="local: this process; ray: Ray workers (needs the ray extra)."
        ),
    ] = "local",
    address: Annotated[
        str | None,
        typer.Option(help="Ray cluster for --engine ray (ray://head:10001); default: local Ray."),
    ] = None,
    calibrate: Annotated[
        bool, typer.Option(help="Calibrate the relevance floor afterwards (a sample: seconds).")
    ] = True,
) -> None:
    """Add a folder or manifest to the catalog and index (re-runs skip unchanged items)."""
    if engine_name not in ("local", "ray"):
        raise typer.BadParameter("--engine must be local or ray")
    settings = build_settings(
        data_dir, encode_batch_size=batch_size, ingest_workers=workers, ray_address=address
    )
    with _engine(settings, progress=not quiet) as engine:
        if engine_name == "ray":
            report = engine.index_path_ray(source)
        else:
            report = engine.index_path(source)
        _print_report(report)
        if calibrate and engine.catalog.stats().searchable:
            _print_calibration(engine.calibrate())


@app.command("calibrate")
@handles_errors
def calibrate_command(data_dir: DataDir = None) -> None:
    """Measure the relevance floor of the configured model over the catalog, per query kind
    (text, image, hybrid), print the distributions and store the floors."""
    with _engine(build_settings(data_dir), progress=False) as engine:
        _print_calibration(engine.calibrate())


def _print_calibration(calibration: Any) -> None:
    from lookalike.search.calibration import format_calibration

    typer.echo(format_calibration(calibration))


@app.command("reindex")
@handles_errors
def reindex_command(data_dir: DataDir = None) -> None:
    """Re-encode every product with the configured model (after changing models)."""
    with _engine(build_settings(data_dir)) as engine:
        _print_report(engine.reindex())


def _print_report(report: Any) -> None:
    typer.echo(report.summary())
    for bad in report.failed[:20]:
        typer.echo(f"  skipped {bad.id}: {bad.reason}")
    if len(report.failed) > 20:
        typer.echo(f"  ... and {len(report.failed) - 20} more (see the JSON report in reports/)")


@app.command("search")
@handles_errors
def search_command(
    image: Annotated[
        list[str] | None,
        typer.Option("--image", "-i", help="Query image path or URL (repeatable)."),
    ] = None,
    text: Annotated[str | None, typer.Option("--text", "-t", help="Query text.")] = None,
    similar: Annotated[
        str | None, typer.Option("--similar", help="Id of an indexed product: more like it.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="Number of results.")] = 20,
    category: Annotated[list[str] | None, typer.Option(help="Only these categories.")] = None,
    brand: Annotated[list[str] | None, typer.Option(help="Only these brands.")] = None,
    price_min: Annotated[float | None, typer.Option(help="Lowest price.")] = None,
    price_max: Annotated[float | None, typer.Option(help="Highest price.")] = None,
    image_weight: Annotated[
        float | None, typer.Option(help="Image vs text weight for image+text queries.")
    ] = None,
    negative: Annotated[
        list[str] | None,
        typer.Option("--not", help="Negative text: like the query, but not this (repeatable)."),
    ] = None,
    multi_image: Annotated[
        str, typer.Option(help="Several images: `mean` of them, or `best` match to any.")
    ] = "mean",
    rerank: Annotated[
        list[str] | None,
        typer.Option(help="Re-rank weight override, e.g. `rating=0.1` (repeatable)."),
    ] = None,
    max_per_category: Annotated[
        int | None, typer.Option(help="At most this many results per category.")
    ] = None,
    max_per_brand: Annotated[
        int | None, typer.Option(help="At most this many results per brand.")
    ] = None,
    mmr: Annotated[
        float | None, typer.Option(help="Diversify by MMR: 1 = relevance only, lower = varied.")
    ] = None,
    ranker: Annotated[
        str | None,
        typer.Option(help="A registered ranker: hand, similarity, learned (default: settings)."),
    ] = None,
    min_score: Annotated[
        float | None,
        typer.Option(help="Relevance floor: raw similarity a hit needs (default: calibrated)."),
    ] = None,
    no_floor: Annotated[
        bool, typer.Option("--no-floor", help="Show every hit, however weak.")
    ] = False,
    collapse_duplicates: Annotated[
        bool,
        typer.Option("--collapse-duplicates", help="One hit per near-duplicate group."),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    data_dir: DataDir = None,
) -> None:
    """Search by image, text, both, or an indexed product."""
    from lookalike.catalog import ProductFilter
    from lookalike.engine import Diversity, SearchRequest

    if not (image or text or similar):
        raise typer.BadParameter("give --image, --text or --similar")
    if no_floor and min_score is not None:
        raise typer.BadParameter("give --min-score or --no-floor, not both")
    diversity = None
    if max_per_category is not None or max_per_brand is not None or mmr is not None:
        diversity = Diversity(max_per_category, max_per_brand, mmr)
    request = SearchRequest(
        images=image or [],
        texts=[text] if text else [],
        negative_texts=negative or [],
        product_id=similar,
        image_weight=image_weight,
        multi_image=multi_image,  # type: ignore[arg-type]  # checked by the engine
        rerank=_weights(rerank) if rerank else None,
        diversity=diversity,
        limit=limit,
        ranker=ranker,
        min_score=-1.0 if no_floor else min_score,
        collapse="duplicates" if collapse_duplicates else None,
        filters=ProductFilter(
            categories=tuple(category or ()),
            brands=tuple(brand or ()),
            price_min=price_min,
            price_max=price_max,
        ),
    )
    with _engine(build_settings(data_dir), progress=False) as engine:
        results = engine.search(request)
    if as_json:
        typer.echo(json.dumps(results.to_dict(), indent=2))
        return
    typer.echo(print_hits(results))


def _weights(pairs: list[str]) -> dict[str, float]:
    """`name=weight` options -> a dict; a malformed one is a typed error."""
    from lookalike.errors import InvalidInput

    weights: dict[str, float] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        try:
            weights[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise InvalidInput(f"--rerank wants name=weight, got {pair!r}")
    return weights


def print_hits(results: Any) -> str:
    lines = [
        f"{'#':>3}  {'score':>6}  {'id':<28} {'title':<32} {'category':<14} {'brand':<12} price"
    ]
    for rank, hit in enumerate(results.hits, start=1):
        p = hit.product
        price = f"{p.price:.2f}" if p.price is not None else ""
        lines.append(
            f"{rank:>3}  {hit.score:6.3f}  {p.id[:28]:<28} {p.title[:32]:<32} "
            f"{(p.category or '')[:14]:<14} {(p.brand or '')[:12]:<12} {price}"
        )
        if hit.duplicates:
            lines.append(f"{'':13}near-duplicates: {', '.join(hit.duplicates)}")
    if not results.hits and results.below_floor:
        lines.append("no close matches")
    lines.append(
        f"{len(results.hits)} results of {results.total_found} in {results.query_time_ms:.1f} ms"
    )
    if results.below_floor:
        lines.append(
            f"{results.below_floor} weaker hits under the relevance floor "
            f"{results.min_score:.3f} (--no-floor shows them)"
        )
    return "\n".join(lines)


@app.command("near-duplicates")
@handles_errors
def near_duplicates_command(
    data_dir: DataDir = None,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Folder for groups.json, groups.csv and contact-sheet.html "
            "(default: reports/near-duplicates-<time> in the data dir)."
        ),
    ] = None,
    write: Annotated[
        bool, typer.Option(help="Store the groups (search's collapse uses them).")
    ] = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Find groups of near-identical product images (resized, re-compressed, cropped a
    little, mirrored, watermarked copies) over the whole catalog."""
    import time

    from lookalike.duplicates.report import write_contact_sheet, write_csv, write_json
    from lookalike.encode.images import decode_image

    settings = build_settings(data_dir)
    with _engine(settings, progress=not quiet) as engine:
        report, backfill = engine.near_duplicates(write=write)
        folder = out or settings.data_dir / "reports" / time.strftime(
            "near-duplicates-%Y%m%d-%H%M%S"
        )
        fetcher = engine.stored_fetcher()

        def read_image(product):
            try:
                return decode_image(fetcher.fetch(product.image_source), engine.limits)
            except LookalikeError:
                return None

        write_json(folder / "groups.json", report.groups)
        write_csv(folder / "groups.csv", report.groups, engine.catalog)
        sheet = write_contact_sheet(
            folder / "contact-sheet.html", report.groups, engine.catalog, read_image
        )
    typer.echo(
        f"{len(report.groups)} groups with {report.grouped} of {report.items} images"
        + (f"; hashed {backfill.hashed} images first" if backfill.hashed else "")
        + (f"; {len(backfill.failed)} images could not be read" if backfill.failed else "")
    )
    typer.echo(f"groups: {folder / 'groups.json'}, {folder / 'groups.csv'}; contact sheet: {sheet}")


@app.command("eval-floor")
@handles_errors
def eval_floor_command(
    queries: Annotated[
        Path | None,
        typer.Option(
            help="JSON with class_prompts / paraphrases (in-catalog text queries); "
            "default: a prompt per catalog category."
        ),
    ] = None,
    limit: Annotated[int, typer.Option(help="Page size the floor is measured at.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    data_dir: DataDir = None,
) -> None:
    """Measure the relevance floor on the catalog: how many of a page in-catalog and
    off-catalog text queries keep, and in-catalog P@10, beside no floor."""
    from lookalike.search.floor_eval import evaluate_floor, floor_table

    with _engine(build_settings(data_dir), progress=False) as engine:
        report = evaluate_floor(engine.pipeline, engine.catalog, queries, limit=limit)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    typer.echo(floor_table(report))


@app.command("info")
@handles_errors
def info_command(
    data_dir: DataDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Items, index type and size, model and its runtime, last update."""
    from lookalike.encode.runtime import runtimes_line

    with _engine(build_settings(data_dir), progress=False) as engine:
        info = engine.info()
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    index = info["index"]
    typer.echo(f"catalog:     {info['catalog']}")
    typer.echo(f"products:    {info['products']} ({info['searchable']} searchable)")
    typer.echo(f"model:       {info['model']['name']} ({info['model']['source']})")
    typer.echo(f"runtime:     {runtimes_line(info['model']['runtimes'])}")
    for model_id, count in info["embeddings_by_model"].items():
        typer.echo(f"  embeddings: {count} by {model_id}")
    typer.echo(
        f"index:       {index.get('type')} {json.dumps(index.get('params') or {})}"
        f" at log entry {index.get('watermark', '-')} of {info['log_head']}"
    )
    typer.echo(f"last update: {info['last_update'] or 'never'}")
    freshness = info["freshness"]
    behind = freshness["index_behind_s"]
    state = {0.0: "up to date", None: "lag unknown"}.get(behind, f"{behind} s behind")
    typer.echo(f"freshness:   last commit {freshness['last_commit'] or 'never'}; index {state}")
    events = info.get("events")
    if events:
        typer.echo(f"events:      {_events_line(events)}")


def _events_line(events: dict[str, Any]) -> str:
    """The event queue and its backlog, in one line."""
    where = events.get("topic") or events.get("stream")
    if where is None:
        return f"error: {events['error']}"
    text = f"{events['type']} {where} (group {events['group']})"
    backlog = events.get("backlog")
    if backlog is None:
        return f"{text}: {events.get('error', 'backlog unknown')}"
    text += f": lag {backlog['lag']} events, {backlog['pending']} pending"
    if backlog["partitions"]:
        parts = " ".join(f"{p}:{n}" for p, n in backlog["partitions"].items())
        text += f" (unacknowledged per partition {parts})"
    if backlog["oldest_s"] is not None:
        text += f", oldest unacknowledged {backlog['oldest_s']:.1f} s"
    return text + f"; dead letters in {events['dead_letters']}"


@app.command("config")
def config_command(
    markdown: Annotated[bool, typer.Option("--markdown", help="The README's table.")] = False,
) -> None:
    """Show the effective settings (or the table of all settings)."""
    from lookalike.config import Settings, settings_table

    if markdown:
        typer.echo(settings_table())
        return
    typer.echo(Settings().model_dump_json(indent=2))


# --- training, evaluation, demo (issue 3) ---------------------------------------------------


@app.command("train")
@handles_errors
def train_command(
    source: Annotated[
        str, typer.Argument(help="Training pairs: a folder or .csv/.jsonl manifest.")
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Model directory to write (and resume).")
    ] = Path("lookalike-model"),
    mode: Annotated[
        str,
        typer.Option(
            help="lit: small image tower from scratch against the frozen text model (offline); "
            "finetune: the configured open_clip model (LOOKALIKE_MODEL_*)."
        ),
    ] = "lit",
    epochs: Annotated[int, typer.Option(help="Passes over the training items.")] = 3,
    batch_size: Annotated[int, typer.Option(help="Pairs per step (contrastive batch).")] = 256,
    lr: Annotated[float | None, typer.Option(help="Peak learning rate (default by mode).")] = None,
    seed: Annotated[int, typer.Option(help="Seed for init, order, augmentation.")] = 0,
    tower: Annotated[str, typer.Option(help="lit: image tower (rn-tiny, rn-small, vit-tiny).")] = (
        "rn-tiny"
    ),
    image_size: Annotated[int, typer.Option(help="lit: image tower input side in pixels.")] = 32,
    text_model: Annotated[
        str | None,
        typer.Option(
            help="lit: the frozen text tower (default LOOKALIKE_TEXT_MODEL), e.g. "
            "intfloat/multilingual-e5-small for queries in any language."
        ),
    ] = None,
    augment: Annotated[
        bool, typer.Option(help="Random flips and shifts of the training images.")
    ] = False,
    category_loss: Annotated[
        float,
        typer.Option(
            help="Weight of classifying each image against the class prompts "
            '("a photo of a {category}") beside the caption contrast; 0 turns it off.'
        ),
    ] = 0.0,
    limit: Annotated[int | None, typer.Option(help="Use only the first N items.")] = None,
    max_steps: Annotated[
        int | None, typer.Option(help="Stop after N steps in total (resume later).")
    ] = None,
    resume: Annotated[
        bool, typer.Option(help="Continue the run saved in --output, if any.")
    ] = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    calibrate: Annotated[
        bool,
        typer.Option(help="Calibrate the relevance floor on a sample of the training items."),
    ] = True,
) -> None:
    """Train (or fine-tune) the encoder on the catalog's own (image, text) pairs."""
    from lookalike.train.loop import TrainConfig, train

    if mode not in ("lit", "finetune"):
        raise typer.BadParameter("--mode must be lit or finetune")
    config = TrainConfig(
        mode=mode,  # type: ignore[arg-type]
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        tower=tower,
        image_size=image_size,
        augment=augment,
        category_loss=category_loss,
        limit=limit,
        max_steps=max_steps,
    )
    settings = build_settings(text_model=text_model)
    result = train(source, output, settings, config, resume=resume, progress=not quiet)
    state = "finished" if result.finished else f"stopped at step {result.step}, run again to resume"
    typer.echo(
        f"{result.output}: {state} ({result.step}/{result.total_steps} steps, "
        f"{result.seconds:.0f}s)"
    )
    if calibrate and result.finished:
        _calibrate_trained(source, Path(result.output), settings, progress=not quiet)
    typer.echo(
        f"use it: export LOOKALIKE_MODEL_CHECKPOINT={result.output}; lookalike index {source}"
    )


def _calibrate_trained(source: str, model_dir: Path, settings: Settings, *, progress: bool):
    """The new model's relevance floor, measured on a sample of its training items and kept
    in the model directory (a catalog calibrates again when it is indexed)."""
    from lookalike.encode import create_encoder
    from lookalike.search.calibration import (
        LabelledSample,
        calibrate,
        save_with_model,
        vectors_kth_best,
    )
    from lookalike.train.calibration_sample import encoded_sample

    model_settings = settings.model_copy(update={"model_checkpoint": str(model_dir)})
    encoder = create_encoder(model_settings)
    vectors, labels, names = encoded_sample(source, encoder, model_settings, progress=progress)
    if len(names) == 0:
        typer.echo("relevance floor: the training items have no categories to calibrate on")
        return
    calibration = calibrate(
        LabelledSample(vectors, labels, names),
        encoder,
        vectors_kth_best(vectors, settings.default_limit),
        model_id=encoder.model_id,
        k=settings.default_limit,
        image_weight=settings.image_weight,
        source="training items",
    )
    save_with_model(calibration, model_dir)
    _print_calibration(calibration)


@app.command("eval")
@handles_errors
def eval_command(
    source: Annotated[str, typer.Argument(help="A manifest whose items have categories.")],
    model: Annotated[
        str | None, typer.Option(help="Model to measure (default: LOOKALIKE_MODEL_CHECKPOINT).")
    ] = None,
    split: Annotated[
        str, typer.Option(help="Only items with this `split` attribute ('' = all).")
    ] = "test",
    queries: Annotated[
        Path | None,
        typer.Option(help="JSON with class_prompts / paraphrases (default: eval_queries.json)."),
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Use only the first N items.")] = None,
    gallery_limit: Annotated[
        int | None,
        typer.Option(help="Use only the first N gallery items (held-out vs gallery)."),
    ] = None,
    compare: Annotated[
        list[str] | None,
        typer.Option(
            help="NAME=MODEL: measure another model beside it in the same run (repeatable), "
            "e.g. the same recipe trained on another text tower."
        ),
    ] = None,
    k: Annotated[int, typer.Option(help="Cut-off for P@k and mAP@k.")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print the JSON report.")] = False,
    data_dir: DataDir = None,
) -> None:
    """Measure retrieval quality on a held-out split, beside raw-pixel and untrained baselines."""
    from lookalike.encode import create_encoder
    from lookalike.train.evaluate import (
        evaluate,
        language_table,
        load_queries,
        markdown_table,
        per_query_table,
        title_examples,
        write_report,
    )

    settings = build_settings(data_dir, model_checkpoint=model)
    encoder = create_encoder(settings)
    others = {}
    for entry in compare or []:
        name, separator, location = entry.partition("=")
        if not separator or not name or not location:
            raise typer.BadParameter(f"--compare wants NAME=MODEL, got {entry!r}")
        others[name] = create_encoder(settings.model_copy(update={"model_checkpoint": location}))
    baseline = None
    if encoder.info.family == "lit":
        from lookalike.encode.lit import LitEncoder

        baseline = LitEncoder.random_init(
            encoder.config,  # type: ignore[attr-defined]
            device=settings.device,
            batch_size=settings.encode_batch_size,
            text_model=encoder.text_model,  # type: ignore[attr-defined]
        )
    report = evaluate(
        source,
        settings,
        encoder,
        queries=load_queries(queries, source),
        split=split or None,
        limit=limit,
        k=k,
        baseline=baseline,
        others=others,
        gallery_limit=gallery_limit,
    )
    path = write_report(report, settings.ensure_data_dir())
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    typer.echo(
        f"{report['items']} items of split {split or 'all'}, model {report['model']['name']}"
    )
    typer.echo(markdown_table(report))
    if "paraphrases" in report["results"]["model"]:
        typer.echo("")
        typer.echo(per_query_table(report))
    examples = title_examples(report)
    if examples:
        typer.echo("")
        typer.echo(examples)
    languages = language_table(report)
    if languages:
        typer.echo("")
        typer.echo(languages)
    if baseline is None:
        typer.echo("(the random-init baseline exists for Lookalike-trained models only)")
    typer.echo(f"report: {path}")


@app.command("demo")
@handles_errors
def demo_command(
    directory: Annotated[Path, typer.Option("--dir", help="Where the demo lives.")] = Path(
        "demo-data"
    ),
    model: Annotated[
        str,
        typer.Option(
            help="offline: train the small model here; pretrained: CLIP from "
            "LOOKALIKE_MODEL_*; auto: pretrained when it loads, else offline."
        ),
    ] = "auto",
    limit: Annotated[int | None, typer.Option(help="Index only the first N items.")] = None,
    serve: Annotated[bool, typer.Option(help="Serve the web page at the end.")] = True,
    retrain: Annotated[bool, typer.Option(help="Train the offline model again.")] = False,
    dataset: Annotated[
        str,
        typer.Option(
            help="fashion-mnist: 70,000 product photos; openclipart: clip art with the "
            "titles and keywords people wrote (Debian openclipart-svg + openclipart-png)."
        ),
    ] = "fashion-mnist",
    source_dir: Annotated[
        Path | None,
        typer.Option(
            help="The data set's source files: the Fashion-MNIST IDX files, or a folder "
            "with openclipart's svg/ and png/ (default: the Debian packages' folders)."
        ),
    ] = None,
    host: Annotated[str | None, typer.Option(help="Bind address (default: settings).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: settings).")] = None,
    simulate_shoppers: Annotated[
        bool,
        typer.Option(
            help="Afterwards, simulated shoppers search and click through the API on "
            "127.0.0.1, a ranker learns from their logs and is A/B tested (not served)."
        ),
    ] = False,
    shopper_searches: Annotated[
        int, typer.Option(min=200, help="--simulate-shoppers: searches to learn from.")
    ] = 2500,
    ab_searches: Annotated[
        int, typer.Option(min=100, help="--simulate-shoppers: searches of the A/B test.")
    ] = 1000,
) -> None:
    """The main job: build the demo catalog, get a model, index, search, serve."""
    from lookalike.demo.datasets import dataset_names
    from lookalike.demo.run import DemoOptions, ShopperOptions, run_demo

    if model not in ("offline", "pretrained", "auto"):
        raise typer.BadParameter("--model must be offline, pretrained or auto")
    if dataset not in dataset_names():
        raise typer.BadParameter(f"--dataset must be one of {', '.join(dataset_names())}")
    options = DemoOptions(
        directory=directory,
        model=model,  # type: ignore[arg-type]
        limit=limit,
        serve=serve,
        retrain=retrain,
        source_dir=source_dir,
        shoppers=ShopperOptions(shopper_searches, ab_searches) if simulate_shoppers else None,
        dataset=dataset,
    )
    run_demo(build_settings(host=host, port=port), options, echo=typer.echo)


@app.command("serve")
@handles_errors
def serve_command(
    data_dir: DataDir = None,
    host: Annotated[str | None, typer.Option(help="Bind address (default: settings).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: settings).")] = None,
    workers: Annotated[
        int | None, typer.Option(help="Worker processes (default: settings).")
    ] = None,
) -> None:
    """Serve the HTTP API and the search page (model and index load once, at start-up)."""
    import inspect
    import os

    import uvicorn

    from lookalike.api.serving import check_exposure, uvicorn_log_config
    from lookalike.encode import create_encoder
    from lookalike.encode.runtime import encoder_runtimes, runtimes_line

    settings = build_settings(data_dir, host=host, port=port, workers=workers)
    for note in check_exposure(settings):  # refuses a network address without any key
        typer.secho(f"note: {note}", fg=typer.colors.YELLOW, err=True)
    typer.echo(f"Lookalike on http://{settings.host}:{settings.port}/ (API docs at /docs)")
    runtimes = encoder_runtimes(settings, lambda: create_encoder(settings))
    typer.echo(f"encoder runtime: {runtimes_line(runtimes)}")
    # Proxy headers are the app's to trust (LOOKALIKE_TRUSTED_PROXIES), not uvicorn's.
    common: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "proxy_headers": False,
        "log_config": uvicorn_log_config(),
    }
    if settings.workers == 1:
        from lookalike.api import create_app

        uvicorn.run(create_app(settings), **common)
        return
    from lookalike.metrics import prepare_multiprocess_dir, remove_multiprocess_dir

    # Worker processes build their own app from the environment: hand them the
    # command-line overrides that way (this is an entry point, where settings are made).
    if data_dir is not None:
        os.environ["LOOKALIKE_DATA_DIR"] = str(settings.data_dir)
    os.environ["LOOKALIKE_HOST"] = settings.host  # the allowed Host names include it
    # Several workers: they map one saved index (`index_memory` auto) and merge their
    # metrics through files in one folder (prometheus_client reads the variable itself).
    os.environ["LOOKALIKE_WORKERS"] = str(settings.workers)
    metrics_dir, temporary = prepare_multiprocess_dir(settings.metrics_dir)
    os.environ["LOOKALIKE_METRICS_DIR"] = os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    extra: dict[str, Any] = {}
    if "timeout_worker_healthcheck" in inspect.signature(uvicorn.run).parameters:
        # A worker imports torch before it can answer the supervisor's first health check;
        # uvicorn's 5 s default kills and restarts workers on a busy machine.
        extra["timeout_worker_healthcheck"] = 60
    try:
        uvicorn.run(
            "lookalike.api.app:create_app_from_env",
            factory=True,
            workers=settings.workers,
            **common,
            **extra,
        )
    finally:
        if temporary:
            remove_multiprocess_dir(metrics_dir)


# --- API keys -------------------------------------------------------------------------------
keys_app = typer.Typer(
    help="API keys: named, with a scope (search < write < admin); the catalog keeps only a "
    "SHA-256 digest of each.",
    no_args_is_help=True,
)
app.add_typer(keys_app, name="keys")


@keys_app.command("create")
@handles_errors
def keys_create_command(
    name: Annotated[str, typer.Argument(help="A name for who uses it, e.g. importer, shop-front.")],
    scope: Annotated[
        str, typer.Option(help="search (read only), write (products too) or admin (all).")
    ] = "search",
    data_dir: DataDir = None,
) -> None:
    """Make a key and print its token, the only time it is shown (the token alone on stdout)."""
    import time

    from lookalike.catalog import open_catalog
    from lookalike.catalog.keys import issue_key

    catalog = open_catalog(build_settings(data_dir))
    try:
        token = issue_key(catalog, name, scope, time.time())
    finally:
        catalog.close()
    typer.echo(
        f"key {name!r} (scope {scope}) created; its token follows and is not shown again. "
        "Send it as `X-API-Key: <token>` or `Authorization: Bearer <token>`.",
        err=True,
    )
    typer.echo(token)


@keys_app.command("list")
@handles_errors
def keys_list_command(
    data_dir: DataDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Name, scope, when made and when last used (to the minute) of every key; never tokens."""
    from lookalike.catalog import open_catalog

    catalog = open_catalog(build_settings(data_dir))
    try:
        keys = catalog.api_keys()
    finally:
        catalog.close()
    rows = [
        {
            "name": key.name,
            "scope": key.scope,
            "created": _utc(key.created_at),
            "last_used": _utc(key.last_used_at) if key.last_used_at else None,
        }
        for key in keys
    ]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        typer.echo("no keys (create one with `lookalike keys create --scope write NAME`)")
        return
    typer.echo(f"{'name':<24} {'scope':<7} {'created (UTC)':<20} last used (UTC)")
    for row in rows:
        name, scope, created, used = row.values()
        typer.echo(f"{name:<24} {scope:<7} {created:<20} {used or 'never'}")


@keys_app.command("revoke")
@handles_errors
def keys_revoke_command(
    name: Annotated[str, typer.Argument(help="The key's name.")],
    data_dir: DataDir = None,
) -> None:
    """Delete a key: servers refuse it within LOOKALIKE_KEY_CACHE_TTL_S seconds, no restart."""
    from lookalike.catalog import open_catalog
    from lookalike.errors import NotFound

    settings = build_settings(data_dir)
    catalog = open_catalog(settings)
    try:
        if not catalog.revoke_api_key(name):
            raise NotFound(f"key {name!r}")
    finally:
        catalog.close()
    typer.echo(
        f"key {name!r} revoked; running servers refuse it within {settings.key_cache_ttl_s:g} s"
    )


def _utc(ts: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


@app.command("consume")
@handles_errors
def consume_command(
    data_dir: DataDir = None,
    redis_url: Annotated[
        str | None, typer.Option(help="Redis with the stream (default: $LOOKALIKE_REDIS_URL).")
    ] = None,
    events_url: Annotated[
        str | None,
        typer.Option(help="Event queue URL (default: $LOOKALIKE_EVENTS_URL, else the Redis URL)."),
    ] = None,
    stream: Annotated[str | None, typer.Option(help="Stream name (default: settings).")] = None,
    group: Annotated[str | None, typer.Option(help="Consumer group (default: settings).")] = None,
    name: Annotated[
        str | None, typer.Option(help="Consumer name in the group (default: the host name).")
    ] = None,
    batch_size: Annotated[int | None, typer.Option(help="Events read per batch.")] = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="Serve Prometheus metrics (lag, throughput) on this port.")
    ] = None,
) -> None:
    """Apply product events from a queue (Redis stream or Kafka topic) to the catalog and
    index, until stopped."""
    import contextlib
    import signal

    from lookalike.ingest.consumer import StreamConsumer
    from lookalike.ingest.event_sources import open_event_source

    settings = build_settings(
        data_dir,
        redis_url=redis_url,
        events_url=events_url,
        stream_name=stream,
        consumer_group=group,
        consumer_name=name,
        consumer_batch_size=batch_size,
    )
    source = open_event_source(settings)  # fails fast without the queue
    with contextlib.closing(source), _engine(settings, progress=False) as engine:
        engine.live_index  # noqa: B018  (load the model and index before the first event)
        consumer = StreamConsumer(
            source,
            engine,
            batch_size=settings.consumer_batch_size,
            block_ms=settings.consumer_block_ms,
            max_deliveries=settings.max_deliveries,
            retry_delay_s=settings.consumer_retry_delay_s,
            require_version=settings.events_require_version,
            metrics=engine.metrics,
        )
        if metrics_port is not None:
            from prometheus_client import start_http_server

            start_http_server(metrics_port, addr=settings.host, registry=engine.metrics.registry)
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: consumer.stop())
        typer.echo(f"consuming {source.name}; Ctrl-C to stop", err=True)
        consumer.run()  # until a signal; leaving the engine saves the index
    stats = consumer.stats
    typer.echo(
        f"stopped: {stats.applied} events applied, {stats.stale} stale, "
        f"{stats.failed_tries} failed tries, {stats.dead_lettered} dead-lettered",
        err=True,
    )


EventsUrl = Annotated[
    str | None,
    typer.Option(
        "--events-url", help="Event queue URL (default: $LOOKALIKE_EVENTS_URL, else the Redis URL)."
    ),
]


@app.command("publish")
@handles_errors
def publish_command(
    source: Annotated[
        str, typer.Argument(help="A file of one JSON event or JSON Lines, or - for stdin.")
    ],
    events_url: EventsUrl = None,
    stream: Annotated[str | None, typer.Option(help="Redis stream (default: settings).")] = None,
) -> None:
    """Send product events to the queue `lookalike consume` reads (each checked against
    the product_event.v1 schema first; one bad event sends none)."""
    from lookalike.ingest.event_sources import open_event_publisher
    from lookalike.ingest.publish import publish_events, read_event_file, read_events

    settings = build_settings(events_url=events_url, stream_name=stream)
    events = read_events(sys.stdin, "stdin") if source == "-" else read_event_file(Path(source))
    publisher = open_event_publisher(settings)
    try:
        positions = publish_events(publisher, events)
    finally:
        publisher.close()
    typer.echo(f"published {len(positions)} event(s); last at {positions[-1]}")


events_app = typer.Typer(help="The event queue's dead letters: list them, send them back.")
app.add_typer(events_app, name="events")


@events_app.command("dead-letters")
@handles_errors
def dead_letters_command(
    events_url: EventsUrl = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, oldest first.")] = 100,
) -> None:
    """Print the parked events (JSON Lines: event, error, attempts, where it came from)."""
    from dataclasses import asdict

    from lookalike.ingest.event_sources import open_event_publisher

    publisher = open_event_publisher(build_settings(events_url=events_url))
    try:
        letters = publisher.dead_letters(limit)
    finally:
        publisher.close()
    for letter in letters:
        typer.echo(json.dumps(asdict(letter)))


@events_app.command("replay")
@handles_errors
def replay_command(
    events_url: EventsUrl = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, oldest first.")] = 1000,
    drop_unreadable: Annotated[
        bool,
        typer.Option(help="Discard dead letters that hold no JSON event instead of stopping."),
    ] = False,
) -> None:
    """Send dead letters back to the queue (once what made them fail is mended) and
    discard them; an event a newer version has overtaken meanwhile is skipped as stale."""
    from lookalike.ingest.event_sources import open_event_publisher
    from lookalike.ingest.replay import replay_dead_letters

    publisher = open_event_publisher(build_settings(events_url=events_url))
    try:
        report = replay_dead_letters(publisher, limit=limit, drop_unreadable=drop_unreadable)
    finally:
        publisher.close()
    typer.echo(f"replayed {report.replayed} dead letter(s), dropped {report.dropped} unreadable")
    if report.stopped_at is not None:
        letter = report.stopped_at
        typer.echo(
            f"stopped at dead letter {letter.id}: it holds no JSON event "
            f"({letter.error}); mend it or run again with --drop-unreadable",
            err=True,
        )
        raise typer.Exit(1)


@app.command("report")
@handles_errors
def report_command(
    data_dir: DataDir = None,
    days: Annotated[int, typer.Option(min=1, help="Days to cover, today included.")] = 7,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    prune: Annotated[
        bool,
        typer.Option(
            "--prune",
            help="First delete searches and clicks older than LOOKALIKE_SEARCH_LOG_RETENTION_DAYS.",
        ),
    ] = False,
) -> None:
    """Search quality per day from the search and click logs: CTR, MRR, diversity."""
    from lookalike.quality import format_report, prune_logs, quality_report

    settings = build_settings(data_dir)
    with _catalog(settings) as catalog:
        if prune:
            pruned = prune_logs(catalog, settings.search_log_retention_days)
            typer.echo(
                f"pruned {pruned.searches} searches and {pruned.clicks} clicks older than "
                f"{settings.search_log_retention_days:g} days",
                err=True,
            )
        report = quality_report(catalog, days)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        typer.echo(format_report(report))


@app.command("forget-session")
@handles_errors
def forget_session_command(
    session_id: Annotated[str, typer.Argument(help="The session id the client sent.")],
    data_dir: DataDir = None,
) -> None:
    """Erase one shopper's logs on request: their searches, shown hits and events."""
    from lookalike.quality import SessionHasher

    settings = build_settings(data_dir)
    with _catalog(settings) as catalog:
        hashed = SessionHasher.for_catalog(settings, catalog).hash(session_id)
        erased = catalog.erase_session(hashed) if hashed else 0
    typer.echo(f"erased {erased} logged search(es) of that session")


def _when(value: str | None, default: float) -> float:
    """A date or time (ISO 8601, UTC unless it says otherwise) as Unix seconds."""
    if value is None:
        return default
    from datetime import datetime, timezone

    from lookalike.errors import InvalidInput

    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidInput(f"{value!r} is not a date like 2026-12-01 or 2026-12-01T08:00") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


@app.command("train-ranker")
@handles_errors
def train_ranker_command(
    data_dir: DataDir = None,
    since: Annotated[
        str | None, typer.Option(help="First day of logs to use (ISO date; default: --days ago).")
    ] = None,
    until: Annotated[str | None, typer.Option(help="End of the logs to use (default: now).")] = (
        None
    ),
    days: Annotated[int, typer.Option(min=1, help="Window length when --since is not given.")] = 28,
    holdout: Annotated[
        float, typer.Option(min=0.05, max=0.8, help="Latest share of searches held out.")
    ] = 0.25,
    position_bias: Annotated[
        str,
        typer.Option(
            help="ipw: weigh clicks by inverse slot propensities from randomised searches; "
            "none: raw clicks."
        ),
    ] = "ipw",
    rounds: Annotated[int, typer.Option(min=1, help="Most boosting rounds.")] = 300,
    seed: Annotated[int, typer.Option(help="Seed for LightGBM and the bootstrap.")] = 0,
    output: Annotated[
        Path | None, typer.Option(help="Also write the model directory here.")
    ] = None,
    promote: Annotated[
        bool, typer.Option(help="Promote the model if it beats the one serving now.")
    ] = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Train a ranker on the search and click logs (LightGBM lambdarank), evaluate it on a
    later held-out period beside similarity alone and grid-searched hand weights, store
    it in the catalog and promote it if it beats the ranker serving now."""
    import time

    from lookalike.learn import TrainRankerConfig, train_ranker
    from lookalike.learn.lambdarank import LambdaRankParams

    if position_bias not in ("ipw", "none"):
        raise typer.BadParameter("--position-bias must be ipw or none")
    settings = build_settings(data_dir)
    end = _when(until, time.time())
    config = TrainRankerConfig(
        since=_when(since, end - days * 86_400),
        until=end,
        holdout=holdout,
        position_bias=position_bias,  # type: ignore[arg-type]
        params=LambdaRankParams(rounds=rounds, seed=seed),
        promote=promote,
        output=output,
    )
    with _catalog(settings) as catalog:
        echo = (lambda line: None) if as_json else typer.echo
        report = train_ranker(catalog, settings, config, progress=not quiet, echo=echo)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
        return
    typer.echo(f"held-out later period: {report.searches['heldout']} searches")
    typer.echo(report.table())
    typer.echo(f"model {report.version}: {report.decision}")


ranker_app = typer.Typer(help="Learned ranker models in the catalog: list, promote, roll back.")
app.add_typer(ranker_app, name="ranker")


@ranker_app.command("list")
@handles_errors
def ranker_list_command(data_dir: DataDir = None) -> None:
    """Stored models, newest first; the one serving is marked."""
    with _catalog(build_settings(data_dir)) as catalog:
        current, models = catalog.promoted_ranker(), catalog.rankers()
    for model in models:
        heldout = model.manifest.get("metrics", {}).get("learned (lambdarank)", {})
        mark = "*" if model.version == current else " "
        typer.echo(f"{mark} {model.version}  held-out NDCG@10 {heldout.get('ndcg@10', '-')}")
    if not models:
        typer.echo("no ranker models (lookalike train-ranker makes them)")


@ranker_app.command("promote")
@handles_errors
def ranker_promote_command(
    version: Annotated[str, typer.Argument(help="A stored model's version.")],
    data_dir: DataDir = None,
) -> None:
    """Serve this stored model (LOOKALIKE_RANKER=learned picks it up without a restart)."""
    with _catalog(build_settings(data_dir)) as catalog:
        catalog.promote_ranker(version)
    typer.echo(f"promoted {version}")


@ranker_app.command("rollback")
@handles_errors
def ranker_rollback_command(data_dir: DataDir = None) -> None:
    """Undo the newest promotion: the model promoted before it serves again (none left:
    the hand-weighted ranker)."""
    with _catalog(build_settings(data_dir)) as catalog:
        now_serving = catalog.rollback_ranker()
    typer.echo(
        f"rolled back: {now_serving} serves now"
        if now_serving
        else "rolled back: no learned model is promoted; the hand-weighted ranker serves"
    )


@app.command("migrate")
@handles_errors
def migrate_command(
    catalog: Annotated[
        str, typer.Option("--catalog", help="Target catalog URL, e.g. postgresql://user@host/db.")
    ],
    index: Annotated[
        str | None,
        typer.Option("--index", help="Target vector store: a Milvus URI or a Milvus Lite .db."),
    ] = None,
    data_dir: DataDir = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Copy this installation's products and stored embeddings to servers (no re-encoding;
    re-running copies only what changed)."""
    from lookalike.migrate import migrate_installation

    source = build_settings(data_dir)
    target = build_settings(data_dir, catalog_url=catalog, index_url=index)
    typer.echo(migrate_installation(source, target, progress=not quiet).summary())


@app.command("build-index")
@handles_errors
def build_index_command(
    index_type: Annotated[
        str | None,
        typer.Option(
            "--type",
            help="flat, hnsw, ivfpq or auto (default: $LOOKALIKE_INDEX_TYPE); set the "
            "variable too, or the next run rebuilds what it names.",
        ),
    ] = None,
    tune: Annotated[
        bool, typer.Option(help="Tune efSearch / nprobe to the recall target afterwards.")
    ] = True,
    data_dir: DataDir = None,
) -> None:
    """Rebuild the vector index from stored embeddings (no re-encoding)."""
    known = ("auto", "flat", "hnsw", "ivfpq")
    if index_type is not None and index_type not in known:
        raise typer.BadParameter(f"{index_type!r} is not one of {', '.join(known)}")
    with _engine(build_settings(data_dir, index_type=index_type)) as engine:
        plan = engine.index_admin.plan()
        typer.echo(f"building {plan.describe()}")
        described = engine.build_index(plan)
        typer.echo(f"built {described['type']} index with {described['vectors']} vectors")
        if tune:
            _print_tune(engine.index_admin.tune(engine.live_index))


@app.command("tune")
@handles_errors
def tune_command(
    target: Annotated[
        float | None, typer.Option(help="Recall@k to reach (default: $LOOKALIKE_RECALL_TARGET).")
    ] = None,
    queries: Annotated[int, typer.Option(min=2, help="Held-out queries from the catalog.")] = 200,
    k: Annotated[int, typer.Option(min=1, help="Recall@k.")] = 100,
    data_dir: DataDir = None,
) -> None:
    """Set efSearch / nprobe to the cheapest value meeting the recall target."""
    with _engine(build_settings(data_dir)) as engine:
        _print_tune(engine.index_admin.tune(engine.live_index, target, queries=queries, k=k))


def _print_tune(report: Any) -> None:
    if not report.steps:
        typer.echo(f"{report.kind} index is exact: nothing to tune")
        return
    typer.echo(
        f"{report.kind}: {report.queries} held-out queries, {report.vectors} vectors, "
        f"target Recall@{report.k} >= {report.target}"
    )
    for step in report.steps:
        typer.echo(f"  {json.dumps(step.params):<36} recall {step.recall:.4f}  {step.qps:9.0f} q/s")
    verdict = "meets the target" if report.met else "is the best found (target NOT met)"
    typer.echo(f"chosen {json.dumps(report.chosen)}: recall {report.recall:.4f} {verdict}")


@app.command("export-onnx")
@handles_errors
def export_onnx_command(
    out_dir: Annotated[Path, typer.Argument(help="Directory to write the ONNX model into.")],
    int8: Annotated[
        bool, typer.Option("--int8", help="Also quantise weights to int8 (smaller, faster).")
    ] = False,
) -> None:
    """Export the configured open_clip model's image and text towers to ONNX."""
    from lookalike.encode.onnx_export import export_onnx

    written = export_onnx(build_settings(), out_dir, int8=int8)
    typer.echo(f"wrote {written}; use it with LOOKALIKE_MODEL_CHECKPOINT={written}")


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app()
    except BrokenPipeError:  # `lookalike search ... | head`
        sys.exit(0)


if __name__ == "__main__":
    main()
