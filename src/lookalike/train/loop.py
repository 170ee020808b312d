"""The training loop: contrastive training on catalog (image, caption) pairs, resumable.

Everything random is a function of (seed, epoch, step): the epoch's order, the image
augmentation and the caption drawn for each item. So a run resumed from a saved step
replays exactly the steps an uninterrupted run would have taken, and two runs with the
same seed on the same CPU give the same weights.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from tqdm.auto import tqdm

from lookalike.config import Settings
from lookalike.encode.images import ImageLimits
from lookalike.encode.torch_runtime import resolve_device
from lookalike.errors import CheckpointError, ConfigError, InvalidInput
from lookalike.ingest.sources import ItemSpec
from lookalike.train.captions import caption_variants
from lookalike.train.checkpoint import load_state, save_state
from lookalike.train.data import (
    CaptionTable,
    GiB,
    ImageStore,
    augment,
    batches,
    epoch_order,
    read_items,
    sample_captions,
    split_items,
    step_generator,
    steps_per_epoch,
)
from lookalike.train.loss import contrastive_loss, positives_matrix
from lookalike.train.metrics import hit_at_k, knn, precision_at_k, retrieved_labels
from lookalike.train.models import LitTrainable, OpenClipTrainable, Trainable

MAX_LOGIT_SCALE = math.log(100.0)
DEFAULT_LR = {"lit": 2e-3, "finetune": 1e-5}


@dataclass
class TrainConfig:
    """One run's knobs; the CLI's `lookalike train` options map onto these."""

    mode: Literal["lit", "finetune"] = "lit"
    epochs: int = 3
    batch_size: int = 256
    lr: float | None = None  # default by mode: DEFAULT_LR
    weight_decay: float = 0.05
    warmup_steps: int = 50
    seed: int = 0
    tower: str = "rn-tiny"
    image_size: int = 32
    embed_dim: int | None = None  # default: the text tower's dimension
    text_projection: Literal["linear", "identity"] = "linear"
    temperature: float = 0.07  # lit: initial softmax temperature (then learned)
    # Image augmentation (flip + shift). Off by default: in runs of a few epochs it slowed
    # learning more than it helped (README "Demo model"); captions are always varied.
    augment: bool = False
    val_fraction: float = 0.02
    val_max: int = 2000
    checkpoint_every: int = 200  # steps between training-state saves (and every epoch end)
    max_steps: int | None = None  # stop (resumably) after this many steps in total
    limit: int | None = None  # use only the first N items of the source
    cache_bytes: int = 2 * GiB

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[self.mode]

    def resume_key(self) -> dict[str, Any]:
        """What must not change between a run and its resumption."""
        return {
            "mode": self.mode,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "seed": self.seed,
            "augment": self.augment,
            "lr": self.learning_rate,
            "weight_decay": self.weight_decay,
            "warmup_steps": self.warmup_steps,
            **(
                {
                    "tower": self.tower,
                    "image_size": self.image_size,
                    "embed_dim": self.embed_dim,
                    "text_projection": self.text_projection,
                    "temperature": self.temperature,
                }
                if self.mode == "lit"
                else {}
            ),
        }


@dataclass
class TrainResult:
    output: Path
    step: int
    total_steps: int
    finished: bool
    resumed_from: int | None
    model: str
    train_items: int
    val_items: int
    history: list[dict[str, Any]] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)  # each step of this run, in order
    skipped: int = 0
    seconds: float = 0.0


def train(
    source: str | Path,
    output: Path,
    settings: Settings,
    config: TrainConfig,
    *,
    resume: bool = True,
    progress: bool = True,
) -> TrainResult:
    """Train on the items of `source` and write a loadable model directory to `output`."""
    started = time.monotonic()
    device = resolve_device(settings.device)
    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    _check_config(config)
    state = load_state(output) if resume else None
    if state is not None and state.info.get("run") != config.resume_key():
        raise CheckpointError(
            f"{output} holds a run with other settings ({state.info.get('run')}); "
            "use --no-resume to start over, or another --output"
        )
    trainable = _trainable(settings, config, device, output)
    architecture = json.loads(json.dumps(trainable.architecture()))  # as saved: lists, not tuples
    if state is not None and state.info.get("architecture") != architecture:
        raise CheckpointError(
            f"{output} holds a run of another model ({state.info.get('architecture')}); "
            "use --no-resume to start over, or another --output"
        )
    say(trainable.describe())

    items, bad_rows = read_items(source, config.limit)
    splits = split_items(
        items, val_fraction=config.val_fraction, val_max=config.val_max, seed=config.seed
    )
    if not splits.train:
        raise InvalidInput(f"{source}: no training items (items marked split=test are held out)")
    limits = ImageLimits.from_settings(settings)
    store_options = {
        "workers": settings.ingest_workers,
        "cache_bytes": config.cache_bytes,
        "progress": progress,
    }
    train_store = ImageStore(
        splits.train, trainable.preprocess, limits, desc="load train images", **store_options
    )
    val_store = ImageStore(
        splits.val, trainable.preprocess, limits, desc="load val images", **store_options
    )
    if not len(train_store):
        raise InvalidInput(f"{source}: none of the training images could be read")
    skipped = len(bad_rows) + len(train_store.failed) + len(val_store.failed)
    say(
        f"data: {len(train_store)} train, {len(val_store)} validation, "
        f"{splits.held_out} held out (split=test), {skipped} skipped"
    )

    captions = CaptionTable()
    variants, counts = captions.variants(train_store.items)
    val_plan = _validation_plan(val_store.items, captions)
    trainable.prepare_captions(captions.texts)

    signature = _signature(train_store.items)
    if state is not None and state.info.get("data") != signature:
        raise CheckpointError(
            f"{output} was trained on other items than {source} gives now; "
            "use --no-resume to start over, or another --output"
        )

    module = trainable.module
    optimizer = torch.optim.AdamW(
        _parameter_groups(module, config.weight_decay),
        lr=config.learning_rate,
        betas=(0.9, 0.98),
        eps=1e-6,
    )
    per_epoch = steps_per_epoch(len(train_store), config.batch_size)
    total_steps = config.epochs * per_epoch
    step, history, loss_sum, loss_count = 0, [], 0.0, 0
    losses: list[float] = []
    if state is not None:
        module.load_state_dict(state.model)
        optimizer.load_state_dict(state.optimizer)
        torch.set_rng_state(state.rng)
        step = state.step
        history = list(state.info.get("history", []))
        loss_sum, loss_count = state.info.get("epoch_loss", [0.0, 0])
        say(f"resuming at step {step} of {total_steps}")
    resumed_from = state.step if state is not None else None
    stop_at = min(total_steps, config.max_steps) if config.max_steps else total_steps

    def info(finished: bool) -> dict[str, Any]:
        return {
            "run": config.resume_key(),
            "architecture": architecture,
            "data": signature,
            "config": asdict(config),
            "source": str(source),
            "train_items": len(train_store),
            "val_items": len(val_store),
            "steps": step,
            "total_steps": total_steps,
            "finished": finished,
            "history": history,
            "epoch_loss": [loss_sum, loss_count],
        }

    def checkpoint(finished: bool) -> None:
        save_state(output, step=step, info=info(finished), model=module, optimizer=optimizer)

    bar = tqdm(
        total=stop_at * config.batch_size,
        initial=min(step, stop_at) * config.batch_size,
        desc="train",
        unit="img",
        disable=not progress,
        smoothing=0.1,
    )
    try:
        while step < stop_at:
            epoch = step // per_epoch
            module.train()
            order = epoch_order(len(train_store), config.seed, epoch)
            for index_in_epoch, indices in enumerate(batches(order, config.batch_size)):
                if epoch * per_epoch + index_in_epoch < step:
                    continue  # done before the run was resumed
                loss = _train_step(
                    trainable,
                    optimizer,
                    train_store,
                    variants,
                    counts,
                    indices,
                    step,
                    config,
                    total_steps,
                    device,
                )
                step += 1
                losses.append(loss)
                loss_sum, loss_count = loss_sum + loss, loss_count + 1
                bar.update(len(indices))
                bar.set_postfix(epoch=epoch + 1, loss=f"{loss_sum / loss_count:.3f}")
                if step >= stop_at:
                    break
                if step % config.checkpoint_every == 0 and step % per_epoch:
                    checkpoint(finished=False)
            if step % per_epoch == 0:
                metrics = _validate(trainable, val_store, val_plan, device)
                history.append(
                    {
                        "epoch": step // per_epoch,
                        "step": step,
                        "loss": round(loss_sum / max(loss_count, 1), 4),
                        "temperature": round(1 / trainable.logit_scale.exp().item(), 4),
                        **metrics,
                    }
                )
                loss_sum, loss_count = 0.0, 0
                say(_epoch_line(history[-1], config.epochs))
            finished = step >= total_steps
            checkpoint(finished)
            trainable.save(output, info(finished))
    finally:
        bar.close()
    return TrainResult(
        output=output,
        step=step,
        total_steps=total_steps,
        finished=step >= total_steps,
        resumed_from=resumed_from,
        model=trainable.describe(),
        train_items=len(train_store),
        val_items=len(val_store),
        history=history,
        losses=losses,
        skipped=skipped,
        seconds=time.monotonic() - started,
    )


def say(message: str) -> None:
    """A line of output that does not break a running progress bar."""
    tqdm.write(message)


def _train_step(
    trainable: Trainable,
    optimizer: torch.optim.Optimizer,
    store: ImageStore,
    variants: torch.Tensor,
    counts: torch.Tensor,
    indices: torch.Tensor,
    step: int,
    config: TrainConfig,
    total_steps: int,
    device: str,
) -> float:
    generator = step_generator(config.seed, 2, step)
    pixels = store.get(indices)
    if config.augment:
        pixels = augment(pixels, generator)
    caption_ids = sample_captions(variants[indices], counts[indices], generator)
    positives = positives_matrix(variants[indices], caption_ids).to(device)
    scale = _lr_factor(step, total_steps, config.warmup_steps)
    for group in optimizer.param_groups:
        group["lr"] = config.learning_rate * scale
    loss = contrastive_loss(
        trainable.image_features(pixels.to(device)),
        trainable.text_features(caption_ids.to(device)),
        positives,
        trainable.logit_scale,
    )
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    with torch.no_grad():
        trainable.logit_scale.clamp_(0, MAX_LOGIT_SCALE)
    return float(loss.item())


def _lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up, then cosine decay to zero at the last step."""
    warmup = min(warmup, max(total // 10, 1))
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(total - warmup, 1)
    return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def _parameter_groups(module: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    # No decay on gains, biases and the temperature (the usual CLIP recipe).
    decay, no_decay = [], []
    for name, parameter in module.named_parameters():
        if not parameter.requires_grad:
            continue
        target = no_decay if parameter.ndim < 2 or "logit_scale" in name else decay
        target.append(parameter)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def _trainable(settings: Settings, config: TrainConfig, device: str, output: Path) -> Trainable:
    if config.mode == "lit":
        trainable = LitTrainable.create(
            settings.text_model,
            device,
            config.seed,
            tower=config.tower,
            image_size=config.image_size,
            embed_dim=config.embed_dim,
            text_projection=config.text_projection,
        )
        with torch.no_grad():
            trainable.logit_scale.fill_(math.log(1 / config.temperature))
        return trainable
    from lookalike.encode.factory import model_source

    source = model_source(settings)
    if source.is_local and Path(source.location).resolve() == output.resolve():
        raise ConfigError(f"fine-tuning writes to {output}: choose an output other than the base")
    cache_dir = str(settings.model_cache_dir) if settings.model_cache_dir else None
    torch.manual_seed(config.seed)
    return OpenClipTrainable(source, device, cache_dir)


@dataclass
class _ValidationPlan:
    caption_ids: np.ndarray  # each validation item's canonical caption id
    caption_texts: list[str]  # distinct canonical captions (queries)
    caption_query_ids: np.ndarray
    categories: np.ndarray | None  # each item's category code, when all items have one
    category_names: list[str]  # code -> category


def _validation_plan(items: list[ItemSpec], captions: CaptionTable) -> _ValidationPlan:
    canonical = [caption_variants(item)[0] for item in items]
    ids = np.asarray([captions.add(text) for text in canonical], dtype=np.int64)
    distinct = sorted(set(canonical))
    categories = None
    names: list[str] = []
    if items and all(item.category for item in items):
        unique, categories = np.unique([str(item.category) for item in items], return_inverse=True)
        names = unique.tolist()
    return _ValidationPlan(
        ids, distinct, np.asarray([captions.add(t) for t in distinct]), categories, names
    )


def _validate(
    trainable: Trainable, store: ImageStore, plan: _ValidationPlan, device: str
) -> dict[str, float]:
    """Recall@K of each distinct caption finding its images; with categories, class-prompt
    precision@10 (text -> image) and image -> image precision@10."""
    if not len(store):
        return {}
    module = trainable.module
    module.eval()
    try:
        with torch.no_grad():
            images = torch.cat(
                [
                    trainable.image_features(store.get(chunk).to(device)).cpu()
                    for chunk in torch.arange(len(store)).split(512)
                ]
            ).numpy()
            queries = trainable.texts_features(plan.caption_texts).cpu().numpy()
            found = retrieved_labels(knn(queries, images, 10), plan.caption_ids)
            metrics = {
                f"caption_R@{k}": float(hit_at_k(found, plan.caption_query_ids, k).mean())
                for k in (1, 5, 10)
            }
            if plan.categories is not None and len(plan.category_names) > 1:
                prompts = [f"a photo of a {c.lower()}" for c in plan.category_names]
                texts = trainable.texts_features(prompts).cpu().numpy()
                by_text = retrieved_labels(knn(texts, images, 10), plan.categories)
                metrics["class_prompt_P@10"] = float(
                    precision_at_k(by_text, np.arange(len(prompts))).mean()
                )
                by_image = retrieved_labels(
                    knn(images, images, 10, exclude_self=True), plan.categories
                )
                metrics["image_P@10"] = float(precision_at_k(by_image, plan.categories).mean())
    finally:
        module.train()
    return {k: round(v, 4) for k, v in metrics.items()}


def _epoch_line(entry: dict[str, Any], epochs: int) -> str:
    parts = [f"epoch {entry['epoch']}/{epochs}", f"loss {entry['loss']:.3f}"]
    parts += [f"{k} {v:.3f}" for k, v in entry.items() if "@" in k]
    return " | ".join(parts)


def _signature(items: list[ItemSpec]) -> str:
    digest = hashlib.sha256()
    for item in items:
        digest.update(item.id.encode() + b"\0")
    return digest.hexdigest()[:16]


def _check_config(config: TrainConfig) -> None:
    if config.epochs < 1 or config.batch_size < 2:
        raise ConfigError("training needs epochs >= 1 and a batch size >= 2")
    if config.max_steps is not None and config.max_steps < 1:
        raise ConfigError("max_steps must be >= 1")
    if not 0 < config.temperature <= 1:
        raise ConfigError("temperature must be in (0, 1]")
    if config.checkpoint_every < 1:
        raise ConfigError("checkpoint_every must be >= 1")
